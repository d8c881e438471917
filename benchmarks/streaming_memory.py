"""Peak memory of training on image folders of 20k and 200k files: on disk (data.cache "none",
PNGs decoded per batch by 2 DataLoader workers, and "disk", decoded once into a uint8 file read
by 2 workers) against in memory ("memory").

    .venv/bin/python benchmarks/streaming_memory.py --files 20000 200000 --budget-minutes 1 \\
        --out results/streaming_memory.json [--data-dir ../shared/data] [--work DIR]

The folders are Omniglot's background images under distinct names and classes (hard links,
see image_copies.py). Each run is `siamese.train` with configs/omniglot.toml on that folder for
`--budget-minutes`, in a child process; the parent samples the proportional set size (PSS:
shared pages counted once, so forked workers are not double-counted) of the child and its
workers every 0.2 s. Writes JSON (peak PSS, images/s, seconds to list the folder and start)
and prints a markdown table. Skips (exit 0) when the Omniglot zip is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common.image_copies import extracted, image_tree
from common.machine import describe, machine_info
from common.processes import peak_pss_mib

ROOT = Path(__file__).resolve().parents[1]


def child(folder: str, cache: str, minutes: float, out: str) -> None:
    import siamese
    from siamese.config import apply_overrides, load_config

    cfg = load_config(ROOT / "configs" / "omniglot.toml")
    apply_overrides(cfg, {"data.path": folder, "data.cache": cache, "train.max_minutes": minutes,
                          "train.workers": 0 if cache == "memory" else 2,
                          "data.cache_dir": str(Path(out).parent / "decoded")})
    t0 = time.perf_counter()
    model = siamese.train(cfg, Path(out).with_suffix(".run"), force=True, quiet=True)
    h = model.card["history"]
    images, seconds = sum(e["images"] for e in h), sum(e["seconds"] for e in h)
    Path(out).write_text(json.dumps({
        "images_per_s": images / seconds, "images": images,
        "train_seconds": model.card["train_seconds"],
        "startup_seconds": time.perf_counter() - t0 - model.card["train_seconds"],
        "cache": model.card["data"]["cache"], "samples": model.card["data"]["samples"]}))


def measure(folder: Path, cache: str, minutes: float, work: Path) -> dict:
    out = work / f"{folder.name}-{cache}.json"
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(folder), cache,
                             str(minutes), str(out)], cwd=ROOT)
    peak = peak_pss_mib(proc)
    if proc.returncode:
        raise SystemExit(f"training on {folder} ({cache}) failed")
    return {**json.loads(out.read_text()), "peak_pss_mib": round(peak, 1)}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:4], float(sys.argv[4]), sys.argv[5])
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, nargs="+", default=[20_000, 200_000])
    ap.add_argument("--budget-minutes", type=float, default=1.0)
    ap.add_argument("--caches", nargs="+", default=["none", "disk", "memory"])
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "siamese-bench"))
    ap.add_argument("--out", default="results/streaming_memory.json")
    args = ap.parse_args()
    zip_path = Path(args.data_dir) / "omniglot" / "images_background.zip"
    if not zip_path.exists():
        print(f"skipped: {zip_path} not found (set --data-dir or SIAMESE_DATA)")
        return
    work = Path(args.work)
    source = extracted(zip_path, work / "omniglot")
    rows = []
    for n in args.files:
        folder = image_tree(source, work / f"files{n}", n)
        for cache in args.caches:
            r = {"files": n, **measure(folder, cache, args.budget_minutes, work)}
            rows.append(r)
            print(json.dumps(r), flush=True)
    result = {"machine": machine_info(), "budget_minutes": args.budget_minutes, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{describe(result['machine'])}\n")
    print("| files | data | peak memory (PSS) | images/s | start-up s |\n|---|---|---|---|---|")
    for r in rows:
        where = {"none": "files decoded per batch, 2 workers", "memory": "in memory",
                 "disk": "decoded once to a uint8 file, 2 workers"}[r["cache"]]
        print(f"| {r['files']:,} | {where} | {r['peak_pss_mib']:.0f} MiB | "
              f"{r['images_per_s']:.0f} | {r['startup_seconds']:.0f} |")


if __name__ == "__main__":
    main()
