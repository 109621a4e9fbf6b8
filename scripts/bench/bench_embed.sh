#!/usr/bin/env bash
# Embedding throughput, Rust (benches/embed.rs) vs Python (scripts/bench/bench_embed_py.py), one run,
# same photos, same model, same ONNX Runtime threads. Prints both and the ratio.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
scripts/setup.sh >/dev/null
PY=.cache/venv/bin/python
# BENCH_PHOTOS=DIR benchmarks your own JPEGs; by default, 32 phone-sized photos made here.
if [ -z "${BENCH_PHOTOS:-}" ]; then
  PHOTOS=.cache/bench-photos
  "$PY" scripts/bench/make_bench_photos.py data-sample/imagenet "$PHOTOS" 32
else
  PHOTOS=$BENCH_PHOTOS
fi
export BENCH_PHOTOS=$PHOTOS BENCH_SECONDS=${BENCH_SECONDS:-8}
cargo bench --bench embed 2>/dev/null | grep '"impl"' > .cache/bench-rust.jsonl
"$PY" scripts/bench/bench_embed_py.py models/mobilenetv2.onnx "$PHOTOS" "$BENCH_SECONDS" > .cache/bench-python.jsonl
"$PY" - <<'PYEOF'
import json
rows = [json.loads(l) for f in (".cache/bench-rust.jsonl", ".cache/bench-python.jsonl") for l in open(f)]
by = {(r["impl"], r["batch"]): r["images_per_s"] for r in rows}
print("| batch | Rust images/s | Python images/s | Rust / Python |")
print("|---|---|---|---|")
for b in (1, 16):
    print(f"| {b} | {by['rust', b]:.1f} | {by['python', b]:.1f} | {by['rust', b] / by['python', b]:.2f}x |")
PYEOF
