"""Each loss against a naive loop over explicit pairs / triplets."""

import math

import pytest
import torch
import torch.nn.functional as F

from siamese.losses import LOSSES, MINERS, create_loss, create_miner
from siamese.models.siamese import PairHead


def _d(a, b, kind):
    if kind == "euclidean":
        return sum((x - y) ** 2 for x, y in zip(a.tolist(), b.tolist(), strict=True))
    return 1 - F.cosine_similarity(a[None], b[None]).item()


def _batch(n=12, d=5, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(n, d, generator=g)
    labels = torch.arange(n) % classes
    return emb, labels


def _mean_nonzero(values):
    nz = [v for v in values if v > 0]
    return sum(nz) / len(nz) if nz else 0.0


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_triplet_loss_matches_naive_loop(distance):
    emb, labels = _batch()
    loss = create_loss("triplet", margin=0.5, distance=distance)
    a, p, n = create_miner("batch-all", 0.5, distance)(emb, labels, "triplet")
    naive = [max(_d(emb[i], emb[j], distance) - _d(emb[i], emb[k], distance) + 0.5, 0)
             for i, j, k in zip(a.tolist(), p.tolist(), n.tolist(), strict=True)]
    assert loss(emb, labels, (a, p, n)).item() == pytest.approx(_mean_nonzero(naive), rel=1e-5)


@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_contrastive_loss_matches_naive_loop(distance):
    emb, labels = _batch()
    loss = create_loss("contrastive", margin=2.0, distance=distance)
    i, j, y = create_miner("batch-all", 2.0, distance)(emb, labels, "pair")
    naive = []
    for a, b, s in zip(i.tolist(), j.tolist(), y.tolist(), strict=True):
        d = _d(emb[a], emb[b], distance)
        d = math.sqrt(d) if distance == "euclidean" else d
        naive.append(0.5 * d * d if s else 0.5 * max(2.0 - d, 0) ** 2)
    assert loss(emb, labels, (i, j, y)).item() == pytest.approx(_mean_nonzero(naive), rel=1e-5)


def test_pair_bce_loss_matches_naive_loop():
    emb, labels = _batch()
    head = PairHead(emb.shape[1], 8)
    loss = create_loss("pair", margin=0, distance="euclidean", head=head)
    i, j, y = create_miner("random", 0, "euclidean")(emb, labels, "pair")
    naive = []
    for a, b, s in zip(i.tolist(), j.tolist(), y.tolist(), strict=True):
        z = (emb[a] - emb[b]).abs()  # the head's input, built here by hand
        p = torch.sigmoid(head.net(z[None])).item()
        naive.append(-(s * math.log(p) + (1 - s) * math.log(1 - p)))
    assert loss(emb, labels, (i, j, y)).item() == pytest.approx(sum(naive) / len(naive), rel=1e-5)


@pytest.mark.parametrize("labels", [
    [0, 1, 2] * 4,                            # P x K, interleaved
    [7, 7, 3, 9, 3, 7, 9, 9, 3, 7, 42, 9, 3],  # unequal and odd counts, a singleton (skipped)
], ids=["pk", "ragged"])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_proto_loss_matches_naive_loop(labels, distance):
    """Loss and gradient against a loop over classes: each class's first half (in batch order)
    is its prototype, the rest are queries; classes with one sample take no part."""
    labels = torch.tensor(labels)
    emb = torch.randn(len(labels), 5, generator=torch.Generator().manual_seed(0))
    emb.requires_grad_(True)
    loss = create_loss("proto", margin=0, distance=distance, scale=2.0)
    classes = [c for c in sorted(set(labels.tolist())) if (labels == c).sum() >= 2]
    idx = {c: [i for i in range(len(labels)) if labels[i] == c] for c in classes}
    protos = torch.stack([emb[idx[c][:len(idx[c]) // 2]].mean(0) for c in classes])
    terms = []
    for k, c in enumerate(classes):
        for q in idx[c][len(idx[c]) // 2:]:
            if distance == "euclidean":
                d = ((emb[q] - protos) ** 2).sum(1)
            else:
                d = 1 - F.cosine_similarity(emb[q][None], protos)
            terms.append(-torch.log_softmax(-2.0 * d, 0)[k])
    want = torch.stack(terms).mean()
    got = loss(emb, labels, None)
    torch.testing.assert_close(got, want)
    g_want, = torch.autograd.grad(want, emb)
    g_got, = torch.autograd.grad(got, emb)
    torch.testing.assert_close(g_got, g_want)


def _compatible():
    head = PairHead(5, 8)
    for name in LOSSES.names():
        kind = create_loss(name, margin=0.5, distance="euclidean", head=head, classes=3,
                           dim=5).tuple_kind
        for miner in MINERS.names():
            if (miner == "none") == (kind == "batch"):  # 'none' serves exactly batch losses
                yield name, miner


@pytest.mark.parametrize("name, miner", list(_compatible()))
def test_every_loss_with_every_miner_gives_a_finite_gradient(name, miner):
    emb, labels = _batch()
    emb = emb.requires_grad_(True)
    head = PairHead(emb.shape[1], 8)
    loss_fn = create_loss(name, margin=0.5, distance="euclidean", head=head, classes=3,
                          dim=emb.shape[1])
    tuples = create_miner(miner, 0.5, "euclidean")(emb.detach(), labels, loss_fn.tuple_kind)
    loss = loss_fn(emb, labels, tuples)
    loss.backward()
    assert torch.isfinite(loss) and emb.grad is not None and torch.isfinite(emb.grad).all()


def test_triplet_margin_must_be_positive():
    with pytest.raises(ValueError):
        create_loss("triplet", margin=0.0, distance="euclidean")


@pytest.mark.parametrize("kind", ["arcface", "cosface"])
@pytest.mark.parametrize("subcenters", [1, 3])
def test_margin_softmax_matches_a_loop_over_samples(kind, subcenters):
    import math

    emb, labels = _batch()
    loss = create_loss(kind, margin=0.3, distance="euclidean", scale=16.0, classes=3, dim=5,
                       subcenters=subcenters)
    w = loss.weight.detach().view(3, subcenters, 5)
    total = 0.0
    for e, y in zip(emb, labels.tolist(), strict=True):
        cos = [max(float(torch.dot(e, wk) / (e.norm() * wk.norm())) for wk in w[c])
               for c in range(3)]
        cos = [min(max(c, -1 + 1e-7), 1 - 1e-7) for c in cos]  # as acos needs
        theta = math.acos(cos[y])
        if kind == "cosface":
            cos[y] -= 0.3
        elif theta + 0.3 <= math.pi:
            cos[y] = math.cos(theta + 0.3)
        else:
            cos[y] -= math.sin(math.pi - 0.3) * 0.3
        logits = torch.tensor(cos) * 16.0
        total += -torch.log_softmax(logits, 0)[y].item()
    assert loss(emb, labels, None).item() == pytest.approx(total / len(labels), rel=1e-5)
    assert loss.tuple_kind == "batch" and loss.weight.shape == (3 * subcenters, 5)
