#!/usr/bin/env bash
# Retrieval quality of every model x pooling x resize on a labelled set (default: ../shared/data/indoor-dev).
#   scripts/eval_sweep.sh [DIR-with-gallery.csv-and-queries.csv]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DATA=${1:-$ROOT/../shared/data/indoor-dev}
cd "$ROOT"
scripts/setup.sh >/dev/null
cargo build --release -q
echo "| model | pooling | resize | hotel@1 | hotel@5 | hotel@10 | room@1 | room@5 | ms/photo |"
echo "|---|---|---|---|---|---|---|---|---|"
for m in mobilenetv2 efficientnet-lite2; do
  for r in aspect stretch; do
    for p in gap gem multiscale; do
      target/release/hotelmatch eval --model "$m" --pool "$p" --resize "$r" \
        --gallery "$DATA/gallery.csv" --queries "$DATA/queries.csv" | tail -n 1
    done
  done
done
