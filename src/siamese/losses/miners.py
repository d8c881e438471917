"""Miners choose which pairs or triplets of a P x K batch the loss sees. They run under no_grad
and return index tensors: (anchor, positive, negative) for triplets, (i, j, y) for pairs.
"""

from __future__ import annotations

import torch

from ..models.siamese import pairwise_distance
from ..registry import Registry

MINERS = Registry("miner")


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same  # positives (not self), negatives


def _pairs_from_triplets(a, p, n):
    """Each triplet gives a positive pair (a, p) and a negative pair (a, n)."""
    y = torch.cat([torch.ones_like(a), torch.zeros_like(a)])
    return torch.cat([a, a]), torch.cat([p, n]), y


class Miner:
    def __init__(self, margin: float = 0.2, distance: str = "euclidean",
                 generator: torch.Generator | None = None) -> None:
        self.margin = margin
        self.distance = distance
        self.generator = generator

    @torch.no_grad()
    def __call__(self, emb: torch.Tensor, labels: torch.Tensor, kind: str):
        if kind == "batch":
            return None
        d = pairwise_distance(emb, emb, self.distance)
        if kind == "triplet":
            return self.triplets(d, labels)
        return self.pairs(d, labels)

    def triplets(self, d: torch.Tensor, labels: torch.Tensor):
        raise NotImplementedError

    def pairs(self, d: torch.Tensor, labels: torch.Tensor):
        return _pairs_from_triplets(*self.triplets(d, labels))


class RandomMiner(Miner):
    """Per anchor, one random positive and one random negative (balanced pairs)."""

    def triplets(self, d, labels):
        pos, neg = _masks(labels)
        ok = pos.any(1) & neg.any(1)
        noise = torch.rand(d.shape, generator=self.generator).to(d.device)
        a = torch.nonzero(ok).squeeze(1)
        p = torch.where(pos, noise, -1.0)[a].argmax(1)
        n = torch.where(neg, noise, -1.0)[a].argmax(1)
        return a, p, n


class BatchAllMiner(Miner):
    """Every valid triplet (the loss then averages over the active ones); for pairs, every
    positive and every negative pair i < j."""

    def triplets(self, d, labels):
        pos, neg = _masks(labels)
        valid = pos[:, :, None] & neg[:, None, :]
        a, p, n = torch.nonzero(valid, as_tuple=True)
        return a, p, n

    def pairs(self, d, labels):
        pos, neg = _masks(labels)
        upper = torch.triu(torch.ones_like(pos), diagonal=1)
        i, j = torch.nonzero((pos | neg) & upper, as_tuple=True)
        return i, j, pos[i, j].long()


class BatchHardMiner(Miner):
    """Per anchor, the farthest positive and the closest negative (Hermans et al. 2017)."""

    def triplets(self, d, labels):
        pos, neg = _masks(labels)
        a = torch.nonzero(pos.any(1) & neg.any(1)).squeeze(1)
        p = torch.where(pos, d, -float("inf"))[a].argmax(1)
        n = torch.where(neg, d, float("inf"))[a].argmin(1)
        return a, p, n


class SemiHardMiner(Miner):
    """Per positive pair (a, p), the closest negative farther than p but within the margin:
    d(a, p) < d(a, n) < d(a, p) + margin (Schroff et al. 2015). Pairs with no such negative
    are skipped."""

    def triplets(self, d, labels):
        pos, neg = _masks(labels)
        a, p = torch.nonzero(pos, as_tuple=True)
        d_ap = d[a, p][:, None]
        d_an = d[a]
        semi = neg[a] & (d_an > d_ap) & (d_an < d_ap + self.margin)
        has = semi.any(1)
        n = torch.where(semi, d_an, float("inf")).argmin(1)
        return a[has], p[has], n[has]


# The classes are their own factories: MINERS.create(name, margin=..., distance=...).
for _name, _cls in {"random": RandomMiner, "batch-all": BatchAllMiner,
                    "batch-hard": BatchHardMiner, "semi-hard": SemiHardMiner,
                    "none": Miner}.items():  # "none": for losses that use the whole batch
    MINERS.register(_name)(_cls)


def create_miner(name: str, margin: float, distance: str,
                 generator: torch.Generator | None = None) -> Miner:
    return MINERS.create(name, margin=margin, distance=distance, generator=generator)
