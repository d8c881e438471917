"""Mean squared error on the similarity: for graded pairs (a score of how alike two things
are, normalised to [0, 1]) as well as for same (1) / different (0) pairs."""

from __future__ import annotations

import torch

from ..models.siamese import distance as row_distance
from ..models.siamese import distance_to_similarity
from .base import LOSSES, TupleLoss


class SimilarityMSELoss(TupleLoss):
    """(sim(h_i, h_j) - y)^2 averaged over the pairs, sim the model's similarity in [0, 1] as
    it scores pairs after training: from the distance (with unit embeddings, the cosine mapped
    to [0, 1] for either distance: 1 - |a - b|^2 / 4 = (1 + cos) / 2)."""

    tuple_kind = "pair"

    def __init__(self, distance: str = "euclidean", normalize: bool = True) -> None:
        super().__init__()
        self.distance, self.normalize = distance, normalize

    def forward(self, emb: torch.Tensor, labels: torch.Tensor, tuples) -> torch.Tensor:
        i, j, y = tuples
        d = row_distance(emb[i], emb[j], self.distance)
        sim = distance_to_similarity(d, self.distance, self.normalize)
        return (sim - y.to(sim.dtype)).pow(2).mean()


@LOSSES.register("mse")
def _mse(margin: float, distance: str, head, scale: float, normalize: bool,
         **_) -> SimilarityMSELoss:
    return SimilarityMSELoss(distance, normalize)
