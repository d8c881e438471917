"""Training on real data (the bundled digits) lowers the loss and raises AUC on unseen classes."""

import numpy as np
import pytest
import torch

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


@pytest.mark.parametrize("keep", ["best", "last"])
def test_the_run_keeps_the_best_or_the_last_weights(keep, tmp_path):
    from safetensors.torch import load_file

    cfg = {"data": {"image_size": 8}, "split": {"test_classes": ["8", "9"]},
           "model": {"width": 8, "embedding_dim": 8}, "eval": {"episodes": 5, "pairs": 100},
           "train": {"epochs": 4, "batch_size": 32, "val_pairs": 200, "keep": keep}}
    model = siamese.train(cfg, tmp_path / "run", quiet=True)
    kept = load_file(tmp_path / "run" / "model.safetensors")
    last = {k[len("model."):]: v for k, v in
            load_file(tmp_path / "run" / "checkpoints" / "last.safetensors").items()
            if k.startswith("model.")}
    history = model.card["history"]
    best_epoch = max(range(len(history)), key=lambda i: history[i]["val_auc"])
    same = all(torch.equal(kept[k], last[k]) for k in kept)
    if keep == "last" or best_epoch == len(history) - 1:
        assert same
    else:
        assert not same
    assert model.card["config"]["train"]["keep"] == keep


def test_the_weight_average_is_the_moving_average_of_every_steps_weights(tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from siamese.training.trainer import Trainer

    seen = []
    step = Trainer.step

    def recording(self, batch, gen):
        loss = step(self, batch, gen)
        seen.append({k: v.detach().clone() for k, v in self.net.state_dict().items()
                     if v.is_floating_point()})
        return loss

    monkeypatch.setattr(Trainer, "step", recording)
    cfg = {"data": {"image_size": 8}, "split": {"test_classes": ["8", "9"]},
           "model": {"width": 8, "embedding_dim": 8}, "eval": {"episodes": 5, "pairs": 100},
           "train": {"epochs": 2, "batch_size": 32, "val_pairs": 200, "keep": "last",
                     "ema": 0.9}}
    siamese.train(cfg, tmp_path / "run", quiet=True)
    average = dict(seen[0])  # a naive loop over the weights after each step
    for n, weights in enumerate(seen[1:], start=1):  # n updates so far: the decay warmed up
        d = min(0.9, (1 + n) / (10 + n))
        average = {k: d * average[k] + (1 - d) * weights[k] for k in average}
    kept = load_file(tmp_path / "run" / "model.safetensors")
    assert len(seen) > 10 and set(average) <= set(kept)
    for k in average:  # weights and batch-norm statistics alike
        torch.testing.assert_close(kept[k], average[k], rtol=1e-5, atol=1e-6)
    assert any(not torch.allclose(kept[k], seen[-1][k]) for k in average)


def test_a_budget_spent_at_an_epoch_start_logs_no_empty_epoch(monkeypatch):
    from siamese.config import resolve
    from siamese.data.loader import IndexedSamples, ShuffledBatches, make_loader
    from siamese.models.build import build_net
    from siamese.training import trainer as trainer_module
    from siamese.training.task import TwinRegressionTask
    from siamese.training.trainer import Callback, Trainer

    clock = [0.0]
    monkeypatch.setattr(trainer_module.time, "monotonic", lambda: clock[0])

    class SpendTheBudget(Callback):  # the clock jumps past the budget as epoch 1 ends
        def on_epoch_end(self, trainer, logs):
            if logs["epoch"] == 2:
                clock[0] = 100.0

    cfg = config_from_dict({"model": {"width": 4, "embedding_dim": 4},
                            "train": {"task": "regression"}})
    net = build_net(resolve(cfg), [3], "vector", anchors=2)
    x, y = torch.randn(32, 3), torch.randn(32)
    loader = make_loader(IndexedSamples(x, y), ShuffledBatches(32, 8, seed=0), 0)
    history = Trainer(TwinRegressionTask(net, "cpu"), torch.optim.SGD(net.parameters(), lr=0.01),
                      loader, epochs=5, callbacks=[SpendTheBudget()], max_seconds=10.0).fit()
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["loss"]) for h in history)
    assert history[-1]["stopped"] == "time budget"
