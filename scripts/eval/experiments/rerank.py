"""Re-ranking experiments on listings-dev with the engine's own embeddings: alpha-QE, DBA,
fusion of two models' similarities, hotel aggregation. Exact cosine, best photo per place.

Vectors come from `hotelmatch embed --vector` (the same pipeline as search: masks filled,
painted regions auto-masked), cached in .cache/rerank/.

  .cache/venv/bin/python scripts/eval/experiments/rerank.py ../shared/data/listings-dev
"""
import csv
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

BIN = "target/release/hotelmatch"
CACHE = Path(".cache/rerank")
CACHE.mkdir(parents=True, exist_ok=True)


def rows(p):
    with open(p) as f:
        return list(csv.DictReader(f))


def embed(model, paths, masks=None, auto=False, extra=()):
    digest = hashlib.sha1(repr((list(map(str, paths)), list(map(str, masks or [])), auto, extra)).encode()).hexdigest()[:16]
    key = CACHE / f"{model}-{digest}.npy"
    if key.exists():
        return np.load(key)
    out = []
    if masks:
        for p, m in zip(paths, masks):
            r = subprocess.run([BIN, "--model", model, *extra, "embed", "--vector", "--mask", str(m), str(p)], capture_output=True, text=True, check=True)
            out.append(json.loads(r.stdout)["vector"])
    else:
        args = [BIN, "--model", model, *extra, "embed", "--vector", *(["--auto-mask"] if auto else []), *map(str, paths)]
        r = subprocess.run(args, capture_output=True, text=True, check=True)
        out = [json.loads(l)["vector"] for l in r.stdout.splitlines()]
    a = np.array(out, np.float32)
    np.save(key, a)
    return a


def hotel_ranks(S, gh, qh):
    hotels = sorted(set(gh))
    hid = {h: i for i, h in enumerate(hotels)}
    gi = np.array([hid[h] for h in gh])
    best = np.full((S.shape[0], len(hotels)), -9.0, np.float32)
    for j in range(len(hotels)):
        best[:, j] = S[:, gi == j].max(1)
    order = np.argsort(-best, 1)
    return np.array([int(np.where(order[q] == hid[qh[q]])[0][0]) + 1 for q in range(len(qh))])


def fmt(r):
    return f"h@1 {np.mean(r == 1):.3f} h@5 {np.mean(r <= 5):.3f} h@10 {np.mean(r <= 10):.3f} mrr {np.mean(1 / r):.3f}"


def dba(G, k, alpha):
    S = G @ G.T
    idx = np.argsort(-S, 1)[:, :k]
    W = np.take_along_axis(S, idx, 1).clip(0) ** alpha
    out = (W[..., None] * G[idx]).sum(1)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def qe(Q, G, k, alpha):
    S = Q @ G.T
    idx = np.argsort(-S, 1)[:, :k]
    W = np.take_along_axis(S, idx, 1).clip(0) ** alpha
    out = Q + (W[..., None] * G[idx]).sum(1)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def load(SET, models):
    """Gallery vectors and labels, and per query set (plain, masked, painted): paths, masks, labels, vectors."""
    gal = rows(SET / "gallery.csv")
    gp = [SET / r["path"] for r in gal]
    gh = [r["hotel"] for r in gal]
    qs = rows(SET / "queries.csv")
    qm = rows(SET / "masked/queries_masked.csv")
    qp = rows(SET / "masked/queries_painted.csv")
    sets = {
        "plain": ([SET / r["path"] for r in qs], None, [r["hotel"] for r in qs]),
        "masked": ([SET / "masked" / r["path"] for r in qm], [SET / "masked" / r["mask"] for r in qm], [r["hotel"] for r in qm]),
        "painted": ([SET / "masked" / r["path"] for r in qp], None, [r["hotel"] for r in qp]),
    }
    G = {m: embed(m, gp) for m in models}
    Q = {(m, s): embed(m, p, mk, auto=mk is None) for m in models for s, (p, mk, _) in sets.items()}
    return gp, gh, sets, G, Q


if __name__ == "__main__":
    SET = Path(sys.argv[1])
    models = sys.argv[2:] or ["sscd-distilled", "efficientnet-lite2"]
    gp, gh, sets, G, Q = load(SET, models)
    base = models[0]
    for s, (_, _, qh) in sets.items():
        print(f"== {s}")
        g, q = G[base], Q[(base, s)]
        print(f"{'baseline ' + base:34}", fmt(hotel_ranks(q @ g.T, gh, qh)))
        for k, a in [(1, 0), (2, 0), (3, 1), (5, 1)]:
            print(f"{f'alpha-QE k={k} a={a}':34}", fmt(hotel_ranks(qe(q, g, k, a) @ g.T, gh, qh)))
        for k, a in [(2, 0), (3, 1), (5, 1), (5, 3)]:
            gd = dba(g, k, a)
            print(f"{f'DBA k={k} a={a}':34}", fmt(hotel_ranks(q @ gd.T, gh, qh)))
            print(f"{f'DBA k={k} a={a} + QE k=2':34}", fmt(hotel_ranks(qe(q, gd, 2, 0) @ gd.T, gh, qh)))
        for other in models[1:]:
            for w in [0.25, 0.5]:
                S = (1 - w) * (q @ g.T) + w * (Q[(other, s)] @ G[other].T)
                print(f"{f'fusion {other} w={w}':34}", fmt(hotel_ranks(S, gh, qh)))
