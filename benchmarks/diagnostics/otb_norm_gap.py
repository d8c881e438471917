"""OTB tracking diagnostic: the loss of the SiamFC net in training mode (search crops
normalised by their batch) against the loss of the same net as the tracker uses it
(evaluation mode: every crop through batch norm's running averages), on fixed training pairs,
along one run of the recipe's optimiser and cosine schedule; beside it, the tracking-mode loss
after the running averages are recomputed over --recompute batches of search crops (a
cumulative average instead of the momentum's last ~10 batches). `--norm` sets track.norm
(default: the recipe's): batch (plain batch norm), shared (the exemplars normalised by the
search batch's statistics in training) or renorm (batch renormalisation, models/renorm.py).

    .venv/bin/python benchmarks/diagnostics/otb_norm_gap.py --steps 1200 --norm batch \
        --out results/otb/norm_gap.json

Trains on the other five sequences than --held-out (Dog1), seed 0. Prints one line per tenth
of the run and writes JSON. Skips (exit 0) when the sequences are missing.
docs/research/tracking.md, "What I noticed".
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # machine, recipe
from common.machine import machine_info
from common.recipe import load_recipe

from siamese.config import config_from_dict, resolve
from siamese.data.otb import list_targets
from siamese.data.tracks import read_tracks
from siamese.tracking.net import build_tracker_net
from siamese.training.track_pairs import TrackPairs
from siamese.training.tracking import TrackingTask
from siamese.training.trainer import cosine_factor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--held-out", default="Dog1")
    ap.add_argument("--config", default="configs/otb.toml")
    ap.add_argument("--data-dir", default=os.environ.get("SIAMESE_DATA", "../shared/data"))
    ap.add_argument("--recompute", type=int, default=50, help="batches; 0: not")
    ap.add_argument("--norm", choices=["batch", "shared", "renorm"],
                    help="track.norm (default: the recipe's): plain batch norm, the exemplars "
                    "by the search batch's statistics, or batch renormalisation")
    ap.add_argument("--out", default="results/otb/norm_gap.json")
    args = ap.parse_args()
    root = Path(args.data_dir) / "otb"
    if not root.is_dir():
        print(f"skipped: {root} not found (set --data-dir or SIAMESE_DATA)")
        return
    recipe = load_recipe(args.config, [f"data.path={json.dumps(str(root))}"])
    sequences = sorted({t.sequence.name for t in list_targets(root)})
    recipe.setdefault("track", {})["sequences"] = [s for s in sequences if s != args.held_out]
    if args.norm:
        recipe["track"]["norm"] = args.norm
    cfg = resolve(config_from_dict(recipe))
    torch.manual_seed(cfg.train.seed)
    b = cfg.train.batch_size
    pairs = TrackPairs(read_tracks(cfg.data.path, cfg.track.sequences), cfg.track,
                       cfg.track.pairs_per_epoch, cfg.train.seed)
    net = build_tracker_net(cfg).to(memory_format=torch.channels_last)
    task = TrackingTask(net, cfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr,
                            weight_decay=cfg.train.weight_decay)
    # fixed batches and the recomputation's: "epochs" no training step draws from
    fixed = [task.prepare(pairs.batch((10**6 + k) * pairs.n, b)) for k in range(8)]

    def tracking_mode_loss() -> float:
        net.eval()
        total = 0.0
        with torch.no_grad():
            for batch in fixed:
                total += float(task.loss(*batch))
        net.train()
        return total / len(fixed)

    def recomputed_loss() -> float:
        """The tracking-mode loss with the running averages recomputed (on a copy)."""
        saved = copy.deepcopy(net.state_dict())
        norms = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average
        with torch.no_grad():
            for k in range(args.recompute):
                net.embed(task.prepare(pairs.batch(2 * 10**6 * pairs.n + k * b, b))[1])
        loss = tracking_mode_loss()
        for m in norms:
            m.momentum = 0.1
        net.load_state_dict(saved)
        return loss

    rows, losses = [], []
    every = max(args.steps // 10, 1)
    for step in range(args.steps):
        lr = cfg.train.lr * cosine_factor(step / args.steps)
        for g in opt.param_groups:
            g["lr"] = lr
        loss = task.step(pairs.batch(step * b, b), torch.Generator())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if (step + 1) % every == 0:
            row = {"step": step + 1, "lr": lr, "training_loss": float(np.mean(losses[-every:])),
                   "tracking_mode_loss": tracking_mode_loss()}
            if args.recompute:
                row["recomputed_tracking_mode_loss"] = recomputed_loss()
            rows.append(row)
            print(f"step {row['step']}: lr {lr:.2e}, training loss {row['training_loss']:.3f}, "
                  f"the same net as tracked (running averages) {row['tracking_mode_loss']:.3f}"
                  + (f", averages recomputed {row['recomputed_tracking_mode_loss']:.3f}"
                     if args.recompute else ""), flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": machine_info(), "recipe": recipe,
                                          "held_out": args.held_out, "norm": cfg.track.norm,
                                          "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
