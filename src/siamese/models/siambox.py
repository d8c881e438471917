"""A box-regressing Siamese tracker net (track.head = "box"): SiamFC's backbone, then an
anchor-free head per response cell, as SiamFC++ (Xu et al., 2020), SiamBAN and NanoTrack do.

    exemplar z ──► f ──┬──────────── cross-correlation ─► class logit (SiamFC's map)
                 (shared)│
    search   x ──► f ──┴► adjust ─► depthwise correlation ─► tower ─┬► l, t, r, b: distances
                                    (C maps, 17 x 17)               │  to the box's sides
                                                                    └► quality logit (the
                                                                       cell's box's IoU)

SiamFC's single correlation map can only say WHERE the target is; its size comes from trying
three scales, and on the held-out targets the box shrank to half the truth
(docs/research/tracking.md).
Here every cell also regresses the box around it, so the size is read, not searched. The
class map stays SiamFC's parameter-free correlation and the head reads the backbone's features
detached, so the backbone learns exactly as SiamFC's and the head can only add the box (a first
version gave the class its own depthwise branch and tower, as SiamFC++ does, and trained the
backbone through everything: it found the centre about as often as SiamFC, its boxes were no
better, and a second one with SiamFC's map trained through the head spoiled that map: figures
in docs/research/tracking.md). The regression adjusts the backbone's features by a 1x1 convolution,
correlates them channel by channel (depthwise: C maps instead of one), and a small tower of 3x3
convolutions (GroupNorm: no batch statistics, so training and tracking compute the same)
turns them into the distances and the quality. The backbone and its batch-norm handling are
SiamFC's (the exemplar through the running averages in training, as when tracking).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .siamfc import SiamFC

# the regressed distances start near this many search-crop pixels (a typical target's half
# side: the exemplar is about twice the target, 127 px)
START_DISTANCE = 32.0


def depthwise_correlate(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Each channel of each exemplar map slid over the same channel of its search map:
    (B, C, h, w) and (B, C, H, W), or one exemplar (1, C, h, w) over many search maps ->
    (B, C, H - h + 1, W - w + 1), divided by h * w (a mean, so its size does not grow with
    the exemplar's map)."""
    b, c, hh, ww = x.shape
    if z.shape[0] == 1 and b > 1:
        z = z.expand(b, -1, -1, -1)
    out = F.conv2d(x.reshape(1, b * c, hh, ww), z.reshape(b * c, 1, *z.shape[-2:]),
                   groups=b * c)
    return out.reshape(b, c, out.shape[-2], out.shape[-1]) / (z.shape[-2] * z.shape[-1])


def _tower(channels: int, depth: int = 2) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                   nn.GroupNorm(min(8, channels), channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class BoxHead(nn.Module):
    """Correlated features -> per cell the four distances (l, t, r, b) in search-crop pixels
    and a quality logit (how well the cell's box fits)."""

    def __init__(self, channels: int, hidden: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.z_adjust, self.x_adjust = nn.Conv2d(channels, hidden, 1), nn.Conv2d(channels,
                                                                                 hidden, 1)
        self.tower = _tower(hidden)
        self.reg = nn.Conv2d(hidden, 4, 3, padding=1)
        self.quality = nn.Conv2d(hidden, 1, 3, padding=1)
        # the distances are stride * exp(a * out + b): positive, and a step of the output is
        # a relative change of the box whatever its size (SiamFC++'s form)
        self.reg_gain = nn.Parameter(torch.tensor(1.0))
        for conv in (self.quality, self.reg):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)
        nn.init.constant_(self.reg.bias, math.log(START_DISTANCE / stride))

    def forward(self, z: torch.Tensor, x: torch.Tensor):
        r = self.tower(depthwise_correlate(self.z_adjust(z), self.x_adjust(x)))
        ltrb = self.stride * torch.exp((self.reg_gain * self.reg(r)).clamp(max=8.0))
        return ltrb, self.quality(r)


class SiamBox(SiamFC):
    """SiamFC + the box head: `respond` -> (SiamFC's class logits (B, 1, R, R), distances
    (B, 4, R, R), quality logits (B, 1, R, R))."""

    def __init__(self, backbone: nn.Module, exemplar: int = 127, search: int = 255,
                 shared_norm: bool = False, hidden: int = 64) -> None:
        super().__init__(backbone, exemplar, search, shared_norm)
        self.head = BoxHead(backbone.num_features, hidden, self.stride)

    def respond(self, z_feat: torch.Tensor, x_feat: torch.Tensor):
        # the head reads the backbone's features but does not train them: they learn from
        # the class map alone, as SiamFC's (trained through the head too, the class map of
        # 5 CPU minutes tracked far worse: docs/research/tracking.md)
        return (super().respond(z_feat, x_feat),
                *self.head(z_feat.detach(), x_feat.detach()))


def cell_positions(size: int, stride: int) -> torch.Tensor:
    """(size,) positions of a response map's cells in search-crop pixels from the crop's
    centre: cell (i, j) stands for (grid[j], grid[i])."""
    return (torch.arange(size, dtype=torch.float32) - (size - 1) / 2) * stride


def boxes_of(ltrb: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, 4, R, R) distances -> (B, 4, R, R) boxes x0, y0, x1, y1 in search-crop pixels from
    the crop's centre."""
    grid = cell_positions(ltrb.shape[-1], stride).to(ltrb.device)
    px, py = grid[None, None, :], grid[None, :, None]
    return torch.stack([px - ltrb[:, 0], py - ltrb[:, 1], px + ltrb[:, 2], py + ltrb[:, 3]], 1)
