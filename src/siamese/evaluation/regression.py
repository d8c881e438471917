"""Regression metrics of a twin-network model on rows with known labels: RMSE, MAE, R^2 (from
scikit-learn), the mean predicted uncertainty, and the predicted-vs-true plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

from .plots import plot_scatter


def regression_metrics(true: np.ndarray, pred: np.ndarray,
                       uncertainty: np.ndarray | None = None) -> dict:
    m = {"rmse": float(np.sqrt(mean_squared_error(true, pred))),
         "mae": float(mean_absolute_error(true, pred)),
         "r2": float(r2_score(true, pred)) if len(true) > 1 else float("nan"),
         "rows": int(len(true))}
    if uncertainty is not None:
        m["mean_uncertainty"] = float(np.mean(uncertainty))
    return m


def evaluate_regression(model, x, y: np.ndarray, name: str,
                        out: Path | None) -> tuple[dict, np.ndarray, np.ndarray]:
    """x: raw feature rows (N, D); -> (metrics, predictions, uncertainties); with `out`, the
    plot `<out>/regression_<name>.png`."""
    pred, unc = model.predict(x)
    metrics = regression_metrics(y, pred, unc)
    if out is not None:
        plot_scatter(y, pred, f"{name}: RMSE {metrics['rmse']:.3g}, R\u00b2 {metrics['r2']:.3f}",
                     out / f"regression_{name}.png", err=unc,
                     label=model.card.get("regression", {}).get("label_column", "value"))
    return metrics, pred, unc


def evaluate_regression_run(model, data: str | Path | None, out: Path | None) -> dict:
    """A twin-regression run on its own test rows (split.json), or on a table with labels."""
    from ..artifact import read_json
    from ..atomic import atomic_write_json
    from ..config import config_from_dict
    from ..data.table import regression_table, table_fingerprint
    from ..errors import DataError

    cfg = config_from_dict(model.card["config"])
    if data is not None:
        x, y, _ = regression_table(str(data), cfg.data.label_column)
        name = "data"
    else:
        x, y, _ = regression_table(cfg.data.path, cfg.data.label_column)
        if table_fingerprint(x, y) != model.card["data"]["fingerprint"]:
            raise DataError(f"the table {cfg.data.path or 'diabetes'} changed since {model.run} "
                            "was trained; pass --data to evaluate on new rows")
        test = read_json(model.run / "split.json", "the split")["indices"]["test"]
        if len(test) < 2:
            raise DataError(f"{model.run} kept no test rows (split.test_fraction 0); pass "
                            "--data with a table of labelled rows")
        x, y, name = x[test], y[test], "test"
    where = out if out is not None else model.run
    metrics = {name: evaluate_regression(model, x.numpy(), y, name, where)[0]}
    if where is not None:
        atomic_write_json(where / "metrics.json", metrics)
    return metrics
