"""How well a box-head tracking run (track.head = "box") regresses boxes on pairs it never
trained on, against keeping the target's size (what the tracker does when it trusts nothing).

Pairs are cut from held-out sequences as in training (no flip, grey or light); for each pair
the box regressed at the cell nearest the true centre is compared with the truth (IoU, width
and height ratios), and so is a box of the TRUE size at the regressed centre (the best any
size update could do from there). Writes JSON.

    .venv/bin/python benchmarks/diagnostics/box_head_fit.py runs/s34_e10box_all_seed0 \\
        --data ../shared/data/otb --out results/otb/box_head_fit.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import siamese
from siamese.data.tracks import read_tracks
from siamese.losses.box import corners, iou_and_giou
from siamese.models.siambox import boxes_of
from siamese.training.track_pairs import TrackPairs, apply_looks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--data", default="../shared/data/otb")
    ap.add_argument("--pairs", type=int, default=256)
    ap.add_argument("--train-mode", action="store_true",
                    help="batch statistics instead of the running averages (as in training)")
    ap.add_argument("--out", default="results/otb/box_head_fit.json")
    args = ap.parse_args()
    model = siamese.load(args.run)
    if model.cfg.track.head != "box":
        raise SystemExit(f"{args.run} was trained with track.head = {model.cfg.track.head}")
    net, n = model.net, args.pairs
    net.train(args.train_mode)
    pairs = TrackPairs(read_tracks([args.data]), model.cfg.track, n, seed=12345)
    z, x, targets, looks, _ = pairs.batch(0, n)
    plain = torch.tensor([0.0, 0.0] + [1.0] * 10).expand_as(looks)
    z, x, targets = apply_looks(z, x, targets, plain, torch.arange(n))
    keep = targets[:, 0].abs() < 1e3  # pairs whose target is in the search crop
    with torch.no_grad():
        _, ltrb, _ = net(z, x)
    boxes = boxes_of(ltrb.float(), net.stride).permute(0, 2, 3, 1)
    r = ltrb.shape[-1]
    j = ((targets[:, 0] / net.stride).round() + (r - 1) // 2).clamp(0, r - 1).long()
    i = ((targets[:, 1] / net.stride).round() + (r - 1) // 2).clamp(0, r - 1).long()
    pred = boxes[torch.arange(n), i, j][keep]
    truth = corners(targets)[keep]
    centre = (pred[:, :2] + pred[:, 2:]) / 2
    sized = torch.cat([centre - targets[keep, 2:] / 2, centre + targets[keep, 2:] / 2], 1)
    iou, _ = iou_and_giou(pred, truth)
    iou_sized, _ = iou_and_giou(sized, truth)
    w_ratio = (pred[:, 2] - pred[:, 0]) / targets[keep, 2]
    h_ratio = (pred[:, 3] - pred[:, 1]) / targets[keep, 3]

    def quartiles(t: torch.Tensor) -> list[float]:
        return [round(float(t.quantile(q)), 3) for q in (0.25, 0.5, 0.75)]

    result = {"run": args.run, "data": args.data, "pairs": int(keep.sum()),
              "train_mode": args.train_mode,
              "iou_regressed_quartiles": quartiles(iou),
              "iou_true_size_at_regressed_centre_quartiles": quartiles(iou_sized),
              "width_ratio_quartiles": quartiles(w_ratio),
              "height_ratio_quartiles": quartiles(h_ratio)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
