"""Twin-network regression (Wetzel, Melko, Tamblyn: "Twin neural network regression", 2022).

The shared encoder f embeds two rows; the difference head predicts y_i - y_j from (h_i, h_j):

    F(x_i, x_j) = (g(h_i, h_j) - g(h_j, h_i)) / 2      antisymmetric by construction

A new x is predicted from training anchors a with known labels: the mean over the anchors of
y_a + F(x, x_a), with the spread over the anchors as its uncertainty. Every anchor is a second
opinion, so the prediction is an ensemble from one network. The anchors (inputs normalised,
labels standardised) and the label scale are buffers: the weights file holds all it needs.
"""

from __future__ import annotations

import torch
from torch import nn

from .siamese import SiameseNet


class DifferenceHead(nn.Module):
    """(h_i, h_j) -> g(h_i, h_j): Linear(2D, hidden) -> ReLU -> Linear(1)."""

    def __init__(self, dim: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(True), nn.Linear(hidden, 1))

    def forward(self, hi: torch.Tensor, hj: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([hi, hj], -1)).squeeze(-1)


class TwinRegressor(nn.Module):
    """A SiameseNet (shared encoder, embeddings not normalised) + a difference head + the
    anchors. forward(x) -> (embeddings,), as SiameseNet's, so training wraps it the same way."""

    def __init__(self, net: SiameseNet, input_dim: int, head_hidden: int = 64,
                 anchors: int = 0) -> None:
        super().__init__()
        self.net = net
        self.dim, self.normalize = net.dim, net.normalize
        self.head = None  # no pair head: pairs are not scored by similarity
        self.difference = DifferenceHead(net.dim, head_hidden)
        self.register_buffer("anchor_x", torch.zeros(anchors, input_dim))
        self.register_buffer("anchor_y", torch.zeros(anchors))
        self.register_buffer("y_scale", torch.tensor([0.0, 1.0]))  # mean, std of the labels

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)

    def forward(self, *xs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.net(*xs)

    def pairwise_difference(self, ha: torch.Tensor, hb: torch.Tensor) -> torch.Tensor:
        """(N, D), (M, D) -> (N, M): the predicted y_a - y_b of every pair (standardised)."""
        n, m = len(ha), len(hb)
        a = ha[:, None].expand(n, m, -1).reshape(n * m, -1)
        b = hb[None].expand(n, m, -1).reshape(n * m, -1)
        return ((self.difference(a, b) - self.difference(b, a)) / 2).view(n, m)

    def set_anchors(self, x: torch.Tensor, y: torch.Tensor, mean: float, std: float) -> None:
        """x: normalised inputs (A, D); y: their labels, standardised by (mean, std)."""
        self.anchor_x = x.detach().clone().float()
        self.anchor_y = y.detach().clone().float()
        self.y_scale = torch.tensor([mean, std], dtype=torch.float32)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised inputs (N, D) -> (prediction, uncertainty), each (N,), in label units:
        the mean and standard deviation over the anchors of y_a + F(x, x_a)."""
        ha = self.embed(self.anchor_x)
        means, stds = [], []
        for s in range(0, len(x), chunk):
            votes = self.anchor_y[None] + self.pairwise_difference(self.embed(x[s:s + chunk]), ha)
            means.append(votes.mean(1))
            stds.append(votes.std(1) if votes.shape[1] > 1 else torch.zeros(len(votes)))
        mean, std = self.y_scale
        if not means:
            return torch.zeros(0), torch.zeros(0)
        return torch.cat(means) * std + mean, torch.cat(stds) * std
