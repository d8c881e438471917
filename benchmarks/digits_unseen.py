"""Digits 0-5 -> unseen 6-9: the demo recipe against a plain triplet conv net, several seeds.

    .venv/bin/python benchmarks/digits_unseen.py --seeds 3 --out results/digits_unseen.json

Writes JSON (every run, medians) and prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common.machine import describe, machine_info

import siamese
from siamese.atomic import atomic_write_json
from siamese.config import apply_overrides, load_config

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {
    # the baseline the issue names: a quick triplet conv net (semi-hard mining, no rotations)
    "triplet conv4 (baseline)": {"loss.name": "triplet", "data.class_rotations": False},
    "demo recipe (proto + rotated classes)": {},
}


def run(overrides: dict, seed: int, workdir: Path) -> dict:
    cfg = load_config(ROOT / "configs" / "digits.toml")
    apply_overrides(cfg, {**overrides, "train.seed": seed})
    t0 = time.perf_counter()
    model = siamese.train(cfg, workdir / f"s{seed}", force=True, quiet=True)
    seconds = time.perf_counter() - t0
    u = model.card["metrics"]["unseen"]
    s = model.card["metrics"]["seen"]
    return {
        "seed": seed,
        "seconds": round(seconds, 1),
        "unseen_auc": u["verification"]["roc_auc"],
        "unseen_4way_1shot": u["few_shot"]["4-way 1-shot"]["accuracy"],
        "seen_auc": s["verification"]["roc_auc"],
        "seen_5way_1shot": s["few_shot"]["5-way 1-shot"]["accuracy"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default="results/digits_unseen.json")
    args = ap.parse_args()
    results = {}
    for name, overrides in VARIANTS.items():
        with tempfile.TemporaryDirectory() as tmp:
            runs = [run(overrides, seed, Path(tmp)) for seed in range(args.seeds)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "seed"}
        results[name] = {"overrides": overrides, "runs": runs, "median": med}
        print(f"{name}: {med}", flush=True)
    info = machine_info()
    atomic_write_json(args.out, {"benchmark": "digits_unseen", "seeds": args.seeds,
                                 "machine": info, "results": results})
    print("\n| variant | unseen ROC AUC | unseen 4-way 1-shot | seen ROC AUC | "
          "seen 5-way 1-shot | train+eval s |")
    print("|---|---|---|---|---|---|")
    for name, r in results.items():
        m = r["median"]
        print(f"| {name} | {m['unseen_auc']:.3f} | {100 * m['unseen_4way_1shot']:.1f}% | "
              f"{m['seen_auc']:.3f} | {100 * m['seen_5way_1shot']:.1f}% | {m['seconds']:.0f} |")
    print(f"\nmedians over {args.seeds} seeds, measured on {describe(info)}; JSON in {args.out}")


if __name__ == "__main__":
    main()
