"""OTB tracking on targets no run trained on: train configs/otb.toml within the budget, then
track each held-out target from its first true box; beside it, in the same run and scored by
the same code: OpenCV's CSRT and KCF, NanoTrack v2 (a pretrained Siamese tracker that OpenCV
runs, from <data-dir>/peers/nanotrack_v2; left out where absent) from the same first box, and
the published trackers' results shipped with the sequences.

    .venv/bin/python benchmarks/otb_tracking.py --protocol loo --budget-minutes 5 --seeds 3 \\
        --out results/otb_tracking.json

Protocols (--protocol):
- loo (leave one sequence out): for each of the six otb/ sequences, train on track_train/
  plus the other five (Jogging's two targets are one fold);
- cross (cross-dataset): train on track_train/ alone, one run a seed, and track all seven;
- otb-loo: as loo without track_train/ (the protocol of docs/research/tracking.md's older figures).

Writes JSON (per seed, fold and target, each frame's confidence and IoU), success and
precision plots (next to --out), and prints a markdown table with how well the confidence
tells a lost target (IoU <= 0.1) from a found one (ROC AUC over frames). Skips (exit 0) when
the sequences are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
from common.machine import describe, machine_info
from common.recipe import load_recipe

import siamese
from siamese.artifact import read_card
from siamese.config import TRACKER_SETTINGS, config_from_dict, resolve, saved_values
from siamese.data.otb import list_targets
from siamese.data.tracks import read_tracks
from siamese.errors import ArtifactError, ConfigError
from siamese.evaluation.otb import mean_scores
from siamese.tracking.evaluate import published_scores, track_targets
from siamese.tracking.plots import plot_otb
from siamese.training.track_pairs import TrackPairs
from siamese.training.tracking import TrackingTask, recalibrate_norms

PEERS = {"OpenCV CSRT": "TrackerCSRT_create", "OpenCV KCF": "TrackerKCF_create",
         "NanoTrack v2": "TrackerNano_create"}


def _create(name: str, data_dir: Path):
    import cv2

    if name != "NanoTrack v2":
        return getattr(cv2, PEERS[name])()
    p = cv2.TrackerNano.Params()
    p.backbone = str(data_dir / "peers" / "nanotrack_v2" / "backbone.onnx")
    p.neckhead = str(data_dir / "peers" / "nanotrack_v2" / "head.onnx")
    return cv2.TrackerNano.create(p)


def opencv_tracker(name: str, data_dir: Path):
    import cv2

    def track(frames, box):
        t = _create(name, data_dir)
        bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames]
        out = np.zeros((len(frames), 4))
        out[0] = box
        t0 = time.perf_counter()
        t.init(bgr[0], tuple(int(round(v)) for v in box))
        for i in range(1, len(bgr)):
            ok, b = t.update(bgr[i])
            out[i] = b if ok else out[i - 1]  # lost: the last box stands
        return out, len(frames) / (time.perf_counter() - t0)

    return track


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget-minutes", type=float, default=5.0, help="training per fold")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--reuse", action="store_true",
                    help="track with a fold's run folder, not train it again, where it was "
                         "trained with this very recipe, seed and held-out sequence (the "
                         "tracker's own settings may differ: the recipe's are used; so may "
                         "track.recalibrate where the run has none: it is done here)")
    ap.add_argument("--protocol", choices=["loo", "cross", "otb-loo"], default="loo")
    ap.add_argument("--config", default="configs/otb.toml")
    ap.add_argument("--out", default="results/otb_tracking.json")
    ap.add_argument("--runs", default="runs/otb_fold", help="run folders: <runs>_<seq>_seed<k>")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--folds", nargs="+", help="only these held-out sequences")
    ap.add_argument("--no-peers", action="store_true", help="leave out the peers")
    ap.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    args = ap.parse_args()
    data_dir = Path(args.data_dir)
    root, extra = data_dir / "otb", data_dir / "track_train"
    if not root.is_dir() or (args.protocol != "otb-loo" and not extra.is_dir()):
        print(f"skipped: {root} or {extra} not found (set --data-dir or SIAMESE_DATA)")
        return
    roots = {"loo": [root, extra], "cross": [extra], "otb-loo": [root]}[args.protocol]
    cfg = load_recipe(args.config, [f"train.max_minutes={args.budget_minutes}", *args.set])
    cfg["data"]["path"] = [str(r) for r in roots] if len(roots) > 1 else str(roots[0])
    targets = list_targets(root)
    sequences = sorted({t.sequence.name for t in targets})
    videos = sorted({t.video for t in read_tracks(roots)})
    folds = ["all"] if args.protocol == "cross" else (args.folds or sequences)
    result = {"machine": machine_info(), "budget_minutes": args.budget_minutes, "recipe": cfg,
              "protocol": args.protocol, "folds": folds, "seeds": [], "peers": {},
              "published": {k: v["mean"] | {"targets": {n: {"success_auc": s["success_auc"],
                                                             "precision_20": s["precision_20"]}
                                                         for n, s in v["targets"].items()}}
                            for k, v in published_scores(targets).items()}}
    held = [t for t in targets if t.sequence.name in folds or folds == ["all"]]
    if not args.no_peers:
        for name in PEERS:
            if name == "NanoTrack v2" and not (data_dir / "peers" / "nanotrack_v2").is_dir():
                continue
            per = track_targets(opencv_tracker(name, data_dir), held, quiet=True)
            result["peers"][name] = {"targets": {k: _brief(v) for k, v in per.items()},
                                     **_summary(per)}
            print(f"{name}: success AUC {result['peers'][name]['success_auc']:.3f}", flush=True)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        per, train_rates = {}, []
        for seq in folds:
            cfg["train"]["seed"] = seed
            cfg.setdefault("track", {})["sequences"] = [v for v in videos if v != seq]
            run = Path(f"{args.runs}_{seq}_seed{seed}")
            if args.reuse and _trained_with(run, cfg):  # tracked with the recipe's settings
                resolved = resolve(config_from_dict(cfg))
                model = siamese.load(run).with_settings(
                    **{k: getattr(resolved.track, k) for k in TRACKER_SETTINGS})
                if resolved.track.recalibrate and not model.card.get("recalibrated_batches"):
                    _recalibrate(model, resolved)  # what training would have done at its end
            else:
                model = siamese.train(cfg, run, force=True, quiet=True)
            hist = model.card["history"]
            train_rates.append(sum(h["images"] for h in hist) / 2
                               / max(sum(h["seconds"] for h in hist), 1e-9))
            fold = track_targets(lambda f, b, m=model: m.track(f, b, confidence=True),
                                 [t for t in held if seq in ("all", t.sequence.name)],
                                 quiet=True)
            per.update(fold)
            for k, v in fold.items():
                print(f"seed {seed}, {k}: success AUC {v['success_auc']:.3f}, precision "
                      f"{v['precision_20']:.3f}, {v['fps']:.0f} frames/s", flush=True)
        result["seeds"].append({"seed": seed, "targets": {k: _brief(v) for k, v in per.items()},
                                "train_pairs_per_second": statistics.mean(train_rates),
                                "confidence": confidence_summary(per), **_summary(per)})
    seeds = result["seeds"]
    result["mean_success_auc"] = statistics.mean(s["success_auc"] for s in seeds)
    result["mean_precision_20"] = statistics.mean(s["precision_20"] for s in seeds)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    curves = {"ours (mean of seeds)": {
        "success": np.mean([s["success"] for s in seeds], 0).tolist(),
        "precision": np.mean([s["precision"] for s in seeds], 0).tolist(),
        "success_auc": result["mean_success_auc"], "precision_20": result["mean_precision_20"]},
        **result["peers"]}
    if set(folds) == set(sequences):
        curves.update({k: v for k, v in result["published"].items()})
    plot_otb(curves, Path(args.out).parent, f"{len(held)} held-out targets")
    print_table(result, held)


def _trained_with(run: Path, recipe: dict) -> bool:
    """Whether the run folder holds a finished run of exactly this recipe: both configs
    resolved by this version (a key added since the run was saved takes its default, which
    trains as before, or its former default where that changed), the tracker's own settings
    aside (they do not change training)."""
    def training(config: dict, saved: bool = False) -> dict:
        values = resolve(config_from_dict(saved_values(config) if saved else config)).to_dict()
        values["track"] = {k: v for k, v in values["track"].items()
                           if k not in (*TRACKER_SETTINGS, "recalibrate")}
        return values

    try:
        card = read_card(run)
        done = card.get("recalibrated_batches", 0)  # a run recalibrated otherwise: not this
        return (card.get("status") == "trained"
                and done in (0, resolve(config_from_dict(recipe)).track.recalibrate)
                and training(card["config"], saved=True) == training(recipe))
    except (ArtifactError, ConfigError, KeyError):  # no run card, or one this version can't read
        return False


def _recalibrate(model, cfg) -> None:
    """A run trained without track.recalibrate given the recalibration training would have
    ended with (the same batches: the run's seed, its fold's training sequences)."""
    pairs = TrackPairs(read_tracks(cfg.data.path, cfg.track.sequences or None), cfg.track,
                       cfg.track.pairs_per_epoch, cfg.train.seed)
    recalibrate_norms(TrackingTask(model.net, cfg), pairs, cfg.track.recalibrate,
                      cfg.train.batch_size)
    model.net.eval()


def _brief(r: dict) -> dict:
    return {k: r[k] for k in ("success_auc", "precision_20", "fps", "frames", "confidence",
                              "iou") if k in r}


def confidence_summary(per: dict) -> dict:
    """How well each frame's confidence tells a lost target (IoU <= 0.1) from a found one
    (IoU > 0.5): ROC AUC over the frames after the first; and by confidence bin, the share
    of frames whose IoU is above 0.5 (is the confidence a probability of that?)."""
    from sklearn.metrics import roc_auc_score

    c = np.concatenate([r["confidence"][1:] for r in per.values()])
    u = np.concatenate([r["iou"][1:] for r in per.values()])
    keep = (u <= 0.1) | (u > 0.5)
    auc = float(roc_auc_score(u[keep] > 0.5, c[keep])) if len(set(u[keep] > 0.5)) == 2 \
        else float("nan")
    bins = np.linspace(0, 1, 6)
    which = np.clip(np.digitize(c, bins) - 1, 0, 4)
    table = [{"confidence": f"{bins[b]:.1f}-{bins[b + 1]:.1f}", "frames": int((which == b).sum()),
              "found": float((u[which == b] > 0.5).mean()) if (which == b).any() else None}
             for b in range(5)]
    return {"lost_vs_found_auc": auc, "frames_lost": int((u <= 0.1).sum()),
            "frames": int(len(u)), "bins": table}


def _summary(per: dict) -> dict:
    m = mean_scores(per)
    frames = sum(r["frames"] for r in per.values())
    return {"success_auc": m["success_auc"], "precision_20": m["precision_20"],
            "success": m["success"], "precision": m["precision"],
            "fps": frames / sum(r["frames"] / r["fps"] for r in per.values())}


def print_table(result: dict, held) -> None:
    names = [t.name for t in held]
    seeds = result["seeds"]
    print(f"\n{describe(result['machine'])}; {result['budget_minutes']:g} minutes of training "
          f"per fold, {len(seeds)} seed(s), protocol {result['protocol']}\n")
    print("| tracker | " + " | ".join(names) + " | mean success AUC | precision (20 px) "
          "| frames/s |")
    print("|---" * (len(names) + 4) + "|")

    def row(label, per, mean, prec, fps):
        cells = " | ".join(f"{per[n]['success_auc']:.3f}" for n in names)
        fps = f"{fps:.0f}" if fps else ""
        print(f"| {label} | {cells} | {mean:.3f} | {prec:.3f} | {fps} |")

    avg = {n: {"success_auc": statistics.mean(s["targets"][n]["success_auc"] for s in seeds)}
           for n in names}
    row(f"**ours, mean of {len(seeds)} seed(s)**", avg, result["mean_success_auc"],
        result["mean_precision_20"], statistics.mean(s["fps"] for s in seeds))
    if len(seeds) > 1:
        for s in seeds:
            row(f"ours, seed {s['seed']}", s["targets"], s["success_auc"], s["precision_20"],
                s["fps"])
    for name, p in result["peers"].items():
        row(name, p["targets"], p["success_auc"], p["precision_20"], p["fps"])
    if len(held) == sum(len(p["targets"]) for p in list(result["published"].values())[:1]):
        for name, p in sorted(result["published"].items(), key=lambda kv: -kv[1]["success_auc"]):
            row(f"{name} (published)", p["targets"], p["success_auc"], p["precision_20"], None)
    rate = statistics.mean(s["train_pairs_per_second"] for s in seeds)
    print(f"\ntraining: {rate:.0f} exemplar/search pairs a second")
    for s in seeds:
        c = s["confidence"]
        print(f"seed {s['seed']}: confidence tells lost (IoU <= 0.1, {c['frames_lost']} of "
              f"{c['frames']} frames) from found (IoU > 0.5): ROC AUC "
              f"{c['lost_vs_found_auc']:.3f}; found share by confidence: " + ", ".join(
                  f"{b['confidence']} {b['found']:.2f} ({b['frames']})" for b in c["bins"]
                  if b["found"] is not None))


if __name__ == "__main__":
    main()
