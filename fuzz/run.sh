#!/usr/bin/env bash
# Runs each fuzz target for the given number of seconds (default 60), one after the other.
#
#   bash fuzz/run.sh [seconds]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler (libFuzzer is built from
# source). On stable Rust the nightly-only flags cargo-fuzz passes (-Zsanitizer=address) are
# allowed with RUSTC_BOOTSTRAP=1. Without cargo-fuzz it prints why it skips and exits 0.
#
# The committed seed corpus (fuzz/corpus/<target>/, real providers' documented responses) is
# read, never written: new inputs go to fuzz/work/<target>/ (git-ignored). A crash stops the
# run with a non-zero exit; its input is in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-60}"
targets=(token_response www_authenticate)

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: SKIPPED: cargo-fuzz is not installed (cargo install cargo-fuzz)"
  exit 0
fi
if ! command -v c++ >/dev/null 2>&1; then
  echo "fuzz: SKIPPED: no C++ compiler to build libFuzzer (apt-get install g++)"
  exit 0
fi

export RUSTC_BOOTSTRAP=1
for target in "${targets[@]}"; do
  mkdir -p "work/$target"
  echo "== fuzz $target for ${seconds}s"
  cargo fuzz run -a "$target" "work/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
done
echo "fuzz: all targets ran ${seconds}s without a crash"
