"""Prototypical loss (Snell et al. 2017) over a P x K batch.

Each class's K samples are split in half: the first half makes the class prototype (mean
embedding), the second half are queries classified among the P prototypes by softmax over
-scale * distance. This trains exactly what few-shot classification and identification do.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.siamese import pairwise_distance
from .base import LOSSES, TupleLoss


class PrototypicalLoss(TupleLoss):
    tuple_kind = "batch"

    def __init__(self, distance: str = "euclidean", scale: float = 10.0) -> None:
        super().__init__()
        self.distance = distance
        self.scale = scale

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, tuples=None) -> torch.Tensor:
        classes = torch.unique(labels)
        support, queries, q_target = [], [], []
        for c in classes:
            idx = torch.nonzero(labels == c).squeeze(1)
            if len(idx) < 2:
                continue
            half = len(idx) // 2
            support.append(emb[idx[:half]].mean(0))
            queries.append(emb[idx[half:]])
            q_target.append(torch.full((len(idx) - half,), len(support) - 1))
        protos = torch.stack(support)
        q = torch.cat(queries)
        logits = -self.scale * pairwise_distance(q, protos, self.distance)
        return F.cross_entropy(logits, torch.cat(q_target).to(emb.device))


@LOSSES.register("proto")
def _proto(margin: float, distance: str, head, scale: float,
           normalize: bool, **_) -> PrototypicalLoss:
    return PrototypicalLoss(distance, scale)
