"""Metrics against scikit-learn and naive loops."""

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score, roc_curve
from sklearn.neighbors import KNeighborsClassifier

from siamese.evaluation.fewshot import few_shot
from siamese.evaluation.retrieval import retrieval_metrics
from siamese.evaluation.verification import (
    best_threshold,
    equal_error_rate,
    min_dcf,
    tar_at_far,
    verification_metrics,
)


def _scores(seed=0, n=400):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.normal(size=n) + 1.2 * y
    return y, s


@pytest.mark.parametrize("seed", range(4))
def test_threshold_is_the_brute_force_best(seed):
    y, s = _scores(seed)
    t = best_threshold(y, s)
    acc = ((s >= t) == y).mean()
    brute = max(((s >= c) == y).mean() for c in np.concatenate([s, [s.max() + 1]]))
    assert acc == pytest.approx(brute)


@pytest.mark.parametrize("seed", range(4))
def test_eer_is_where_false_accepts_meet_false_rejects(seed):
    y, s = _scores(seed)
    eer = equal_error_rate(y, s)
    # brute force over thresholds: the point minimising |FAR - FRR|, as their mean
    cands = []
    for t in np.unique(s):
        far = ((s >= t) & (y == 0)).sum() / (y == 0).sum()
        frr = ((s < t) & (y == 1)).sum() / (y == 1).sum()
        cands.append((abs(far - frr), (far + frr) / 2))
    assert eer == pytest.approx(min(cands)[1], abs=0.01)


def test_tar_at_far_by_brute_force():
    y, s = _scores(1, 2000)
    for far in (1e-2, 0.1):
        best = 0.0
        for t in np.unique(s):
            if ((s >= t) & (y == 0)).sum() / (y == 0).sum() <= far:
                best = max(best, ((s >= t) & (y == 1)).sum() / (y == 1).sum())
        assert tar_at_far(y, s, far) == pytest.approx(best)


def test_auc_is_sklearns_and_accuracy_uses_the_threshold():
    y, s = _scores(2)
    m = verification_metrics(y, s, threshold=0.3)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, s))
    assert m["accuracy"] == pytest.approx(((s >= 0.3) == y).mean())
    fpr, tpr, _ = roc_curve(y, s)
    assert 0 <= m["eer"] <= 1


def _naive_retrieval(sim, labels):
    p1, rp, mapr = [], [], []
    n = len(labels)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        r = sum(labels[j] == labels[i] for j in others)
        if r == 0:
            continue
        ranked = sorted(others, key=lambda j: -sim[i, j])
        rel = [labels[j] == labels[i] for j in ranked[:r]]
        p1.append(float(rel[0]))
        rp.append(sum(rel) / r)
        mapr.append(sum(sum(rel[:k + 1]) / (k + 1) for k in range(r) if rel[k]) / r)
    return np.mean(p1), np.mean(rp), np.mean(mapr)


@pytest.mark.parametrize("seed", range(3))
def test_retrieval_matches_naive_loop_and_sklearn_1nn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 5, 60)
    emb = rng.normal(size=(60, 3)) + labels[:, None] * 0.7
    sim = -torch.cdist(torch.tensor(emb), torch.tensor(emb))
    m = retrieval_metrics(sim, labels)
    p1, rp, mapr = _naive_retrieval(sim.numpy(), labels)
    assert m["precision@1"] == pytest.approx(p1)
    assert m["r_precision"] == pytest.approx(rp)
    assert m["map@r"] == pytest.approx(mapr)
    # precision@1 is leave-one-out 1-NN accuracy
    correct = 0
    for i in range(60):
        keep = np.arange(60) != i
        knn = KNeighborsClassifier(1).fit(emb[keep], labels[keep])
        correct += knn.predict(emb[i:i + 1])[0] == labels[i]
    assert m["precision@1"] == pytest.approx(correct / 60)


def test_few_shot_perfect_and_chance():
    labels = np.repeat(np.arange(6), 10)
    separable = torch.tensor(np.eye(6)[labels], dtype=torch.float32)

    def score(q, s):
        return -torch.cdist(q, s)

    r = few_shot(separable, labels, 5, 1, 50, 3, score)
    assert r["accuracy"] == 1.0 and r["n_way"] == 5
    noise = torch.randn(60, 4)
    r = few_shot(noise, labels, 5, 3, 400, 3, score, seed=1)
    assert abs(r["accuracy"] - 0.2) < 4 * r["ci95"] + 0.02
    r = few_shot(separable, labels, 20, 1, 10, 3, score)
    assert r["n_way"] == 6  # clipped to the classes available


def test_min_dcf_matches_a_search_over_every_threshold():
    rng = np.random.default_rng(0)
    labels = np.r_[np.ones(150), np.zeros(850)].astype(int)
    scores = np.round(rng.normal(labels * 1.5, 1.0), 2)
    best = np.inf
    for t in np.r_[np.unique(scores), np.inf]:  # accept score >= t
        p_miss = np.mean(scores[labels == 1] < t)
        p_fa = np.mean(scores[labels == 0] >= t)
        best = min(best, p_miss * 0.01 + p_fa * 0.99)
    assert min_dcf(labels, scores, 0.01) == pytest.approx(best / 0.01)
    assert 0 < min_dcf(labels, scores, 0.01) <= 1  # never worse than the trivial system


def test_as_norm_matches_a_naive_loop_and_helps_a_miscalibrated_speaker():
    from siamese.evaluation.score_norm import as_norm
    from siamese.evaluation.verification import equal_error_rate

    rng = np.random.default_rng(0)
    emb, cohort = rng.normal(size=(12, 8)), rng.normal(size=(30, 8))
    i, j = np.triu_indices(12, 1)
    unit = [x / np.linalg.norm(x) for x in emb]
    c = [x / np.linalg.norm(x) for x in cohort]

    def stats(e):  # the 5 highest cosine scores against the cohort
        top = sorted((float(e @ x) for x in c), reverse=True)[:5]
        return np.mean(top), np.std(top)

    want = []
    for a, b in zip(i, j, strict=True):
        s = float(unit[a] @ unit[b])
        (ma, sa), (mb, sb) = stats(unit[a]), stats(unit[b])
        want.append(0.5 * ((s - ma) / sa + (s - mb) / sb))
    np.testing.assert_allclose(as_norm(emb, i, j, cohort, top_k=5), want, rtol=1e-9)

    # speakers whose embeddings all sit in one crowded region score high with everyone:
    # raw scores need a threshold per speaker, normalised ones share one
    centres = rng.normal(size=(20, 16))
    centres[:10] = centres[:10] * 0.3 + rng.normal(size=16)  # half the speakers crowded
    emb = np.repeat(centres, 4, 0) + rng.normal(scale=0.5, size=(80, 16))
    labels = np.repeat(np.arange(20), 4)
    i, j = np.triu_indices(80, 1)
    cohort = np.concatenate([centres[:10] * 0.3 + rng.normal(size=(10, 16)) * 0.3,
                             rng.normal(size=(40, 16))])
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    cos = np.einsum("nd,nd->n", unit[i], unit[j])
    same = (labels[i] == labels[j]).astype(int)
    assert equal_error_rate(same, as_norm(emb, i, j, cohort, 10)) < equal_error_rate(same, cos)
