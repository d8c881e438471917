"""Losses and miners, each created by name from a registry."""

from .base import LOSSES, create_loss
from .miners import MINERS, create_miner

# Importing the modules registers their losses.
from . import contrastive, margin_softmax, mse, pair, proto, triplet  # noqa: E402,F401  isort: skip

__all__ = ["LOSSES", "MINERS", "create_loss", "create_miner"]
