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

STACKS = ["floor", "static_header", "copy_floor", "oauth", "oauth_off", "oauth_attach", "oauth_no_replay", "per_origin", "keyed", "mutex_slot", "rwlock_slot"]
STACK_NAMES = {
    "floor": "no middleware (floor)",
    "no_header": "no middleware",
    "static_header": "tower-http `SetRequestHeader`, static value",
    "copy_floor": "a header set directly and a copy of the request kept for a second attempt, no token (`copy_floor`)",
    "oauth": "**`OAuth<S>`**",
    "oauth_off": "`OAuth<S>`, recovery off (`RecoverOn::Never`)",
    "oauth_attach": "`Attach<S>` (`OAuthLayer::without_recovery()`)",
    "oauth_no_replay": "`OAuth<S>`, `replay(false)`",
    "per_origin": "`PerOriginLayer`, 3 routes, the request for the third",
    "keyed": "`KeyedLayer`, a key per origin of the same 3 (selector on the authority)",
    "mutex_slot": "hand-written `Arc<Mutex<Token>>` slot",
    "rwlock_slot": "hand-written `Arc<RwLock<Token>>` slot",
}
BODIES = {
    "empty": "bare `GET`, `Empty<Bytes>`",
    "full": "bare request, `Full<Bytes>` (replayable body)",
    "streaming": "bare request, one-shot stream (not replayable)",
    "post": "`POST` with `content-type`, `accept`, `user-agent` and a `Full<Bytes>` body",
    "uri": "bare `GET https://stock.example.com/v1/items`, `Empty<Bytes>` (instructions only)",
}
# The per-origin layer adds at most this share to the single-token layer's instructions.
PER_ORIGIN_TARGET = 0.30
# The issue's targets for a request with a valid token, against the static header:
# (body, stack, what, ratio at most, instructions added at most).
HOT_PATH_TARGETS = [
    ("empty", "oauth", "defaults, bare `GET`", 1.15, 150),
    ("post", "oauth", "defaults, `POST` with three headers", 1.25, 250),
    ("empty", "oauth_off", "recovery off at run time (`RecoverOn::Never`), bare `GET`", 1.05, 50),
    ("empty", "oauth_attach", "recovery off at the type level (`without_recovery()`), bare `GET`", 1.05, 50),
]
# 256 tasks on 2 workers: `OAuth<S>` throughput over the static header's, at least.
MULTI_THREAD_TARGET = 0.85
# End to end, paired rounds: median throughput ratio to the static header, at least.
E2E_TARGET = 0.99
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
        "Instructions per request from callgrind (load-independent), and the instructions "
        "added over the static-header layer. Ratios are to the static-header layer."
    )
    out.append("")
    for body, body_name in BODIES.items():
        rows = {s: results.get(f"hot_path/{body}/{s}") for s in STACKS}
        ins_rows = {s: instructions.get(f"{body}/{s}") for s in STACKS}
        if not any(rows.values()) and all(v is None for v in ins_rows.values()):
            continue
        out.append(f"Request: {body_name}")
        out.append("")
        out.append(
            "| stack | median | 95% CI | MAD | added to floor | time ratio | instructions "
            "| instr. added over static header | instr. ratio |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        base = rows.get("static_header")
        floor = rows.get("floor")
        ins_base = ins_rows.get("static_header")
        for s in STACKS:
            r = rows.get(s)
            ins = ins_rows.get(s)
            if not r and ins is None:
                continue
            if r:
                median, ci, mad = ns(r["median"]), f"{ns(r['lo'])} – {ns(r['hi'])}", ns(r["mad"])
            else:
                median, ci, mad = "n/a", "", ""
            added = ns(r["median"] - floor["median"]) if r and floor and s != "floor" else ""
            ratio = f"{r['median'] / base['median']:.2f}" if r and base else ""
            ins_cell = f"{ins:.0f}" if ins is not None else "n/a"
            ins_added = (
                f"{ins - ins_base:+.0f}"
                if ins is not None and ins_base is not None and s not in ("floor", "static_header")
                else ""
            )
            ins_ratio = f"{ins / ins_base:.2f}" if ins is not None and ins_base else ""
            out.append(
                f"| {STACK_NAMES[s]} | {median} | {ci} | {mad} | {added} | {ratio} "
                f"| {ins_cell} | {ins_added} | {ins_ratio} |"
            )
        out.append("")
    one = instructions.get("uri/oauth")
    for stack, what in [("per_origin", "`PerOriginLayer` (3 origins)"), ("keyed", "`KeyedLayer` (3 keys)")]:
        keyed = instructions.get(f"uri/{stack}")
        if one and keyed:
            share = keyed / one - 1
            out.append(
                f"**{what} over the single-token `OAuth<S>`, same request:** "
                f"{keyed - one:+.0f} instructions, {100 * share:+.1f}% (target ≤ "
                f"{100 * PER_ORIGIN_TARGET:.0f}%: {verdict(share <= PER_ORIGIN_TARGET)})"
            )
            out.append("")
    summary = []
    for body, stack, what, ratio_max, added_max in HOT_PATH_TARGETS:
        r = results.get(f"hot_path/{body}/{stack}")
        base = results.get(f"hot_path/{body}/static_header")
        ins = instructions.get(f"{body}/{stack}")
        ins_base = instructions.get(f"{body}/static_header")
        t = r["median"] / base["median"] if r and base else None
        i = ins / ins_base if ins is not None and ins_base else None
        a = ins - ins_base if ins is not None and ins_base is not None else None
        if t is None and i is None:
            continue
        # What the copy for a second attempt costs alone: a floor under the defaults.
        copy = instructions.get(f"{body}/copy_floor")
        c = copy - ins_base if stack == "oauth" and copy is not None and ins_base is not None else None
        summary.append((what, ratio_max, added_max, t, i, a, c))
    if summary:
        out.append("**Targets: `OAuth<S>` against the static header**")
        out.append("")
        out.append(
            "| request and options | time ratio | instruction ratio | target ratio "
            "| instructions added | target added | `copy_floor` adds | verdict |"
        )
        out.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for what, ratio_max, added_max, t, i, a, c in summary:
            checks = [x <= ratio_max for x in (t, i) if x is not None]
            if a is not None:
                checks.append(a <= added_max)
            copy = "" if c is None else f"{c:+.0f}"
            out.append(
                f"| {what} | {fmt(t, '.2f')} | {fmt(i, '.2f')} | ≤ {ratio_max:.2f} "
                f"| {fmt(a, '+.0f')} | ≤ {added_max} | {copy} | {verdict(all(checks))} |"
            )
        out.append("")
        over = [
            (what, added_max, c)
            for what, _, added_max, _, _, _, c in summary
            if c is not None and c > added_max
        ]
        if over:
            out.append(
                "The `copy_floor` stack (a header set directly, and the method, URI, version, "
                "extensions, header fields and body clone that `OAuth<S>` keeps, with no token, "
                "slot or policy) adds more than these targets allow by itself: "
                + "; ".join(f"{what}: {c:+.0f} against ≤ {m}" for what, m, c in over)
                + ". It is a floor for this layout of the copy; see the reading below."
            )
            out.append("")
    return out


def fmt(x, spec):
    return "n/a" if x is None else format(x, spec)


def multi_thread(results):
    two = {s: results.get(f"multi_thread/2_workers/{s}") for s in STACKS}
    one = {s: results.get(f"multi_thread/1_worker/{s}") for s in STACKS}
    post = {s: results.get(f"multi_thread/2_workers_post/{s}") for s in STACKS}
    if not any(two.values()) and not any(post.values()):
        return []
    out = ["### Hot path, 256 tasks on 2 threads", ""]
    out.append(
        "256 tasks share one service and send requests as fast as they can, on a "
        "multi-thread runtime: the bare `GET` (`Empty<Bytes>` body) on 2 workers and on 1, "
        "and the `POST` with three headers and a `Full<Bytes>` body on 2 workers. Throughput "
        "from the median time per request; scaling is 2 workers over 1 worker; the "
        "throughput ratio is the static header's time over the stack's (above 1: faster)."
    )
    out.append("")
    out.append(
        "| stack | `GET`, 2 workers: requests/s | ns/request (95% CI) | 1 worker: requests/s "
        "| scaling 1 → 2 | throughput ratio to static header | `POST`, 2 workers: requests/s "
        "| throughput ratio to static header |"
    )
    out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    base = two.get("static_header")
    post_base = post.get("static_header")
    for s in STACKS:
        r2, r1, rp = two.get(s), one.get(s), post.get(s)
        if not r2 and not rp:
            continue
        c2 = rate(1e9 / r2["median"]) if r2 else "n/a"
        ci = f"{ns(r2['median'])} ({ns(r2['lo'])} – {ns(r2['hi'])})" if r2 else ""
        c1 = rate(1e9 / r1["median"]) if r1 else "n/a"
        scaling = f"{r1['median'] / r2['median']:.2f}×" if r1 and r2 else "n/a"
        ratio = f"{base['median'] / r2['median']:.2f}" if base and r2 else ""
        cp = rate(1e9 / rp["median"]) if rp else "n/a"
        post_ratio = f"{post_base['median'] / rp['median']:.2f}" if post_base and rp else ""
        out.append(
            f"| {STACK_NAMES[s]} | {c2} | {ci} | {c1} | {scaling} | {ratio} | {cp} | {post_ratio} |"
        )
    out.append("")
    checks = []
    for name, group in (("bare `GET`", two), ("`POST` with three headers", post)):
        if group.get("static_header") and group.get("oauth"):
            checks.append((name, group["static_header"]["median"] / group["oauth"]["median"]))
    floors = []
    for name, group in (("bare `GET`", two), ("`POST` with three headers", post)):
        if group.get("static_header") and group.get("copy_floor"):
            floors.append((name, group["static_header"]["median"] / group["copy_floor"]["median"]))
    if checks:
        out.append(
            f"**`OAuth<S>` / static header throughput, 256 tasks on 2 workers "
            f"(target ≥ {MULTI_THREAD_TARGET:.2f}):** "
            + "; ".join(
                f"{name} {t:.2f} ({verdict(t >= MULTI_THREAD_TARGET)})" for name, t in checks
            )
        )
        out.append("")
    if floors:
        out.append(
            "`copy_floor` (a header set directly and the copy for a second attempt, no token) / static header, "
            "same runs: " + "; ".join(f"{name} {t:.2f}" for name, t in floors)
        )
        out.append("")
    return out


E2E_SHAPES = [
    ("end_to_end", "end_to_end", "`GET` with an `Empty<Bytes>` body"),
    ("end_to_end/post", "end_to_end_post", "`POST` with three headers and a `Full<Bytes>` body"),
]


def reqwest_middleware(results):
    stacks = ["floor", "static_header", "oauth", "oauth_no_recovery"]
    names = {
        "floor": "reqwest-middleware alone (floor)",
        "static_header": "a middleware setting a static `Authorization`",
        "oauth": "**`OAuthMiddleware`**",
        "oauth_no_recovery": "`OAuthMiddleware`, `recover_on(RecoverOn::Never)`",
    }
    one = {s: results.get(f"reqwest_middleware/1_worker/{s}") for s in stacks}
    two = {s: results.get(f"reqwest_middleware/2_workers/{s}") for s in stacks}
    if not any(one.values()) and not any(two.values()):
        return []
    out = ["### reqwest-middleware, 256 tasks", ""]
    out.append(
        "`client.get(url).send()` through a reqwest-middleware chain that ends in a middleware "
        "answering `200` without I/O (`benches/reqwest_middleware.rs`): the cost of the chain "
        "and of the middleware, not of the network. Time per request from the median; "
        "added is the stack's time less the floor's."
    )
    out.append("")
    out.append(
        "| stack | 1 worker: ns/request (95% CI) | added | 2 workers: ns/request (95% CI) | added |"
    )
    out.append("|---|---:|---:|---:|---:|")
    for s in stacks:
        cells = []
        for rows in (one, two):
            r, floor = rows.get(s), rows.get("floor")
            if not r:
                cells += ["n/a", ""]
                continue
            cells.append(f"{ns(r['median'])} ({ns(r['lo'])} – {ns(r['hi'])})")
            cells.append(ns(r["median"] - floor["median"]) if floor and s != "floor" else "")
        out.append(f"| {names[s]} | " + " | ".join(cells) + " |")
    out.append("")
    return out


def paired_line(log, shape, stack):
    """The `paired:` line of the end-to-end bench for `stack` against the static header."""
    return re.search(
        rf"paired: {re.escape(shape)} {re.escape(stack)}/static_header rounds=(\d+) "
        r"requests_per_round=(\d+) "
        r"median=([\d.]+) q1=([\d.]+) q3=([\d.]+) min=([\d.]+) max=([\d.]+)",
        log or "",
    )


def spread(m):
    """The quartiles and range of a `paired:` line's match."""
    q1, q3, lo, hi = (float(m.group(i)) for i in (4, 5, 6, 7))
    return f"quartiles {q1:.3f} – {q3:.3f}, range {lo:.3f} – {hi:.3f}"


def end_to_end(results, log):
    stacks = ["no_header", "static_header", "oauth"]
    out = []
    for group, paired_name, shape in E2E_SHAPES:
        rows = {s: results.get(f"{group}/{s}") for s in stacks}
        m = paired_line(log, paired_name, "oauth")
        if not any(rows.values()) and not m:
            continue
        if not out:
            out = ["### End to end over loopback", ""]
            out.append(
                "hyper-util legacy client → loopback → hyper HTTP/1.1 server answering `200`, 64 "
                "requests in flight. Requests per second from the median time per request; the "
                "interval is the median's 95% confidence interval."
            )
            out.append("")
        out.append(f"Request: {shape}")
        out.append("")
        out.append(
            "| stack | requests/s | 95% CI | MAD of the samples | throughput ratio to static header |"
        )
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
        if m:
            rounds, per_round = m.group(1), m.group(2)
            med = float(m.group(3))
            out.append(
                f"**Paired rounds** ({rounds} rounds of {per_round} requests per stack, "
                f"alternating which goes first): `OAuth<S>` / static header throughput, median "
                f"of the rounds **{med:.3f}** ({spread(m)}; target ≥ "
                f"{E2E_TARGET:.2f}: {verdict(med >= E2E_TARGET)})"
            )
            out.append("")
        floor = paired_line(log, paired_name, "copy_floor")
        if floor:
            out.append(
                f"`copy_floor` (a header set directly and the copy for a second attempt, no token), paired the same "
                f"way against the static header: median **{float(floor.group(3)):.3f}** "
                f"({spread(floor)})"
            )
            out.append("")
    return out


GRPC_TARGET = 0.98


def grpc(results, log):
    rows = {s: results.get(f"grpc/unary/{s}") for s in ("static_metadata", "grpc_layer")}
    m = re.search(
        r"paired: grpc_unary grpc_layer/static_metadata rounds=(\d+) calls_per_round=(\d+) "
        r"median=([\d.]+) q1=([\d.]+) q3=([\d.]+) min=([\d.]+) max=([\d.]+)",
        log or "",
    )
    if not any(rows.values()) and not m:
        return []
    out = ["### gRPC unary calls over loopback", ""]
    out.append(
        "tonic client → loopback → tonic server (`tests/support/grpc_echo.rs`), 32 calls in "
        "flight (`benches/grpc.rs`). Calls per second from the median time per call."
    )
    out.append("")
    out.append("| stack | calls/s | 95% CI |")
    out.append("|---|---:|---:|")
    names = {
        "static_metadata": "a static `authorization` metadata value",
        "grpc_layer": "**`GrpcLayer`**",
    }
    for s, r in rows.items():
        if r:
            out.append(
                f"| {names[s]} | {rate(1e9 / r['median'])} | {rate(1e9 / r['hi'])} – "
                f"{rate(1e9 / r['lo'])} |"
            )
    out.append("")
    if m:
        rounds, per_round, med, q1, q3, lo, hi = m.groups()
        out.append(
            f"**Paired rounds** ({rounds} rounds of {per_round} calls per stack): `GrpcLayer` / "
            f"static metadata throughput, median **{float(med):.3f}** (quartiles "
            f"{float(q1):.3f} – {float(q3):.3f}, range {float(lo):.3f} – {float(hi):.3f}; "
            f"target ≥ {GRPC_TARGET:.2f}: {verdict(float(med) >= GRPC_TARGET)})"
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
    out += reqwest_middleware(results)
    out += end_to_end(results, log)
    out += grpc(results, log)
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
