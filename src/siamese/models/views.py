"""An embedding averaged over fixed distortions of the input ("views"), folded into the model.

A model trained with [augment] distortions is not invariant to them: averaging the embeddings
of a few distorted copies of an image (test-time augmentation) scores better than one pass
(Omniglot one-shot: +1.3 to +2.0 points, 3-seed means). `model.views = K` makes that average
the model's own embedding, so that what a user serves, exports to ONNX and indexes is the
better one:

    embedding(x) = normalise( mean( embed(x), embed(T_1 x), ..., embed(T_K x) ) )

T_1..T_K are K affine maps drawn once from the run's [augment] ranges with a fixed seed. They
are the same for every image, so an image's embedding never depends on what else is in its
batch, and the first K of N views are the K views (a model with views = 8 scored with 32
averages a superset of its own). The cost is K + 1 forward passes per input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import AugmentConfig
from ..data.transforms import affine_params
from ..errors import ConfigError

VIEW_SEED = 0


def check_views(views: int, kind: str) -> None:
    """Training: model.views only means something for images."""
    if views and kind != "image":
        raise ConfigError(f"model.views = {views} averages distortions of images; {kind} data "
                          "has none: set model.views = 0")


def view_thetas(k: int, augment: AugmentConfig) -> torch.Tensor:
    """The first k fixed distortions, (k, 2, 3) affine maps (a prefix of any longer list)."""
    gen = torch.Generator().manual_seed(VIEW_SEED)
    if k <= 0:
        return torch.zeros(0, 2, 3)
    return torch.cat([affine_params(1, augment, gen) for _ in range(k)])


def view_grids(thetas: torch.Tensor, input_shape) -> torch.Tensor:
    """(k, 2, 3) maps -> (k, H, W, 2) sampling grids for images of `input_shape` (C, H, W)."""
    c, h, w = input_shape
    return torch.cat([F.affine_grid(t[None], [1, c, h, w], align_corners=False)
                      for t in thetas]) if len(thetas) else torch.zeros(0, h, w, 2)


def average_views(embed, x: torch.Tensor, grids: torch.Tensor, normalize: bool) -> torch.Tensor:
    """embed(x) averaged with embed of each distorted copy (one grid per view), L2-normalised
    again if the model normalises. embed: (B, C, H, W) -> (B, D)."""
    emb = embed(x)
    if len(grids) == 0:
        return emb
    for i in range(grids.shape[0]):
        copy = F.grid_sample(x, grids[i][None].expand(x.shape[0], -1, -1, -1).to(x.dtype),
                             mode="bilinear", padding_mode="border", align_corners=False)
        emb = emb + embed(copy)
    emb = emb / (len(grids) + 1)
    return F.normalize(emb, dim=1) if normalize else emb


class ViewAveraged(nn.Module):
    """net.embed averaged over fixed views: what `siamese export` writes for a model with
    model.views > 0 (ONNX GridSample does the distortions)."""

    def __init__(self, net, grids: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        self.register_buffer("grids", grids)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - the ONNX input name
        return average_views(self.net.embed, input, self.grids, self.net.normalize)
