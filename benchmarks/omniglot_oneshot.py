"""Omniglot one-shot, Lake et al.'s original task, trained from scratch within a wall-clock budget
or a fixed amount of work.

    .venv/bin/python benchmarks/omniglot_oneshot.py --budget-minutes 5 --seeds 3 \\
        --out results/omniglot_5min.json [--setting full|minimal] [--data-dir ../shared/data]
        [--first-seed N] [--set section.key=value ...] [--keep-runs DIR] [--episodes 1000]
    .venv/bin/python benchmarks/omniglot_oneshot.py --epochs 6 --seeds 3 ...   # fixed work

A wall-clock budget measures what a user gets in that time on this CPU (more epochs on a faster
one); `--epochs N` trains the same number of images on any machine, so its accuracy compares
across CPUs. The JSON records the machine (CPU model, cores, kernels, matmul GFLOP/s).

Trains configs/omniglot.toml on images_background.zip (setting 'full') or on
images_background_small1.zip ('minimal'), scores the 20 official runs (400 trials), and writes
JSON: accuracy overall and per run: one pass ("accuracy"), as deployed (the model's own
model.views fixed distortions, "accuracy_model") and with test-time augmentation (--tta N), training
seconds, images/s, peak memory, seed, resolved config; and (--episodes N, default 1000) the
accuracy over N random 20-way within-alphabet episodes built like the official runs from
images_evaluation (N x 20 trials: a lower-noise figure of the same test, for comparing recipes;
siamese.evaluation.omniglot_episodes). Prints a markdown table. Skips (exit 0, a message) when
the data is missing.
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

import torch
from common.machine import describe, machine_info

import siamese
from siamese.atomic import atomic_write_json
from siamese.config import apply_overrides, load_config
from siamese.evaluation.omniglot import evaluate_official_runs
from siamese.evaluation.omniglot_episodes import score_episodes_views

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ZIP = {"full": "images_background.zip", "minimal": "images_background_small1.zip"}


def one_seed(data_dir: Path, setting: str, minutes: float, seed: int, workdir: Path,
             overrides: dict, tta: int, epochs: int | None = None,
             episodes: int = 0) -> dict:
    cfg = load_config(ROOT / "configs" / "omniglot.toml")
    budget = {"train.max_minutes": minutes} if epochs is None else \
        {"train.max_minutes": 0.0, "train.epochs": epochs}
    apply_overrides(cfg, {"data.path": str(data_dir / "omniglot" / TRAIN_ZIP[setting]),
                          **budget, "train.seed": seed, **overrides})
    t0 = time.perf_counter()
    model = siamese.train(cfg, workdir / f"seed{seed}", force=True, quiet=True)
    wall = time.perf_counter() - t0
    history = model.card["history"]
    images = sum(h.get("images", 0) for h in history)
    runs_zip = data_dir / "omniglot" / "all_runs.zip"
    r = evaluate_official_runs(model, runs_zip, views=0)  # one pass: "plain"
    # the model as deployed: its embedding averages model.views fixed distortions
    r_model = evaluate_official_runs(model, runs_zip) if model.views else None
    r_tta = evaluate_official_runs(model, runs_zip, views=tta) if tta else None
    many = {}
    if episodes:  # the same test, 50x the trials: recipes told apart with fewer seeds
        evaluation = data_dir / "omniglot" / "images_evaluation.zip"
        both = score_episodes_views(model, evaluation, [0, None], episodes)
        for name, e in zip(("one_pass", "deployed"), both, strict=True):
            many[name] = {k: e[k] for k in ("accuracy", "stderr", "views", "per_alphabet",
                                            "per_episode")}
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
        "model_views": model.views,
        "accuracy_model": r_model["accuracy"] if r_model else r["accuracy"],
        "per_run_model": r_model["per_run"] if r_model else None,
        "tta_views": tta,
        "accuracy_tta": r_tta["accuracy"] if r_tta else None,
        "per_run_tta": r_tta["per_run"] if r_tta else None,
        "score_seconds_tta": round(r_tta["seconds"], 3) if r_tta else None,
        "episodes": episodes, "accuracy_episodes": many or None,
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
        "config": model.card["config"],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    budget = ap.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-minutes", type=float, help="wall-clock training budget")
    budget.add_argument("--epochs", type=int, help="fixed work: this many epochs (the same "
                        "images on any CPU), the schedule over them")
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds are first-seed .. first-seed + seeds - 1")
    ap.add_argument("--setting", choices=sorted(TRAIN_ZIP), default="full")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA",
                                                         str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                    help="override a config field, e.g. --set loss.name=triplet")
    ap.add_argument("--out", default="results/omniglot_oneshot.json")
    ap.add_argument("--tta", type=int, default=32, metavar="N",
                    help="also score with test-time augmentation over N distortions "
                         "(0: only the plain score)")
    ap.add_argument("--episodes", type=int, default=1000, metavar="N",
                    help="also score N random 20-way within-alphabet episodes drawn from "
                         "images_evaluation like the official runs (N x 20 trials, against "
                         "their 400; 0: skip), one pass and as deployed")
    ap.add_argument("--keep-runs", metavar="DIR",
                    help="keep the trained run folders in DIR/seedN (default: a temporary "
                         "folder, deleted at the end)")
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
        workdir = Path(args.keep_runs) if args.keep_runs else Path(tmp)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            runs.append(one_seed(data_dir, args.setting, args.budget_minutes or 0.0, seed,
                                 workdir, overrides, args.tta, args.epochs, args.episodes))
            r = runs[-1]
            tta = f", {100 * r['accuracy_tta']:.2f}% with tta" if args.tta else ""
            own = (f", {100 * r['accuracy_model']:.2f}% as deployed ({r['model_views']} views)"
                   if r["model_views"] else "")
            if r["accuracy_episodes"]:
                e = r["accuracy_episodes"]
                tta += (f"; {args.episodes} episodes: {100 * e['one_pass']['accuracy']:.2f}% "
                        f"one pass, {100 * e['deployed']['accuracy']:.2f}% as deployed "
                        f"(+-{100 * e['deployed']['stderr']:.2f})")
            print(f"seed {seed}: {100 * r['accuracy']:.2f}% one pass{own}{tta} "
                  f"({r['epochs']} epochs, "
                  f"{r['images_per_second']:.0f} images/s)", file=sys.stderr, flush=True)
    accs = [r["accuracy"] for r in runs]
    info = machine_info()
    summary = {
        "benchmark": "omniglot_oneshot", "setting": args.setting,
        "budget_minutes": args.budget_minutes, "epochs": args.epochs, "seeds": args.seeds,
        "overrides": overrides, "machine": info,
        "mean_accuracy": statistics.mean(accs), "median_accuracy": statistics.median(accs),
        "model_views": runs[-1]["model_views"],
        "mean_accuracy_model": statistics.mean(r["accuracy_model"] for r in runs),
        "tta_views": args.tta,
        "mean_accuracy_tta": (statistics.mean(r["accuracy_tta"] for r in runs)
                              if args.tta else None),
        "episodes": args.episodes,
        "mean_accuracy_episodes": ({k: statistics.mean(r["accuracy_episodes"][k]["accuracy"]
                                                       for r in runs)
                                    for k in ("one_pass", "deployed")}
                                   if args.episodes else None),
        "runs": runs,
    }
    atomic_write_json(args.out, summary)
    tta = "-"
    if args.tta:
        per_seed = ", ".join(f"{100 * r['accuracy_tta']:.2f}" for r in runs)
        tta = f"{100 * summary['mean_accuracy_tta']:.2f}% ({per_seed})"
    own = ", ".join(f"{100 * r['accuracy_model']:.2f}" for r in runs)
    own = f"{100 * summary['mean_accuracy_model']:.2f}% ({own})"
    print(f"| setting | budget | seeds | one pass | per seed | as deployed "
          f"({summary['model_views']} views) | with tta | images/s | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    budget = f"{args.budget_minutes:g} min" if args.epochs is None else f"{args.epochs} epochs"
    print(f"| {args.setting} | {budget} | {args.seeds} | "
          f"{100 * summary['mean_accuracy']:.2f}% | "
          f"{', '.join(f'{100 * a:.2f}' for a in accs)} | {own} | {tta} | "
          f"{statistics.median(r['images_per_second'] for r in runs):.0f} | "
          f"{max(r['peak_rss_mib'] for r in runs):.0f} MiB |")
    if args.episodes:
        m = summary["mean_accuracy_episodes"]
        print(f"\n{args.episodes} episodes a seed ({20 * args.episodes} trials) on "
              f"images_evaluation: one pass {100 * m['one_pass']:.2f}%, as deployed "
              f"{100 * m['deployed']:.2f}% (per seed: " + ", ".join(
                  f"{100 * r['accuracy_episodes']['deployed']['accuracy']:.2f}" for r in runs)
              + ")")
    print(f"measured on {describe(info)}; JSON in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
