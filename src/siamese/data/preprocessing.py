"""Preprocessing recorded with a run: how raw input becomes the tensor the encoder sees."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .audio import Waveforms, read_audio
from .images import array_to_image, decode, to_array
from .lazy import ImageFiles
from .loader import read_chunks

FIT_SAMPLES = 20_000  # the normalisation statistics are taken over at most this many samples


@dataclass
class Preprocessing:
    kind: str  # "image" | "vector" | "audio"
    input_shape: list[int]  # (C, H, W), (D,), or (crop samples,) for audio
    mean: list[float]  # per channel (images) or per feature (vectors); audio: [0]
    std: list[float]
    sample_rate: int = 0  # audio: every input is resampled to this rate

    @classmethod
    def audio(cls, rate: int, crop_seconds: float) -> Preprocessing:
        """Waveforms pass as they are: the front end normalises each utterance itself."""
        return cls("audio", [int(round(rate * crop_seconds))], [0.0], [1.0], rate)

    @classmethod
    def fit(cls, x, kind: str, seed: int = 0, workers: int = 0) -> Preprocessing:
        """Statistics of the training inputs x: (N, C, H, W) or (N, D), a tensor or files.

        Over every sample up to FIT_SAMPLES, else over that many drawn by the seed; summed in
        float64 one chunk at a time, so that files on disk need not fit in memory and give the
        same figures as the same images in memory.
        """
        n = len(x)
        index = np.arange(n)
        if n > FIT_SAMPLES:
            index = np.sort(np.random.default_rng([seed, 7]).choice(n, FIT_SAMPLES, replace=False))
        dims = (0, 2, 3) if kind == "image" else (0,)
        total = total_sq = 0.0
        count = 0
        for xb in read_chunks(x, index, workers):
            xb = xb.double()
            total = total + xb.sum(dims)
            total_sq = total_sq + xb.pow(2).sum(dims)
            count += xb.numel() // xb.shape[1]
        mean = total / count
        var = (total_sq - count * mean.pow(2)) / max(count - 1, 1)
        std = var.clamp_min(0).sqrt().float().clamp_min(1e-6)
        return cls(kind, list(x.shape[1:]), mean.float().tolist(), std.tolist())

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.kind != "audio":
            d.pop("sample_rate")  # the card of an image or vector run stays as it was
        return d

    def normalize(self, x):
        """(N, *input_shape) -> normalised; `ImageFiles` -> a view normalised when read."""
        if isinstance(x, ImageFiles):
            return x.normalized(self.mean, self.std)
        if self.kind == "audio":
            return x
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
        if self.kind == "audio":
            if not isinstance(item, str | Path | bytes):
                raise DataError("give an audio file (WAV, FLAC or OGG), as a path or bytes")
            name = str(item) if not isinstance(item, bytes) else "<upload>"
            return Waveforms.from_arrays([read_audio(item, name, self.sample_rate)])
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
