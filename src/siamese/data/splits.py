"""Splits: unseen test classes (the one-shot setting) and held-out samples within classes."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import SplitConfig
from ..errors import ConfigError, DataError
from .labeled import LabeledData

# Validation classes are held out only where at least this many training classes remain: with
# fewer (the digits demo trains on 6), losing two costs more than the calibration gains
# (docs/results.md).
MIN_TRAIN_CLASSES = 8


@dataclass
class Split:
    """Indices into the full data set. `test_unseen` holds only classes absent from training."""

    mode: str
    train: np.ndarray
    val: np.ndarray
    test_seen: np.ndarray
    test_unseen: np.ndarray
    test_classes: list[str]
    val_classes: list[str] = field(default_factory=list)  # class-disjoint validation

    def summary(self) -> dict:
        return {
            "mode": self.mode,
            "test_classes": self.test_classes,
            "val_classes": self.val_classes,
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
        return cls(mode=d["mode"], test_classes=list(d["test_classes"]),
                   val_classes=list(d.get("val_classes", [])), **idx)


def choose_classes(classes: list[str], named: list[str], fraction: float,
                   rng: np.random.Generator, what: str) -> list:
    """Named classes (checked), else `fraction` of them chosen by rng (0, or at least 2: one
    class alone cannot make negative pairs), always leaving at least 2 others."""
    if named:
        missing = [c for c in named if c not in classes]
        if missing:
            raise ConfigError(
                f"{what} classes {', '.join(missing)} are not in the data; classes are: "
                f"{', '.join(classes[:12])}{' ...' if len(classes) > 12 else ''}"
            )
        return list(named)
    n = int(round(len(classes) * fraction))
    if n < 2:
        n = 2 if fraction > 0 and len(classes) >= 4 else 0
    return sorted(rng.choice(classes, size=n, replace=False).tolist()) if n else []


def make_split(data: LabeledData, cfg: SplitConfig, seed: int) -> Split:
    """Split a data set reproducibly: same seed, same split."""
    rng = np.random.default_rng(seed)
    by_class = cfg.mode == "classes"
    test_classes = choose_classes(data.classes, cfg.test_classes, cfg.test_class_fraction, rng,
                                  "test") if by_class else []
    rest = [c for c in data.classes if c not in test_classes]
    val_classes = choose_classes(rest, cfg.val_classes, cfg.val_class_fraction, rng,
                                 "validation") if by_class else []
    if not cfg.val_classes and len(rest) - len(val_classes) < MIN_TRAIN_CLASSES:
        val_classes = []  # too few classes to spare: validate on held-out images instead
    if set(val_classes) & set(test_classes):
        raise ConfigError("split.val_classes and split.test_classes overlap; a class is either "
                          "for validation or for the unseen test")
    unseen = np.isin(np.array(data.classes), test_classes)[data.y]
    held_out = set(np.flatnonzero(np.isin(data.classes, test_classes + val_classes)).tolist())
    val = [np.flatnonzero(np.isin(np.array(data.classes), val_classes)[data.y])]
    train, test_seen = [], []
    for c in range(len(data.classes)):
        if c in held_out:
            continue
        idx = rng.permutation(np.flatnonzero(data.y == c))
        n = len(idx)
        n_val = int(round(n * cfg.val_fraction)) if n >= 4 and not val_classes else 0
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
        val_classes=val_classes,
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
    # (Audio: one long utterance is cut into several samples when training.)
    single = [c for c in present if counts[c] < 2] if data.kind != "audio" else []
    if single:
        c = single[0]
        where = data.sources[int(np.flatnonzero(data.y == c)[0])]
        raise DataError(
            f"class '{data.classes[c]}' has only 1 training sample ({where}); Siamese training "
            "needs at least 2 per class: add samples or remove the class"
        )


def row_split(n: int, val_fraction: float, test_fraction: float,
              seed: int) -> dict[str, np.ndarray]:
    """Rows (no classes: twin regression) -> test, validation and training rows by the seed."""
    order = np.random.default_rng([seed, 13]).permutation(n)
    n_test, n_val = int(round(n * test_fraction)), int(round(n * val_fraction))
    if n - n_test - n_val < 4:
        raise DataError(f"the table has {n} rows; twin regression needs at least 4 training "
                        "rows after the validation and test rows are held out")
    return {"test": np.sort(order[:n_test]), "val": np.sort(order[n_test:n_test + n_val]),
            "train": np.sort(order[n_test + n_val:])}
