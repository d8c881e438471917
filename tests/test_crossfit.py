"""Cross-fitting (split.validation crossfit): the folds, the choice of epoch and threshold
against brute force, when "auto" picks it, and a run end to end."""

import json

import numpy as np
import pytest
import torch

from siamese.config import SplitConfig
from siamese.data.labeled import LabeledData
from siamese.data.splits import class_folds, make_split
from siamese.errors import ConfigError
from siamese.training.crossfit import choose


def _data(classes: int, per_class: int = 6) -> LabeledData:
    y = np.repeat(np.arange(classes), per_class)
    return LabeledData(torch.zeros(len(y), 2), y, [f"c{i:02d}" for i in range(classes)],
                       [f"s{i}" for i in range(len(y))], "vector")


@pytest.mark.parametrize("n, k", [(9, 3), (14, 3), (20, 4), (31, 5)])
def test_folds_partition_the_classes_evenly_and_reproducibly(n, k):
    classes = [f"c{i}" for i in range(n)]
    folds = class_folds(classes, k, seed=3)
    flat = [c for f in folds for c in f]
    assert sorted(flat) == sorted(classes) and len(flat) == len(set(flat))
    assert max(map(len, folds)) - min(map(len, folds)) <= 1
    assert folds == class_folds(classes, k, seed=3) != class_folds(classes, k, seed=4)


@pytest.mark.parametrize("classes, cfg, can, kind", [
    (20, SplitConfig(), True, "crossfit"),  # 14 left to train on
    (13, SplitConfig(), True, "crossfit"),  # 9 left: the smallest
    (12, SplitConfig(), True, "samples"),  # 8 left: too few to spare validation classes
    (200, SplitConfig(), True, "classes"),  # 140 left: whole classes, as before
    (20, SplitConfig(), False, "classes"),  # a time budget or several processes
    (20, SplitConfig(val_class_fraction=0), True, "samples"),  # the old way to ask for it
    (20, SplitConfig(val_classes=["c01", "c02"]), True, "classes"),
    (20, SplitConfig(validation="samples"), True, "samples"),
    (200, SplitConfig(validation="crossfit"), True, "crossfit"),
    (20, SplitConfig(mode="samples", validation="crossfit"), True, "samples"),
])
def test_which_validation_auto_and_explicit_choices_give(classes, cfg, can, kind):
    s = make_split(_data(classes), cfg, seed=0, can_crossfit=can)
    assert s.validation == kind
    assert bool(s.folds) == (kind == "crossfit")
    assert (len(s.val) > 0) == (kind != "crossfit")


def test_crossfit_split_trains_on_every_class_and_folds_hold_each_out():
    data = _data(20)
    s = make_split(data, SplitConfig(), seed=0)
    train_classes = set(data.y[s.train])
    assert len(train_classes) == 14 and len(s.val) == 0
    assert not train_classes & set(data.y[s.test_unseen])
    for k, fold in enumerate(s.folds):
        f = s.fold(k, data)
        held = {data.classes[c] for c in data.y[f.val]}
        assert held == set(fold) and not held & {data.classes[c] for c in data.y[f.train]}
        assert sorted(np.concatenate([f.train, f.val])) == sorted(s.train)
        assert f.val_classes == fold and f.validation == "classes"


def test_crossfit_with_too_few_classes_is_a_config_error():
    with pytest.raises(ConfigError, match="too few for 3 folds of 2"):
        make_split(_data(5), SplitConfig(validation="crossfit", test_class_fraction=0.4),
                   seed=0)


def _brute_threshold_accuracy(y, s):
    cuts = np.concatenate([[s.max() + 1], np.unique(s)])
    return max(((s >= t) == (y == 1)).mean() for t in cuts)


def test_choose_picks_the_best_mean_epoch_and_the_pooled_threshold():
    rng = np.random.default_rng(0)
    folds, epochs = 3, 5
    separation = [0.2, 1.0, 2.0, 1.5, 0.5]  # the folds' pairs part best after epoch 3
    records = []
    for _ in range(folds):
        r = []
        for sep in separation:
            y = rng.integers(0, 2, 300)
            r.append((y, rng.normal(size=300) + sep * y))
        records.append(r)
    got = choose(records, keep="best")
    from sklearn.metrics import roc_auc_score

    mean_auc = [np.mean([roc_auc_score(*records[k][e]) for k in range(folds)])
                for e in range(epochs)]
    assert got["epoch"] == int(np.argmax(mean_auc)) + 1 == 3
    np.testing.assert_allclose(got["fold_auc"], mean_auc, atol=1e-5)
    y = np.concatenate([records[k][2][0] for k in range(folds)])
    s = np.concatenate([records[k][2][1] for k in range(folds)])
    t = got["threshold"]
    assert ((s >= t) == (y == 1)).mean() == pytest.approx(_brute_threshold_accuracy(y, s))
    assert got["metrics"]["accuracy"] == pytest.approx(_brute_threshold_accuracy(y, s))
    assert choose(records, keep="last")["epoch"] == epochs
    # a fold that stopped early: only the epochs every fold reached count
    assert choose([records[0][:2], records[1], records[2]], keep="last")["epoch"] == 2
    from siamese.errors import DataError

    with pytest.raises(DataError, match="could not score its held-out classes"):
        choose([records[0], []], keep="last")


def test_choose_prefers_the_later_epoch_on_a_tie():
    y = np.array([0, 1, 0, 1])
    rec = [(y, np.array([0.1, 0.9, 0.2, 0.8]))] * 3
    assert choose([rec, rec], keep="best")["epoch"] == 3


@pytest.mark.slow
def test_crossfit_run_end_to_end(tmp_path):
    from conftest import make_image_tree
    from siamese import train

    data = make_image_tree(tmp_path / "data", classes=13, per_class=6)
    out = tmp_path / "run"
    model = train({"data": {"path": str(data), "image_size": 8},
                   "model": {"width": 4, "embedding_dim": 8},
                   "train": {"epochs": 4, "batch_size": 16},
                   "eval": {"episodes": 10, "pairs": 200}}, out, quiet=True)
    card = model.card
    assert card["split"]["validation"] == "crossfit" and len(card["split"]["folds"]) == 3
    saved = json.loads((out / "crossfit.json").read_text())
    # train.keep "auto": a cross-fitted run keeps the schedule's end
    assert json.loads((out / "config.json").read_text())["train"]["keep"] == "last"
    assert card["crossfit"]["epoch"] == saved["epoch"] == len(card["history"]) == 4
    assert card["threshold"] == pytest.approx(saved["threshold"])
    assert "cross-fitted" in card["threshold_calibrated_on"]
    assert card["metrics"]["val"]["pairs"] > 0 and "unseen" in card["metrics"]
    assert set(card["classes"]) == {c for f in card["split"]["folds"] for c in f}
    assert not list(tmp_path.glob("siamese-fold-*"))  # the fold runs' folders are gone
