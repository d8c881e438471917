"""SiameseNet: one encoder shared by every branch, and the ways to score a pair.

            x1 ──► f ──► h1 ─┐
                  (shared)   ├─► |h1 - h2| ─► FC ─► ReLU ─► FC ─► sigmoid ─► sim in [0, 1]
            x2 ──► f ──► h2 ─┘        (PairHead, trained with BCE)

or sim from a distance between the embeddings (euclidean or cosine), as trained by the
contrastive, triplet and prototype losses.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PairHead(nn.Module):
    """|h1 - h2| -> fully connected layers -> one logit (sigmoid gives the similarity)."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        if hidden > 0:
            self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(True), nn.Linear(hidden, 1))
        else:
            self.net = nn.Linear(dim, 1)  # Koch et al.: a weighted L1 distance

    def forward(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """(B, D), (B, D) -> (B,) logits."""
        return self.net((h1 - h2).abs()).squeeze(-1)


def distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """Row-wise distance (B, D), (B, D) -> (B,): squared L2, or 1 - cosine."""
    if kind == "euclidean":
        return (a - b).pow(2).sum(-1)
    return 1 - F.cosine_similarity(a, b, dim=-1)


def pairwise_distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    """All pairs (N, D), (M, D) -> (N, M): squared L2, or 1 - cosine."""
    if kind == "euclidean":
        d = a.pow(2).sum(1, keepdim=True) - 2 * a @ b.T + b.pow(2).sum(1)[None]
        return d.clamp_min(0)
    return 1 - F.normalize(a, dim=1) @ F.normalize(b, dim=1).T


def distance_to_similarity(d: torch.Tensor, kind: str, normalized: bool) -> torch.Tensor:
    """Map a distance to a similarity in [0, 1], 1 = identical (a monotone map)."""
    if kind == "cosine":
        return 1 - d / 2
    if normalized:  # squared L2 between unit vectors lies in [0, 4]
        return 1 - d / 4
    return 1 / (1 + d)


class SiameseNet(nn.Module):
    """Shared encoder -> optional linear projection -> optional L2 normalisation.

    `scorer` says how a pair is scored: "head" (the PairHead), "euclidean" or "cosine".
    """

    def __init__(self, encoder: nn.Module, embedding_dim: int = 64, normalize: bool = True,
                 head_hidden: int = 64, scorer: str = "euclidean", identity: bool = False) -> None:
        """identity: the projection starts as the identity (embedding_dim = the encoder's
        width), so that training starts from the encoder's own geometry."""
        super().__init__()
        self.encoder = encoder
        dim = encoder.num_features
        self.proj = nn.Linear(dim, embedding_dim) if embedding_dim > 0 else nn.Identity()
        if identity and embedding_dim == dim:
            nn.init.eye_(self.proj.weight)
            nn.init.zeros_(self.proj.bias)
        self.dim = embedding_dim if embedding_dim > 0 else dim
        self.normalize = normalize
        self.scorer = scorer
        self.head = PairHead(self.dim, head_hidden) if scorer == "head" else None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(B, *input) -> (B, dim) embeddings."""
        if x.ndim == 4:  # see build_net: image encoders run channels-last
            x = x.contiguous(memory_format=torch.channels_last)
        return self.embed_features(self.encoder(x))

    def embed_features(self, h: torch.Tensor) -> torch.Tensor:
        """The encoder's outputs (B, num_features) -> (B, dim) embeddings: what trains on top
        of a frozen encoder whose outputs were computed once (pretrained/setup.py)."""
        h = self.proj(h)
        return F.normalize(h, dim=1) if self.normalize else h

    def forward(self, *xs: torch.Tensor, features: bool = False) -> tuple[torch.Tensor, ...]:
        """Each branch through the SAME encoder; one batched pass, then split per branch.
        features: the inputs are the encoder's outputs already (a frozen, cached encoder)."""
        sizes = [len(x) for x in xs]
        x = torch.cat(xs)
        return tuple(torch.split(self.embed_features(x) if features else self.embed(x), sizes))

    def score(self, h1: torch.Tensor, h2: torch.Tensor) -> torch.Tensor:
        """Similarity in [0, 1] of embedding pairs (B, D), (B, D) -> (B,)."""
        if self.head is not None:
            return torch.sigmoid(self.head(h1, h2))
        return distance_to_similarity(distance(h1, h2, self.scorer), self.scorer, self.normalize)

    def score_matrix(self, q: torch.Tensor, g: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Similarity of every query to every gallery embedding: (N, D), (M, D) -> (N, M)."""
        if self.head is None:
            d = pairwise_distance(q, g, self.scorer)
            return distance_to_similarity(d, self.scorer, self.normalize)
        rows = []
        for s in range(0, len(q), chunk):
            qa = q[s:s + chunk]
            n, m = len(qa), len(g)
            a = qa[:, None].expand(n, m, -1).reshape(n * m, -1)
            b = g[None].expand(n, m, -1).reshape(n * m, -1)
            rows.append(torch.sigmoid(self.head(a, b)).view(n, m))
        return torch.cat(rows)
