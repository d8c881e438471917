"""Build a SiameseNet from the resolved config."""

from __future__ import annotations

import torch

from ..config import Config
from ..errors import ConfigError
from .audio import build_audio_encoder
from .encoders import create_encoder, default_encoder
from .siamese import SiameseNet
from .siamfc import TRACKING_ENCODERS
from .twin import TwinRegressor


def scorer_for(cfg: Config) -> str:
    """The pair head scores pairs when it was trained (loss 'pair'); otherwise the distance."""
    return "head" if cfg.loss.name == "pair" else cfg.loss.distance


def build_net(cfg: Config, input_shape: list[int], kind: str,
              anchors: int = 0, graph: dict | None = None) -> SiameseNet | TwinRegressor:
    """train.task regression: a TwinRegressor holding `anchors` training rows (its embeddings
    not normalised: they feed the difference head, not a distance). graph: an imported
    network's spec (model.encoder "imported": pretrained/graph.py), its weights zeros until
    loaded."""
    name = cfg.model.encoder if cfg.model.encoder != "auto" else default_encoder(kind)
    if name == "imported":
        from ..pretrained.encoder import ImportedEncoder

        if graph is None:
            raise ConfigError("model.encoder 'imported' is set by model.pretrained (an ONNX "
                              "network); give model.pretrained, or choose another encoder")
        encoder = ImportedEncoder(graph, tuple(input_shape), cfg.model.channel_order or "RGB")
    elif name == "speech_embedding":  # Google's speech embedding, frozen, pooled
        from ..pretrained.speech import SpeechEmbeddingEncoder

        if graph is None or kind != "audio":
            raise ConfigError("model.encoder 'speech_embedding' is set by model.pretrained "
                              "speech_embedding on recordings; give that, or choose another "
                              "encoder")
        encoder = SpeechEmbeddingEncoder(graph, cfg.data.sample_rate)
    elif name == "ge2e":  # Resemblyzer's speaker encoder (models/ge2e.py)
        from .ge2e import GE2E

        if kind != "audio":
            raise ConfigError("encoder 'ge2e' embeds recordings; choose another one for "
                              f"{kind}s")
        encoder = GE2E(cfg.data.sample_rate)
    elif name in TRACKING_ENCODERS:
        raise ConfigError(f"encoder '{name}' is fully convolutional, for train.task tracking "
                          "(SiamFC); choose another one to compare pairs")
    elif kind == "audio":  # the log-mel front end is part of the encoder
        augment = cfg.augment
        encoder = build_audio_encoder(
            name, cfg.data.sample_rate, cfg.data.n_mels, cfg.model.width,
            augment.freq_mask if augment.enabled else 0,
            augment.time_mask if augment.enabled else 0)
    else:
        encoder = create_encoder(name, tuple(input_shape), cfg.model.width)
    if cfg.model.pretrained:  # frozen parts stay frozen after a load, as they trained
        from ..pretrained.encoder import set_trainable

        set_trainable(encoder, cfg.model.pretrained_train)
    if cfg.train.task == "regression":
        net = SiameseNet(encoder, cfg.model.embedding_dim, False, scorer="euclidean")
        return TwinRegressor(net, input_shape[0], cfg.model.head_hidden, anchors)
    if cfg.model.projection == "auto":  # resolved into the saved config
        cfg.model.projection = ("identity" if name in ("imported", "speech_embedding", "ge2e")
                                else "random")
    if cfg.model.projection == "identity":  # as wide as the features, starting as identity
        cfg.model.embedding_dim = encoder.num_features
    net = SiameseNet(encoder, cfg.model.embedding_dim, cfg.model.normalize,
                     cfg.model.head_hidden, scorer_for(cfg),
                     identity=cfg.model.projection == "identity")
    if kind == "image":
        # Channels-last convolutions are about 25% faster per training step on CPU (oneDNN),
        # measured on conv4 at 28 px: 175 vs 240 ms per 240-image forward + backward.
        net = net.to(memory_format=torch.channels_last)
    return net
