"""Predict the label of every row of a table with a twin-regression run, writing a CSV."""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

from .atomic import atomic_write_bytes
from .data.table import numeric_labels, rows_for_model
from .errors import ConfigError
from .evaluation.regression import regression_metrics


def predict_table(model, table: str | Path, out: str | Path | None) -> tuple[int, dict | None]:
    """-> (rows predicted, metrics against the table's label column where it has one). The
    CSV (row, source, prediction, uncertainty[, label]) goes to `out`, else to stdout."""
    if not model.regression:
        raise ConfigError(f"{model.run} scores similarity; predict needs a run trained with "
                          "--task regression (use compare, identify or embed)")
    label_column = model.card["config"]["data"]["label_column"]
    t = rows_for_model(table, label_column, model.preprocessing.input_shape[0])
    y = numeric_labels(t, table, label_column) if t.labels is not None else None
    pred, unc = model.predict(t.x.numpy())
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(["row", "source", "prediction", "uncertainty"] + (["label"] if y is not None
                                                                   else []))
    for i, (s, p, u) in enumerate(zip(t.sources, pred, unc, strict=True)):
        w.writerow([i, s, f"{p:.6g}", f"{u:.6g}"] + ([f"{y[i]:.6g}"] if y is not None else []))
    if out is not None:
        atomic_write_bytes(out, text.getvalue().encode())
    else:
        sys.stdout.write(text.getvalue())
    return len(pred), regression_metrics(y, pred, unc) if y is not None and len(y) > 1 else None
