"""How much of an imported network trains (model.pretrained_train): kept apart from the
importer so that the config can check the value without importing torch or onnx."""

from __future__ import annotations

import re

TRAIN_MODES = "frozen, last:N (its last N layers train) or all"


def check_train_mode(mode: str) -> bool:
    return mode in ("frozen", "all") or bool(re.fullmatch(r"last:[1-9]\d*", mode))


def last_layers(mode: str) -> int | None:
    """'last:N' -> N; frozen -> None (nothing trains); all -> 0 (everything)."""
    return None if mode == "frozen" else 0 if mode == "all" else int(mode.split(":", 1)[1])
