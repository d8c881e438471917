"""`LabeledData`: the in-memory form every loader produces."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class LabeledData:
    """Inputs with integer labels.

    x: (N, C, H, W) float images in [0, 1] or (N, D) float vectors, not yet normalised; or
       `ImageFiles`, the same images left on disk and decoded when read.
    y: (N,) int64 indices into `classes`.
    sources: one string per sample (a path, or `digits:17`) so that a split can be recorded.
    groups: optional per-class group (e.g. the Omniglot alphabet), used for within-group episodes.
    """

    x: torch.Tensor  # or ImageFiles
    y: np.ndarray
    classes: list[str]
    sources: list[str]
    kind: str  # "image" | "vector"
    groups: list[str] | None = None

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index: np.ndarray) -> LabeledData:
        """The samples at `index`, labels re-numbered over the classes that remain."""
        index = np.asarray(index, dtype=np.int64)
        old = self.y[index]
        kept = np.unique(old)
        remap = np.full(len(self.classes), -1, dtype=np.int64)
        remap[kept] = np.arange(len(kept))
        return LabeledData(
            x=(self.x[torch.from_numpy(index)] if isinstance(self.x, torch.Tensor)
               else self.x.take(index)),
            y=remap[old],
            classes=[self.classes[i] for i in kept],
            sources=[self.sources[i] for i in index],
            kind=self.kind,
            groups=None if self.groups is None else [self.groups[i] for i in kept],
        )

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=len(self.classes))
