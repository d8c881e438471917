"""The box head's training objective (track.head = "box", models/siambox.py).

A pair's target is its box in the search crop: centre (dx, dy) from the crop's centre and size
(w, h), in crop pixels. Per response cell:
- class: SiamFC's (losses/response.py): positive within `radius` px of the centre, the
  balanced logistic loss over the map;
- box: on the cells in the box's central half (|x - dx| <= w/4 and |y - dy| <= h/4, at least
  half a stride each way, so even a small target has its nearest cell), 1 - GIoU between the
  cell's regressed box and the truth;
- quality: on the same cells, the logistic loss against the IoU of the cell's box with the
  truth (held as a constant), so that class x quality ranks the cells whose boxes fit.
A pair whose target is not in the crop (a negative pair) has no cell to fit: only its class
term counts. The three terms are summed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.siambox import boxes_of, cell_positions
from .response import balanced_logistic_loss, response_labels


def box_labels(size: int, stride: int, targets: torch.Tensor) -> torch.Tensor:
    """(B, 4) targets (dx, dy, w, h in crop pixels) -> (B, 1, size, size) in {0, 1}: the
    cells whose box is trained (the central half of the target)."""
    grid = cell_positions(size, stride).to(targets.device)
    half = stride / 2
    rx = (targets[:, 2] / 4).clamp_min(half)[:, None, None]
    ry = (targets[:, 3] / 4).clamp_min(half)[:, None, None]
    inside_x = (grid[None, None, :] - targets[:, 0, None, None]).abs() <= rx
    inside_y = (grid[None, :, None] - targets[:, 1, None, None]).abs() <= ry
    return (inside_x & inside_y).float()[:, None]


def corners(targets: torch.Tensor) -> torch.Tensor:
    """(..., 4) dx, dy, w, h -> (..., 4) x0, y0, x1, y1."""
    c, s = targets[..., :2], targets[..., 2:] / 2
    return torch.cat([c - s, c + s], -1)


def iou_and_giou(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 4) boxes x0, y0, x1, y1 (each with x1 >= x0, y1 >= y0) -> (N,) IoU, (N,) GIoU."""
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lo, hi = torch.maximum(a[:, :2], b[:, :2]), torch.minimum(a[:, 2:], b[:, 2:])
    inter = (hi - lo).clamp_min(0).prod(1)
    union = area_a + area_b - inter
    iou = inter / union.clamp_min(1e-6)
    hull = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).prod(1)
    return iou, iou - (hull - union) / hull.clamp_min(1e-6)


def box_loss(cls: torch.Tensor, ltrb: torch.Tensor, quality: torch.Tensor | None,
             targets: torch.Tensor, stride: int, radius: float) -> torch.Tensor:
    """The head's outputs for B pairs ((B, 1, R, R), (B, 4, R, R), (B, 1, R, R) or None: an
    imported head without a quality map) and their (B, 4) targets -> the summed class, box
    and quality losses (see the module's docstring)."""
    size = cls.shape[-1]
    loss = balanced_logistic_loss(cls, response_labels(size, stride, radius, targets[:, :2]))
    pos = box_labels(size, stride, targets)[:, 0] > 0
    if not pos.any():  # every parameter in the graph (DDP)
        return loss + 0 * (ltrb.sum() + (0 if quality is None else quality.sum()))
    pred = boxes_of(ltrb, stride).permute(0, 2, 3, 1)[pos]  # (P, 4)
    truth = corners(targets)[:, None, None, :].expand(-1, *pos.shape[1:], -1)[pos]
    iou, giou = iou_and_giou(pred, truth)
    loss = loss + (1 - giou).mean()
    if quality is None:
        return loss
    q = quality[:, 0][pos]
    return loss + F.binary_cross_entropy_with_logits(q, iou.detach().clamp(0, 1))
