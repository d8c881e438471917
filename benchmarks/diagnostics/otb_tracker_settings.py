"""The tracker's settings (scale penalty, cosine window, ...), chosen without looking at the
sequence they are scored on: nested leave one sequence out over the fold runs of
benchmarks/otb_tracking.py.

    .venv/bin/python benchmarks/diagnostics/otb_tracker_settings.py --runs runs/otb2_fold \\
        --seeds 0 1 2 \\
        --grid track.window_influence=0.176,0.3,0.45 --grid track.scale_penalty=0.9745,0.95 \\
        --out results/otb/tracker_settings.json

Each fold run (trained without its held-out sequence) tracks its held-out targets once with
every combination of the grid; the weights never change (TrackingModel.with_settings). Then:
- per combination, the mean success AUC over all held-out targets and seeds: the combination
  best there is the candidate to ship (a user's model has no held-out sequence), but that
  figure was picked on the targets it scores, so it is optimistic;
- the honest figure, nested: for each held-out sequence, the combination best on the OTHER
  folds' held-out targets, scored on this one. It is what choosing settings this way gives on
  a sequence nobody looked at.
Writes JSON and prints a markdown table. Skips (exit 0) when the sequences are missing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # machine, recipe
from common.machine import describe, machine_info

import siamese
from siamese.data.otb import list_targets, read_frames
from siamese.evaluation.otb import score


def parse_grid(items: list[str]) -> list[dict]:
    axes = []
    for item in items:
        key, _, values = item.partition("=")
        section, _, name = key.partition(".")
        if section != "track" or not values:
            raise SystemExit(f"error: --grid {item!r}: give track.KEY=V1,V2,...")
        axes.append([(name, json.loads(v)) for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def label(setting: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items()) or "as trained"


def mean_auc(per: dict, leave_out: str | None = None, fold_of: dict | None = None) -> float:
    """The mean success AUC of {(seed, target): score}, less one fold's targets."""
    return statistics.mean(v["success_auc"] for (_, name), v in per.items()
                           if leave_out is None or fold_of[name] != leave_out)


def nested_choice(scores: list[dict], fold_of: dict) -> tuple[dict, dict]:
    """scores[i] = {(seed, target): score} of the i-th setting; fold_of: target -> its fold.
    -> {fold: the setting index best on the other folds}, and the scores that choice gives
    ({(seed, target): score}, each target scored with its own fold's choice)."""
    picks, nested = {}, {}
    for fold in sorted(set(fold_of.values())):
        best = max(range(len(scores)), key=lambda i, f=fold: mean_auc(scores[i], f, fold_of))
        picks[fold] = best
        nested.update({k: v for k, v in scores[best].items() if fold_of[k[1]] == fold})
    return picks, nested


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="runs/otb_fold", help="run folders: <runs>_<seq>_seed<k>")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--grid", action="append", default=[], metavar="track.KEY=V1,V2")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--out", default="results/otb/tracker_settings.json")
    args = ap.parse_args()
    root = Path(args.data_dir) / "otb"
    if not root.is_dir():
        print(f"skipped: {root} not found (set --data-dir or SIAMESE_DATA)")
        return
    settings = parse_grid(args.grid)
    targets = list_targets(root)
    folds = sorted({t.sequence.name for t in targets})
    missing = [f"{args.runs}_{s}_seed{k}" for s in folds for k in args.seeds
               if not Path(f"{args.runs}_{s}_seed{k}", "card.json").is_file()]
    if missing:
        raise SystemExit(f"error: no fold run {missing[0]}; train them with "
                         "benchmarks/otb_tracking.py --runs PREFIX first")
    # scores[i][(seed, target)] = the i-th setting's score of that held-out target
    scores: list[dict] = [{} for _ in settings]
    fold_of = {t.name: t.sequence.name for t in targets}
    for seq in folds:
        held = [t for t in targets if t.sequence.name == seq]
        frames = read_frames(held[0].frames)
        for seed in args.seeds:
            model = siamese.load(f"{args.runs}_{seq}_seed{seed}")
            for i, setting in enumerate(settings):
                tuned = model.with_settings(**setting)
                for t in held:
                    boxes, fps = tuned.track(frames[:len(t.boxes)], t.boxes[0])
                    s = score(boxes, t.boxes)
                    scores[i][seed, t.name] = {"success_auc": s["success_auc"],
                                               "precision_20": s["precision_20"], "fps": fps}
                    print(f"{seq} seed {seed} [{label(setting)}] {t.name}: "
                          f"{s['success_auc']:.3f}", flush=True)

    overall = [mean_auc(per) for per in scores]
    picks, nested = nested_choice(scores, fold_of)
    chosen = {seq: settings[i] for seq, i in picks.items()}
    result = {
        "machine": machine_info(), "runs": args.runs, "seeds": args.seeds,
        "settings": [{"setting": s, "success_auc": overall[i],
                      "targets": {f"{k[1]} seed {k[0]}": v for k, v in scores[i].items()}}
                     for i, s in enumerate(settings)],
        "best_overall": settings[max(range(len(settings)), key=overall.__getitem__)],
        "nested": {"success_auc": statistics.mean(v["success_auc"] for v in nested.values()),
                   "precision_20": statistics.mean(v["precision_20"] for v in nested.values()),
                   "chosen": chosen,
                   "targets": {f"{k[1]} seed {k[0]}": v for k, v in nested.items()}}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    names = [t.name for t in targets]

    def cells(per: dict) -> str:
        means = (statistics.mean(v["success_auc"] for k, v in per.items() if k[1] == n)
                 for n in names)
        return " | ".join(f"{m:.3f}" for m in means)

    print(f"\n{describe(result['machine'])}; fold runs {args.runs}, seeds "
          f"{' '.join(map(str, args.seeds))}; success AUC, mean over seeds\n")
    print("| tracker settings | " + " | ".join(names) + " | mean |")
    print("|---" * (len(names) + 2) + "|")
    for i, s in enumerate(settings):
        print(f"| {label(s)} | {cells(scores[i])} | {overall[i]:.3f} |")
    print(f"| **nested: chosen on the other folds** | {cells(nested)} | "
          f"**{result['nested']['success_auc']:.3f}** |")
    print("\nchosen per held-out sequence: " + "; ".join(f"{k}: {label(v)}"
                                                      for k, v in chosen.items()))
    print(f"best over all folds: {label(result['best_overall'])} (picked on the targets it "
          "scores: ship it only where it also wins nested)")


if __name__ == "__main__":
    main()
