import numpy as np
import pytest

from siamese.config import SplitConfig
from siamese.data.labeled import LabeledData
from siamese.data.sampling import (
    ClassBalancedSampler,
    sample_episode,
    sample_pairs,
    sample_triplets,
)
from siamese.data.splits import make_split
from siamese.errors import ConfigError, DataError

LABELS = np.repeat(np.arange(7), [5, 9, 2, 13, 4, 6, 3])


@pytest.mark.parametrize("p,k", [(4, 4), (3, 2), (7, 3), (10, 4)])
def test_pk_batches_have_p_classes_of_k_and_visit_every_sample(p, k):
    s = ClassBalancedSampler(LABELS, p, k, seed=1)
    for epoch in range(3):
        batches = s.epoch(epoch)
        seen = np.concatenate(batches)
        assert set(seen.tolist()) == set(range(len(LABELS)))
        for b in batches:
            classes, counts = np.unique(LABELS[b], return_counts=True)
            assert len(classes) == min(p, 7) and (counts == k).all()


def test_pk_sampler_is_reproducible_and_epochs_differ():
    a = ClassBalancedSampler(LABELS, 3, 2, seed=4)
    b = ClassBalancedSampler(LABELS, 3, 2, seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.epoch(2), b.epoch(2), strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a.epoch(0), a.epoch(1), strict=False))


def test_pairs_are_balanced_correct_and_reproducible():
    i, j, y = sample_pairs(LABELS, 1001, np.random.default_rng(3))
    assert y.sum() == 500 and len(y) == 1001
    assert ((LABELS[i] == LABELS[j]) == (y == 1)).all()
    assert (i[y == 1] != j[y == 1]).all()
    i2, j2, _ = sample_pairs(LABELS, 1001, np.random.default_rng(3))
    assert np.array_equal(i, i2) and np.array_equal(j, j2)


def test_triplets_are_valid():
    a, p, n = sample_triplets(LABELS, 500, np.random.default_rng(0))
    assert (LABELS[a] == LABELS[p]).all() and (a != p).all() and (LABELS[a] != LABELS[n]).all()


def test_episode_shape_and_disjoint_support_query():
    s, sc, q, qc = sample_episode(LABELS, 4, 2, 1, np.random.default_rng(0))
    assert len(s) == 8 and len(q) == 4 and not set(s) & set(q)
    for idx, cls in ((s, sc), (q, qc)):
        for e in range(4):
            assert len(set(LABELS[idx[cls == e]])) == 1
    assert len({LABELS[s[sc == e]][0] for e in range(4)}) == 4


def _data(labels):
    import torch
    return LabeledData(torch.zeros(len(labels), 2), np.asarray(labels),
                       [f"c{i}" for i in range(labels.max() + 1)],
                       [f"s{i}" for i in range(len(labels))], "vector")


def test_class_split_keeps_test_classes_unseen_and_is_reproducible():
    data = _data(np.repeat(np.arange(10), 10))
    cfg = SplitConfig(test_class_fraction=0.3)
    s = make_split(data, cfg, seed=0)
    unseen = set(data.y[s.test_unseen])
    assert len(unseen) == 3 and not unseen & set(data.y[s.train])
    assert not unseen & set(data.y[s.val]) and not unseen & set(data.y[s.test_seen])
    parts = [s.train, s.val, s.test_seen, s.test_unseen]
    assert sum(map(len, parts)) == 100 and len(set(np.concatenate(parts))) == 100
    assert set(data.y[s.test_seen]) <= set(data.y[s.train])
    s2 = make_split(data, cfg, seed=0)
    assert np.array_equal(s.train, s2.train) and s.test_classes == s2.test_classes


def test_sample_split_has_no_unseen_classes():
    data = _data(np.repeat(np.arange(4), 10))
    s = make_split(data, SplitConfig(mode="samples"), seed=0)
    assert len(s.test_unseen) == 0 and set(data.y[s.test_seen]) == set(range(4))


def test_explicit_test_classes_must_exist():
    data = _data(np.repeat(np.arange(4), 10))
    with pytest.raises(ConfigError, match="c9"):
        make_split(data, SplitConfig(test_classes=["c9"]), seed=0)


def test_single_sample_class_is_a_data_error_naming_it():
    data = _data(np.array([0, 0, 0, 1, 2, 2]))
    with pytest.raises(DataError, match="class 'c1' has only 1 training sample.*s3"):
        make_split(data, SplitConfig(mode="samples", val_fraction=0, test_fraction=0), seed=0)


def test_grouped_batches_stay_within_few_groups_and_still_visit_everything():
    labels = np.repeat(np.arange(24), 6)
    groups = np.arange(24) // 6  # 4 groups of 6 classes
    plain = ClassBalancedSampler(labels, 6, 3, seed=0)
    grouped = ClassBalancedSampler(labels, 6, 3, seed=0, groups=groups)

    def mean_groups(s):
        return np.mean([len(set(groups[labels[b]])) for b in s.epoch(0)])

    assert mean_groups(grouped) < 1.5 < mean_groups(plain)
    batches = grouped.epoch(1)
    assert set(np.concatenate(batches).tolist()) == set(range(len(labels)))
    assert all(len(set(labels[b])) == 6 for b in batches)
