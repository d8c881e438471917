"""A gallery of millions of items: save and load times, file size and peak memory.

    .venv/bin/python benchmarks/gallery_scale.py --n 10000000 --dim 16 \\
        --out results/gallery_scale.json

What format 1 could not do: its ids, labels and sources were JSON in the safetensors header,
which is capped at 100 MB (about a million items). The embeddings take N x D x 4 bytes in any
format, so a small D keeps the run within this machine's memory while the item list, the part
that failed, is full size: ids, labels (`person<k>`) and sources (`people/person<k>/<i>.jpg`).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
from common.machine import describe, machine_info

from siamese.atomic import atomic_write_json
from siamese.index import Gallery


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--out", default="results/gallery_scale.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    t = time.perf_counter()
    g = Gallery(args.dim)
    g.add(x, [f"person{i % 100_000}" for i in range(args.n)],
          [f"people/person{i % 100_000}/{i}.jpg" for i in range(args.n)])
    add_s = time.perf_counter() - t
    del x
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "gallery.safetensors"
        t = time.perf_counter()
        g.save(path)
        save_s = time.perf_counter() - t
        size = path.stat().st_size
        with open(path, "rb") as f:  # safetensors: 8 bytes of header length, then the header
            header = int.from_bytes(f.read(8), "little")
        del g
        t = time.perf_counter()
        loaded = Gallery.load(path)
        load_s = time.perf_counter() - t
        assert len(loaded) == args.n and loaded.ids[-1] == f"g{args.n:06d}"
        _, pos = loaded.search(loaded.embeddings[:3], 1)
        assert list(pos[:, 0]) == [0, 1, 2]
    r = {"benchmark": "gallery_scale", "n": args.n, "dim": args.dim, "add_s": round(add_s, 1),
         "save_s": round(save_s, 1), "load_s": round(load_s, 1),
         "file_mb": round(size / 2**20), "header_bytes": header,
         "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
         "machine": machine_info()}
    atomic_write_json(args.out, r)
    print(f"| items | dim | enroll | save | load (checksums, validation) | file | header | "
          f"peak RSS |\n|---|---|---|---|---|---|---|---|\n| {args.n:,} | {args.dim} | "
          f"{r['add_s']} s | {r['save_s']} s | {r['load_s']} s | {r['file_mb']} MB | "
          f"{header} bytes | {r['peak_rss_gib']} GiB |")
    print(f"measured on {describe(r['machine'])}; JSON in {args.out}")


if __name__ == "__main__":
    main()
