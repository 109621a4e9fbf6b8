#!/usr/bin/env bash
# The ANN benchmark: hotelmatch's index beside hnswlib, faiss-cpu and usearch (PyPI, pinned,
# installed into the project's venv) on the same vectors and queries. See docs/ann.md.
#   scripts/bench/bench_ann.sh                          # 100,000 generated vectors × 512, 1,000 queries
#   scripts/bench/bench_ann.sh --n 1000000 --dim 1280   # other sizes
#   scripts/bench/bench_ann.sh --base B.npy --queries Q.npy   # your own vectors (.npy or .fvecs)
# Other options: --rounds, --systems, --m, --ef-construction, --json FILE.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${HOTELMATCH_CACHE:-$ROOT/.cache}/venv/bin/python
[ -x "$PY" ] || { echo "bench_ann: run scripts/setup.sh first (it makes the venv)" >&2; exit 1; }
if ! "$PY" -c 'import hnswlib, faiss, usearch' 2>/dev/null; then
  "$PY" -m pip install -q --disable-pip-version-check hnswlib==0.8.0 faiss-cpu==1.15.1 usearch==2.26.6
fi
cd "$ROOT"
BIN=$(cargo bench --bench ann --no-run --message-format=json 2>/dev/null | "$PY" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "ann" and m.get("executable"):
        print(m["executable"])')
[ -n "$BIN" ] || { echo "bench_ann: could not build benches/ann.rs" >&2; exit 1; }
exec "$PY" "$ROOT/scripts/bench/bench_ann.py" --bench-bin "$BIN" "$@"
