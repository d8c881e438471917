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
# split.validation "auto" cross-fits where 9 to 99 classes are left to train on: few enough
# that holding 15% of them out costs the model classes and leaves its epoch and threshold to
# a handful of classes, and that K + 1 runs stay cheap (docs/small_data.md).
CROSSFIT_CLASSES = (9, 100)


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
    # how the epoch and threshold are chosen: "classes" (val_classes), "samples" (held-out
    # images of every training class) or "crossfit" (val is empty; `folds` of the training
    # classes are each held out by one fold run)
    validation: str = "samples"
    folds: list[list[str]] = field(default_factory=list)

    def summary(self) -> dict:
        return {
            "mode": self.mode,
            "validation": self.validation,
            "test_classes": self.test_classes,
            "val_classes": self.val_classes,
            "folds": self.folds,
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
        val_classes = list(d.get("val_classes", []))
        return cls(mode=d["mode"], test_classes=list(d["test_classes"]),
                   val_classes=val_classes, folds=[list(f) for f in d.get("folds", [])],
                   validation=d.get("validation", "classes" if val_classes else "samples"),
                   **idx)

    def fold(self, k: int, data: LabeledData) -> Split:
        """Fold run k of a cross-fitted split: its classes' training images become the
        validation set, the rest train; the test sets stay as they are (unused)."""
        held = np.isin(np.array(data.classes)[data.y[self.train]], self.folds[k])
        return Split(mode=self.mode, train=self.train[~held], val=self.train[held],
                     test_seen=self.test_seen, test_unseen=self.test_unseen,
                     test_classes=self.test_classes, val_classes=list(self.folds[k]),
                     validation="classes")


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


def validation_kind(cfg: SplitConfig, rest: int, can_crossfit: bool = True) -> str:
    """How a run with `rest` classes left to train on validates: crossfit, classes or
    samples (split.validation "auto" resolved; an impossible explicit choice is an error)."""
    if cfg.mode != "classes":
        return "samples"
    if cfg.val_classes:
        return "classes"
    kind = cfg.validation
    fits = rest // cfg.folds >= 2  # every fold has two classes (negative pairs), and so
    # does every fold run's training (rest - a fold >= 2 follows for 2 folds or more)
    if kind == "auto":
        lo, hi = CROSSFIT_CLASSES
        kind = ("samples" if cfg.val_class_fraction == 0 else
                "crossfit" if can_crossfit and fits and lo <= rest < hi else "classes")
    if kind == "crossfit" and not fits:
        raise ConfigError(f"split.validation crossfit: {rest} training classes are too few "
                          f"for {cfg.folds} folds of 2 or more; lower split.folds or choose "
                          "samples")
    return kind


def class_folds(classes: list[str], k: int, seed: int) -> list[list[str]]:
    """The classes dealt into k folds of near-equal size by the seed (its own stream: the
    test classes and images are drawn as without folds)."""
    order = np.random.default_rng([seed, 17]).permutation(len(classes))
    return [sorted(classes[i] for i in part) for part in np.array_split(order, k)]


def make_split(data: LabeledData, cfg: SplitConfig, seed: int,
               can_crossfit: bool = True) -> Split:
    """Split a data set reproducibly: same seed, same split. can_crossfit: False where the
    run cannot afford fold runs (a time budget, several processes): "auto" then validates on
    whole classes."""
    rng = np.random.default_rng(seed)
    by_class = cfg.mode == "classes"
    test_classes = choose_classes(data.classes, cfg.test_classes, cfg.test_class_fraction, rng,
                                  "test") if by_class else []
    rest = [c for c in data.classes if c not in test_classes]
    kind = validation_kind(cfg, len(rest), can_crossfit)
    val_classes = choose_classes(rest, cfg.val_classes, cfg.val_class_fraction, rng,
                                 "validation") if kind == "classes" else []
    if not cfg.val_classes and len(rest) - len(val_classes) < MIN_TRAIN_CLASSES:
        val_classes = []  # too few classes to spare: validate on held-out images instead
        kind = "samples" if kind == "classes" else kind
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
        n_val = int(round(n * cfg.val_fraction)) if n >= 4 and kind == "samples" else 0
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
        validation=kind,
        folds=class_folds(rest, cfg.folds, seed) if kind == "crossfit" else [],
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
