"""The SiamFC net of a tracking run, built from its config: the one constructor that training
and the tracker share (so neither imports the other)."""

from __future__ import annotations

from ..config import Config
from ..models.encoders import create_encoder
from ..models.renorm import renormalise
from ..models.siambox import SiamBox
from ..models.siamfc import SiamFC


def build_tracker_net(cfg: Config) -> SiamFC:
    """SiamFC (track.head = "fc") or the box-regressing SiamBox ("box")."""
    backbone = create_encoder(cfg.model.encoder, (3, cfg.track.exemplar, cfg.track.exemplar),
                              cfg.model.width)
    if cfg.track.norm == "renorm":
        renormalise(backbone)
    kind = SiamBox if cfg.track.head == "box" else SiamFC
    return kind(backbone, cfg.track.exemplar, cfg.track.search,
                shared_norm=cfg.track.norm == "shared")
