"""Batch renormalisation (Ioffe, NeurIPS 2017) for the tracking backbones.

A tracker runs its net in evaluation mode: every crop through batch norm's running averages.
Plain batch norm trains on each batch's own statistics, so the net the tracker runs is not
the net that was trained; on SiamFC's training pairs the loss of the same weights was 0.24-0.43
as trained and 0.59-3.00 as tracked (benchmarks/otb_norm_gap.py, docs/tracking.md).
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
        # statistics in fp32 whatever autocast gives (bf16 and fp16 conv outputs)
        var, mu = torch.var_mean(x.float(), (0, 2, 3), unbiased=False)
        sd, running_sd = (var + self.eps).sqrt(), (self.running_var + self.eps).sqrt()
        r = (sd / running_sd).detach().clamp(1 / R_MAX, R_MAX)
        d = ((mu - self.running_mean) / running_sd).detach().clamp(-D_MAX, D_MAX)
        with torch.no_grad():
            n = x.numel() / x.shape[1]
            self.running_mean.lerp_(mu, self.momentum)
            self.running_var.lerp_(var * n / max(n - 1, 1), self.momentum)
            self.num_batches_tracked += 1
        scale = r / sd * self.weight  # the affine folded in: one multiply-add per element
        shift = self.bias + (d - mu * r / sd) * self.weight
        return (x * scale.to(x.dtype)[None, :, None, None]
                + shift.to(x.dtype)[None, :, None, None])


def renormalise(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d of `module` made a BatchRenorm2d in place (same parameters and
    buffers); returns the module."""
    for m in module.modules():
        if type(m) is nn.BatchNorm2d and m.affine and m.track_running_stats:
            m.__class__ = BatchRenorm2d
    return module
