"""Random affine augmentation of image batches (rotation, shear, scale, translation).

Applied on whole batches with one `affine_grid` + `grid_sample`, which is far cheaper on CPU than
a per-image PIL pipeline. Borders are replicated so that backgrounds stay background.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..config import AugmentConfig


def affine_params(n: int, cfg: AugmentConfig, gen: torch.Generator) -> torch.Tensor:
    """n random affine maps (rotation, shear, scale, translation) as (n, 2, 3) thetas."""

    def uniform(limit: float) -> torch.Tensor:
        return (torch.rand(n, generator=gen) * 2 - 1) * limit

    angle = uniform(math.radians(cfg.rotate))
    shear = uniform(cfg.shear)
    scale = 1 + uniform(cfg.scale)
    tx, ty = uniform(cfg.translate * 2), uniform(cfg.translate * 2)  # grid units span 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    # theta maps output coordinates to input coordinates: rotation @ shear, divided by scale.
    a11 = cos / scale
    a12 = (cos * shear - sin) / scale
    a21 = sin / scale
    a22 = (sin * shear + cos) / scale
    return torch.stack([torch.stack([a11, a12, tx], 1), torch.stack([a21, a22, ty], 1)], 1)


def apply_affine(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) images, (B, 2, 3) maps -> the distorted images, borders replicated."""
    grid = F.affine_grid(theta.to(x.dtype).to(x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_affine(x: torch.Tensor, cfg: AugmentConfig, gen: torch.Generator,
                  offset: int = 0, total: int | None = None) -> torch.Tensor:
    """x: (B, C, H, W) -> the same shape, each image with its own random affine distortion.

    offset, total: x is rows offset..offset+B of a batch of `total` images (one rank's share of
    a global batch): the distortions are drawn for all `total` and this share takes its own,
    so that how a batch is split never changes what an image gets.
    """
    b = x.shape[0]
    theta = affine_params(b if total is None else total, cfg, gen)
    return apply_affine(x, theta[offset:offset + b])


def add_transformed_classes(x: torch.Tensor, y, classes: list[str],
                            groups: list[str] | None = None, flips: bool = False):
    """Each class rotated by 90, 180 and 270 degrees becomes a new class (4x the classes); with
    `flips`, the mirror images of all four too (8x). A new class joins the transformed copy of
    its group (e.g. 'Greek@rot90')."""
    import numpy as np

    from .lazy import ImageFiles

    variants = [(r, False) for r in range(4)] + ([(r, True) for r in range(4)] if flips else [])
    xs, ys, names = [], [], []
    new_groups: list[str] | None = None if groups is None else []
    n = len(classes)
    for v, (r, flip) in enumerate(variants):
        if not isinstance(x, ImageFiles):
            xt = torch.flip(x, dims=(3,)) if flip else x
            xs.append(torch.rot90(xt, r, dims=(2, 3)) if r else xt)
        ys.append(y + v * n)
        tag = ("@flip" if flip else "") + (f"@rot{90 * r}" if r else "")
        names += [f"{c}{tag}" for c in classes]
        if new_groups is not None:
            new_groups += [f"{g}{tag}" for g in groups]
    if isinstance(x, ImageFiles):  # the same samples, turned when read
        return x.with_variants(len(variants)), np.concatenate(ys), names, new_groups
    return torch.cat(xs), np.concatenate(ys), names, new_groups
