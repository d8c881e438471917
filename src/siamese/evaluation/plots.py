"""Plots a person would rather see than read: ROC curve, score histogram, training curves,
predicted against true values."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.stats import norm  # noqa: E402
from sklearn.metrics import det_curve, roc_curve  # noqa: E402

from ..atomic import atomic_write  # noqa: E402


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    plt.close(fig)


def plot_roc(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path) -> None:
    """curves: name -> (labels, scores, auc)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    for name, (labels, scores, auc) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        ax.plot(fpr, tpr, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false accept rate", ylabel="true accept rate", title="Verification ROC")
    ax.legend(loc="lower right", fontsize=8)
    _save(fig, path)


def plot_det(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path) -> None:
    """Detection error trade-off: miss rate against false alarm rate on normal-deviate axes
    (as speaker verification reports it); curves: name -> (labels, scores, EER)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5])
    for name, (labels, scores, eer) in curves.items():
        fpr, fnr, _ = det_curve(labels, scores)
        ok = (fpr > 0) & (fpr < 1) & (fnr > 0) & (fnr < 1)
        ax.plot(norm.ppf(fpr[ok]), norm.ppf(fnr[ok]), label=f"{name} (EER {100 * eer:.2f}%)")
    lim = norm.ppf([0.0005, 0.6])
    ax.plot(lim, lim, "k:", lw=0.8)
    ax.set_xticks(norm.ppf(ticks), [f"{100 * t:g}%" for t in ticks])
    ax.set_yticks(norm.ppf(ticks), [f"{100 * t:g}%" for t in ticks])
    ax.set(xlim=lim, ylim=lim, xlabel="false alarm rate", ylabel="miss rate", title="DET")
    ax.legend(loc="upper right", fontsize=8)
    _save(fig, path)


def plot_score_hist(labels: np.ndarray, scores: np.ndarray, threshold: float | None,
                    title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 3.4))
    bins = np.linspace(float(scores.min()), float(scores.max()) + 1e-9, 41)
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label="same class", color="tab:green")
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label="different class", color="tab:red")
    if threshold is not None:
        ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3f}")
    ax.set(xlabel="similarity", ylabel="pairs", title=title)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_history(history: list[dict], path: Path) -> None:
    epochs = [h["epoch"] for h in history]
    fig, ax1 = plt.subplots(figsize=(5, 3.4))
    ax1.plot(epochs, [h["loss"] for h in history], color="tab:blue", label="train loss")
    ax1.set(xlabel="epoch", ylabel="train loss")
    key = next((k for h in history for k in h if k.startswith("val_")), None)
    if key is not None:  # val_auc, val_spearman, val_r2
        label = {"val_auc": "val ROC AUC"}.get(key, key.replace("_", " "))
        ax2 = ax1.twinx()
        ax2.plot(epochs, [h.get(key, np.nan) for h in history], color="tab:orange", label=label)
        ax2.set_ylabel(label)
    ax1.set_title("Training")
    _save(fig, path)


def plot_scatter(true: np.ndarray, pred: np.ndarray, title: str, path: Path,
                 err: np.ndarray | None = None, label: str = "value") -> None:
    """Predicted against true, the diagonal for reference; err: one standard deviation."""
    fig, ax = plt.subplots(figsize=(4.5, 4.2))
    if err is not None:
        ax.errorbar(true, pred, yerr=err, fmt="o", ms=3, alpha=0.6, elinewidth=0.6)
    else:
        ax.scatter(true, pred, s=8, alpha=0.6)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k:", lw=0.8)
    ax.set(xlabel=f"true {label}", ylabel=f"predicted {label}", title=title)
    _save(fig, path)
