"""Batch renormalisation (Ioffe, NeurIPS 2017) for the tracking backbones.

A tracker runs its net in evaluation mode: every crop through batch norm's running averages.
Plain batch norm trains on each batch's own statistics, so the net the tracker runs is not
the net that was trained; on SiamFC's training pairs the loss of the same weights was 0.24-0.43
as trained and 0.59-3.00 as tracked (benchmarks/diagnostics/otb_norm_gap.py,
docs/research/tracking.md).
Renormalisation trains the forward pass through the running averages, corrected towards the
batch by r = sd_batch / sd_running and d = (mu_batch - mu_running) / sd_running held as
constants (clipped to [1/3, 3] and [-5, 5]): gradients flow as through the batch's statistics,
and what the tracker sees is what was trained. In evaluation mode (and while the averages are
recomputed, momentum None) it is plain batch norm, with the same state as BatchNorm2d, so runs
saved with either load into either.
"""

from __future__ import annotations

import torch
from torch import nn

R_MAX, D_MAX = 3.0, 5.0


class BatchRenorm2d(nn.BatchNorm2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.momentum is None:
            return super().forward(x)
        # batch norm's own fused kernel (as fast as plain batch norm; it also moves the running
        # averages), then the correction: ((x - mu) / sd * r + d) w + b = y r + b (1 - r) + w d
        # for y = (x - mu) / sd * w + b. The averages from before this batch set r and d.
        running_mean = self.running_mean.clone()
        running_sd = (self.running_var + self.eps).sqrt()
        y, mu, inv_sd = torch.native_batch_norm(x, self.weight, self.bias, self.running_mean,
                                                 self.running_var, True, self.momentum, self.eps)
        self.num_batches_tracked += 1
        r = (1 / (inv_sd * running_sd)).detach().clamp(1 / R_MAX, R_MAX)
        d = ((mu - running_mean) / running_sd).detach().clamp(-D_MAX, D_MAX)
        shift = self.bias * (1 - r) + self.weight * d
        return y * r.to(y.dtype)[None, :, None, None] + shift.to(y.dtype)[None, :, None, None]


def renormalise(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d of `module` made a BatchRenorm2d in place (same parameters and
    buffers); returns the module."""
    for m in module.modules():
        if type(m) is nn.BatchNorm2d and m.affine and m.track_running_stats:
            m.__class__ = BatchRenorm2d
    return module
