"""A tracking run's branches as ONNX, and the tracker run by ONNX Runtime from them.

    siamese export RUN                 (a tracking run) writes next to its weights:
    RUN/tracker.backbone.onnx          "crops" (batch, 3, side, side) float32 pixel values
                                       0-255, RGB -> "features" (batch, C, side / stride, ...)
    RUN/tracker.head.onnx              "exemplar", "search" feature maps -> the head's maps:
                                       fc: "logits"; box: "class", "distances", "quality";
                                       imported: "class", "distances"

The side is free (the exemplar's 127 px, the search crop's 255, the re-detection's wider one).
Both files carry the weights' fingerprint; `siamese track RUN --runtime onnxruntime` (and
`TrackingModel.load(run, runtime="onnxruntime")`) refuses files exported from other weights.
The tracker (tracking/tracker.py, box_tracker.py) is the same; only the two network calls
go through ONNX Runtime, which runs these small graphs several times faster than PyTorch's
eager mode on a CPU (docs/tracking.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..artifact import read_card, write_card

BACKBONE_FILE, HEAD_FILE = "tracker.backbone.onnx", "tracker.head.onnx"
OUTPUTS = {"fc": ["logits"], "box": ["class", "distances", "quality"],
           "imported": ["class", "distances"]}


class _Backbone(torch.nn.Module):
    def __init__(self, net) -> None:
        super().__init__()
        self.net = net

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net.embed(crops)


class _Head(torch.nn.Module):
    def __init__(self, net, head: str) -> None:
        super().__init__()
        self.net, self.head = net, head

    def forward(self, exemplar: torch.Tensor, search: torch.Tensor):
        out = self.net.respond(exemplar, search)
        if self.head == "fc":
            return out
        return tuple(o for o in out if o is not None)


def export_tracker(model) -> tuple[Path, Path]:
    """The run's backbone and head as ONNX next to its weights; recorded in its card."""
    from .export import OPSET, _export, require_exporter

    require_exporter()
    run, k = Path(model.run), model.cfg.track
    net = model.net.to("cpu").eval()
    head = k.head
    meta = {"siamese_fingerprint": model.fingerprint, "task": "tracking", "head": head,
            "stride": str(net.stride), "input": "RGB pixel values 0-255"}
    side = torch.export.Dim("side", min=k.exemplar, max=4096)
    backbone, head_file = run / BACKBONE_FILE, run / HEAD_FILE
    with torch.no_grad():
        crops = torch.zeros(2, 3, k.search, k.search)
        _export(_Backbone(net), {"crops": crops}, ["features"], backbone, meta,
                shapes={"crops": {0: torch.export.Dim("batch", min=1, max=256), 2: side,
                                  3: side}})
        z = net.embed(torch.zeros(1, 3, k.exemplar, k.exemplar))
        x = net.embed(torch.rand(2, 3, k.search, k.search) * 255)
        # one exemplar over a batch of search maps (the scales); an imported head's graph
        # fixes its map's size (no re-detection's wider crop: config_tracking.py)
        search = {0: torch.export.Dim("batch", min=1, max=256)}
        if head != "imported":
            search |= {2: torch.export.Dim("rows", min=2, max=512),
                       3: torch.export.Dim("cols", min=2, max=512)}
        _export(_Head(net, head), {"exemplar": z, "search": x}, OUTPUTS[head], head_file,
                meta, shapes={"exemplar": {}, "search": search})
    card = read_card(run)
    card["onnx"] = {"backbone": BACKBONE_FILE, "head": HEAD_FILE, "opset": OPSET,
                    "fingerprint": model.fingerprint, "torch": torch.__version__,
                    "outputs": OUTPUTS[head]}
    write_card(run, card)
    model.card = card
    return backbone, head_file


class OnnxTrackerNet:
    """A tracking run's exported branches under the net's interface that the trackers use
    (embed, respond, stride, response_size); tensors in and out, computed by ONNX Runtime."""

    def __init__(self, run: Path, fingerprint: str, net, head: str) -> None:
        from .onnx_runtime import open_session

        self.sessions = [open_session(run / name, fingerprint)
                         for name in (BACKBONE_FILE, HEAD_FILE)]
        self.head = head
        self.stride, self.response_size = net.stride, net.response_size
        self.exemplar, self.search = net.exemplar, net.search

    def eval(self) -> OnnxTrackerNet:
        return self

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        x = np.ascontiguousarray(crops.numpy(), dtype=np.float32)
        return torch.from_numpy(self.sessions[0].run(None, {"crops": x})[0])

    def respond(self, z_feat: torch.Tensor, x_feat: torch.Tensor):
        out = self.sessions[1].run(None, {"exemplar": z_feat.numpy(), "search": x_feat.numpy()})
        out = [torch.from_numpy(o) for o in out]
        if self.head == "fc":
            return out[0]
        return (*out, None) if self.head == "imported" else tuple(out)
