#!/usr/bin/env bash
# Runs every benchmark of tower-oauth and writes the tables of BENCHMARKS.md.
#
#   scripts/bench.sh                 # all criterion benches, then callgrind, then the report
#   scripts/bench.sh --no-callgrind  # skip the instruction counts (no valgrind needed)
#   scripts/bench.sh --report-only   # rewrite BENCHMARKS.md from the last run's results
#   scripts/bench.sh --note "..."    # a line about the run's conditions, shown in the tables
#
# Needs: cargo, python3; valgrind for the instruction counts. Takes about 8 minutes on a
# 2-core machine, plus the first release build. Results go to target/criterion/ (criterion's
# own files, plus bench-output.log and instructions.json); the generated part of
# BENCHMARKS.md lies between the BEGIN/END GENERATED markers, the rest is kept as written.
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
OUT="$TARGET_DIR/criterion"

run_benches=1
run_callgrind=1
note=""
while [ $# -gt 0 ]; do
  case "$1" in
    --no-callgrind) run_callgrind=0 ;;
    --report-only) run_benches=0; run_callgrind=0 ;;
    --note) note="$2"; shift ;;
    *) echo "unknown option: $1" >&2; exit 2 ;;
  esac
  shift
done

mkdir -p "$OUT"
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"

if [ "$run_benches" = 1 ]; then
  # Old results of benches that no longer exist must not reach the report.
  rm -rf "$OUT"/hot_path_* "$OUT"/multi_thread_* "$OUT"/end_to_end "$OUT"/end_to_end_* \
    "$OUT"/stampede_* "$OUT"/reqwest_middleware_* "$OUT"/grpc_* \
    "$OUT/instructions.json" "$OUT/valgrind-version.txt"
  cargo bench --all-features --bench hot_path --bench multi_thread --bench end_to_end \
    --bench stampede --bench reqwest_middleware --bench grpc 2>&1 | tee "$OUT/bench-output.log"
fi

if [ "$run_callgrind" = 1 ]; then
  if ! command -v valgrind >/dev/null; then
    echo "valgrind not found: no instruction counts (install valgrind, or use --no-callgrind)" >&2
    exit 1
  fi
  bin="$(cargo bench --all-features --bench instructions --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "instructions" and m.get("executable"):
        print(m["executable"])')"
  # Two runs per stack and request (the bare GET with each body, and the POST with three
  # headers); the difference over the difference of requests is one request.
  N1=1000
  N2=21000
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  echo "{" > "$tmp/instructions.json"
  first=1
  # The `uri` request (to the third of three origins) also through the per-origin and keyed
  # layers.
  for body in empty full streaming post uri; do
    stacks="floor static_header copy_floor oauth oauth_off oauth_attach oauth_no_replay mutex_slot rwlock_slot"
    # The copy floor keeps a clone of the body: not for the one-shot stream.
    [ "$body" = streaming ] && stacks="${stacks/ copy_floor/}"
    [ "$body" = uri ] && stacks="static_header copy_floor oauth per_origin keyed"
    for stack in $stacks; do
      totals=()
      for n in "$N1" "$N2"; do
        valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$bin" "$stack" "$body" "$n" \
          2>/dev/null
        totals+=("$(grep -E '^(totals|summary):' "$tmp/cg.out" | head -1 | awk '{print $2}')")
      done
      per_request="$(python3 -c 'import sys; a, b, n = map(int, sys.argv[1:]); print(round((b - a) / n, 1))' \
        "${totals[0]}" "${totals[1]}" "$((N2 - N1))")"
      echo "instructions: $body/$stack $per_request per request"
      [ "$first" = 1 ] || echo "," >> "$tmp/instructions.json"
      first=0
      printf '"%s/%s": %s' "$body" "$stack" "$per_request" >> "$tmp/instructions.json"
    done
  done
  # Cold stampede on a paused clock: the difference over the difference of callers is one
  # caller's share (waiting, being woken, being sent).
  C1=1000
  C2=11000
  for stack in oauth mutex_slot rwlock_slot; do
    totals=()
    for n in "$C1" "$C2"; do
      valgrind --tool=callgrind --callgrind-out-file="$tmp/cg.out" "$bin" stampede "$stack" "$n" \
        2>/dev/null
      totals+=("$(grep -E '^(totals|summary):' "$tmp/cg.out" | head -1 | awk '{print $2}')")
    done
    per_caller="$(python3 -c 'import sys; a, b, n = map(int, sys.argv[1:]); print(round((b - a) / n, 1))' \
      "${totals[0]}" "${totals[1]}" "$((C2 - C1))")"
    echo "instructions: stampede/$stack $per_caller per caller"
    printf ',\n"stampede/%s": %s' "$stack" "$per_caller" >> "$tmp/instructions.json"
  done
  echo "}" >> "$tmp/instructions.json"
  cp "$tmp/instructions.json" "$OUT/instructions.json"
  valgrind --version > "$OUT/valgrind-version.txt"
fi

LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
if [ "$run_benches" = 1 ]; then
  printf '%s\n%s\n' "$LOAD_BEFORE" "$LOAD_AFTER" > "$OUT/loadavg.txt"
  date -u +%Y-%m-%d > "$OUT/date.txt"
fi
python3 scripts/bench_report.py --criterion "$OUT" --markdown BENCHMARKS.md --note "$note"
