"""Training on real data (the bundled digits) lowers the loss and raises AUC on unseen classes."""

import numpy as np
import pytest

import siamese
from siamese.config import config_from_dict
from siamese.data.datasets import load_dataset
from siamese.data.sampling import sample_pairs
from siamese.evaluation.verification import verification_metrics
from siamese.losses import LOSSES


def _unseen_auc(model, data):
    idx = np.flatnonzero(data.y >= 7)
    emb = model.embed_tensor(model.preprocessing.normalize(data.x[idx]))
    i, j, y = sample_pairs(data.y[idx], 2000, np.random.default_rng(0))
    return verification_metrics(y, model.score_embeddings(emb[i], emb[j]))["roc_auc"]


@pytest.mark.parametrize("loss", LOSSES.names())
def test_training_lowers_loss_and_raises_unseen_auc(loss, tmp_path):
    cfg = config_from_dict({
        "data": {"image_size": 8}, "split": {"test_classes": ["7", "8", "9"]},
        "model": {"width": 16, "embedding_dim": 16}, "loss": {"name": loss},
        "train": {"epochs": 4, "batch_size": 32, "lr": 3e-3},
        "eval": {"episodes": 10, "pairs": 200},
    })
    untrained = siamese.train(config_from_dict({**cfg.to_dict(), "train": {
        **cfg.to_dict()["train"], "epochs": 1, "lr": 1e-9}}), tmp_path / "u", quiet=True)
    model = siamese.train(cfg, tmp_path / "t", quiet=True)
    hist = [h["loss"] for h in model.card["history"]]
    assert hist[-1] < hist[0]
    data = load_dataset("", 8)
    assert _unseen_auc(model, data) > _unseen_auc(untrained, data) + 0.03
