"""The [model] section of the config: the encoder, the projection, and a network to start
from (model.pretrained); beside config.py as config_tracking.py holds [track]."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelConfig:
    encoder: str = "auto"  # conv4 | conv4_pool_first | koch | resnet | mlp | audio_resnet | ecapa;
    # auto = conv4 for images, ecapa for audio (9x audio_resnet's speed at width 64)
    width: int = 64  # channels of the first conv stage (or hidden units / 4 for the MLP)
    embedding_dim: int = 64  # 0 = use the encoder's features as they are
    # the projection to the embedding: random (embedding_dim wide) | identity (as wide as the
    # encoder's features, starting as the identity: training starts from the pretrained
    # network's own geometry, at pretrained_lr x train.lr) | auto: identity on an imported
    # network (a random 64-d one lost 0.03 unseen AUC against the untrained features,
    # docs/pretrained.md), else random
    projection: str = "auto"
    normalize: bool = True  # L2-normalise embeddings
    head_hidden: int = 64  # pair head: |h1-h2| -> Linear(head_hidden) -> ReLU -> Linear(1)
    # images: the embedding is the mean over the input and this many fixed [augment]
    # distortions of it (models/views.py); costs views + 1 passes; 0 = one pass
    views: int = 0
    # Start from a network trained elsewhere (docs/pretrained.md): a catalogue name (siamese
    # pretrained list), an ONNX file, or a safetensors / PyTorch state dict (or run folder)
    # for model.encoder. ONNX: cut at the tensor pretrained_output ("" = the catalogue's
    # choice, else the file's first output); a feature map is averaged over its positions.
    pretrained: str = ""
    pretrained_output: str = ""
    # how much of it trains: frozen | last:N (its last N layers) | all; what trains of it
    # learns at pretrained_lr x train.lr
    pretrained_train: str = "frozen"
    pretrained_lr: float = 0.1
    # its input, where neither the catalogue nor the file's metadata say: mean and std of
    # [0, 1] pixel values per channel ([] = ImageNet's), channel_order RGB | BGR ("" = RGB)
    pretrained_mean: list[float] = field(default_factory=list)
    pretrained_std: list[float] = field(default_factory=list)
    channel_order: str = ""
    # a frozen network's outputs computed once and reused every epoch: auto (when nothing
    # random happens to the input: augment.enabled false, no class rotations) | off
    feature_cache: str = "auto"
