"""Additive-margin softmax losses, the standard objective of speaker and face verification:
a classifier over the training classes whose logits are cosines between the embedding and a
learned weight per class, with a margin on the true class's cosine, scaled by s.

- `arcface` (AAM-softmax, Deng et al. 2019): cos(theta_y + m) for the true class;
- `cosface` (AM-softmax / CosFace, Wang et al. 2018): cos(theta_y) - m.

With `subcenters` K > 1 (Deng et al. 2020) each class has K weights and its cosine is the
largest of them, so that noisy or multi-modal classes need not collapse to one direction. The
weights exist for training only: they are saved with the checkpoint, never in the model, and
new classes need none (the embedding is what is kept).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import LOSSES, TupleLoss


class MarginSoftmaxLoss(TupleLoss):
    tuple_kind = "batch"

    def __init__(self, classes: int, dim: int, margin: float, scale: float, kind: str,
                 subcenters: int = 1) -> None:
        super().__init__()
        if classes < 2 or dim < 1:
            raise ValueError(f"{kind} needs the number of training classes and the embedding "
                             "size")
        self.classes, self.k, self.kind = classes, subcenters, kind
        self.margin, self.scale = margin, scale
        self.weight = nn.Parameter(torch.randn(classes * subcenters, dim) / math.sqrt(dim))

    def cosines(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, D) -> (B, classes): the cosine to each class (its closest sub-center)."""
        cos = F.normalize(emb, dim=1) @ F.normalize(self.weight, dim=1).T
        return cos.view(len(emb), self.classes, self.k).amax(-1)

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, tuples) -> torch.Tensor:
        cos = self.cosines(emb).clamp(-1 + 1e-7, 1 - 1e-7)
        target = cos.gather(1, labels[:, None])
        if self.kind == "arcface":
            m = self.margin
            # cos(theta + m) while theta + m <= pi; beyond it the curve is continued linearly
            # (keeps the logit decreasing in theta: InsightFace's "easy margin" = False).
            shifted = target * math.cos(m) - (1 - target.pow(2)).sqrt() * math.sin(m)
            target = torch.where(target > math.cos(math.pi - m), shifted,
                                 target - math.sin(math.pi - m) * m)
        else:
            target = target - self.margin
        logits = cos.scatter(1, labels[:, None], target)
        return F.cross_entropy(self.scale * logits, labels)


@LOSSES.register("arcface")
def _arcface(margin: float, scale: float, classes: int = 0, dim: int = 0, subcenters: int = 1,
             **_) -> MarginSoftmaxLoss:
    return MarginSoftmaxLoss(classes, dim, margin, scale, "arcface", subcenters)


@LOSSES.register("cosface")
def _cosface(margin: float, scale: float, classes: int = 0, dim: int = 0, subcenters: int = 1,
             **_) -> MarginSoftmaxLoss:
    return MarginSoftmaxLoss(classes, dim, margin, scale, "cosface", subcenters)
