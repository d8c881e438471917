"""The SiamFC net of a tracking run, built from its config: the one constructor that training
and the tracker share (so neither imports the other)."""

from __future__ import annotations

from ..config import Config
from ..errors import ConfigError
from ..models.encoders import create_encoder
from ..models.renorm import renormalise
from ..models.siambox import SiamBox
from ..models.siamfc import SiamFC


def build_tracker_net(cfg: Config, graph: dict | None = None,
                      head_graph: dict | None = None) -> SiamFC:
    """SiamFC (track.head = "fc"), the box-regressing SiamBox ("box"), or an imported head's
    tracker ("imported"). graph: an imported network's spec (model.encoder "imported", set by
    model.pretrained); head_graph: the head's (track.pretrained_head); their weights zeros
    until loaded."""
    if cfg.model.encoder == "imported":
        from ..pretrained.tracking import ImportedBackbone

        if graph is None:
            raise ConfigError("model.encoder 'imported' is set by model.pretrained (an ONNX "
                              "network); a tracking run needs its encoder_graph.json")
        backbone = ImportedBackbone(graph, cfg.model.pretrained_mean or [0.0] * 3,
                                    cfg.model.pretrained_std or [1.0] * 3,
                                    cfg.model.channel_order or "RGB",
                                    (cfg.track.exemplar, cfg.track.search))
    else:
        backbone = create_encoder(cfg.model.encoder,
                                  (3, cfg.track.exemplar, cfg.track.exemplar), cfg.model.width)
    if cfg.track.head == "imported":
        from ..pretrained.tracking import ImportedTracker

        if head_graph is None or cfg.model.encoder != "imported":
            raise ConfigError("track.head 'imported' is set by track.pretrained_head (an ONNX "
                              "head) over model.pretrained; a tracking run needs its "
                              "head_graph.json")
        return ImportedTracker(backbone, head_graph, cfg.track.exemplar, cfg.track.search)
    if cfg.track.norm == "renorm":
        renormalise(backbone)
    kind = SiamBox if cfg.track.head == "box" else SiamFC
    return kind(backbone, cfg.track.exemplar, cfg.track.search,
                shared_norm=cfg.track.norm == "shared")
