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

HEAD_GRAPH_FILE = "head_graph.json"  # an imported head's graph in the run folder


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


class ImportedHead(nn.Module):
    """A tracker's head imported whole (track.pretrained_head; NanoTrack v2's head.onnx): the
    exemplar's and the search crop's feature maps -> per response cell a class logit and the
    distances l, t, r, b to the box's sides in search-crop pixels, as the box head gives them
    (models/siambox.py), so that SiamBoxTracker and the box loss read it alike.

    The file's outputs are told apart by their channels: 2 (background, target: a softmax;
    the logit is their difference) or 1 (a logit), and 4 (distances). pysot-style heads put
    cell i at (i - R // 2) x stride from the crop's centre; the project's grid is centred
    ((i - (R - 1) / 2) x stride), so on an even map the distances are shifted half a stride.
    """

    def __init__(self, spec: dict, stride: int, z: torch.Tensor, x: torch.Tensor) -> None:
        super().__init__()
        self.graph = GraphModule(spec)
        try:
            with torch.no_grad():
                outs = self.graph(z, x)
        except Exception as e:
            raise ConfigError(f"the imported head cannot take the backbone's feature maps "
                              f"{list(z.shape[1:])} and {list(x.shape[1:])} ({type(e).__name__}"
                              f": {str(e)[:60]}); give the head trained with that backbone"
                              ) from None
        channels = [int(o.shape[1]) if o.ndim == 4 else -1 for o in outs]
        cls = [i for i, c in enumerate(channels) if c in (1, 2)]
        box = [i for i, c in enumerate(channels) if c == 4]
        if len(cls) != 1 or len(box) != 1:
            raise ConfigError(f"the imported head's outputs have {channels} channels; a "
                              "tracker's head gives a class map (1 or 2 channels) and a box "
                              "map (4: l, t, r, b)")
        self.cls_at, self.box_at = cls[0], box[0]
        self.response_size = int(outs[0].shape[-1])
        r = self.response_size
        delta = (r // 2 - (r - 1) / 2) * stride
        self.register_buffer("shift", torch.tensor([delta, delta, -delta, -delta]).view(
            1, 4, 1, 1), persistent=False)

    def forward(self, z: torch.Tensor, x: torch.Tensor):
        outs = self.graph(z, x)
        c = outs[self.cls_at]
        logit = c[:, 1:2] - c[:, 0:1] if c.shape[1] == 2 else c
        return logit, outs[self.box_at] + self.shift


class ImportedTracker(nn.Module):
    """An imported backbone and an imported head (track.head "imported"): the interface of
    SiamFC and SiamBox (embed, respond, stride, response_size), `respond` -> (class logits,
    distances, None: no quality map)."""

    def __init__(self, backbone: ImportedBackbone, head_spec: dict, exemplar: int = 127,
                 search: int = 255) -> None:
        super().__init__()
        self.backbone, self.exemplar, self.search = backbone, exemplar, search
        self.stride = backbone.stride
        with torch.no_grad():
            z = backbone(torch.zeros(1, 3, exemplar, exemplar))
            x = backbone(torch.zeros(1, 3, search, search))
        self.head = ImportedHead(head_spec, self.stride, z, x)
        self.response_size = self.head.response_size

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) crops, pixel values in [0, 255] -> feature maps."""
        return self.backbone(crops / 255.0)

    def respond(self, z_feat: torch.Tensor, x_feat: torch.Tensor):
        return (*self.head(z_feat, x_feat), None)

    def forward(self, z: torch.Tensor, x: torch.Tensor):
        return self.respond(self.embed(z), self.embed(x))
