"""Evaluate a model on a labeled set: verification, few-shot and retrieval, from embeddings
computed once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..config import EvalConfig
from ..data.sampling import sample_pairs
from .fewshot import few_shot
from .plots import plot_det, plot_roc, plot_score_hist
from .retrieval import retrieval_metrics
from .score_norm import as_norm
from .verification import verification_metrics

MAX_RETRIEVAL_ITEMS = 5000


def evaluate_embeddings(model, emb: torch.Tensor, labels: np.ndarray, cfg: EvalConfig,
                        threshold: float | None, seed: int = 0,
                        cohort: torch.Tensor | None = None,
                        cohort_top: int = 100) -> tuple[dict, dict]:
    """-> (metrics, raw) where raw holds the verification labels and scores for plotting.
    cohort: embeddings of other people (e.g. the training speakers): the same pairs are also
    scored with AS-norm against them ("verification_as_norm"; no calibrated threshold, since
    the run's applies to raw scores)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    i, j, y = sample_pairs(labels, cfg.pairs, rng)
    scores = model.score_embeddings(emb[i], emb[j])
    metrics: dict = {"samples": int(len(labels)), "classes": int(len(np.unique(labels)))}
    metrics["verification"] = verification_metrics(y, scores, threshold)
    if cohort is not None:
        normed = as_norm(emb.numpy(), i, j, cohort.numpy(), cohort_top)
        metrics["verification_as_norm"] = verification_metrics(y, normed, None)

    def score(q: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model.net.score_matrix(q, s)

    fs = {}
    for k in cfg.shots:
        for n in cfg.ways:
            r = few_shot(emb, labels, n, k, cfg.episodes, cfg.queries_per_class, score,
                         seed=seed, prototypes=model.net.head is None,
                         normalize=model.net.normalize)
            if r["episodes"]:
                fs[f"{r['n_way']}-way {k}-shot"] = r
    metrics["few_shot"] = fs

    keep = np.arange(len(labels))
    if len(keep) > MAX_RETRIEVAL_ITEMS:
        keep = np.sort(rng.choice(keep, MAX_RETRIEVAL_ITEMS, replace=False))
    sub = emb[torch.from_numpy(keep)]
    if len(np.unique(labels[keep])) >= 2:
        metrics["retrieval"] = retrieval_metrics(score(sub, sub), labels[keep])
    return metrics, {"labels": y, "scores": scores}


def write_plots(run: Path, raws: dict[str, dict], metrics: dict, threshold: float | None) -> None:
    curves = {name: (r["labels"], r["scores"], metrics[name]["verification"]["roc_auc"])
              for name, r in raws.items()}
    plot_roc(curves, run / "roc.png")
    plot_det({name: (r["labels"], r["scores"], metrics[name]["verification"]["eer"])
              for name, r in raws.items()}, run / "det.png")
    for name, r in raws.items():
        plot_score_hist(r["labels"], r["scores"], threshold, f"Pair similarity: {name}",
                        run / f"scores_{name}.png")


def format_table(metrics: dict[str, dict]) -> str:
    """A plain-text table, one column per evaluated set."""
    names = list(metrics)
    rows: list[tuple[str, list[str]]] = [
        ("samples / classes", [f"{m['samples']} / {m['classes']}" for m in metrics.values()])]

    def get(m: dict, *path):
        for p in path:
            if not isinstance(m, dict) or p not in m:
                return None
            m = m[p]
        return m

    def fmt(v, pct: bool = False):
        if v is None:
            return "-"
        return f"{100 * v:.1f}%" if pct else f"{v:.4f}"

    for label, path, pct in [
        ("verification ROC AUC", ("verification", "roc_auc"), False),
        ("EER", ("verification", "eer"), True),
        ("accuracy @ threshold", ("verification", "accuracy"), True),
        ("TAR @ FAR=1e-2", ("verification", "tar@far=1e-2"), True),
        ("TAR @ FAR=1e-3", ("verification", "tar@far=1e-3"), True),
        ("minDCF (p_target 0.01)", ("verification", "min_dcf@0.01"), False),
        *([("EER, AS-norm", ("verification_as_norm", "eer"), True),
           ("minDCF, AS-norm", ("verification_as_norm", "min_dcf@0.01"), False)]
          if any("verification_as_norm" in m for m in metrics.values()) else []),
    ]:
        rows.append((label, [fmt(get(m, *path), pct) for m in metrics.values()]))
    episodes = sorted({k for m in metrics.values() for k in m.get("few_shot", {})},
                      key=lambda k: (int(k.split("-")[0]), k))
    for k in episodes:
        cells = []
        for m in metrics.values():
            r = get(m, "few_shot", k)
            cells.append("-" if r is None else
                         f"{100 * r['accuracy']:.1f}% +- {100 * r['ci95']:.1f}")
        rows.append((k, cells))
    for label, key in [("precision@1", "precision@1"), ("R-precision", "r_precision"),
                       ("MAP@R", "map@r")]:
        rows.append((label, [fmt(get(m, "retrieval", key)) for m in metrics.values()]))
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(names[c]), *(len(r[1][c]) for r in rows)) for c in range(len(names))]
    lines = ["  ".join([" " * w0] + [n.rjust(w) for n, w in zip(names, widths, strict=True)])]
    for label, cells in rows:
        lines.append("  ".join([label.ljust(w0)] +
                               [c.rjust(w) for c, w in zip(cells, widths, strict=True)]))
    return "\n".join(lines)
