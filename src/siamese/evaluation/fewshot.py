"""N-way K-shot classification over episodes, on embeddings computed once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..data.sampling import class_index, sample_episode


def episode_accuracy(scores: torch.Tensor, s_cls: np.ndarray, q_cls: np.ndarray,
                     n_way: int) -> float:
    """scores (Q, S) similarity of each query to each support item -> accuracy.

    With K > 1 shots, a class's score is the mean over its support items.
    """
    s_onehot = torch.zeros(len(s_cls), n_way, dtype=scores.dtype)
    s_onehot[torch.arange(len(s_cls)), torch.as_tensor(s_cls)] = 1
    class_scores = scores @ s_onehot / s_onehot.sum(0)
    pred = class_scores.argmax(1).numpy()
    return float((pred == q_cls).mean())


def few_shot(
    emb: torch.Tensor, labels: np.ndarray, n_way: int, k_shot: int, episodes: int,
    n_query: int, score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    seed: int = 0, prototypes: bool = True, normalize: bool = False,
) -> dict[str, float]:
    """Mean accuracy over episodes with a 95% confidence interval.

    score(q (Q, D), s (S, D)) -> (Q, S) similarities. With `prototypes` and K > 1, each class is
    represented by the mean of its support embeddings (Snell et al. 2017); otherwise every support
    item is scored and the class's scores averaged (how the pair head is used).
    """
    labels = np.asarray(labels)
    by_class = class_index(labels)  # once, not once per episode
    counts = np.array([len(v) for v in by_class.values()])
    n_way = min(n_way, int((counts >= k_shot + 1).sum()))
    if n_way < 2:
        return {"accuracy": float("nan"), "ci95": float("nan"), "n_way": n_way, "k_shot": k_shot,
                "episodes": 0}
    rng = np.random.default_rng(seed)
    accs = np.empty(episodes)
    for e in range(episodes):
        s, s_cls, q, q_cls = sample_episode(labels, n_way, k_shot, n_query, rng,
                                            by_class=by_class)
        support = emb[s]
        if prototypes and k_shot > 1:
            support = torch.stack([support[s_cls == c].mean(0) for c in range(n_way)])
            if normalize:
                support = torch.nn.functional.normalize(support, dim=1)
            s_cls = np.arange(n_way)
        accs[e] = episode_accuracy(score(emb[q], support), s_cls, q_cls, n_way)
    return {
        "accuracy": float(accs.mean()),
        "ci95": float(1.96 * accs.std(ddof=1) / np.sqrt(episodes)) if episodes > 1 else 0.0,
        "n_way": n_way,
        "k_shot": k_shot,
        "episodes": episodes,
    }
