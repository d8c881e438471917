"""Build a SiameseNet from the resolved config."""

from __future__ import annotations

import torch

from ..config import Config
from .encoders import create_encoder, default_encoder
from .siamese import SiameseNet


def scorer_for(cfg: Config) -> str:
    """The pair head scores pairs when it was trained (loss 'pair'); otherwise the distance."""
    return "head" if cfg.loss.name == "pair" else cfg.loss.distance


def build_net(cfg: Config, input_shape: list[int], kind: str) -> SiameseNet:
    name = cfg.model.encoder if cfg.model.encoder != "auto" else default_encoder(kind)
    encoder = create_encoder(name, tuple(input_shape), cfg.model.width)
    net = SiameseNet(encoder, cfg.model.embedding_dim, cfg.model.normalize,
                     cfg.model.head_hidden, scorer_for(cfg))
    if kind == "image":
        # Channels-last convolutions are about 25% faster per training step on CPU (oneDNN),
        # measured on conv4 at 28 px: 175 vs 240 ms per 240-image forward + backward.
        net = net.to(memory_format=torch.channels_last)
    return net
