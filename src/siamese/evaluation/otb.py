"""The OTB one-pass evaluation (Wu, Lim and Yang 2013): success and precision of a tracker's
boxes against the truth, frame by frame, from the first frame on.

- success(t): the share of frames whose IoU with the truth exceeds t, for t = 0, 0.05, ..., 1;
  the success score is its area under the curve (the mean over the 21 thresholds);
- precision(d): the share of frames whose centre lies within d pixels of the truth's; the
  precision score is precision(20).

As the OTB toolkit does, a frame whose true box has no area (or is missing) counts for neither
curve, and a tracker's missing or empty box has IoU 0 and an infinite centre error.
"""

from __future__ import annotations

import numpy as np

SUCCESS_THRESHOLDS = np.linspace(0, 1, 21)
PRECISION_THRESHOLDS = np.arange(0, 51)


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of (N, 4) x,y,w,h boxes."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    left, top = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    right = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    bottom = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(out, nan=0.0)


def centre_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ca = a[:, :2] + (a[:, 2:] - 1) / 2
    cb = b[:, :2] + (b[:, 2:] - 1) / 2
    return np.sqrt(((ca - cb) ** 2).sum(1))


def _aligned(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frames with a valid true box; a prediction missing for a frame (a short result file)
    or without area counts as lost."""
    n = len(truth)
    p = np.full((n, 4), np.nan)
    p[:min(n, len(pred))] = np.asarray(pred, float)[:n]
    valid = np.isfinite(truth).all(1) & (truth[:, 2] > 0) & (truth[:, 3] > 0)
    lost = ~(np.isfinite(p).all(1) & (p[:, 2] > 0) & (p[:, 3] > 0))
    p[lost] = [-1e6, -1e6, 0, 0]
    return p[valid], truth[valid]


def score(pred: np.ndarray, truth: np.ndarray) -> dict:
    """-> success curve, success AUC, precision curve, precision at 20 px."""
    p, t = _aligned(np.asarray(pred, float), np.asarray(truth, float))
    overlaps, errors = iou(p, t), centre_error(p, t)
    success = np.array([(overlaps > th).mean() for th in SUCCESS_THRESHOLDS])
    precision = np.array([(errors <= th).mean() for th in PRECISION_THRESHOLDS])
    return {"success_auc": float(success.mean()), "precision_20": float(precision[20]),
            "success": success.tolist(), "precision": precision.tolist(), "frames": len(t),
            "mean_iou": float(overlaps.mean())}


def mean_scores(per_target: dict[str, dict]) -> dict:
    """The mean over targets of the scores and curves (each target weighs the same)."""
    rows = list(per_target.values())
    return {"success_auc": float(np.mean([r["success_auc"] for r in rows])),
            "precision_20": float(np.mean([r["precision_20"] for r in rows])),
            "success": np.mean([r["success"] for r in rows], 0).tolist(),
            "precision": np.mean([r["precision"] for r in rows], 0).tolist(),
            "targets": len(rows)}
