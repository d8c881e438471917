"""Tables of feature vectors: a CSV with a header row, or a 2-D .npy array.

One column holds the label (CSV: by name, `--label-column`; NPY: by index, default the last);
every other column is a numeric feature. The label is a class (`load_table`) or a
number (`regression_table`, for twin regression); a table given only to be embedded or
predicted may leave the label out (`read_table(..., need_label=False)`).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from .labeled import LabeledData


@dataclass
class Table:
    x: torch.Tensor  # (N, D) float32, finite
    labels: list[str] | None  # the label column as text, None where the table has none
    sources: list[str]  # "<file>:<line or row>" of each row
    where: list[str]  # how an error names each row ("line 7", "row 5")


def _label_text(value: object) -> str:
    f = float(value)  # type: ignore[arg-type]
    return str(int(f)) if f.is_integer() else str(f)


def _finite(a: np.ndarray, path: Path, where: list[str]) -> torch.Tensor:
    """Refuse nan and inf (also numbers beyond float32's range, which become inf): they would
    train into a model that scores nothing."""
    bad = ~np.isfinite(a)
    if bad.any():
        r = int(np.flatnonzero(bad.any(axis=1))[0])
        raise DataError(f"{path} {where[r]} holds nan or inf (or a number beyond float32's "
                        "range); fix or remove that row")
    return torch.from_numpy(np.ascontiguousarray(a))


def _read_csv(path: Path, label_column: str, need_label: bool) -> Table:
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read CSV file {path} ({e}); it must be UTF-8 text") from None
    if len(rows) < 2:
        raise DataError(f"CSV file {path} has no data rows; expected a header and one row each")
    header = [h.strip() for h in rows[0]]
    if label_column not in header and need_label:
        raise DataError(
            f"CSV file {path} has no column '{label_column}' (columns: {', '.join(header[:8])}); "
            "name the label column with --label-column"
        )
    li = header.index(label_column) if label_column in header else -1
    labels, feats, where = [], [], []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"CSV file {path} line {n} has {len(row)} fields, header has "
                            f"{len(header)}; fix that line")
        try:
            feats.append([float(v) for i, v in enumerate(row) if i != li])
        except ValueError:
            raise DataError(
                f"CSV file {path} line {n} has a non-numeric feature; only the label column "
                "may hold text"
            ) from None
        labels.append(row[li].strip())
        where.append(f"line {n}")
    with np.errstate(over="ignore"):  # beyond float32's range -> inf, refused by _finite
        x32 = np.array(feats, dtype=np.float32)
    x = _finite(x32, path, where)
    return Table(x, labels if li >= 0 else None, [f"{path}:{w[5:]}" for w in where], where)


def _read_npy(path: Path, label_column: str, features: int | None) -> Table:
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read NPY file {path} ({str(e)[:80]}); save it with numpy.save "
                        "as a plain numeric array") from None
    if a.ndim != 2 or not np.issubdtype(a.dtype, np.number) or (
            features is None and a.shape[1] < 2):
        raise DataError(f"NPY file {path} has shape {a.shape} and dtype {a.dtype}; expected a "
                        "numeric (N, D+1) array whose last column is the label")
    where = [f"row {i}" for i in range(len(a))]
    sources = [f"{path}:{i}" for i in range(len(a))]
    if features is not None and a.shape[1] == features:  # features only, no label column
        with np.errstate(over="ignore"):
            return Table(_finite(a.astype(np.float32), path, where), None, sources, where)
    li = int(label_column) if label_column.lstrip("-").isdigit() else a.shape[1] - 1
    if not -a.shape[1] <= li < a.shape[1]:
        raise DataError(f"NPY file {path} has {a.shape[1]} columns; label column {li} does not "
                        "exist: pass --label-column with a column index")
    _finite(a[:, [li]].astype(np.float64), path, [w + " (its label)" for w in where])
    labels = [_label_text(v) for v in a[:, li]]
    with np.errstate(over="ignore"):
        x32 = np.delete(a, li, axis=1).astype(np.float32)
    return Table(_finite(x32, path, where), labels, sources, where)


def read_table(path: str | Path, label_column: str, need_label: bool = True,
               features: int | None = None) -> Table:
    """A .csv or .npy table. need_label False: a CSV without the label column is all features;
    an NPY of exactly `features` columns has no label."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"table {path} does not exist; give a .csv or .npy file")
    if path.suffix.lower() == ".csv":
        return _read_csv(path, label_column, need_label)
    if path.suffix.lower() == ".npy":
        return _read_npy(path, label_column, None if need_label else features)
    raise DataError(f"{path} is not a table; give a .csv (with a header row) or a .npy file")


def rows_for_model(path: str | Path, label_column: str, features: int) -> Table:
    """A table to embed, compare or predict with a model of `features` inputs; its label
    column may be left out."""
    t = read_table(path, label_column, need_label=False, features=features)
    if t.x.shape[1] != features:
        raise DataError(f"{path} has {t.x.shape[1]} feature columns; the model was trained on "
                        f"{features} (plus the label column '{label_column}', which may be left "
                        "out)")
    return t


def _classes(table: Table) -> tuple[np.ndarray, list[str]]:
    def key(c: str) -> tuple:
        try:
            return (0, float(c), c)
        except ValueError:
            return (1, 0.0, c)

    raw = table.labels or []
    classes = sorted(set(raw), key=key)
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[c] for c in raw], dtype=np.int64), classes


def load_table(path: Path, label_column: str) -> LabeledData:
    """A .csv (header row; the label column by name) or .npy (the label column by index,
    default the last) of numeric features with a class label per row."""
    t = read_table(path, label_column)
    y, classes = _classes(t)
    return LabeledData(x=t.x, y=y, classes=classes, sources=t.sources, kind="vector")


def numeric_labels(table: Table, path: str | Path, label_column: str) -> np.ndarray:
    """The label column as float64; a label that is not a finite number is refused."""
    y = np.empty(len(table.where), dtype=np.float64)
    for i, (text, where) in enumerate(zip(table.labels or [], table.where, strict=True)):
        try:
            y[i] = float(text)
        except ValueError:
            y[i] = np.nan
        if not np.isfinite(y[i]):
            raise DataError(f"{path} {where}: label '{text[:20]}' in column '{label_column}' "
                            "is not a finite number; regression needs a numeric label column")
    return y


def regression_table(path: str, label_column: str) -> tuple[torch.Tensor, np.ndarray, str]:
    """(features (N, D) float32, labels (N,) float64, a name); "" = scikit-learn's diabetes."""
    if not path:
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True)
        return torch.tensor(x, dtype=torch.float32), y.astype(np.float64), "diabetes"
    if Path(path).suffix.lower() not in (".csv", ".npy"):
        raise DataError(f"train.task regression reads a table with a numeric label column; "
                        f"{path} is not a .csv or .npy")
    table = read_table(path, label_column)
    return table.x, numeric_labels(table, path, label_column), path


def table_fingerprint(x: torch.Tensor, y: np.ndarray) -> str:
    """Identifies the rows a regression run trained on (its split names them by number)."""
    return hashlib.sha256(x.numpy().tobytes() + y.tobytes()).hexdigest()[:16]
