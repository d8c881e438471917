"""SiamFC's training objective: a logistic loss on every cell of the response map.

A cell is positive (label 1) where the search-crop position it stands for lies within `radius`
pixels of the target's true centre, else negative (0). Positives are few (a disc among 17 x 17
cells), so each map's positives and negatives weigh half of its loss each.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.siambox import cell_positions


def response_labels(size: int, stride: int, radius: float,
                    offsets: torch.Tensor) -> torch.Tensor:
    """(B, 2) target centres relative to the search crop's centre (x, y, in crop pixels) ->
    (B, 1, size, size) labels in {0, 1}. Cell (i, j) stands for the crop position
    ((j - (size - 1) / 2) * stride, (i - (size - 1) / 2) * stride)."""
    grid = cell_positions(size, stride).to(offsets.device)
    dx = grid[None, None, :] - offsets[:, 0, None, None]
    dy = grid[None, :, None] - offsets[:, 1, None, None]
    return ((dx ** 2 + dy ** 2) <= radius ** 2).float()[:, None]


def balanced_logistic_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over maps of the weighted BCE: positives 1/2 of each map's weight, negatives 1/2
    (a map without positives: all its weight on the negatives)."""
    b = logits.shape[0]
    lab = labels.reshape(b, -1)
    pos = lab.sum(1, keepdim=True)
    neg = lab.shape[1] - pos
    w_pos = torch.where(pos > 0, 0.5 / pos.clamp_min(1), 0.0)
    w_neg = torch.where(pos > 0, 0.5, 1.0) / neg.clamp_min(1)
    weights = lab * w_pos + (1 - lab) * w_neg
    losses = F.binary_cross_entropy_with_logits(logits.reshape(b, -1), lab, reduction="none")
    return (losses * weights).sum(1).mean()
