"""Contrastive loss (Hadsell, Chopra, LeCun 2006)."""

from __future__ import annotations

import torch

from ..models.siamese import distance as row_distance
from .base import LOSSES, TupleLoss, mean_nonzero


class ContrastiveLoss(TupleLoss):
    """y * d^2 / 2 + (1 - y) * max(0, margin - d)^2 / 2 per pair, d the Euclidean distance
    (or 1 - cosine); averaged over the pairs with non-zero loss."""

    tuple_kind = "pair"

    def __init__(self, margin: float = 1.0, distance: str = "euclidean") -> None:
        super().__init__()
        self.margin = margin
        self.distance = distance

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, tuples) -> torch.Tensor:
        i, j, y = tuples
        d = row_distance(emb[i], emb[j], self.distance)
        if self.distance == "euclidean":
            d = (d + 1e-12).sqrt()  # the squared distance -> the distance
        y = y.to(d.dtype)
        losses = 0.5 * (y * d.pow(2) + (1 - y) * (self.margin - d).clamp_min(0).pow(2))
        return mean_nonzero(losses)


@LOSSES.register("contrastive")
def _contrastive(margin: float, distance: str, head, scale: float,
                 normalize: bool, **_) -> ContrastiveLoss:
    return ContrastiveLoss(margin, distance)
