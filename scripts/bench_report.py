#!/usr/bin/env python3
"""Writes the tables of BENCHMARKS.md from criterion's results.

Reads target/criterion/**/new/{benchmark,estimates}.json (per-request times in ns: every
bench uses iter_custom with one iteration per request or per cold stampede), plus what
scripts/bench.sh leaves beside them: bench-output.log (token-request counts of the stampede
bench), instructions.json (callgrind), loadavg.txt and date.txt. Replaces the text between
the BEGIN/END GENERATED markers of the Markdown file; the rest of the file is kept.

Run by scripts/bench.sh; by hand: python3 scripts/bench_report.py --criterion target/criterion
--markdown BENCHMARKS.md
"""

import argparse
import json
import os
import platform
import re
import subprocess
import sys

BEGIN = "<!-- BEGIN GENERATED (scripts/bench.sh) -->"
END = "<!-- END GENERATED -->"

STACKS = ["floor", "static_header", "oauth", "oauth_no_replay", "mutex_slot", "rwlock_slot"]
STACK_NAMES = {
    "floor": "no middleware (floor)",
    "no_header": "no middleware",
    "static_header": "tower-http `SetRequestHeader`, static value",
    "oauth": "**`OAuth<S>`**",
    "oauth_no_replay": "`OAuth<S>`, `replay(false)`",
    "mutex_slot": "hand-written `Arc<Mutex<Token>>` slot",
    "rwlock_slot": "hand-written `Arc<RwLock<Token>>` slot",
}
BODIES = {
    "empty": "`Empty<Bytes>` (GET)",
    "full": "`Full<Bytes>` (replayable POST body)",
    "streaming": "one-shot stream (not replayable)",
}
HOT_PATH_TARGET = 1.05
E2E_TARGET = 0.98
COMMAND = "scripts/bench.sh"


def load_results(root):
    results = {}
    for dirpath, _, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            est = json.load(f)
        results[bench["full_id"]] = {
            "median": est["median"]["point_estimate"],
            "lo": est["median"]["confidence_interval"]["lower_bound"],
            "hi": est["median"]["confidence_interval"]["upper_bound"],
            "mad": est["median_abs_dev"]["point_estimate"],
        }
    return results


def read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def machine():
    cpu = "?"
    for line in (read("/proc/cpuinfo", "") or "").splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    try:
        rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True).stdout.strip()
    except OSError:
        rustc = "?"
    mem = "?"
    for line in (read("/proc/meminfo", "") or "").splitlines():
        if line.startswith("MemTotal:"):
            mem = f"{int(line.split()[1]) / 1024 / 1024:.0f} GiB"
    return {
        "cpus": str(os.cpu_count()),
        "cpu": cpu,
        "mem": mem,
        "os": f"{platform.system()} {platform.release()}",
        "rustc": rustc,
    }


def ns(x):
    if x >= 1e6:
        return f"{x / 1e6:.2f} ms"
    if x >= 1e3:
        return f"{x / 1e3:.2f} µs"
    return f"{x:.1f} ns"


def rate(per_second):
    if per_second >= 1e6:
        return f"{per_second / 1e6:.2f} M/s"
    if per_second >= 1e3:
        return f"{per_second / 1e3:.1f} k/s"
    return f"{per_second:.0f} /s"


def verdict(ok):
    return "met" if ok else "**missed**"


def hot_path(results, instructions):
    out = ["### Hot path, one thread", ""]
    out.append(
        "Time per request (criterion median, its 95% confidence interval, and the median "
        "absolute deviation of the samples), on a current-thread runtime. "
        "Instructions per request from callgrind (load-independent). Ratios are to the "
        "static-header layer."
    )
    out.append("")
    summary = []
    for body, body_name in BODIES.items():
        rows = {s: results.get(f"hot_path/{body}/{s}") for s in STACKS}
        if not any(rows.values()):
            continue
        out.append(f"Body: {body_name}")
        out.append("")
        out.append(
            "| stack | median | 95% CI | MAD | added to floor | time ratio | instructions | instr. ratio |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
        base = rows.get("static_header")
        floor = rows.get("floor")
        ins_base = instructions.get(f"{body}/static_header")
        for s in STACKS:
            r = rows.get(s)
            ins = instructions.get(f"{body}/{s}")
            if not r:
                continue
            added = ns(r["median"] - floor["median"]) if floor and s != "floor" else ""
            ratio = f"{r['median'] / base['median']:.2f}" if base else ""
            ins_cell = f"{ins:.0f}" if ins is not None else "n/a"
            ins_ratio = f"{ins / ins_base:.2f}" if ins is not None and ins_base else ""
            out.append(
                f"| {STACK_NAMES[s]} | {ns(r['median'])} | {ns(r['lo'])} – {ns(r['hi'])} "
                f"| {ns(r['mad'])} | {added} | {ratio} | {ins_cell} | {ins_ratio} |"
            )
        out.append("")
        if base and rows.get("oauth"):
            t = rows["oauth"]["median"] / base["median"]
            ins = instructions.get(f"{body}/oauth")
            i = ins / ins_base if ins is not None and ins_base else None
            summary.append((body_name, t, i))
    if summary:
        out.append(f"**`OAuth<S>` / static header (target ≤ {HOT_PATH_TARGET:.2f})**")
        out.append("")
        out.append("| body | time ratio | target, by time | instruction ratio | target, by instructions |")
        out.append("|---|---:|---|---:|---|")
        for body_name, t, i in summary:
            i_cell = f"{i:.2f}" if i is not None else "n/a"
            i_verdict = verdict(i <= HOT_PATH_TARGET) if i is not None else "n/a"
            out.append(
                f"| {body_name} | {t:.2f} | {verdict(t <= HOT_PATH_TARGET)} | {i_cell} | {i_verdict} |"
            )
        out.append("")
    return out


def multi_thread(results):
    two = {s: results.get(f"multi_thread/2_workers/{s}") for s in STACKS}
    one = {s: results.get(f"multi_thread/1_worker/{s}") for s in STACKS}
    if not any(two.values()):
        return []
    out = ["### Hot path, many tasks on 2 threads", ""]
    out.append(
        "256 tasks share one service and send requests (`Empty<Bytes>` body) as fast as "
        "they can, on a multi-thread runtime. Throughput from the median time per request; "
        "scaling is 2 workers over 1 worker."
    )
    out.append("")
    out.append(
        "| stack | 2 workers: requests/s | ns/request (95% CI) | 1 worker: requests/s | scaling 1 → 2 | time ratio to static header (2 workers) |"
    )
    out.append("|---|---:|---:|---:|---:|---:|")
    base = two.get("static_header")
    for s in STACKS:
        r2, r1 = two.get(s), one.get(s)
        if not r2:
            continue
        c1 = rate(1e9 / r1["median"]) if r1 else "n/a"
        scaling = f"{r1['median'] / r2['median']:.2f}×" if r1 else "n/a"
        ratio = f"{r2['median'] / base['median']:.2f}" if base else ""
        out.append(
            f"| {STACK_NAMES[s]} | {rate(1e9 / r2['median'])} | {ns(r2['median'])} "
            f"({ns(r2['lo'])} – {ns(r2['hi'])}) | {c1} | {scaling} | {ratio} |"
        )
    out.append("")
    return out


def end_to_end(results, log):
    stacks = ["no_header", "static_header", "oauth"]
    rows = {s: results.get(f"end_to_end/{s}") for s in stacks}
    if not any(rows.values()):
        return []
    out = ["### End to end over loopback", ""]
    out.append(
        "hyper-util legacy client → loopback → hyper HTTP/1.1 server answering `200`, 64 "
        "requests in flight. Requests per second from the median time per request; the "
        "interval is the median's 95% confidence interval."
    )
    out.append("")
    out.append("| stack | requests/s | 95% CI | MAD of the samples | throughput ratio to static header |")
    out.append("|---|---:|---:|---:|---:|")
    base = rows.get("static_header")
    for s in stacks:
        r = rows.get(s)
        if not r:
            continue
        ratio = f"{base['median'] / r['median']:.3f}" if base else ""
        mad_pct = f"{100 * r['mad'] / r['median']:.1f}%"
        out.append(
            f"| {STACK_NAMES[s]} | {rate(1e9 / r['median'])} | {rate(1e9 / r['hi'])} – "
            f"{rate(1e9 / r['lo'])} | {mad_pct} | {ratio} |"
        )
    out.append("")
    if base and rows.get("oauth"):
        t = base["median"] / rows["oauth"]["median"]
        out.append(
            f"**`OAuth<S>` / static header throughput, criterion medians: {t:.3f}** "
            f"(target ≥ {E2E_TARGET:.2f}: {verdict(t >= E2E_TARGET)})"
        )
        out.append("")
    m = re.search(
        r"paired: end_to_end oauth/static_header rounds=(\d+) requests_per_round=(\d+) "
        r"median=([\d.]+) q1=([\d.]+) q3=([\d.]+) min=([\d.]+) max=([\d.]+)",
        log or "",
    )
    if m:
        rounds, per_round, med, q1, q3, lo, hi = m.groups()
        out.append(
            f"**Paired rounds** ({rounds} rounds of {per_round} requests per stack, alternating "
            f"which goes first): `OAuth<S>` / static header throughput, median of the rounds "
            f"**{float(med):.3f}** (quartiles {float(q1):.3f} – {float(q3):.3f}, range "
            f"{float(lo):.3f} – {float(hi):.3f}; target ≥ {E2E_TARGET:.2f}: "
            f"{verdict(float(med) >= E2E_TARGET)})"
        )
        out.append("")
    return out


def stampede(results, log, instructions):
    ids = [
        ("stampede/http/oauth", "HTTP token endpoint (50 ms), `ClientCredentials`", "oauth"),
        ("stampede/in_process/oauth", "in-process source (50 ms)", "oauth"),
        ("stampede/in_process/mutex_slot", "in-process source (50 ms)", "mutex_slot"),
        ("stampede/in_process/rwlock_slot", "in-process source (50 ms)", "rwlock_slot"),
    ]
    counts = {}
    for m in re.finditer(r"token-requests: (\S+) iterations=(\d+) min=(\d+) max=(\d+)", log or ""):
        counts[m.group(1)] = (int(m.group(2)), int(m.group(3)), int(m.group(4)))
    if not any(results.get(i) for i, _, _ in ids):
        return []
    out = ["### Cold stampede", ""]
    out.append(
        "10,000 concurrent callers on a cold cache, 2 worker threads; time from the first "
        "spawn until every caller has its response. The bench fails if any cold start makes "
        "other than exactly 1 token request."
    )
    out.append("")
    out.append(
        "Instructions per caller: callgrind, one cold stampede on a current-thread runtime "
        "with a paused clock (every caller waits, then every caller is woken), the "
        "difference between 11,000 and 1,000 callers over 10,000."
    )
    out.append("")
    out.append(
        "| token endpoint | stack | time to all responses (median) | 95% CI | over the 50 ms fetch | token requests per cold start | instructions per caller |"
    )
    out.append("|---|---|---:|---:|---:|---|---:|")
    for full_id, endpoint, stack in ids:
        r = results.get(full_id)
        if not r:
            continue
        c = counts.get(full_id)
        if c:
            n, lo, hi = c
            requests = f"{lo}" if lo == hi else f"{lo}–{hi}"
            requests += f" (all {n} runs)"
        else:
            requests = "n/a"
        ins = instructions.get(f"stampede/{stack}") if "in_process" in full_id else None
        ins_cell = f"{ins:.0f}" if ins is not None else ""
        out.append(
            f"| {endpoint} | {STACK_NAMES[stack]} | {ns(r['median'])} | {ns(r['lo'])} – "
            f"{ns(r['hi'])} | {ns(r['median'] - 50e6)} | {requests} | {ins_cell} |"
        )
    out.append("")
    return out


def generate(root, note):
    results = load_results(root)
    instructions = json.loads(read(os.path.join(root, "instructions.json"), "{}") or "{}")
    log = read(os.path.join(root, "bench-output.log"), "")
    load = (read(os.path.join(root, "loadavg.txt"), "") or "").split("\n")
    date = (read(os.path.join(root, "date.txt"), "") or "").strip() or "?"
    valgrind = (read(os.path.join(root, "valgrind-version.txt"), "") or "").strip()
    m = machine()

    out = [BEGIN, ""]
    if note:
        out += [f"> {note}", ""]
    out.append(f"- Measured: {date}, with `{COMMAND}`")
    out.append(
        f"- Machine: {m['cpus']} CPUs ({m['cpu']}), {m['mem']}, {m['os']}; {m['rustc']}"
        + (f"; {valgrind}" if valgrind else "")
    )
    if len(load) >= 2 and load[0]:
        out.append(f"- Load average (1, 5, 15 min) before the run: {load[0]}; after: {load[1]}")
    out.append("")
    out += hot_path(results, instructions)
    out += multi_thread(results)
    out += end_to_end(results, log)
    out += stampede(results, log, instructions)
    out.append(END)
    return "\n".join(out)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--criterion", default="target/criterion")
    p.add_argument("--markdown", default="BENCHMARKS.md")
    p.add_argument("--note", default="")
    a = p.parse_args()
    generated = generate(a.criterion, a.note)
    text = read(a.markdown)
    if text is None or BEGIN not in text or END not in text:
        print(f"{a.markdown}: no generated section found; writing the tables to stdout", file=sys.stderr)
        print(generated)
        return
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    with open(a.markdown, "w") as f:
        f.write(head + generated + tail)
    print(f"{a.markdown}: tables written")


if __name__ == "__main__":
    main()
