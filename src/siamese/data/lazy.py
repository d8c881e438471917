"""`ImageFiles`: image samples that stay on disk and are decoded when a batch asks for them.

It stands in for the (N, C, H, W) tensor of an in-memory data set wherever samples are read by
index (`x[idx]`, `x[a:b]`, `len(x)`, `x.shape`), so that the samplers, the trainer and the
evaluation do not care which one they hold. Views are cheap and decode nothing:
`take(idx)` (a subset), `normalized(mean, std)` and `with_variants(n)` (each class turned by
90/180/270 degrees, and mirrored with 8 variants, as `add_transformed_classes` does in memory).
The decoded values equal those of the in-memory path bit for bit: the same decoder, the same
normalisation, the same rotations.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..errors import DataError
from .images import decode

_fds: dict[tuple[str, int], int] = {}


@dataclass(frozen=True)
class ImageFiles:
    sources: tuple  # paths or ZipMembers, one per base sample
    names: tuple  # display names, for error messages
    channels: int
    size: int
    mean: tuple | None = None  # per channel, applied after decoding
    std: tuple | None = None
    variants: int = 1  # 1, 4 (rotations) or 8 (rotations of the image and of its mirror)
    decoded: str | None = None  # a file of the base samples' uint8 pixels (data/decoded.py)
    rows: tuple | None = None  # with `decoded`: each base sample's row in that file

    def __len__(self) -> int:
        return len(self.sources) * self.variants

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self), self.channels, self.size, self.size)

    @property
    def nbytes(self) -> int:
        """What the decoded float32 tensor would take in memory."""
        return len(self) * self.channels * self.size * self.size * 4

    def take(self, index) -> ImageFiles:
        """The samples at `index`: a view (variants must be 1)."""
        if self.variants != 1:
            raise ValueError("take() before with_variants()")
        index = np.asarray(index, dtype=np.int64)
        rows = None if self.decoded is None else tuple(self._row(int(i)) for i in index)
        return replace(self, sources=tuple(self.sources[i] for i in index),
                       names=tuple(self.names[i] for i in index), rows=rows)

    def from_decoded(self, path: str) -> ImageFiles:
        """Read the base samples from `path`, a file of their uint8 pixels in order."""
        return replace(self, decoded=path, rows=None)

    def _row(self, i: int) -> int:
        return i if self.rows is None else self.rows[i]

    def _pixels(self, b: int) -> np.ndarray:
        """Base sample b from the decoded file: uint8 / 255, exactly what the decoder gives."""
        fd = _fds.get((self.decoded, os.getpid()))
        if fd is None:  # one descriptor per process (DataLoader workers are forked)
            fd = _fds[(self.decoded, os.getpid())] = os.open(self.decoded, os.O_RDONLY)
        n = self.channels * self.size * self.size
        raw = os.pread(fd, n, self._row(b) * n)
        if len(raw) != n:
            raise DataError(f"the decoded-image cache {self.decoded} is shorter than it was "
                            "written; delete it (it is made again) or use data.cache none")
        a = np.frombuffer(raw, dtype=np.uint8).astype(np.float32) / 255.0
        return a.reshape(self.channels, self.size, self.size)

    def normalized(self, mean, std) -> ImageFiles:
        return replace(self, mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))

    def with_variants(self, n: int) -> ImageFiles:
        return replace(self, variants=n)

    def _read(self, index: np.ndarray) -> torch.Tensor:
        """Decode, normalise and turn the samples at `index` (B,) -> (B, C, H, W): one tensor
        operation per batch (and per variant), not per image; the same values as the
        in-memory path, which applies the same operations to the whole set."""
        n = len(self.sources)
        base, variant = index % n, index // n
        out = np.empty((len(index), self.channels, self.size, self.size), dtype=np.float32)
        for row, b in enumerate(base.tolist()):
            out[row] = decode(self.sources[b], self.names[b], self.channels, self.size) \
                if self.decoded is None else self._pixels(b)
        x = torch.from_numpy(out)
        if self.mean is not None:
            mean, std = torch.tensor(self.mean), torch.tensor(self.std)
            x = (x - mean[:, None, None]) / std[:, None, None]
        for v in np.unique(variant[variant > 0]).tolist():
            rows = torch.from_numpy(np.flatnonzero(variant == v))
            xv = torch.flip(x[rows], dims=(3,)) if v >= 4 else x[rows]
            x[rows] = torch.rot90(xv, v % 4, dims=(2, 3)) if v % 4 else xv
        return x

    def __getitem__(self, index) -> torch.Tensor:
        """An int -> (C, H, W); a slice, index array or tensor -> (B, C, H, W), decoded now."""
        if isinstance(index, int | np.integer):
            return self._read(np.array([int(index)]))[0]
        if isinstance(index, slice):
            index = np.arange(*index.indices(len(self)))
        elif isinstance(index, torch.Tensor):
            index = index.numpy()
        return self._read(np.asarray(index, dtype=np.int64).reshape(-1))
