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

from dataclasses import dataclass, replace

import numpy as np
import torch

from .images import decode


@dataclass(frozen=True)
class ImageFiles:
    sources: tuple  # paths or ZipMembers, one per base sample
    names: tuple  # display names, for error messages
    channels: int
    size: int
    mean: tuple | None = None  # per channel, applied after decoding
    std: tuple | None = None
    variants: int = 1  # 1, 4 (rotations) or 8 (rotations of the image and of its mirror)

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
        return replace(self, sources=tuple(self.sources[i] for i in index),
                       names=tuple(self.names[i] for i in index))

    def normalized(self, mean, std) -> ImageFiles:
        return replace(self, mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))

    def with_variants(self, n: int) -> ImageFiles:
        return replace(self, variants=n)

    def _one(self, i: int) -> torch.Tensor:
        n = len(self.sources)
        base, v = i % n, i // n
        x = torch.from_numpy(decode(self.sources[base], self.names[base], self.channels,
                                    self.size))
        if self.mean is not None:
            # The same operation as Preprocessing.normalize on a batch, so identical values.
            x = (x - torch.tensor(self.mean)[:, None, None]) / torch.tensor(self.std)[:, None, None]
        if v >= 4:
            x = torch.flip(x, dims=(2,))
        return torch.rot90(x, v % 4, dims=(1, 2)) if v % 4 else x

    def __getitem__(self, index) -> torch.Tensor:
        """An int -> (C, H, W); a slice, index array or tensor -> (B, C, H, W), decoded now."""
        if isinstance(index, int | np.integer):
            return self._one(int(index))
        if isinstance(index, slice):
            index = range(*index.indices(len(self)))
        elif isinstance(index, torch.Tensor):
            index = index.tolist()
        rows = [self._one(int(i)) for i in index]
        if not rows:
            return torch.zeros(0, self.channels, self.size, self.size)
        return torch.stack(rows)
