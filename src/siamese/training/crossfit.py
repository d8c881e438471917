"""Cross-fitting: the epoch and the verification threshold of a run on few classes, chosen on
classes never trained on, while the kept model trains on every class.

The training classes are dealt into K folds (data/splits.py). Fold run k trains with the run's
own recipe and schedule on the classes outside fold k and, after every epoch, scores pairs of
fold k's images. Then:

- the epoch: the schedule's end (train.keep "last", what "auto" gives), or with train.keep
  "best" the one with the highest ROC AUC averaged over the folds (measured: it lost to the
  schedule's end on both image suites, docs/small_data.md);
- the threshold: the most accurate one on the folds' pairs of that epoch, pooled;
- the kept model trains on all the training classes with the same schedule and stops after
  that epoch.

K + 1 runs instead of one; where classes are few the runs are short, and the model keeps every
class (a class-disjoint validation set would take 15% of them away and choose the epoch and
threshold on two or three classes). docs/small_data.md has the measurements behind it.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..artifact import read_json
from ..atomic import atomic_write_json
from ..errors import ArtifactError, DataError
from ..evaluation.verification import best_threshold, verification_metrics

# fit_fold(k, folder, record): train fold run k in `folder`, appending each epoch's
# (labels, scores) of its held-out classes' pairs to `record`
FitFold = Callable[[int, Path, list], object]


def choose(records: list[list[tuple[np.ndarray, np.ndarray]]], keep: str) -> dict:
    """records[k][e]: fold k's (labels, scores) after epoch e + 1 -> {"epoch", "threshold",
    "metrics" (pooled, at that epoch), "fold_auc" (per epoch, the folds' mean)}. Epochs that
    every fold reached count (a fold may have stopped early)."""
    epochs = min(len(r) for r in records)
    if epochs == 0:
        raise DataError("cross-fitting: a fold run could not score its held-out classes (too "
                        "few images to make pairs); choose --set split.validation=classes")
    auc = np.array([[verification_metrics(*r[e])["roc_auc"] for e in range(epochs)]
                    for r in records])  # (K, epochs)
    mean = auc.mean(0)
    # the highest mean AUC; on a tie the later epoch (the schedule's rate is lower there)
    e = epochs - 1 if keep == "last" else int(epochs - 1 - np.argmax(mean[::-1]))
    y = np.concatenate([r[e][0] for r in records])
    s = np.concatenate([r[e][1] for r in records])
    threshold = best_threshold(y, s)
    return {"epoch": e + 1, "threshold": threshold, "fold_auc": [round(float(a), 5)
                                                                  for a in mean],
            "metrics": verification_metrics(y, s, threshold)}


def cross_fit(fit_fold: FitFold, split, epochs: int, keep: str, quiet: bool) -> dict:
    """Run the K fold runs of `split` (split.folds) in temporary folders -> choose()'s dict,
    with the folds' classes."""
    records: list[list] = []
    for k, classes in enumerate(split.folds):
        if not quiet:
            print(f"cross-fitting: fold run {k + 1}/{len(split.folds)}, {len(classes)} classes "
                  f"held out ({epochs} epochs)", file=sys.stderr)
        records.append([])
        with tempfile.TemporaryDirectory(prefix="siamese-fold-") as where:
            fit_fold(k, Path(where), records[-1])
    result = choose(records, keep)
    if not quiet:
        print(f"cross-fitting: epoch {result['epoch']} (held-out AUC "
              f"{result['fold_auc'][result['epoch'] - 1]:.4f}), threshold "
              f"{result['threshold']:.3f}; now the model on every training class",
              file=sys.stderr)
    return {**result, "folds": len(split.folds)}


def write_crossfit(out: Path, result: dict) -> None:
    atomic_write_json(out / "crossfit.json", result)


def read_crossfit(out: Path) -> dict:
    """A resumed cross-fitted run's fold results (written when its last run started)."""
    path = out / "crossfit.json"
    if not path.exists():
        raise ArtifactError(f"{path} is missing: the run was stopped before its fold runs "
                            "ended; start it again without --resume")
    return read_json(path, "the cross-fitting results")
