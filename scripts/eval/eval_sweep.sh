#!/usr/bin/env bash
# Retrieval quality through the engine (import once, every query through Engine::search) for
# each model and setting that decides a default: listings-dev plain / masked (mask given) /
# painted (no mask: auto-mask), then indoor-dev. The tables in docs/retrieval.md come from it.
#   scripts/eval/eval_sweep.sh [SHARED_DATA_DIR]     # default ../shared/data
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${1:-$ROOT/../shared/data}
cd "$ROOT"
scripts/setup.sh >/dev/null
cargo build --release -q
BIN=target/release/hotelmatch
L=$DATA/listings-dev
listings() { "$BIN" "$@" eval --gallery "$L/gallery.csv" --queries "$L/queries.csv" \
  --queries "$L/masked/queries_masked.csv" --queries "$L/masked/queries_painted.csv"; }
indoor() { "$BIN" "$@" eval --gallery "$DATA/indoor-dev/gallery.csv" --queries "$DATA/indoor-dev/queries.csv"; }
header=1
row() {
  echo "### $*" >&2
  if [ $header = 1 ]; then listings "$@"; header=0; else listings "$@" | tail -n 3; fi
}
# The default (geometric verification on), then every variant without the verification.
row
for m in sscd-distilled sscd; do
  if "$BIN" models | grep -q "^$m .*ready"; then
    row --model "$m" --verify 0
  fi
done
if "$BIN" models | grep -q "^sscd-distilled .*ready"; then
  for v in "--fill diffuse" "--fill patch" "--fill none" "--short-side 224" "--short-side 384" "--short-side 320,448" "--aggregation sum2" "--expansion 2"; do
    # shellcheck disable=SC2086
    row --model sscd-distilled --verify 0 $v
  done
fi
for m in mobilenetv2 efficientnet-lite2; do
  row --model "$m" --verify 0
  row --model "$m" --verify 0 --fill none
done
echo
indoor | tail -n 1
for m in sscd-distilled mobilenetv2 efficientnet-lite2; do
  if "$BIN" models | grep -q "^$m .*ready"; then indoor --model "$m" --verify 0 | tail -n 1; fi
done
