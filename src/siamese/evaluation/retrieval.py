"""Retrieval metrics with every item as a query against all others: precision@1, R-precision and
MAP@R (Musgrave, Belongie, Lim 2020), where R is the number of other items of the query's class.
"""

from __future__ import annotations

import numpy as np
import torch


def retrieval_metrics(sim: torch.Tensor, labels: np.ndarray) -> dict[str, float]:
    """sim (N, N) similarities of every item to every item (the diagonal is ignored)."""
    labels = torch.as_tensor(np.asarray(labels))
    n = len(labels)
    sim = sim.clone().float()
    sim.fill_diagonal_(-float("inf"))
    r = torch.bincount(labels)[labels] - 1  # other items of the same class
    keep = r > 0
    max_r = int(r.max())
    top = sim.topk(max_r, dim=1).indices  # (N, max_r) best first
    rel = (labels[top] == labels[:, None]).float()
    ranks = torch.arange(1, max_r + 1, dtype=torch.float32)
    within = ranks[None] <= r[:, None]
    rel = rel * within
    p_at_1 = rel[:, 0]
    r_prec = rel.sum(1) / r.clamp_min(1)
    prec_at_i = rel.cumsum(1) / ranks
    map_r = (prec_at_i * rel).sum(1) / r.clamp_min(1)
    return {
        "precision@1": float(p_at_1[keep].mean()),
        "r_precision": float(r_prec[keep].mean()),
        "map@r": float(map_r[keep].mean()),
        "queries": int(keep.sum()),
        "items": int(n),
    }
