"""Helpers of vector-anchors.sh: generate a data set, time FAISS and numpy on it, print the table.

    vector_anchors.py generate DIR --rows N --dim D --queries Q --kind uniform|clustered --seed S
                                [--centres C]
    vector_anchors.py faiss DIR      (IndexFlatIP, one thread; prints a JSON line)
    vector_anchors.py faiss-hnsw DIR --ef EF   (IndexHNSWFlat M=16, efConstruction=100)
    vector_anchors.py numpy DIR      (float32 matrix-vector product; threads from OPENBLAS_NUM_THREADS)
    vector_anchors.py table RESULTS.jsonl...
"""

import argparse
import json
import os
import sys
import time

K = 10


def load(directory):
    import numpy as np

    with open(os.path.join(directory, "meta.json")) as f:
        meta = json.load(f)
    rows, dim, queries = meta["rows"], meta["dim"], meta["queries"]
    base = np.fromfile(os.path.join(directory, "base.f32"), dtype="<f4").reshape(rows, dim)
    query = np.fromfile(os.path.join(directory, "queries.f32"), dtype="<f4").reshape(queries, dim)
    return meta, base, query


def generate(args):
    import numpy as np

    rng = np.random.default_rng(args.seed)
    if args.kind == "uniform":
        base = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
        query = rng.standard_normal((args.queries, args.dim), dtype=np.float32)
    else:
        # Embedding-like: 1,000 centres (--centres), points spread around them, queries near
        # stored points. Within a centre's cloud, points are nearly equidistant, so the more
        # points a centre has, the harder the neighbours after the first are to tell apart.
        centres = rng.standard_normal((args.centres, args.dim), dtype=np.float32)
        centres /= np.linalg.norm(centres, axis=1, keepdims=True)
        base = np.empty((args.rows, args.dim), dtype=np.float32)
        step = 100_000
        for start in range(0, args.rows, step):
            n = min(step, args.rows - start)
            which = rng.integers(0, len(centres), n)
            noise = rng.standard_normal((n, args.dim), dtype=np.float32) * np.float32(0.6 / np.sqrt(args.dim))
            base[start:start + n] = centres[which] + noise
        picks = rng.integers(0, args.rows, args.queries)
        query = base[picks] + rng.standard_normal((args.queries, args.dim), dtype=np.float32) * np.float32(0.3 / np.sqrt(args.dim))
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    os.makedirs(args.dir, exist_ok=True)
    base.astype("<f4").tofile(os.path.join(args.dir, "base.f32"))
    query.astype("<f4").tofile(os.path.join(args.dir, "queries.f32"))
    with open(os.path.join(args.dir, "meta.json"), "w") as f:
        json.dump({"rows": args.rows, "dim": args.dim, "queries": args.queries, "k": K,
                   "metric": "cosine", "kind": args.kind, "seed": args.seed,
                   "centres": args.centres}, f)


def percentiles(times):
    import numpy as np

    ms = np.sort(np.array(times) * 1e3)
    rank = lambda p: ms[max(0, int(np.ceil(len(ms) * p)) - 1)]
    return {"p50_ms": float(rank(0.5)), "p99_ms": float(rank(0.99)), "mean_ms": float(ms.mean())}


def exact_ids(base, query):
    """Each query's top K by cosine in float64 (ties by row), for the exactness check."""
    import numpy as np

    queries = query.astype(np.float64)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    best = [[] for _ in queries]
    for start in range(0, len(base), 50_000):
        chunk = base[start:start + 50_000].astype(np.float64)
        sims = (chunk @ queries.T) / np.linalg.norm(chunk, axis=1)[:, None]
        top = np.argpartition(-sims, min(K, len(chunk) - 1), axis=0)[:K + 1]
        for q in range(len(queries)):
            best[q].extend((float(sims[i, q]), start + int(i)) for i in top[:, q])
    return [[i for _, i in sorted(b, key=lambda t: (-t[0], t[1]))[:K]] for b in best]


def one_at_a_time(index, query):
    """Each query searched alone after five warm-up searches: the times and each one's top K."""
    for q in query[:5]:
        index.search(q[None, :], K)
    times, ids = [], []
    for q in query:
        started = time.perf_counter()
        _, found = index.search(q[None, :], K)
        times.append(time.perf_counter() - started)
        ids.append(found[0].tolist())
    return times, ids


def run_faiss(args):
    import faiss

    faiss.omp_set_num_threads(1)
    meta, base, query = load(args.dir)
    index = faiss.IndexFlatIP(meta["dim"])
    index.add(base)
    times, ids = one_at_a_time(index, query)
    print(json.dumps({"name": "FAISS IndexFlatIP, 1 thread", **percentiles(times), "ids": ids,
                      "exact": exact_ids(base, query)}))


def run_faiss_hnsw(args):
    """IndexHNSWFlat with p8fs's graph parameters (M = 16, efConstruction = 100), built once, and
    for each efSearch = ef of the comma-separated list: p50/p99 one query at a time on one
    thread, queries/s with two threads over the batch; with the build time (one thread, as p8fs
    builds) and the index's size."""
    import faiss
    import numpy as np

    meta, base, query = load(args.dir)
    faiss.omp_set_num_threads(1)
    index = faiss.IndexHNSWFlat(meta["dim"], 16, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 100
    started = time.perf_counter()
    index.add(base)
    build = time.perf_counter() - started
    size = faiss.serialize_index(index).nbytes
    exact = exact_ids(base, query)
    for ef in [int(ef) for ef in str(args.ef).split(",")]:
        faiss.omp_set_num_threads(1)
        index.hnsw.efSearch = ef
        times, ids = one_at_a_time(index, query)
        faiss.omp_set_num_threads(2)
        started = time.perf_counter()
        index.search(np.ascontiguousarray(query), K)
        qps = len(query) / (time.perf_counter() - started)
        print(json.dumps({"name": f"FAISS IndexHNSWFlat M=16 ef={ef}", **percentiles(times),
                          "ids": ids, "build_s": build, "qps_2": qps,
                          "graph_mib": (size - base.nbytes) / 2**20, "exact": exact}), flush=True)


def run_numpy(args):
    import numpy as np

    meta, base, query = load(args.dir)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "?")

    def search(q):
        scores = base @ q
        top = np.argpartition(-scores, K)[:K]
        return top[np.argsort(-scores[top])]

    for q in query[:5]:
        search(q)
    times, ids = [], []
    for q in query:
        started = time.perf_counter()
        found = search(q)
        times.append(time.perf_counter() - started)
        ids.append(found.tolist())
    print(json.dumps({"name": f"numpy f32 matvec, {threads} threads", **percentiles(times), "ids": ids}))


def table(args):
    groups = {}
    for path in args.results:
        with open(path) as f:
            for line in f:
                if line.strip():
                    r = json.loads(line)
                    groups.setdefault(r["set"], []).append(r)
    for name, results in groups.items():
        exact = next((r["exact"] for r in results if "exact" in r), None)
        faiss = next((r for r in results if r["name"].startswith("FAISS")), None)
        probe = next((r for r in results if r["name"] == "C f32 scan, 1 thread"), None)
        approximate = [r for r in results if "qps_2" in r]
        results = [r for r in results if "qps_2" not in r]
        print(f"\n{name}")
        print(f"| {'':<32} | {'p50 ms':>8} | {'p99 ms':>8} | {'p50 / FAISS':>11} | {'p50 / f32 scan':>14} | top-10 = exact |")
        print(f"|{'-' * 34}|{'-' * 10}|{'-' * 10}|{'-' * 13}|{'-' * 16}|{'-' * 16}|")
        for r in results:
            ratio = lambda anchor: f"{r['p50_ms'] / anchor['p50_ms']:.2f}x" if anchor else "-"
            agree = "-"
            if exact is not None and "ids" in r:
                same = sum(sorted(a) == sorted(b) for a, b in zip(r["ids"], exact))
                agree = f"{same}/{len(exact)}"
            print(f"| {r['name']:<32} | {r['p50_ms']:>8.2f} | {r['p99_ms']:>8.2f} | {ratio(faiss):>11} | {ratio(probe):>14} | {agree:>14} |")
            if "load_s" in r:
                print(f"|   (p8fs load {r['load_s']:.1f} s, {r['rows']} rows through upsert){'':<{max(0, 1)}}")
        if approximate:
            # Each run beside FAISS's with the same ef (the name ends "ef=N").
            faiss_by_ef = {r["name"].rsplit("=", 1)[-1]: r for r in approximate
                           if r["name"].startswith("FAISS")}
            print(f"\napproximate: {name}")
            print(f"| {'':<32} | {'p50 ms':>8} | {'p99 ms':>8} | {'q/s, 2 thr':>10} | {'/ FAISS':>8} | {'recall@10':>9} | {'build s':>8} | {'graph MiB':>9} |")
            print(f"|{'-' * 34}|{'-' * 10}|{'-' * 10}|{'-' * 12}|{'-' * 10}|{'-' * 11}|{'-' * 10}|{'-' * 11}|")
            for r in approximate:
                recall = "-"
                if exact is not None:
                    hits = sum(len(set(a) & set(b)) for a, b in zip(r["ids"], exact))
                    recall = f"{hits / (K * len(exact)):.4f}"
                hnsw = faiss_by_ef.get(r["name"].rsplit("=", 1)[-1])
                ratio = f"{r['qps_2'] / hnsw['qps_2']:.2f}x" if hnsw else "-"
                print(f"| {r['name']:<32} | {r['p50_ms']:>8.3f} | {r['p99_ms']:>8.3f} | {r['qps_2']:>10.0f} | {ratio:>8} | {recall:>9} | {r['build_s']:>8.1f} | {r['graph_mib']:>9.1f} |")


def main():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    g = sub.add_parser("generate")
    g.add_argument("dir")
    g.add_argument("--rows", type=int, default=100_000)
    g.add_argument("--dim", type=int, default=384)
    g.add_argument("--queries", type=int, default=300)
    g.add_argument("--kind", choices=["uniform", "clustered"], default="clustered")
    g.add_argument("--seed", type=int, default=42)
    g.add_argument("--centres", type=int, default=1000)
    for name in ["faiss", "numpy"]:
        sub.add_parser(name).add_argument("dir")
    h = sub.add_parser("faiss-hnsw")
    h.add_argument("dir")
    h.add_argument("--ef", default="64", help="efSearch, or a comma-separated list")
    t = sub.add_parser("table")
    t.add_argument("results", nargs="+")
    args = parser.parse_args()
    {"generate": generate, "faiss": run_faiss, "faiss-hnsw": run_faiss_hnsw, "numpy": run_numpy,
     "table": table}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
