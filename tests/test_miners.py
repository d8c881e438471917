"""Each miner against brute force over all index combinations."""

import itertools

import pytest
import torch

from siamese.losses import MINERS, create_miner
from siamese.models.siamese import pairwise_distance


def _batch(seed=0, n=12, classes=3):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g), torch.arange(n) % classes


def _dist(emb):
    return pairwise_distance(emb, emb, "euclidean")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_all_is_every_valid_triplet(seed):
    emb, y = _batch(seed)
    a, p, n = create_miner("batch-all", 0.2, "euclidean")(emb, y, "triplet")
    got = set(zip(a.tolist(), p.tolist(), n.tolist(), strict=True))
    want = {(i, j, k) for i, j, k in itertools.product(range(len(y)), repeat=3)
            if i != j and y[i] == y[j] and y[i] != y[k]}
    assert got == want


def test_batch_all_pairs_are_every_pair_once():
    emb, y = _batch()
    i, j, lab = create_miner("batch-all", 0.2, "euclidean")(emb, y, "pair")
    got = set(zip(i.tolist(), j.tolist(), lab.tolist(), strict=True))
    want = {(a, b, int(y[a] == y[b])) for a in range(len(y)) for b in range(a + 1, len(y))}
    assert got == want


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_hard_picks_farthest_positive_and_closest_negative(seed):
    emb, y = _batch(seed)
    d = _dist(emb)
    a, p, n = create_miner("batch-hard", 0.2, "euclidean")(emb, y, "triplet")
    assert a.tolist() == list(range(len(y)))
    for i, j, k in zip(a.tolist(), p.tolist(), n.tolist(), strict=True):
        pos = [b for b in range(len(y)) if b != i and y[b] == y[i]]
        neg = [b for b in range(len(y)) if y[b] != y[i]]
        assert d[i, j] == max(d[i, b] for b in pos)
        assert d[i, k] == min(d[i, b] for b in neg)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_semi_hard_matches_brute_force(seed):
    emb, y = _batch(seed)
    margin = 1.0
    d = _dist(emb)
    a, p, n = create_miner("semi-hard", margin, "euclidean")(emb, y, "triplet")
    got = {(i, j): k for i, j, k in zip(a.tolist(), p.tolist(), n.tolist(), strict=True)}
    want = {}
    for i, j in itertools.permutations(range(len(y)), 2):
        if y[i] != y[j]:
            continue
        semi = [k for k in range(len(y)) if y[k] != y[i] and d[i, j] < d[i, k] < d[i, j] + margin]
        if semi:
            want[(i, j)] = min(semi, key=lambda k: d[i, k].item())
    assert got == want


def test_random_miner_gives_valid_balanced_tuples_and_follows_its_generator():
    emb, y = _batch()
    m1 = create_miner("random", 0.2, "euclidean", torch.Generator().manual_seed(5))
    m2 = create_miner("random", 0.2, "euclidean", torch.Generator().manual_seed(5))
    a, p, n = m1(emb, y, "triplet")
    assert (y[a] == y[p]).all() and (a != p).all() and (y[a] != y[n]).all()
    a2, p2, n2 = m2(emb, y, "triplet")
    assert torch.equal(p, p2) and torch.equal(n, n2)
    i, j, lab = m1(emb, y, "pair")
    assert lab.sum() * 2 == len(lab)
    assert ((y[i] == y[j]).long() == lab).all()


@pytest.mark.parametrize("name", [m for m in MINERS.names() if m != "none"])
def test_every_miner_returns_only_valid_tuples(name):
    emb, y = _batch(3)
    a, p, n = create_miner(name, 0.5, "euclidean")(emb, y, "triplet")
    assert (y[a] == y[p]).all() and (a != p).all() and (y[a] != y[n]).all()
    i, j, lab = create_miner(name, 0.5, "euclidean")(emb, y, "pair")
    assert ((y[i] == y[j]).long() == lab).all() and (i != j).all()
