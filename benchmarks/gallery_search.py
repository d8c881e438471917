"""Gallery search at scale: 1,000,000 x 128-d vectors.

    .venv/bin/python benchmarks/gallery_search.py --n 1000000 --out results/gallery_search.json

- exact FAISS (IndexFlatIP) against numpy brute force (one matrix product + argpartition), the
  same queries, both on the machine's threads: the ratio of their times, and that they agree;
- HNSW against exact: recall@10 and the median time of single queries on ONE thread, for
  several efSearch values (the smallest one reaching recall@10 >= 0.95 is the answer).

The vectors are unit-length and clustered (a mixture of 2,000 Gaussian clusters), as trained
embeddings are; uniform random vectors have no neighbours worth finding.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
from common.machine import describe, machine_info

from siamese.atomic import atomic_write_json
from siamese.index import Gallery


def clustered(n: int, centers: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = centers[rng.integers(0, len(centers), n)]
    x += 0.35 * rng.normal(size=(n, centers.shape[1])).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def numpy_topk(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    out = np.empty((len(q), k), np.int64)
    for s in range(0, len(q), 64):  # bounded memory: 64 x N scores at a time
        sims = q[s:s + 64] @ x.T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(sims, part, 1), axis=1)
        out[s:s + 64] = np.take_along_axis(part, order, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--hnsw-m", type=int, default=32)
    ap.add_argument("--out", default="results/gallery_search.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    centers = rng.normal(size=(2000, args.dim)).astype(np.float32)
    x = clustered(args.n, centers, rng)
    q = clustered(args.queries, centers, np.random.default_rng(1))  # same clusters, new points
    print(f"data: {args.n} x {args.dim} in {time.perf_counter() - t:.1f} s", flush=True)
    k = 10

    exact = Gallery(args.dim, "ip", "flat")
    exact.add(x, ["x"] * args.n)
    exact.build_index()
    faiss_times, numpy_times = [], []
    for _ in range(args.repeats):  # interleaved, so that both see the same machine load
        t = time.perf_counter()
        _, p_faiss = exact.search(q, k)
        faiss_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        p_numpy = numpy_topk(x, q, k)
        numpy_times.append(time.perf_counter() - t)
    agree = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(p_faiss, p_numpy,
                                                                     strict=True)]))
    exact_row = {"faiss_exact_s": statistics.median(faiss_times),
                 "numpy_brute_s": statistics.median(numpy_times),
                 "numpy_over_faiss": statistics.median(numpy_times) /
                 statistics.median(faiss_times),
                 "top10_agreement": agree, "queries": args.queries,
                 "threads": faiss.omp_get_max_threads()}
    print(exact_row, flush=True)

    t = time.perf_counter()
    hnsw = Gallery(args.dim, "ip", "hnsw", hnsw_m=args.hnsw_m)
    hnsw.add(x, ["x"] * args.n)
    hnsw.build_index()
    build_s = time.perf_counter() - t
    print(f"HNSW M={args.hnsw_m} built in {build_s:.0f} s", flush=True)
    faiss.omp_set_num_threads(1)
    rows = []
    for ef in (16, 32, 64, 128, 256, 512):
        hnsw.ef_search = ef  # passed with every search
        _, p = hnsw.search(q, k)
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(p, p_faiss,
                                                                          strict=True)]))
        per_query = []
        for _ in range(args.repeats):
            for i in range(len(q)):
                t = time.perf_counter()
                hnsw.search(q[i:i + 1], k)
                per_query.append(time.perf_counter() - t)
        rows.append({"ef_search": ef, "recall@10": recall,
                     "median_query_ms": 1000 * statistics.median(per_query),
                     "p99_query_ms": 1000 * float(np.percentile(per_query, 99))})
        print(rows[-1], flush=True)
    ok = [r for r in rows if r["recall@10"] >= 0.95]
    hnsw.ef_search = 64
    ids = hnsw.ids
    removal = []
    for i in range(args.repeats):  # remove one item, then the next search sees it gone
        gone = ids[1000 * (i + 1)]
        t = time.perf_counter()
        hnsw.remove([gone])
        _, p = hnsw.search(x[1000 * (i + 1):1000 * (i + 1) + 1], k)
        removal.append(time.perf_counter() - t)
        assert gone not in {hnsw.ids[j] for j in p[0] if j >= 0}
    faiss.omp_set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        hnsw.save(Path(tmp) / "g.safetensors")
        save_s = time.perf_counter() - t
        size = (Path(tmp) / "g.safetensors").stat().st_size
        t = time.perf_counter()
        Gallery.load(Path(tmp) / "g.safetensors")
        load_s = time.perf_counter() - t
    persist = {"remove_one_then_search_ms": 1000 * statistics.median(removal),
               "rebuild_s": build_s, "save_s": save_s, "load_s": load_s,
               "file_mb": size / 2**20}
    print(persist, flush=True)
    info = machine_info()
    result = {"benchmark": "gallery_search", "n": args.n, "dim": args.dim, "exact": exact_row,
              "hnsw": {"m": args.hnsw_m, "build_s": build_s, "sweep": rows,
                       "chosen": ok[0] if ok else None}, "persist": persist, "machine": info}
    atomic_write_json(args.out, result)
    print("\n| search | recall@10 | time |\n|---|---|---|")
    print(f"| numpy brute force, {args.queries} queries | 1.000 | "
          f"{exact_row['numpy_brute_s']:.2f} s |")
    print(f"| FAISS exact (IndexFlatIP), {args.queries} queries | {agree:.3f} vs numpy | "
          f"{exact_row['faiss_exact_s']:.2f} s ({exact_row['numpy_over_faiss']:.1f}x faster) |")
    for r in rows:
        print(f"| HNSW M={args.hnsw_m} efSearch={r['ef_search']}, 1 thread | "
              f"{r['recall@10']:.3f} | {r['median_query_ms']:.2f} ms median per query |")
    print(f"\nHNSW removal of one item + the next search: "
          f"{persist['remove_one_then_search_ms']:.1f} ms (a rebuild: {build_s:.0f} s); "
          f"save {save_s:.1f} s, load (checksums verified) {load_s:.1f} s, "
          f"{persist['file_mb']:.0f} MB")
    print(f"measured on {describe(info)}; JSON in {args.out}")


if __name__ == "__main__":
    main()
