#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of decode -> preprocess, PDQ and mask
# parsing, each target for SECONDS (default 600), seeded with the test fixtures. Needs a
# nightly toolchain (rustup toolchain install nightly) and a C++ compiler; installs
# cargo-fuzz when missing. Logs and the last lines of libFuzzer's stats go to
# target/fuzz/TARGET.log; a crash is left in fuzz/artifacts/TARGET/ (make it a test).
#   scripts/dev/fuzz.sh [SECONDS] [TARGET ...]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
SECS=${1:-600}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(decode pdq mask)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
mkdir -p target/fuzz
for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "fuzz: $t for $SECS s"
  # Seeds: the PDQ fixtures (every format and edge case) and the bad-input corpus.
  # Without ASan: the Rust code is memory-safe, and libjpeg-turbo is fuzzed upstream (OSS-Fuzz);
  # twice the executions in the same time.
  cargo +nightly fuzz run -s none "$t" "fuzz/corpus/$t" tests/fixtures/pdq tests/fixtures/bad -- \
    -max_total_time="$SECS" -rss_limit_mb=2048 -max_len=262144 -print_final_stats=1 >"target/fuzz/$t.log" 2>&1 \
    || { echo "fuzz: $t FAILED (see target/fuzz/$t.log and fuzz/artifacts/$t/)"; tail -n 30 "target/fuzz/$t.log"; exit 1; }
  grep -E "^stat::(number_of_executed_units|peak_rss_mb|new_units_added)" "target/fuzz/$t.log" || tail -n 3 "target/fuzz/$t.log"
done
