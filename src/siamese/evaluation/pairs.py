"""The verification protocol on a pairs file, as face papers report it: k-fold cross-validated
accuracy (the threshold chosen on the other k-1 folds, accuracy on the held-out fold; mean and
standard deviation over folds), with ROC AUC, EER and TAR@FAR over all pairs. Graded pairs
(scores, not 0/1) are scored by Pearson and Spearman correlation and mean absolute error."""

from __future__ import annotations

import numpy as np
import torch
from scipy.stats import pearsonr, spearmanr

from ..data.pairs import Pairs, assign_folds
from .verification import best_threshold, verification_metrics


def kfold_accuracy(labels: np.ndarray, scores: np.ndarray, folds: np.ndarray) -> dict:
    """Per fold f: t = best_threshold(pairs not in f), accuracy of `score >= t` on f."""
    accs, thresholds = [], []
    for f in np.unique(folds):
        test = folds == f
        t = best_threshold(labels[~test], scores[~test])
        thresholds.append(float(t))
        accs.append(float(((scores[test] >= t) == (labels[test] == 1)).mean()))
    a = np.array(accs)
    return {"accuracy": float(a.mean()), "accuracy_std": float(a.std(ddof=1)) if len(a) > 1
            else 0.0, "folds": len(a), "per_fold": accs, "thresholds": thresholds}


def graded_metrics(true: np.ndarray, pred: np.ndarray,
                   score_range: tuple[float, float] | None = None) -> dict:
    """Scores in any range: normalised to [0, 1] by score_range (the range the model trained
    on), else by their own min and max, then compared with the predicted similarity."""
    lo, hi = score_range if score_range is not None else (float(true.min()), float(true.max()))
    t = (true - lo) / (hi - lo) if hi > lo else np.zeros_like(true)
    return {"pearson": float(pearsonr(pred, t).statistic), "spearman":
            float(spearmanr(pred, t).statistic), "mae": float(np.abs(pred - t).mean()),
            "score_range": [lo, hi], "pairs": int(len(t))}


def plot_graded(true: np.ndarray, pred: np.ndarray, metrics: dict, path, title: str) -> None:
    """Predicted similarity against the true score (both on the 0..1 scale of the metrics)."""
    from .plots import plot_scatter

    lo, hi = metrics["score_range"]
    t = (true - lo) / (hi - lo) if hi > lo else np.zeros_like(true)
    plot_scatter(t, pred, f"{title}: Spearman {metrics['spearman']:.3f}, MAE "
                 f"{metrics['mae']:.3f}", path, label=f"score ({lo:g}..{hi:g} as 0..1)")


@torch.no_grad()
def score_pairs(model, pairs: Pairs, views: int | None = None, chunk: int = 256,
                rows: torch.Tensor | None = None) -> np.ndarray:
    """The model's similarity of every pair; each distinct image embedded once. rows: the
    raw vectors of the table whose row numbers the pairs name."""
    if rows is not None:
        emb = model.embed_tensor(model.preprocessing.normalize(rows))
        return model.score_embeddings(emb[torch.as_tensor(pairs.a)], emb[torch.as_tensor(pairs.b)])
    paths = sorted(set(pairs.a) | set(pairs.b))
    where = {p: i for i, p in enumerate(paths)}
    embs = [model.embed_tensor(model.to_tensor(paths[s:s + chunk]), views=views)
            for s in range(0, len(paths), chunk)]
    emb = torch.cat(embs)
    i = torch.tensor([where[p] for p in pairs.a])
    j = torch.tensor([where[p] for p in pairs.b])
    return model.score_embeddings(emb[i], emb[j])


def evaluate_pairs(model, pairs: Pairs, n_folds: int = 10, views: int | None = None,
                   seed: int = 0, rows: torch.Tensor | None = None) -> tuple[dict, np.ndarray]:
    """(metrics, scores). Binary pairs: the k-fold protocol (the file's folds, e.g. LFW's 10,
    else n_folds drawn by the seed) and the ROC figures; graded pairs: correlations."""
    scores = score_pairs(model, pairs, views, rows=rows)
    if pairs.graded:
        trained = model.card.get("pairs") or {}
        rng = trained.get("score_range") if trained.get("graded") else None
        return {"graded": graded_metrics(pairs.label, scores, rng)}, scores
    labels = pairs.label.astype(np.int64)
    if len(np.unique(labels)) < 2:
        from ..errors import DataError

        raise DataError(f"pairs file {pairs.source} has only one kind of pair; verification "
                        "needs both same (1) and different (0) pairs")
    folds = pairs.folds if pairs.folds is not None else assign_folds(len(labels), n_folds, seed)
    metrics = {"protocol": kfold_accuracy(labels, scores, folds),
               "verification": verification_metrics(labels, scores)}
    return metrics, scores
