"""A compressed gallery (`--index ivfpq`) of 10M x 128-d embeddings: bytes per vector, recall@10
after exact re-ranking, query latency.

    .venv/bin/python benchmarks/gallery_ivfpq.py --n 10000000 --out results/gallery_ivfpq.json

Unit vectors around 2,000 cluster centres (as in gallery_search.py), 200 queries from the same
clusters; the truth is an exact search in chunks. Queries one at a time on one thread, medians.
Goals from the scale-out issue: codes of at most 32 bytes a vector, recall@10 >= 0.9 after
re-ranking, median query <= 5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import time

import faiss
import numpy as np
from common.machine import describe, machine_info
from gallery_search import clustered

from siamese.atomic import atomic_write_json
from siamese.index import Gallery


def exact_top(x: np.ndarray, q: np.ndarray, k: int, chunk: int = 1_000_000) -> np.ndarray:
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_i = np.zeros((len(q), 0), np.int64)
    for s in range(0, len(x), chunk):
        sims = q @ x[s:s + chunk].T
        part = np.argpartition(-sims, k, axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], 1)
        best_i = np.concatenate([best_i, part + s], 1)
        keep = np.argsort(-best_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(best_s, keep, 1), np.take_along_axis(best_i, keep, 1)
    return best_i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--out", default="results/gallery_ivfpq.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(2000, args.dim)).astype(np.float32)
    g = Gallery(args.dim, "ip", "ivfpq")
    t = time.perf_counter()
    chunks = [clustered(min(1_000_000, args.n - s), centers, rng)
              for s in range(0, args.n, 1_000_000)]
    g.add(np.concatenate(chunks), ["x"] * args.n)
    del chunks
    print(f"{args.n} vectors in {time.perf_counter() - t:.0f} s", flush=True)
    t = time.perf_counter()
    index = g.build_index()
    build_s = time.perf_counter() - t
    print(f"IVF-PQ nlist={index.nlist} code_size={index.code_size} built in {build_s:.0f} s",
          flush=True)
    q = clustered(args.queries, centers, np.random.default_rng(1))
    truth = exact_top(g.embeddings, q, 10)
    faiss.omp_set_num_threads(1)
    rows = []
    for nprobe, rerank in ((16, 64), (16, 256), (16, 1024), (16, 4096), (32, 1024),
                           (32, 4096), (64, 4096)):
        g.nprobe, g.rerank = nprobe, rerank
        _, pos = g.search(q, 10)
        recall = float(np.mean([len(set(a) & set(b)) / 10
                                for a, b in zip(pos, truth, strict=True)]))
        times = []
        for i in range(len(q)):
            t = time.perf_counter()
            g.search(q[i:i + 1], 10)
            times.append(time.perf_counter() - t)
        rows.append({"nprobe": nprobe, "rerank": rerank, "recall@10": recall,
                     "median_query_ms": 1000 * statistics.median(times),
                     "p99_query_ms": 1000 * float(np.percentile(times, 99))})
        print(rows[-1], flush=True)
    info = machine_info()
    result = {"benchmark": "gallery_ivfpq", "n": args.n, "dim": args.dim,
              "nlist": index.nlist, "code_bytes": index.code_size,
              "index_bytes_per_vector": len(faiss.serialize_index(index)) / args.n,
              "build_s": build_s, "rows": rows, "machine": info}
    atomic_write_json(args.out, result)
    print(f"\n{args.n:,} x {args.dim}: IVF-PQ, {index.nlist} lists, {index.code_size}-byte "
          f"codes ({result['index_bytes_per_vector']:.1f} bytes a vector with the list ids), "
          f"built in {build_s:.0f} s; candidates re-ranked exactly from the stored vectors\n")
    print("| nprobe | candidates re-ranked | recall@10 | median query | p99 |\n"
          "|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['nprobe']} | {r['rerank']} | {r['recall@10']:.3f} | "
              f"{r['median_query_ms']:.2f} ms | "
              f"{r['p99_query_ms']:.2f} ms |")
    print(f"\nmeasured on {describe(info)}; JSON in {args.out}")


if __name__ == "__main__":
    main()
