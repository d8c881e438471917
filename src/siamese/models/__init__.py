"""Models: the encoder registry and SiameseNet (shared encoder + pair head or a distance)."""

from .encoders import ENCODERS, create_encoder
from .siamese import PairHead, SiameseNet

__all__ = ["ENCODERS", "create_encoder", "PairHead", "SiameseNet"]
