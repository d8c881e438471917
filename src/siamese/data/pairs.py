"""Pairs files: lists of (a, b, label) as users have them, read by one loader.

- CSV `a,b,label` (a header row naming those columns is optional): a and b are image paths
  relative to the CSV's folder (or absolute), or, for vectors, row numbers (from 0) of the
  table the model reads; label 1/0 for same/different, or a graded similarity score in any
  range.
- LFW `pairs.txt`: a header line `<folds> <n>`, then per fold n matched pairs `name n1 n2` and
  n mismatched pairs `name1 n1 name2 n2`; image i of `name` is `<images>/<name>/<name>_<i:04d>`
  with any image extension (`<images>` defaults to the folder of pairs.txt, or its `lfw/`).

Errors name the file and line and say how to fix them (DataError: one line, exit 2).
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .images import IMAGE_SUFFIXES


@dataclass
class Pairs:
    a: list  # image paths (str), or row numbers (int) of a vector table
    b: list
    label: np.ndarray  # (P,) float64: 1/0, or a graded score as given
    folds: np.ndarray | None  # (P,) fold of each pair (LFW), else None
    source: str

    @property
    def graded(self) -> bool:
        return not np.isin(self.label, (0.0, 1.0)).all()

    def __len__(self) -> int:
        return len(self.label)


def read_pairs(path: str | Path, images: str | Path | None = None,
               rows: int | None = None) -> Pairs:
    """rows: the pairs name rows 0 .. rows-1 of a vector table (CSV only), not images."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pairs file {path} does not exist; give a CSV a,b,label or an LFW "
                        "pairs.txt")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read pairs file {path} ({e}); it must be UTF-8 text") from None
    if path.suffix.lower() == ".csv":
        pairs = _read_csv(path, text, Path(images) if images else path.parent, rows)
    elif rows is not None:
        raise DataError(f"pairs file {path}: pairs of vectors are a .csv a,b,label of row "
                        "numbers; LFW pairs.txt names images")
    else:
        pairs = _read_lfw(path, text, _lfw_root(path, images))
    if not len(pairs):
        raise DataError(f"pairs file {path} holds no pairs")
    return pairs


def _exists(p: Path, where: str) -> str:
    if not p.is_file():
        raise DataError(f"{where} names {p}, which does not exist; fix the path (relative paths "
                        "are taken from the pairs file's folder, or from --images)")
    return str(p)


def _row(text: str, rows: int, where: str) -> int:
    try:
        r = int(text.strip())
    except ValueError:
        r = -1
    if not 0 <= r < rows:
        raise DataError(f"{where}: '{text.strip()[:20]}' is not a row number of the table (0 to "
                        f"{rows - 1}); pairs of vectors name rows of --data, counted from 0")
    return r


def _read_csv(path: Path, text: str, root: Path, n_rows: int | None) -> Pairs:
    rows = [r for r in csv.reader(text.splitlines())]
    start = 1 if rows and [c.strip().lower() for c in rows[0]] == ["a", "b", "label"] else 0
    a, b, label = [], [], []
    for n, row in enumerate(rows[start:], start=start + 1):
        if not row or not "".join(row).strip():
            continue
        where = f"pairs file {path} line {n}"
        if len(row) != 3:
            raise DataError(f"{where} has {len(row)} fields; expected a,b,label")
        try:
            v = float(row[2])
        except ValueError:
            raise DataError(f"{where}: label '{row[2].strip()[:20]}' is not a number; give "
                            "1 (same), 0 (different) or a similarity score") from None
        if not math.isfinite(v):
            raise DataError(f"{where}: label {row[2].strip()} is not finite; give a number")
        if n_rows is not None:
            a.append(_row(row[0], n_rows, where))
            b.append(_row(row[1], n_rows, where))
        else:
            a.append(_exists(root / row[0].strip(), where))
            b.append(_exists(root / row[1].strip(), where))
        label.append(v)
    return Pairs(a, b, np.array(label, dtype=np.float64), None, str(path))


def _lfw_root(path: Path, images: str | Path | None) -> Path:
    if images:
        return Path(images)
    return path.parent / "lfw" if (path.parent / "lfw").is_dir() else path.parent


def _lfw_image(root: Path, name: str, number: str, where: str) -> str:
    try:
        i = int(number)
    except ValueError:
        raise DataError(f"{where}: '{number}' is not an image number") from None
    stem = root / name / f"{name}_{i:04d}"
    for suffix in (".jpg", *sorted(IMAGE_SUFFIXES - {".jpg"})):
        if stem.with_suffix(suffix).is_file():
            return str(stem.with_suffix(suffix))
    raise DataError(f"{where} names image {i} of {name}, but {stem}.jpg does not exist; give "
                    "the folder holding <name>/<name>_0001.jpg with --images")


def _read_lfw(path: Path, text: str, root: Path) -> Pairs:
    lines = text.splitlines()
    head = lines[0].split() if lines else []
    if len(head) == 1 and head[0].isdigit():  # pairsDevTrain.txt: just n matched + n mismatched
        folds, per = 1, int(head[0])
    elif len(head) == 2 and all(h.isdigit() for h in head):
        folds, per = int(head[0]), int(head[1])
    else:
        raise DataError(f"pairs file {path} line 1 is '{' '.join(head)[:40]}'; an LFW pairs.txt "
                        "starts with '<folds> <pairs per fold>' (or use a .csv a,b,label)")
    body = [(n, line.split()) for n, line in enumerate(lines[1:], start=2) if line.strip()]
    if len(body) != folds * 2 * per:
        raise DataError(f"pairs file {path} has {len(body)} pairs; its header promises {folds} "
                        f"folds x {2 * per}; fix the header or the file")
    a, b, label, fold = [], [], [], []
    for k, (n, f) in enumerate(body):
        where = f"pairs file {path} line {n}"
        if len(f) == 3:
            a.append(_lfw_image(root, f[0], f[1], where))
            b.append(_lfw_image(root, f[0], f[2], where))
            label.append(1.0)
        elif len(f) == 4:
            a.append(_lfw_image(root, f[0], f[1], where))
            b.append(_lfw_image(root, f[2], f[3], where))
            label.append(0.0)
        else:
            raise DataError(f"{where} has {len(f)} fields; expected 'name n1 n2' (same person) "
                            "or 'name1 n1 name2 n2' (different)")
        fold.append(k // (2 * per))
    return Pairs(a, b, np.array(label), np.array(fold, dtype=np.int64), str(path))


def assign_folds(n: int, folds: int, seed: int = 0) -> np.ndarray:
    """Folds for pairs that came without: a seeded shuffle cut into `folds` equal parts."""
    if folds < 2 or n % folds:
        raise DataError(f"{n} pairs do not divide into {folds} folds; give a multiple of "
                        f"{folds} pairs or another --folds")
    order = np.random.default_rng(seed).permutation(n)
    out = np.empty(n, dtype=np.int64)
    out[order] = np.arange(n) // (n // folds)
    return out
