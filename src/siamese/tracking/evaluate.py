"""`siamese evaluate RUN --otb DIR`: track every target of the sequences from its first true box
and score the one-pass evaluation (evaluation/otb.py), beside the published trackers' results
found in each sequence's results/ folder, scored by the same code."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_json
from ..data.otb import Target, check_box, list_targets, read_boxes, read_frame, read_frames
from ..errors import DataError
from ..evaluation.otb import iou, mean_scores, score


def published_scores(targets: list[Target]) -> dict[str, dict]:
    """Trackers with a result for every target -> their scores per target and mean."""
    names = set.intersection(*(set(t.results) for t in targets)) if targets else set()
    out = {}
    for name in sorted(names):
        per = {}
        for t in targets:
            try:
                per[t.name] = score(read_boxes(t.results[name]), t.boxes)
            except DataError:  # a damaged result file: that tracker is left out
                break
        else:
            out[name] = {"targets": per, "mean": mean_scores(per)}
    return out


def track_targets(track, targets: list[Target], quiet: bool = False) -> dict[str, dict]:
    """track(frames, box) -> (boxes, fps), or (boxes, confidences, fps), for each target from
    its first true box; a tracker's confidences are kept with each frame's IoU."""
    per, frames_of = {}, {}
    for t in targets:  # every first box checked before any work: no silent 0.000 for one
        check_box(t.boxes[0], read_frame(t.frames[0]),
                  where=f"the first ground-truth box of {t.name} (in {t.sequence})")
    for t in targets:
        if t.sequence not in frames_of:
            frames_of = {t.sequence: read_frames(t.frames)}  # one sequence in memory at a time
        frames = frames_of[t.sequence][:len(t.boxes)]
        boxes, *sure, fps = track(frames, t.boxes[0])
        per[t.name] = {**score(boxes, t.boxes), "fps": fps, "boxes": np.round(boxes, 2).tolist()}
        if sure:
            per[t.name]["confidence"] = np.round(sure[0], 4).tolist()
            per[t.name]["iou"] = np.round(iou(boxes, t.boxes), 4).tolist()
        if not quiet:
            print(f"{t.name}: success AUC {per[t.name]['success_auc']:.3f}, precision "
                  f"{per[t.name]['precision_20']:.3f}, {fps:.0f} frames/s", file=sys.stderr)
    return per


def evaluate_otb(model, root: str | Path, sequences: list[str] | None = None,
                 out: str | Path | None = None, quiet: bool = False) -> dict:
    from .plots import plot_otb

    targets = list_targets(Path(root), sequences)
    ours = track_targets(lambda f, b: model.track(f, b, confidence=True), targets, quiet)
    total_frames = sum(r["frames"] for r in ours.values())
    seconds = sum(r["frames"] / r["fps"] for r in ours.values())
    result = {"otb": str(root), "targets": ours,
              "mean": {**mean_scores(ours), "fps": total_frames / max(seconds, 1e-9)},
              "published": published_scores(targets)}
    out = Path(out) if out else model.run
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "otb_metrics.json", result)
    curves = {"ours": result["mean"], **{k: v["mean"] for k, v in result["published"].items()}}
    plot_otb(curves, out, f"{len(targets)} targets")
    return result


def format_otb(result: dict) -> str:
    rows = ["| tracker | success AUC | precision (20 px) |", "|---|---|---|"]
    entries = [("ours", result["mean"])] + [(k, v["mean"]) for k, v in
                                           result["published"].items()]
    for name, m in sorted(entries, key=lambda e: -e[1]["success_auc"]):
        label = f"**{name}** ({m['fps']:.0f} frames/s)" if name == "ours" else name
        rows.append(f"| {label} | {m['success_auc']:.3f} | {m['precision_20']:.3f} |")
    return "\n".join(rows)
