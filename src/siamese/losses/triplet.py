"""Triplet loss (Schroff et al. 2015): max(d(a, p) - d(a, n) + margin, 0)."""

from __future__ import annotations

import torch

from ..models.siamese import distance as row_distance
from .base import LOSSES, TupleLoss, mean_nonzero


class TripletLoss(TupleLoss):
    """d is the squared L2 distance (or 1 - cosine); averaged over the active triplets."""

    tuple_kind = "triplet"

    def __init__(self, margin: float = 0.2, distance: str = "euclidean") -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError("the triplet margin must be > 0")
        self.margin = margin
        self.distance = distance

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, tuples) -> torch.Tensor:
        a, p, n = tuples
        d_ap = row_distance(emb[a], emb[p], self.distance)
        d_an = row_distance(emb[a], emb[n], self.distance)
        return mean_nonzero((d_ap - d_an + self.margin).clamp_min(0))


@LOSSES.register("triplet")
def _triplet(margin: float, distance: str, head, scale: float,
             normalize: bool, **_) -> TripletLoss:
    return TripletLoss(margin, distance)
