"""Omniglot one-shot, Lake et al.'s original task, trained from scratch within a wall-clock budget.

    .venv/bin/python benchmarks/omniglot_oneshot.py --budget-minutes 5 --seeds 3 \\
        --out results/omniglot_5min.json [--setting full|minimal] [--data-dir ../shared/data]

Trains configs/omniglot.toml on images_background.zip (setting 'full') or on
images_background_small1.zip ('minimal'), scores the 20 official runs (400 trials), and writes
JSON: accuracy overall and per run, training seconds, images/s, peak memory, seed, resolved
config. Prints a markdown table. Skips (exit 0, a message) when the data is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import siamese
from siamese.atomic import atomic_write_json
from siamese.config import apply_overrides, load_config
from siamese.evaluation.omniglot import evaluate_official_runs

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ZIP = {"full": "images_background.zip", "minimal": "images_background_small1.zip"}


def one_seed(data_dir: Path, setting: str, minutes: float, seed: int, workdir: Path,
             overrides: dict) -> dict:
    cfg = load_config(ROOT / "configs" / "omniglot.toml")
    apply_overrides(cfg, {"data.path": str(data_dir / "omniglot" / TRAIN_ZIP[setting]),
                          "train.max_minutes": minutes, "train.seed": seed, **overrides})
    t0 = time.perf_counter()
    model = siamese.train(cfg, workdir / f"seed{seed}", force=True, quiet=True)
    wall = time.perf_counter() - t0
    history = model.card["history"]
    images = sum(h.get("images", 0) for h in history)
    r = evaluate_official_runs(model, data_dir / "omniglot" / "all_runs.zip")
    return {
        "seed": seed,
        "accuracy": r["accuracy"],
        "per_run": r["per_run"],
        "wrong": len(r["wrong"]),
        "train_seconds": model.card["train_seconds"],
        "wall_seconds": round(wall, 1),
        "epochs": len(history),
        "images_per_second": round(images / max(model.card["train_seconds"], 1e-9), 1),
        "score_seconds": round(r["seconds"], 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "config": model.card["config"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-minutes", type=float, required=True)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--setting", choices=sorted(TRAIN_ZIP), default="full")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA",
                                                         str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config field, e.g. --set loss.name=triplet")
    ap.add_argument("--out", default="results/omniglot_oneshot.json")
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    if not (data_dir / "omniglot" / "all_runs.zip").exists():
        print(f"skipped: Omniglot not found under {data_dir}/omniglot (set --data-dir or "
              "SIAMESE_DATA)")
        return 0
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        try:
            overrides[key] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key] = value
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            runs.append(one_seed(data_dir, args.setting, args.budget_minutes, seed, Path(tmp),
                                 overrides))
            r = runs[-1]
            print(f"seed {seed}: {100 * r['accuracy']:.2f}% ({r['epochs']} epochs, "
                  f"{r['images_per_second']:.0f} images/s)", file=sys.stderr, flush=True)
    accs = [r["accuracy"] for r in runs]
    summary = {
        "benchmark": "omniglot_oneshot", "setting": args.setting,
        "budget_minutes": args.budget_minutes, "seeds": args.seeds, "overrides": overrides,
        "mean_accuracy": statistics.mean(accs), "median_accuracy": statistics.median(accs),
        "runs": runs,
    }
    atomic_write_json(args.out, summary)
    print("| setting | budget | seeds | mean accuracy | per seed | images/s | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {args.setting} | {args.budget_minutes:g} min | {args.seeds} | "
          f"{100 * summary['mean_accuracy']:.2f}% | "
          f"{', '.join(f'{100 * a:.1f}' for a in accs)} | "
          f"{statistics.median(r['images_per_second'] for r in runs):.0f} | "
          f"{max(r['peak_rss_mib'] for r in runs):.0f} MiB |")
    print(f"JSON in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
