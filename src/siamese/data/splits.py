"""Splits: unseen test classes (the one-shot setting) and held-out samples within classes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import SplitConfig
from ..errors import ConfigError, DataError
from .labeled import LabeledData


@dataclass
class Split:
    """Indices into the full data set. `test_unseen` holds only classes absent from training."""

    mode: str
    train: np.ndarray
    val: np.ndarray
    test_seen: np.ndarray
    test_unseen: np.ndarray
    test_classes: list[str]

    def summary(self) -> dict:
        return {
            "mode": self.mode,
            "test_classes": self.test_classes,
            "sizes": {k: int(len(getattr(self, k)))
                      for k in ("train", "val", "test_seen", "test_unseen")},
        }

    def to_dict(self) -> dict:
        d = self.summary()
        d["indices"] = {k: getattr(self, k).tolist()
                        for k in ("train", "val", "test_seen", "test_unseen")}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Split:
        idx = {k: np.asarray(v, dtype=np.int64) for k, v in d["indices"].items()}
        return cls(mode=d["mode"], test_classes=list(d["test_classes"]), **idx)


def choose_test_classes(classes: list[str], cfg: SplitConfig, rng: np.random.Generator) -> list:
    if cfg.mode == "samples":
        return []
    if cfg.test_classes:
        missing = [c for c in cfg.test_classes if c not in classes]
        if missing:
            raise ConfigError(
                f"test classes {', '.join(missing)} are not in the data; classes are: "
                f"{', '.join(classes[:12])}{' ...' if len(classes) > 12 else ''}"
            )
        return list(cfg.test_classes)
    n = int(round(len(classes) * cfg.test_class_fraction))
    if n < 2:  # one unseen class cannot make negative pairs
        n = 2 if cfg.test_class_fraction > 0 and len(classes) >= 4 else 0
    return sorted(rng.choice(classes, size=n, replace=False).tolist()) if n else []


def make_split(data: LabeledData, cfg: SplitConfig, seed: int) -> Split:
    """Split a data set reproducibly: same seed, same split."""
    rng = np.random.default_rng(seed)
    test_classes = choose_test_classes(data.classes, cfg, rng)
    unseen = np.isin(np.array(data.classes), test_classes)[data.y]
    held_out = set(np.flatnonzero(np.isin(data.classes, test_classes)).tolist())
    train, val, test_seen = [], [], []
    for c in range(len(data.classes)):
        if c in held_out:
            continue
        idx = rng.permutation(np.flatnonzero(data.y == c))
        n = len(idx)
        n_val = int(round(n * cfg.val_fraction)) if n >= 4 else 0
        n_test = int(round(n * cfg.test_fraction)) if n >= 4 else 0
        val.append(idx[:n_val])
        test_seen.append(idx[n_val:n_val + n_test])
        train.append(idx[n_val + n_test:])
    split = Split(
        mode=cfg.mode,
        train=np.sort(np.concatenate(train)),
        val=np.sort(np.concatenate(val)),
        test_seen=np.sort(np.concatenate(test_seen)),
        test_unseen=np.flatnonzero(unseen),
        test_classes=test_classes,
    )
    check_trainable(data, split.train)
    return split


def check_trainable(data: LabeledData, train: np.ndarray) -> None:
    """Every training class needs two samples (a positive pair), and there must be two classes."""
    counts = np.bincount(data.y[train], minlength=len(data.classes))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise DataError("fewer than 2 classes are left for training; add classes or lower "
                        "split.test_class_fraction")
    single = [c for c in present if counts[c] < 2]
    if single:
        c = single[0]
        where = data.sources[int(np.flatnonzero(data.y == c)[0])]
        raise DataError(
            f"class '{data.classes[c]}' has only 1 training sample ({where}); Siamese training "
            "needs at least 2 per class: add samples or remove the class"
        )
