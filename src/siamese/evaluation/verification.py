"""Verification metrics on scored pairs: ROC AUC, EER, TAR at fixed FAR, minDCF (speaker
verification's cost at p_target = 0.01), threshold accuracy.

Scores are similarities (higher = more alike), labels 1 for same class. ROC computations are
scikit-learn's.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def equal_error_rate(labels: np.ndarray, scores: np.ndarray) -> float:
    """The rate where false accepts equal false rejects (interpolated between ROC points)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1 - tpr
    i = int(np.argmax(fnr <= fpr))  # first point where the curves have crossed
    if i == 0:
        return float(fpr[0])
    # linear interpolation between points i-1 and i of (fpr - fnr), which changes sign there
    d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
    t = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tar_at_far(labels: np.ndarray, scores: np.ndarray, far: float) -> float:
    """True accept rate at the largest threshold whose false accept rate is <= far."""
    fpr, tpr, _ = roc_curve(labels, scores)
    ok = fpr <= far
    return float(tpr[ok].max()) if ok.any() else 0.0


def min_dcf(labels: np.ndarray, scores: np.ndarray, p_target: float = 0.01,
            c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """The minimum normalised detection cost (NIST SRE): over all thresholds, the least
    c_miss P_miss p_target + c_fa P_fa (1 - p_target), divided by the cost of the better
    trivial system (accept all or reject all)."""
    fpr, tpr, _ = roc_curve(labels, scores)
    cost = c_miss * (1 - tpr) * p_target + c_fa * fpr * (1 - p_target)
    return float(cost.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def best_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The threshold (score >= t means 'same') with the highest accuracy; calibrate on validation
    pairs only, never on test pairs."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    # accepting the first i pairs: correct = positives among them + negatives after them
    tp = np.concatenate([[0], np.cumsum(y)])
    fp = np.concatenate([[0], np.cumsum(1 - y)])
    correct = tp + (len(y) - y.sum() - fp)
    # only cut between different scores
    cut_ok = np.concatenate([[True], s[1:] != s[:-1], [True]])
    i = int(np.argmax(np.where(cut_ok, correct, -1)))
    if i == 0:
        return float(s[0] + 1e-6)
    if i == len(s):
        return float(s[-1])
    return float((s[i - 1] + s[i]) / 2)


def verification_metrics(labels: np.ndarray, scores: np.ndarray,
                         threshold: float | None = None) -> dict[str, float]:
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    out = {
        "roc_auc": float(roc_auc_score(labels, scores)),
        "eer": equal_error_rate(labels, scores),
        "tar@far=1e-2": tar_at_far(labels, scores, 1e-2),
        "tar@far=1e-3": tar_at_far(labels, scores, 1e-3),
        "min_dcf@0.01": min_dcf(labels, scores, 0.01),
        "pairs": int(len(labels)),
    }
    if threshold is not None:
        out["threshold"] = float(threshold)
        out["accuracy"] = float(((scores >= threshold) == (labels == 1)).mean())
        # the most accurate threshold for these very pairs: what a threshold calibrated
        # elsewhere falls short of (the calibration gap)
        best = best_threshold(labels, scores)
        out["best_accuracy"] = float(((scores >= best) == (labels == 1)).mean())
    return out
