"""Preprocessing recorded with a run: how raw input becomes the tensor the encoder sees."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .images import array_to_image, decode, to_array


@dataclass
class Preprocessing:
    kind: str  # "image" | "vector"
    input_shape: list[int]  # (C, H, W) or (D,)
    mean: list[float]  # per channel (images) or per feature (vectors)
    std: list[float]

    @classmethod
    def fit(cls, x: torch.Tensor, kind: str) -> Preprocessing:
        """Statistics of the training inputs x: (N, C, H, W) or (N, D)."""
        dims = (0, 2, 3) if kind == "image" else (0,)
        mean = x.mean(dims)
        std = x.std(dims).clamp_min(1e-6)
        return cls(kind, list(x.shape[1:]), mean.tolist(), std.tolist())

    def to_dict(self) -> dict:
        return asdict(self)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=x.dtype)
        std = torch.tensor(self.std, dtype=x.dtype)
        if self.kind == "image":
            mean, std = mean[:, None, None], std[:, None, None]
        return (x - mean) / std

    def load_input(self, item) -> torch.Tensor:
        """One raw input -> a normalised (1, *input_shape) tensor.

        Images: a path, bytes, a PIL image, or an array (H, W[, C]) in [0, 1] or 0-255.
        Vectors: a sequence of D numbers.
        """
        if self.kind == "vector":
            if isinstance(item, str):  # e.g. from the command line: "0.1,2.5,-1"
                try:
                    item = [float(v) for v in item.split(",")]
                except ValueError:
                    raise DataError(f"'{item[:40]}' is not a feature vector; this model "
                                    "compares vectors: give comma-separated numbers") from None
            try:
                a = np.asarray(item, dtype=np.float32).reshape(1, -1)
            except (TypeError, ValueError):
                raise DataError("a vector must be a sequence of numbers") from None
            if a.shape[1] != self.input_shape[0]:
                raise DataError(f"vector has {a.shape[1]} features; the model expects "
                                f"{self.input_shape[0]}")
            if not np.isfinite(a).all():
                raise DataError("the vector holds nan or inf (or a number beyond float32's "
                                "range); give finite numbers")
            return self.normalize(torch.from_numpy(a))
        c, size = self.input_shape[0], self.input_shape[1]
        if isinstance(item, str | Path | bytes):
            name = str(item) if not isinstance(item, bytes) else "<upload>"
            a = decode(item, name, c, size)
        elif hasattr(item, "convert"):  # a PIL image
            a = to_array(item, c, size)
        else:
            a = to_array(array_to_image(item), c, size)
        return self.normalize(torch.from_numpy(a)[None])
