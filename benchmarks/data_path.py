"""The data path alone: how many training inputs a second the loaders deliver when the training
step does nothing, by worker count. A GPU step that needs more than this waits for the CPU.

    .venv/bin/python benchmarks/data_path.py --out results/data_path.json \\
        [--workers 0,1,2,4] [--seconds 20] [--data-dir ../shared/data]

- images: the Omniglot recipe's batches (configs/omniglot.toml: 240 images of 28 x 28, 964 x 4
  classes, decoded into memory), drawn by the class-balanced sampler and gathered by the
  DataLoader, then as the step receives them; "+ augment" adds the recipe's random affine
  distortion of the batch on the CPU (where it runs when the CPU trains; on a GPU it runs
  there, after the batch is moved);
- tracking: the tracking recipe's pairs (configs/otb.toml: batches of 16 exemplar / search
  crops cut from otb/ and track_train/ frames decoded on demand), uint8 as the step receives
  them.

Reports, for each, inputs a second (median of --repeats timings of --seconds each), the batch's
dtype and bytes as it reaches the step, and writes JSON. Skips what has no data.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from common.machine import describe, machine_info
from common.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]


def _rate(loader, per_batch, seconds: float, repeats: int, work=None) -> tuple[float, dict]:
    """Inputs a second through `loader` (epochs restarted as needed), median of repeats."""
    rates, first = [], None
    epoch = 0
    for _ in range(repeats):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            loader.batch_sampler.set_epoch(epoch)
            epoch += 1
            for batch in loader:
                if work is not None:
                    work(batch)
                if first is None:
                    x = batch[0] if isinstance(batch, tuple | list) else batch
                    first = {"dtype": str(x.dtype).replace("torch.", ""),
                             "bytes_per_batch": int(sum(t.numel() * t.element_size()
                                                        for t in batch
                                                        if isinstance(t, torch.Tensor)))}
                n += per_batch
                if time.perf_counter() - t0 >= seconds:
                    break
        rates.append(n / (time.perf_counter() - t0))
    return statistics.median(rates), first or {}


def images(data_dir: Path, workers: list[int], seconds: float, repeats: int) -> dict:
    from siamese.api import _load, _sampler
    from siamese.config import config_from_dict, resolve
    from siamese.data.loader import IndexedSamples, RankBatches, make_loader
    from siamese.data.preprocessing import Preprocessing
    from siamese.data.transforms import add_transformed_classes, random_affine

    recipe = load_recipe(ROOT / "configs/omniglot.toml", [])
    recipe["data"]["path"] = str(data_dir / "omniglot" / "images_background.zip")
    cfg = resolve(config_from_dict(recipe))
    data = _load(cfg)
    pre = Preprocessing.fit(data.x, data.kind, 0, 0)
    x, y, _, groups = add_transformed_classes(pre.normalize(data.x), data.y, data.classes,
                                              data.groups)
    sampler = _sampler(cfg, y, groups)
    gen = torch.Generator().manual_seed(0)
    out = {"inputs": "images", "batch": cfg.train.batch_size, "samples": len(y), "rows": []}
    for w in workers:
        loader = make_loader(IndexedSamples(x, y), RankBatches(sampler), w)
        for label, work in (("gather", None),
                            ("gather + augment", lambda b: random_affine(b[0], cfg.augment,
                                                                         gen))):
            rate, shape = _rate(loader, cfg.train.batch_size, seconds, repeats, work)
            out["rows"].append({"workers": w, "what": label, "per_second": round(rate), **shape})
            print(f"images, {w} workers, {label}: {rate:,.0f} a second ({shape})", flush=True)
        del loader
    return out


def tracking(data_dir: Path, workers: list[int], seconds: float, repeats: int) -> dict:
    from siamese.config import config_from_dict, resolve
    from siamese.data.loader import make_loader
    from siamese.data.tracks import read_tracks
    from siamese.training.track_pairs import PairBatches, TrackPairs

    recipe = load_recipe(ROOT / "configs/otb.toml", [])
    recipe["data"]["path"] = [str(data_dir / "otb"), str(data_dir / "track_train")]
    cfg = resolve(config_from_dict(recipe))
    tracks = read_tracks(cfg.data.path)
    b, k = cfg.train.batch_size, cfg.track
    out = {"inputs": "tracking pairs", "batch": b, "tracks": len(tracks), "rows": []}
    for w in workers:
        pairs = TrackPairs(tracks, k, k.pairs_per_epoch, 0)
        loader = make_loader(pairs, PairBatches(k.pairs_per_epoch, b, 0), w)
        rate, shape = _rate(loader, b, seconds, repeats)
        out["rows"].append({"workers": w, "what": "pairs (uint8 crops)",
                            "per_second": round(rate, 1), **shape})
        print(f"tracking, {w} workers: {rate:,.1f} pairs a second ({shape})", flush=True)
        del loader
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/data_path.json")
    ap.add_argument("--workers", default="0,1,2,4")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--what", default="images,tracking")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA",
                                                         ROOT.parent / "shared" / "data"))
    args = ap.parse_args()
    data_dir, workers = Path(args.data_dir), [int(w) for w in args.workers.split(",")]
    info = machine_info()
    result = {"machine": info, "args": vars(args) | {"data_dir": str(data_dir)}, "paths": []}
    if "images" in args.what and (data_dir / "omniglot/images_background.zip").exists():
        result["paths"].append(images(data_dir, workers, args.seconds, args.repeats))
    if "tracking" in args.what and (data_dir / "otb").is_dir():
        result["paths"].append(tracking(data_dir, workers, args.seconds, args.repeats))
    if not result["paths"]:
        print(f"skipped: no data under {data_dir}")
        return
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n{describe(info)}\n\n| inputs | workers | what | a second | dtype | MB a batch |")
    print("|---|---|---|---|---|---|")
    for p in result["paths"]:
        for r in p["rows"]:
            print(f"| {p['inputs']} | {r['workers']} | {r['what']} | {r['per_second']:,} | "
                  f"{r.get('dtype', '')} | {r.get('bytes_per_batch', 0) / 1e6:.2f} |")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
