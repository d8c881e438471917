"""The classic Siamese objective: binary cross-entropy on the pair head's output."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import LOSSES, TupleLoss


class PairBCELoss(TupleLoss):
    """BCE(sigmoid(head(|h_i - h_j|)), y) averaged over the pairs; y = 1 for the same class."""

    tuple_kind = "pair"

    def __init__(self, head: torch.nn.Module) -> None:
        super().__init__()
        if head is None:
            raise ValueError("the pair loss needs the model's PairHead")
        self.head = head

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, tuples) -> torch.Tensor:
        i, j, y = tuples
        logits = self.head(emb[i], emb[j])
        return F.binary_cross_entropy_with_logits(logits, y.to(logits.dtype))


@LOSSES.register("pair")
def _pair(margin: float, distance: str, head, scale: float,
          normalize: bool, **_) -> PairBCELoss:
    return PairBCELoss(head)
