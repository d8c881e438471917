"""An imported network as a SiamFC backbone (model.pretrained on a tracking run): the graph cut
at a feature map (NanoTrack v2's backbone, MobileNetV2 at stride 8 or 16), the network's own
input preparation in front of it, and a 1x1 convolution after it that learns which channels to
correlate (the identity to start: untrained, the tracker correlates the network's own
features).

Unlike the project's SiamFC backbones these networks pad their convolutions, so a crop's border
is visible to the features near it; the tracker's cosine window and the training pairs' shifts
of the target off the centre keep the peak honest (SiamRPN++ argued the same for padded
ResNets).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from .graph import GraphModule


class ImportedBackbone(nn.Module):
    """(B, 3, S, S) crops with pixel values in [0, 1] -> (B, C, S / stride, S / stride)."""

    fully_convolutional = True

    def __init__(self, spec: dict, mean: list[float], std: list[float],
                 channel_order: str = "RGB", probe: tuple[int, int] = (127, 255)) -> None:
        super().__init__()
        self.graph = GraphModule(spec)
        self.bgr = channel_order.upper() == "BGR"
        # (x - mean) / std as x * scale + shift, in the graph's channel order
        order = [2, 1, 0] if self.bgr else [0, 1, 2]
        scale = 1 / torch.tensor(std, dtype=torch.float32)
        shift = -torch.tensor(mean, dtype=torch.float32) * scale
        self.register_buffer("order", torch.tensor(order), persistent=False)
        self.register_buffer("scale", scale[order].view(1, -1, 1, 1), persistent=False)
        self.register_buffer("shift", shift[order].view(1, -1, 1, 1), persistent=False)
        small, big = probe
        try:
            with torch.no_grad():
                z = self.graph(torch.zeros(1, 3, small, small))[0]
                x = self.graph(torch.zeros(1, 3, big, big))[0]
        except Exception as e:
            raise ConfigError(f"the imported network cannot take {small}- and {big}-px crops "
                              f"({type(e).__name__}: {str(e)[:70]}); cut it at another "
                              "tensor (model.pretrained_output)") from None
        if z.ndim != 4 or x.shape[-1] <= z.shape[-1]:
            raise ConfigError(f"model.pretrained_output '{spec['outputs'][0]}' gives "
                              f"{list(z.shape)}, not a feature map that grows with the crop; "
                              "tracking needs one: name a convolution's output (e.g. stride8 "
                              "or stride16 of mobilenet_v2_imagenet)")
        self.num_features = int(z.shape[1])
        self.stride = max(1, round((big - small) / (x.shape[-1] - z.shape[-1])))
        self.adjust = nn.Conv2d(self.num_features, self.num_features, 1)
        with torch.no_grad():  # the identity: untrained, the network's own features
            self.adjust.weight.copy_(torch.eye(self.num_features)[:, :, None, None])
            self.adjust.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.index_select(1, self.order)  # (flip is several times slower)
        return self.adjust(self.graph(torch.addcmul(self.shift, x, self.scale))[0])
