"""Samplers: P x K class-balanced batches, balanced pairs, triplets and N-way K-shot episodes.

Every sampler draws from a numpy Generator that the caller seeds: same seed, same samples.
"""

from __future__ import annotations

import numpy as np


def class_index(labels: np.ndarray) -> dict[int, np.ndarray]:
    """class -> indices of its samples."""
    order = np.argsort(labels, kind="stable")
    classes, starts = np.unique(labels[order], return_index=True)
    return {int(c): a for c, a in zip(classes, np.split(order, starts[1:]), strict=True)}


class ClassBalancedSampler:
    """Batches of P classes x K samples that visit every sample at least once per epoch.

    Each class's samples are shuffled and cut into chunks of K (the last chunk topped up with
    other samples of the same class). Chunks are then dealt into batches of P distinct classes,
    classes with more chunks left going first, so that no class is left over at the end. When
    fewer than P classes have chunks left, the batch is filled with random chunks of other classes.
    """

    def __init__(self, labels: np.ndarray, p: int, k: int, seed: int = 0,
                 groups: np.ndarray | None = None) -> None:
        """groups: optional group id per class (e.g. the Omniglot alphabet). With groups, each
        batch takes its classes from as few groups as possible: within-group negatives are the
        hard ones, as in the within-alphabet one-shot task."""
        self.labels = np.asarray(labels)
        self.groups = None if groups is None else np.asarray(groups)
        self.by_class = {c: i for c, i in class_index(self.labels).items() if len(i) >= 2}
        if len(self.by_class) < 2:
            raise ValueError("need at least 2 classes with 2 samples each")
        self.p = min(p, len(self.by_class))
        self.k = k
        self.seed = seed

    def _chunks(self, idx: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        idx = rng.permutation(idx)
        if len(idx) < self.k:
            idx = np.concatenate([idx, rng.choice(idx, self.k - len(idx), replace=True)])
        n = -(-len(idx) // self.k)
        pad = n * self.k - len(idx)
        if pad:  # top up the last chunk with samples from the earlier chunks (no repeats in it)
            earlier = idx[: (n - 1) * self.k]
            idx = np.concatenate([idx, rng.choice(earlier, pad, replace=False)])
        return list(idx.reshape(n, self.k))

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The epoch's batches, each (P * K,) sample indices. Vectorised over the classes: an
        epoch of 3,000 batches over 40,000 classes takes about a second."""
        rng = np.random.default_rng([self.seed, epoch])
        classes = np.fromiter(self.by_class, dtype=np.int64, count=len(self.by_class))
        left = [self._chunks(self.by_class[int(c)], rng) for c in classes]
        counts = np.array([len(x) for x in left], dtype=np.float64)
        group = None
        if self.groups is not None:
            group = np.unique(self.groups[classes], return_inverse=True)[1]
        batches = []
        while True:
            alive = np.flatnonzero(counts > 0)
            if not len(alive):
                break
            # Random order, but classes with more chunks left first: no class is stranded.
            key = counts[alive] + rng.random(len(alive))
            if group is not None:
                # Whole groups first, in a random order weighted by the chunks they have left.
                w = np.bincount(group[alive], weights=counts[alive])
                gids = np.flatnonzero(w > 0)
                order = rng.choice(gids, len(gids), replace=False, p=w[gids] / w[gids].sum())
                rank = np.empty(len(w), dtype=np.int64)
                rank[order] = np.arange(len(order))
                key = key - 1e6 * rank[group[alive]]
            n = min(self.p, len(alive))
            top = np.argpartition(-key, n - 1)[:n] if n < len(alive) else np.arange(len(alive))
            take = alive[top[np.argsort(-key[top], kind="stable")]]
            batch = [left[t].pop() for t in take]
            counts[take] -= 1
            if n < self.p:  # the last batch: fill with chunks of other classes
                others = np.setdiff1d(np.arange(len(classes)), take)
                for t in rng.choice(others, self.p - n, replace=False):
                    idx = self.by_class[int(classes[t])]
                    batch.append(rng.choice(idx, self.k, replace=len(idx) < self.k))
            batches.append(np.concatenate(batch))
        order = rng.permutation(len(batches))
        return [batches[i] for i in order]


def pairable(labels: np.ndarray) -> bool:
    """Whether balanced pairs can be drawn: two classes, one of them with two samples."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    return len(counts) >= 2 and bool((counts >= 2).any())


def sample_pairs(labels: np.ndarray, n: int, rng: np.random.Generator):
    """n balanced pairs: n//2 positives (same class, two different samples) and the rest negatives.

    Returns (i, j, y) int64 arrays, y = 1 for same class. Classes for positives are drawn in
    proportion to how many pairs they can make... approximately: by sample count.
    """
    by_class = class_index(np.asarray(labels))
    pos_classes = np.array([c for c, i in by_class.items() if len(i) >= 2])
    if not pairable(labels):
        raise ValueError("need a class with 2 samples and at least 2 classes for pairs")
    n_pos = n // 2
    n_neg = n - n_pos
    weights = np.array([len(by_class[c]) for c in pos_classes], dtype=np.float64)
    pc = rng.choice(pos_classes, n_pos, p=weights / weights.sum())
    i_pos, j_pos = np.empty(n_pos, np.int64), np.empty(n_pos, np.int64)
    for t, c in enumerate(pc):
        i_pos[t], j_pos[t] = rng.choice(by_class[c], 2, replace=False)
    labels = np.asarray(labels)
    i_neg = rng.integers(0, len(labels), n_neg)
    j_neg = rng.integers(0, len(labels), n_neg)
    bad = labels[i_neg] == labels[j_neg]
    while bad.any():  # redraw the partners that landed in the same class
        j_neg[bad] = rng.integers(0, len(labels), int(bad.sum()))
        bad = labels[i_neg] == labels[j_neg]
    y = np.concatenate([np.ones(n_pos, np.int64), np.zeros(n_neg, np.int64)])
    return np.concatenate([i_pos, i_neg]), np.concatenate([j_pos, j_neg]), y


def sample_triplets(labels: np.ndarray, n: int, rng: np.random.Generator):
    """n random triplets (anchor, positive of the same class, negative of another class)."""
    labels = np.asarray(labels)
    by_class = class_index(labels)
    anchors_ok = np.flatnonzero([len(by_class[int(c)]) >= 2 for c in labels])
    a = rng.choice(anchors_ok, n)
    p = np.empty(n, np.int64)
    for t, i in enumerate(a):
        same = by_class[int(labels[i])]
        cand = same[same != i]
        p[t] = rng.choice(cand)
    neg = rng.integers(0, len(labels), n)
    bad = labels[neg] == labels[a]
    while bad.any():
        neg[bad] = rng.integers(0, len(labels), int(bad.sum()))
        bad = labels[neg] == labels[a]
    return a, p, neg


def sample_episode(
    labels: np.ndarray, n_way: int, k_shot: int, n_query: int, rng: np.random.Generator,
    classes: np.ndarray | None = None, by_class: dict[int, np.ndarray] | None = None,
):
    """One N-way K-shot episode: (support (N*K,), support class (N*K,), query, query class).

    Class ids in the episode are 0..N-1 in the order drawn. Only classes with at least
    k_shot + 1 samples take part; `classes` restricts the draw (e.g. to one alphabet).
    by_class: `class_index(labels)`, when the caller draws many episodes from the same labels.
    """
    by_class = by_class if by_class is not None else class_index(np.asarray(labels))
    pool = [c for c in (by_class if classes is None else classes)
            if len(by_class.get(int(c), ())) >= k_shot + 1]
    chosen = rng.choice(pool, n_way, replace=False)
    support, query, s_cls, q_cls = [], [], [], []
    for e, c in enumerate(chosen):
        idx = rng.permutation(by_class[int(c)])
        q = idx[k_shot: k_shot + n_query]
        support.append(idx[:k_shot])
        query.append(q)
        s_cls.append(np.full(k_shot, e))
        q_cls.append(np.full(len(q), e))
    return (np.concatenate(support), np.concatenate(s_cls), np.concatenate(query),
            np.concatenate(q_cls))
