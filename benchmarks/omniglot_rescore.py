"""Score trained run folders on Lake's 20 official runs: one pass, as deployed (the model's
views) and with test-time augmentation, the kept weights and (--last) the last checkpoint's.

    .venv/bin/python benchmarks/omniglot_rescore.py runs/omni_full30/seed* --last --tta 32 \\
        [--views 8] [--episodes 1000] --out results/omniglot_rescore.json

For runs trained before `train.keep = "last"` existed (they kept the best validation epoch),
or kept with `omniglot_oneshot.py --keep-runs DIR`. Skips (exit 0) when the data is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import siamese
from siamese.artifact import load_checkpoint
from siamese.atomic import atomic_write_json
from siamese.evaluation.omniglot import score_official_runs
from siamese.evaluation.omniglot_episodes import score_episodes_views

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--last", action="store_true",
                    help="also score the weights of checkpoints/last.safetensors")
    ap.add_argument("--tta", type=int, default=32, metavar="N")
    ap.add_argument("--views", type=int, metavar="K",
                    help="score as deployed with model.views = K (views only change how a "
                         "trained model embeds, so runs trained before the option existed "
                         "can be scored as they would be deployed now)")
    ap.add_argument("--episodes", type=int, default=0, metavar="N",
                    help="also score N random 20-way within-alphabet episodes from "
                         "images_evaluation, one pass and as deployed (N x 20 trials)")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA",
                                                         str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()
    runs_zip = Path(args.data_dir) / "omniglot" / "all_runs.zip"
    if not runs_zip.exists():
        print(f"skipped: {runs_zip} not found (set --data-dir or SIAMESE_DATA)")
        return 0
    rows = []
    for run in args.runs:
        model = siamese.load(run)
        if args.views is not None:
            model.card["config"]["model"]["views"] = args.views
        weights = [("kept", None)]
        if args.last:
            weights.append(("last", load_checkpoint(run)[0]))
        for name, state in weights:
            if state is not None:
                model.net.load_state_dict(state)
            row = {"run": str(run), "weights": name,
                   "accuracy": score_official_runs(model, runs_zip, views=0)["accuracy"],
                   "model_views": model.views,
                   "accuracy_model": score_official_runs(model, runs_zip)["accuracy"]}
            if args.tta:
                row["accuracy_tta"] = score_official_runs(model, runs_zip, args.tta)["accuracy"]
            if args.episodes:
                evaluation = runs_zip.parent / "images_evaluation.zip"
                both = score_episodes_views(model, evaluation, [0, None], args.episodes)
                for key, e in zip(("episodes_one_pass", "episodes_model"), both, strict=True):
                    row[key] = e["accuracy"]
                    row[key + "_stderr"] = e["stderr"]
                    row[key + "_per_episode"] = e["per_episode"]
            rows.append(row)
    print(f"| run | weights | one pass | as deployed (views) | with tta ({args.tta}) | "
          f"{args.episodes} episodes: one pass | as deployed |\n|---|---|---|---|---|---|---|")
    for r in rows:
        tta = f"{100 * r['accuracy_tta']:.2f}%" if "accuracy_tta" in r else "-"
        ep = (f"{100 * r['episodes_one_pass']:.2f}% | {100 * r['episodes_model']:.2f}% "
              f"(+-{100 * r['episodes_model_stderr']:.2f})" if args.episodes else "- | -")
        print(f"| {r['run']} | {r['weights']} | {100 * r['accuracy']:.2f}% | "
              f"{100 * r['accuracy_model']:.2f}% ({r['model_views']}) | {tta} | {ep} |")
    if args.out:
        atomic_write_json(args.out, {"benchmark": "omniglot_rescore", "tta_views": args.tta,
                                     "episodes": args.episodes,
                                     "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
