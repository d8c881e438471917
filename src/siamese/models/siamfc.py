"""SiamFC (Bertinetto et al., 2016): a fully-convolutional Siamese network for tracking.

    exemplar z (127 x 127) ──► f ──► (C, 6, 6) ──┐
                              (shared)           ├─► cross-correlation ─► a x + b ─► response
    search   x (255 x 255) ──► f ──► (C, 22, 22) ┘                        (17 x 17 logits)

One backbone embeds both crops (the same `SiameseNet` idea: two branches, one encoder); the
exemplar's feature map is the kernel slid over the search's (a grouped convolution does a
batch of pairs at once); a learned scale and bias turn the correlation into logits. The
backbones have no padding, so that a shift of the input is a shift of the output (the
response peak moves with the target) and a crop's border does not tell the net where the
centre is. Both have a total stride of 8.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .encoders import ENCODERS

TRACKING_ENCODERS = {"siamfc_alexnet", "siamfc_small"}


def _fully_convolutional(body: nn.Sequential, channels: int) -> nn.Sequential:
    body.num_features, body.stride, body.fully_convolutional = channels, 8, True
    return body


def _conv(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1,
          last: bool = False) -> list[nn.Module]:
    if last:  # the embedding: no batch norm or ReLU on the correlated features
        return [nn.Conv2d(cin, cout, k, stride, groups=groups)]
    return [nn.Conv2d(cin, cout, k, stride, groups=groups, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


@ENCODERS.register("siamfc_alexnet")
def siamfc_alexnet(input_shape: tuple[int, ...] = (3, 127, 127), width: int = 96) -> nn.Module:
    """SiamFC's AlexNet-style backbone (width 96 = the paper's 96-256-384-384-256 channels,
    groups of 2 as in AlexNet). About 4.7 GFLOP per 255-px search crop."""
    w = width
    c1, c2, c3 = w, 8 * (w * 8 // 3 // 8), 4 * w
    c2 += c2 % 2
    return _fully_convolutional(nn.Sequential(
        *_conv(input_shape[0], c1, 11, 2), nn.MaxPool2d(3, 2),
        *_conv(c1, c2, 5, groups=2), nn.MaxPool2d(3, 2),
        *_conv(c2, c3, 3), *_conv(c3, c3, 3, groups=2),
        *_conv(c3, c2, 3, groups=2, last=True)), c2)


@ENCODERS.register("siamfc_small")
def siamfc_small(input_shape: tuple[int, ...] = (3, 127, 127), width: int = 32) -> nn.Module:
    """A backbone sized for 2 CPU cores: 5x5/2 conv, pool, 3x3 conv, pool, three 3x3 convs
    (width, 2w, 4w, 4w, 4w channels). At width 32 about 0.7 GFLOP per 255-px search crop
    (a seventh of the AlexNet's); exemplar 127 px -> 7 x 7, search 255 px -> 23 x 23."""
    w = width
    return _fully_convolutional(nn.Sequential(
        *_conv(input_shape[0], w, 5, 2), nn.MaxPool2d(3, 2),
        *_conv(w, 2 * w, 3), nn.MaxPool2d(3, 2),
        *_conv(2 * w, 4 * w, 3), *_conv(4 * w, 4 * w, 3),
        *_conv(4 * w, 4 * w, 3, last=True)), 4 * w)


def cross_correlate(z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Each exemplar map slid over its own search map: (B, C, h, w) and (B, C, H, W), or one
    exemplar (1, C, h, w) over many search maps -> (B, 1, H - h + 1, W - w + 1). One grouped
    convolution for the whole batch."""
    if z.shape[0] == 1 and x.shape[0] > 1:
        return F.conv2d(x, z)
    b, c, hh, ww = x.shape
    out = F.conv2d(x.reshape(1, b * c, hh, ww), z, groups=b)
    return out.reshape(b, 1, out.shape[-2], out.shape[-1])


class SiamFC(nn.Module):
    """backbone + cross-correlation + learned scale and bias."""

    def __init__(self, backbone: nn.Module, exemplar: int = 127, search: int = 255,
                 shared_norm: bool = False) -> None:
        super().__init__()
        # training only: the exemplars normalised by the search batch's statistics of this
        # step instead of the running averages (track.norm = "shared"; see forward)
        self.shared_norm = shared_norm
        if not getattr(backbone, "fully_convolutional", False):
            raise ValueError("SiamFC needs a fully-convolutional backbone")
        self.backbone = backbone
        self.exemplar, self.search = exemplar, search
        self.stride = backbone.stride
        # SiamFC's 1e-3 to start: correlations of unnormalised maps are large numbers. Learned
        # as its log: a step of Adam moves a parameter by about lr whatever its size, which
        # for a parameter of 1e-3 is a jump of its whole size; the scale then flipped sign in
        # training now and then, and those runs tracked worst (0.13 and 0.02 success AUC)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1e-3)))
        self.bias = nn.Parameter(torch.tensor(0.0))
        with torch.no_grad():
            was = self.training
            self.eval()
            try:
                z = self.backbone(torch.zeros(1, 3, exemplar, exemplar))
                x = self.backbone(torch.zeros(1, 3, search, search))
            except RuntimeError:
                raise ConfigError(f"track.exemplar {exemplar} px is too small for this "
                                  "encoder; give 87 or more (127: SiamFC's)") from None
            finally:
                self.train(was)
        self.response_size = x.shape[-1] - z.shape[-1] + 1

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) crops, pixel values in [0, 255] -> feature maps."""
        return self.backbone(crops / 255.0)

    @property
    def scale(self) -> torch.Tensor:
        return self.log_scale.exp()

    def respond(self, z_feat: torch.Tensor, x_feat: torch.Tensor) -> torch.Tensor:
        return cross_correlate(z_feat, x_feat) * self.scale + self.bias

    def _load_from_state_dict(self, state, prefix, *args, **kwargs):
        # runs saved before the scale was learned as its log hold "scale" itself
        old = state.pop(prefix + "scale", None)
        if old is not None and prefix + "log_scale" not in state:
            if float(old) <= 0:
                raise RuntimeError("a negative response scale, saved before it was kept "
                                   "positive")
            state[prefix + "log_scale"] = old.log()
        super()._load_from_state_dict(state, prefix, *args, **kwargs)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 127, 127) exemplars, (B, 3, 255, 255) search crops -> (B, 1, R, R) logits."""
        if self.training and self.shared_norm:
            return self._forward_shared(z, x)
        x_feat = self.embed(x)
        if not self.training:
            return self.respond(self.embed(z), x_feat)
        norms = [m for m in self.backbone.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:  # the exemplar through the running statistics, as when tracking
            m.eval()
        try:
            z_feat = self.embed(z)
        finally:
            for m in norms:
                m.train()
        return self.respond(z_feat, x_feat)

    def _forward_shared(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Training with track.norm = "shared": each batch norm normalises the search crops by
        their batch's statistics (and moves the running averages, as plain batch norm) and the
        exemplars by the SAME statistics, held as constants. The running averages trail the
        weights by about 1 / momentum steps: with plain batch norm an exemplar is normalised
        as by the net of some steps before, which the net seems to learn to count on (its
        loss rises as the rate falls at the end; docs/research/tracking.md). Held out it tracked
        worse, so it is an option, not the default."""
        z, x = z / 255.0, x / 255.0
        for m in self.backbone:
            if not isinstance(m, nn.modules.batchnorm._BatchNorm):
                z, x = m(z), m(x)
                continue
            m.num_batches_tracked += 1
            momentum = m.momentum if m.momentum is not None else 1 / float(m.num_batches_tracked)
            x, mu, inv_sd = torch.native_batch_norm(x, m.weight, m.bias, m.running_mean,
                                                     m.running_var, True, momentum, m.eps)
            gain = inv_sd.detach() * m.weight
            shift = m.bias - mu.detach() * gain
            z = z * gain.to(z.dtype)[None, :, None, None] + shift.to(z.dtype)[None, :, None, None]
        return self.respond(z, x)
