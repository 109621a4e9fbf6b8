#!/usr/bin/env bash
# PDQ benchmarks in one run: hashing images/s, Rust vs the C++ reference (PyPI pdqhash), one
# thread each, same decoded pixels; Hamming search over up to 1 M hashes, flat vs index.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
scripts/setup.sh >/dev/null
PY=.cache/venv/bin/python
"$PY" -c 'import pdqhash' 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check pdqhash==0.2.8
"$PY" scripts/bench/make_bench_photos.py data-sample/imagenet .cache/bench-photos 32
export BENCH_SECONDS=${BENCH_SECONDS:-4}
RAYON_NUM_THREADS=1 cargo bench --bench pdq 2>/dev/null | grep '"bench"' > .cache/bench-pdq-rust.jsonl
OMP_NUM_THREADS=1 "$PY" scripts/bench/bench_pdq_py.py "$BENCH_SECONDS" > .cache/bench-pdq-python.jsonl
"$PY" - <<'PYEOF'
import json
rows = [json.loads(l) for f in (".cache/bench-pdq-rust.jsonl", ".cache/bench-pdq-python.jsonl") for l in open(f)]
h = {(r["impl"], r["set"]): r["images_per_s"] for r in rows if r["bench"] == "pdq-hash"}
print("| photos | Rust images/s | C++ reference (pdqhash) images/s | Rust / C++ |")
print("|---|---|---|---|")
for s in ("phone-4032x3024", "indoor-1280x720"):
    if ("rust", s) in h and ("python-cpp", s) in h:
        print(f"| {s} | {h['rust', s]:.1f} | {h['python-cpp', s]:.1f} | {h['rust', s] / h['python-cpp', s]:.2f}x |")
print()
print("| hashes | flat scan ms/query | index ms/query | index speed-up | hits/query | build ms |")
print("|---|---|---|---|---|---|")
by = {}
for r in rows:
    if r["bench"] == "hamming-within-31":
        by.setdefault(r["size"], {})[r["method"]] = r
for size in sorted(by):
    f, i = by[size]["flat"], by[size]["index"]
    print(f"| {size:,} | {f['ms_per_query']:.4f} | {i['ms_per_query']:.4f} | {f['ms_per_query'] / i['ms_per_query']:.1f}x | {i['hits_per_query']:.2f} | {i['build_ms']:.0f} |")
PYEOF
