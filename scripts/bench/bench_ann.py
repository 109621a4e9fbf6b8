"""ANN benchmark: hotelmatch's index beside hnswlib, faiss-cpu and usearch, on the same
vectors and queries, in one run. Driven by scripts/bench/bench_ann.sh; see docs/ann.md.

Each system builds on all cores and answers queries one at a time on one thread (the peers
get their whole query batch in one call with one thread, so no Python overhead counts
against them). Systems are interleaved over the rounds; a system's figure is its better round.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

EFS = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
TARGETS = [0.90, 0.95, 0.99]


def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def write_vecs(path, a, dtype):
    a = np.ascontiguousarray(a, dtype=dtype)
    n, d = a.shape
    out = np.empty((n, d + 1), dtype=dtype)
    out[:, 0] = np.array([d], dtype=np.int32).view(dtype)[0]
    out[:, 1:] = a
    out.tofile(path)


def read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=dtype)
    d = raw[:1].view(np.int32)[0]
    return raw.reshape(-1, d + 1)[:, 1:].copy()


def generate(n, nq, dim, seed=1):
    """Clustered unit vectors shaped like image embeddings: groups of about ten (a hotel's
    rooms) around centres in a 256-dimensional subspace with a decaying spectrum, plus
    isotropic noise. Hard enough that the graphs need ef > 10 for recall@10 of 0.95 (the
    summary line checks it). Queries come from the same process but are not in the base."""
    rng = np.random.default_rng(seed)
    rank = min(dim // 2, 256)
    basis = np.linalg.qr(rng.standard_normal((dim, rank)))[0].T.astype(np.float32)
    spectrum = (1.0 / np.sqrt(np.arange(1, rank + 1))).astype(np.float32)
    n_centres = max(1, (n + nq) // 10)
    centres = rng.standard_normal((n_centres, rank)).astype(np.float32) * spectrum
    out = np.empty((n + nq, dim), dtype=np.float32)
    step = 50_000
    for s in range(0, n + nq, step):
        m = min(step, n + nq - s)
        c = centres[rng.integers(0, n_centres, m)]
        sig = c + 0.6 * rng.standard_normal((m, rank)).astype(np.float32) * spectrum
        v = sig @ basis + 0.02 * rng.standard_normal((m, dim)).astype(np.float32)
        out[s:s + m] = v / np.linalg.norm(v, axis=1, keepdims=True)
    return out[:n], out[n:]


def ground_truth(base, queries, k=10):
    truth = np.empty((len(queries), k), dtype=np.int32)
    for s in range(0, len(queries), 100):
        sims = queries[s:s + 100] @ base.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        truth[s:s + 100] = np.take_along_axis(part, order, axis=1)
    return truth


def recall(found, truth):
    return float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth)]))


def run_peer(name, base, queries, truth, args, workdir):
    threads = os.cpu_count()
    n, dim = base.shape
    exact_n = min(args.exact_queries, len(queries))
    res = {"system": name, "n": n, "dim": dim, "m": args.m, "ef_construction": args.ef_construction}
    before = rss()
    t = time.perf_counter()
    if name == "hnswlib":
        import hnswlib
        idx = hnswlib.Index(space="ip", dim=dim)
        idx.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construction, random_seed=1)
        idx.add_items(base, np.arange(n), num_threads=threads)
    elif name == "faiss":
        import faiss
        faiss.omp_set_num_threads(threads)
        idx = faiss.IndexHNSWFlat(dim, args.m, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = args.ef_construction
        idx.add(base)
    elif name == "usearch":
        from usearch.index import Index
        idx = Index(ndim=dim, metric="ip", dtype="f32", connectivity=args.m, expansion_add=args.ef_construction)
        idx.add(np.arange(n), base, threads=threads)
    res["build_s"] = time.perf_counter() - t
    res["rss_bytes_per_vector"] = (rss() - before) / n

    def search(ef):
        if name == "hnswlib":
            idx.set_ef(ef)
            return idx.knn_query(queries, k=10, num_threads=1)[0]
        if name == "faiss":
            faiss.omp_set_num_threads(1)
            idx.hnsw.efSearch = ef
            return idx.search(queries, 10)[1]
        idx.expansion_search = ef
        return idx.search(queries, 10, threads=1).keys

    search(EFS[0])  # warm-up
    sweep = []
    for ef in EFS:
        t = time.perf_counter()
        found = search(ef)
        qps = len(queries) / (time.perf_counter() - t)
        sweep.append({"ef": ef, "qps": qps, "recall": recall(found, truth)})
    res["sweep"] = sweep

    path = os.path.join(workdir, f"{name}.index")
    t = time.perf_counter()
    if name == "hnswlib":
        idx.save_index(path)
    elif name == "faiss":
        faiss.write_index(idx, path)
    else:
        idx.save(path)
    res["save_s"] = time.perf_counter() - t
    res["dump_bytes"] = os.path.getsize(path)
    del idx
    t = time.perf_counter()
    if name == "hnswlib":
        back = hnswlib.Index(space="ip", dim=dim)
        back.load_index(path, max_elements=n)
    elif name == "faiss":
        back = faiss.read_index(path)
    else:
        from usearch.index import Index
        back = Index.restore(path)
    res["reload_s"] = time.perf_counter() - t
    del back
    os.remove(path)

    if name == "faiss":
        # Exact scan, one query at a time, one thread.
        faiss.omp_set_num_threads(1)
        flat = faiss.IndexFlatIP(dim)
        flat.add(base)
        t = time.perf_counter()
        found = [flat.search(queries[i:i + 1], 10)[1][0] for i in range(exact_n)]
        res["exact_qps"] = exact_n / (time.perf_counter() - t)
        res["exact_recall"] = recall(found, truth[:exact_n])
        del flat
    return res


def run_hotelmatch(fmt, files, args, bench_bin=None):
    # "int8+refine4": the index, then the exact re-rank of 40 from a SQLite catalog.
    fmt, _, refine = fmt.partition("+refine")
    cmd = [bench_bin or args.bench_bin, "--base", files["base"], "--queries", files["queries"], "--truth", files["truth"],
           "--format", fmt, "--m", str(args.m), "--ef-construction", str(args.ef_construction),
           "--ef", ",".join(map(str, EFS)), "--exact-queries", str(args.exact_queries)]
    if refine:
        cmd += ["--refine", refine]
    if fmt == "hnsw_rs":
        cmd[cmd.index("--format") + 1] = "f32"
        cmd += ["--kind", "hnsw_rs"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    if bench_bin:
        r["system"] = "baseline-" + r["system"]
    return r


def at_recall(res, target):
    for p in res["sweep"]:
        if p["recall"] >= target:
            return p["qps"], p["ef"]
    return None, None


def summarise(results):
    best = {}
    for r in results:
        s = r["system"]
        if s not in best:
            best[s] = dict(r)
            best[s]["rounds"] = [r]
            continue
        b = best[s]
        b["rounds"].append(r)
        # Better round per figure: faster queries, faster build, and so on.
        b["sweep"] = [max(p, q, key=lambda x: x["qps"]) for p, q in zip(b["sweep"], r["sweep"])]
        for key in ["build_s", "save_s", "reload_s"]:
            b[key] = min(b[key], r[key])
        for key in ["exact_qps", "exact_f32_qps"]:
            if key in r:
                b[key] = max(b.get(key, 0), r[key])
    return best


def table(best, reference="hnswlib"):
    cols = ["build s"] + [f"q/s @{t:.2f}" for t in TARGETS] + [f"ef @{TARGETS[1]:.2f}", "recall max", "exact q/s", "RAM B/vec", "dump MB", "reload s"]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for s, r in best.items():
        qs = [at_recall(r, t) for t in TARGETS]
        fmt = lambda x, d=0: "—" if x is None else f"{x:,.{d}f}"
        exact = r.get("exact_qps")
        if "exact_f32_qps" in r:
            exact_s = f"{fmt(exact)} (f32: {fmt(r['exact_f32_qps'])})"
        else:
            exact_s = fmt(exact)
        lines.append("| " + " | ".join([s, fmt(r["build_s"], 1)] + [fmt(q[0]) for q in qs] + [fmt(qs[1][1]),
                                        f"{max(p['recall'] for p in r['sweep']):.3f}", exact_s, fmt(r["rss_bytes_per_vector"]),
                                        fmt(r["dump_bytes"] / 1e6, 1), fmt(r["reload_s"], 2)]) + " |")
    if reference in best:
        ref = best[reference]
        lines.append("")
        for s, r in best.items():
            if s == reference:
                continue
            q = at_recall(r, TARGETS[1])[0]
            rq = at_recall(ref, TARGETS[1])[0]
            ratio = lambda a, b: "—" if not a or not b else f"{a / b:.2f}×"
            lines.append(f"- {s} / {reference}: q/s at recall {TARGETS[1]:.2f} {ratio(q, rq)}, build time {ratio(r['build_s'], ref['build_s'])}, "
                         f"RAM per vector {ratio(r['rss_bytes_per_vector'], ref['rss_bytes_per_vector'])}")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--base", help=".fvecs or .npy of base vectors (instead of generated ones)")
    ap.add_argument("--queries", help=".fvecs or .npy of queries (with --base)")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--exact-queries", type=int, default=200)
    ap.add_argument("--systems", default="hotelmatch-int8,hotelmatch-int8+refine4,hnswlib,faiss,usearch,hotelmatch-f16,hotelmatch-f32,hnsw_rs")
    ap.add_argument("--bench-bin", required=True)
    ap.add_argument("--baseline-bin", help="another build of benches/ann.rs (an earlier commit): systems named "
                    "baseline-FORMAT (e.g. baseline-int8) run it, interleaved with the rest, for before/after ratios")
    ap.add_argument("--json", help="write every round's results here")
    ap.add_argument("--targets", default="0.90,0.95,0.99", help="three recall@10 levels for the table (the middle one is compared)")
    ap.add_argument("--from-json", help="only print the table of an earlier run's --json file")
    ap.add_argument("--efs", help="the ef values to sweep, comma-separated (default: 10 to 512)")
    args = ap.parse_args()
    global TARGETS, EFS
    TARGETS = [float(t) for t in args.targets.split(",")]
    if args.efs:
        EFS = [int(e) for e in args.efs.split(",")]
    if args.from_json:
        with open(args.from_json) as f:
            print(table(summarise(json.load(f)["results"])))
        return

    work = tempfile.mkdtemp(prefix="hm-ann-")
    if args.base:
        load = lambda p: np.load(p).astype(np.float32) if p.endswith(".npy") else read_vecs(p, np.float32)
        base, queries = load(args.base), load(args.queries)
        base /= np.linalg.norm(base, axis=1, keepdims=True)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    else:
        base, queries = generate(args.n, args.nq, args.dim)
    print(f"data: {len(base):,} × {base.shape[1]} base, {len(queries):,} queries", file=sys.stderr)
    truth = ground_truth(base, queries)
    files = {k: os.path.join(work, f"{k}.{ext}") for k, ext in [("base", "fvecs"), ("queries", "fvecs"), ("truth", "ivecs")]}
    write_vecs(files["base"], base, np.float32)
    write_vecs(files["queries"], queries, np.float32)
    write_vecs(files["truth"], truth.view(np.float32), np.float32)

    systems = args.systems.split(",")
    results = []
    for rnd in range(args.rounds):
        # Interleaved, and in the other order on even rounds, so drift favours no one.
        order = systems if rnd % 2 == 0 else systems[::-1]
        for s in order:
            print(f"round {rnd + 1}: {s}", file=sys.stderr)
            if s.startswith("hotelmatch-"):
                r = run_hotelmatch(s.split("-", 1)[1], files, args)
            elif s.startswith("baseline-"):
                r = run_hotelmatch(s.split("-", 1)[1], files, args, bench_bin=args.baseline_bin)
            elif s == "hnsw_rs":
                r = run_hotelmatch("hnsw_rs", files, args)
            else:
                r = run_peer(s, base, queries, truth, args, work)
            r["round"] = rnd + 1
            results.append(r)
            print(json.dumps(r), flush=True)
    best = summarise(results)
    ef10 = {s: at_recall(r, 0.95)[1] for s, r in best.items() if s in ("hnswlib", "faiss", "usearch")}  # None: never reached
    print(f"\n{len(base):,} vectors × {base.shape[1]}, {len(queries):,} queries, M={args.m}, ef_construction={args.ef_construction}, "
          f"{os.cpu_count()} cores; queries on one thread.")
    print(f"Data hardness: the peers' lowest ef for recall@10 ≥ 0.95 is {ef10} (must be > 10).\n")
    print(table(best))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "best": {s: {k: v for k, v in r.items() if k != "rounds"} for s, r in best.items()}}, f, indent=1)
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
