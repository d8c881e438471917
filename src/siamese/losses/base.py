"""The loss contract: forward(embeddings (B, D), labels (B,), tuples) -> scalar.

`tuple_kind` says what the miner must produce: "triplet" -> (anchor, positive, negative) index
tensors; "pair" -> (i, j, y) with y = 1 for same class; "batch" -> nothing (the loss uses the
whole P x K batch). Losses only compute; miners choose what they see.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import Registry

LOSSES = Registry("loss")


class TupleLoss(nn.Module):
    tuple_kind = "triplet"


def mean_nonzero(losses: torch.Tensor) -> torch.Tensor:
    """Average over the tuples that still contribute (Hermans et al. 2017, 'batch all').

    Easy tuples (loss 0) would otherwise dilute the gradient as training progresses.
    Returns 0 (with a graph) when no tuple contributes.
    """
    active = losses > 0
    if not active.any():
        return losses.sum() * 0
    return losses[active].mean()


def create_loss(name: str, *, margin: float, distance: str, head: nn.Module | None = None,
                scale: float = 10.0, normalize: bool = True, classes: int = 0, dim: int = 0,
                subcenters: int = 1) -> TupleLoss:
    """normalize: whether the model L2-normalises its embeddings (how a distance maps to a
    similarity in [0, 1]); classes, dim, subcenters: for the losses with a weight per training
    class (arcface, cosface)."""
    return LOSSES.create(name, margin=margin, distance=distance, head=head, scale=scale,
                         normalize=normalize, classes=classes, dim=dim, subcenters=subcenters)
