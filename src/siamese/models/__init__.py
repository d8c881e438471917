"""Models: the encoder registry and SiameseNet (shared encoder + pair head or a distance)."""

from . import audio, siamfc  # noqa: F401  (they register the audio and tracking encoders)
from .encoders import ENCODERS, create_encoder
from .siamese import PairHead, SiameseNet

__all__ = ["ENCODERS", "create_encoder", "PairHead", "SiameseNet"]
