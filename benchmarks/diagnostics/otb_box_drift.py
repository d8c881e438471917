"""OTB tracking diagnostic: how a run's box drifts on a sequence, frame by frame: IoU with the
truth, centre error (px) and the box's size over the truth's (sqrt of the areas' ratio; below
1: the box is too small). Use a fold run of benchmarks/otb_tracking.py on its held-out
sequence to see why a target scores what it does (lost, or centred with the wrong size).

    .venv/bin/python benchmarks/diagnostics/otb_box_drift.py runs/otb6_fold_Couple_seed0 \\
        --sequence Couple --out results/otb/drift_couple_seed0.json

Prints every --every-th frame per target and writes JSON (every frame). Skips (exit 0) when
the sequences are missing. docs/research/tracking.md.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

import siamese
from siamese.data.otb import list_targets, read_frames
from siamese.evaluation.otb import centre_error, iou


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run")
    ap.add_argument("--sequence", required=True)
    ap.add_argument("--every", type=int, default=7)
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--out")
    args = ap.parse_args()
    root = Path(args.data_dir) / "otb"
    if not (root / args.sequence).is_dir():
        print(f"skipped: {root / args.sequence} not found (set --data-dir or SIAMESE_DATA)")
        return
    model = siamese.load(args.run)
    result = {"run": args.run, "sequence": args.sequence, "targets": {}}
    for t in list_targets(root, [args.sequence]):
        frames = read_frames(t.frames)[:len(t.boxes)]
        boxes, fps = model.track(frames, t.boxes[0])
        truth = t.boxes[:len(boxes)]
        valid = (truth[:, 2] > 0) & (truth[:, 3] > 0)
        overlap, error = iou(boxes, truth), centre_error(boxes, truth)
        size = np.sqrt(boxes[:, 2] * boxes[:, 3] / np.where(valid, truth[:, 2] * truth[:, 3], 1))
        print(f"{t.name}: {len(boxes)} frames, {fps:.0f} frames/s, mean IoU "
              f"{overlap[valid].mean():.3f}")
        for i in range(0, len(boxes), args.every):
            if valid[i]:
                print(f"  frame {i + 1:4d}  IoU {overlap[i]:.2f}  centre error {error[i]:6.1f} px"
                      f"  size {size[i]:.2f}  truth {truth[i].astype(int).tolist()}")
        result["targets"][t.name] = {"fps": fps, "iou": overlap.tolist(),
                                     "centre_error": error.tolist(), "size": size.tolist(),
                                     "valid": valid.tolist()}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
