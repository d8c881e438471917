"""Training from a pairs file alone (no classes): binary and graded pairs, images and vector
rows, the objectives that need classes refused, and the pair task's loss against a hand
computation."""

import csv
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import siamese
from conftest import digit_folder
from siamese.cli import main
from siamese.data.loader import PairSamples, ShuffledBatches
from siamese.losses import create_loss
from siamese.models.encoders import create_encoder
from siamese.models.siamese import SiameseNet
from siamese.training.from_pairs import pair_losses
from siamese.training.task import PairTask

TINY = ["--image-size", "8", "--batch-size", "32", "--quiet"]


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    """Digit images; pairs.csv (same digit = 1) and graded.csv (9 - |digit a - digit b|)."""
    root = tmp_path_factory.mktemp("pairs")
    digit_folder(root / "img", per_class=6, classes=range(6))
    files = sorted((root / "img").glob("*/*.png"))
    digit = np.array([int(f.parent.name) for f in files])
    rng = np.random.default_rng(0)
    binary, graded = ["a,b,label"], []
    for k in range(240):
        i = int(rng.integers(len(files)))
        j = int(rng.choice(np.flatnonzero(digit == digit[i]))) if k % 2 else \
            int(rng.integers(len(files)))
        a, b = (files[n].relative_to(root).as_posix() for n in (i, j))
        binary.append(f"{a},{b},{int(digit[i] == digit[j])}")
        graded.append(f"{a},{b},{9 - abs(digit[i] - digit[j])}")
    (root / "pairs.csv").write_text("\n".join(binary) + "\n")
    (root / "graded.csv").write_text("\n".join(graded) + "\n")
    return root


def test_shuffled_batches_visit_every_item_once_and_ranks_split_each_batch():
    one = ShuffledBatches(50, 16, seed=3)
    one.set_epoch(2)
    full = list(one)
    assert len(full) == 4 and all(len(b) == 16 for b in full)
    seen = np.concatenate(full)
    assert set(seen.tolist()) == set(range(50)) and len(seen) == 64  # 14 topped up
    ranks = [ShuffledBatches(50, 16, seed=3, rank=r, world=2) for r in (0, 1)]
    for r in ranks:
        r.set_epoch(2)
    for b, (h0, h1) in zip(full, zip(*ranks, strict=True), strict=True):
        assert h0 + h1 == b  # rank r holds rows r*B/2 .. (r+1)*B/2 of the global batch


@pytest.mark.parametrize("loss_name", ["pair", "contrastive", "mse"])
def test_the_pair_task_computes_the_loss_of_each_pair_as_written(loss_name):
    torch.manual_seed(0)
    enc = create_encoder("mlp", (5,), 4)
    net = SiameseNet(enc, 6, True, 8, "head" if loss_name == "pair" else "euclidean").eval()
    loss_fn = create_loss(loss_name, margin=1.0, distance="euclidean", head=net.head)
    x = torch.randn(10, 5)
    a, b = np.arange(5), np.array([1, 0, 3, 2, 4])
    target = np.array([0.0, 1.0, 0.25, 1.0, 0.5], dtype=np.float32)
    batch = PairSamples(x, a, b, target).__getitems__([0, 1, 2, 3, 4])
    got = PairTask(net, loss_fn).step(batch, torch.Generator())
    ea, eb = net.embed(x[a]), net.embed(x[b])
    t = torch.from_numpy(target)
    if loss_name == "pair":
        want = F.binary_cross_entropy_with_logits(net.head(ea, eb), t)
    elif loss_name == "mse":
        want = ((1 - (ea - eb).pow(2).sum(1) / 4) - t).pow(2).mean()
    else:
        d = (ea - eb).pow(2).sum(1).add(1e-12).sqrt()
        per = 0.5 * (t * d ** 2 + (1 - t) * (1 - d).clamp_min(0) ** 2)
        want = per[per > 0].mean()
    torch.testing.assert_close(got, want)


def test_only_the_losses_on_pairs_train_from_a_pairs_file(pair_files, tmp_path, capsys):
    assert set(pair_losses()) == {"pair", "contrastive", "mse"}
    for loss in ("triplet", "proto"):
        code = main(["train", "--pairs", str(pair_files / "pairs.csv"), "--loss", loss,
                     "--out", str(tmp_path / loss), *TINY])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1
        assert f"loss '{loss}' draws its tuples from class labels" in err[0]
        assert not (tmp_path / loss).exists()  # nothing written


def test_training_from_binary_pairs_learns_and_calibrates_on_held_out_pairs(pair_files, tmp_path,
                                                                             capsys):
    out = tmp_path / "run"
    assert main(["train", "--pairs", str(pair_files / "pairs.csv"), "--epochs", "20",
                 "--out", str(out), *TINY]) == 0
    assert "held-out pairs (36): ROC AUC" in capsys.readouterr().out
    model = siamese.load(out)
    card = model.card
    assert card["config"]["loss"]["name"] == "pair" and card["classes"] == []
    assert card["pairs"]["graded"] is False and card["split"]["val_pairs"] == 36
    assert card["threshold_calibrated_on"] == "held-out pairs of the pairs file"
    assert card["metrics"]["val"]["roc_auc"] > 0.75
    # The held-out pairs are the ones split.json names, and training never saw them.
    split = json.loads((out / "split.json").read_text())["indices"]
    assert len(split["val"]) == 36 and not set(split["val"]) & set(split["train"])
    assert main(["evaluate", str(out)]) == 2
    assert "trained from a pairs file and has no test split" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--pairs", str(pair_files / "pairs.csv"), "--out",
                 str(tmp_path)]) == 0


def test_graded_pairs_train_a_score_and_compare_prints_it(pair_files, tmp_path, capsys):
    out = tmp_path / "graded"
    assert main(["train", "--pairs", str(pair_files / "graded.csv"), "--loss", "mse",
                 "--epochs", "15", "--out", str(out), *TINY]) == 0
    card = siamese.load(out).card
    assert card["pairs"]["graded"] and card["pairs"]["score_range"] == [4.0, 9.0]  # digits 0-5
    assert card["threshold"] is None and card["metrics"]["val"]["spearman"] > 0.5
    assert (out / "pairs_val.png").exists()  # predicted against true
    capsys.readouterr()
    img = pair_files / "img"
    assert main(["compare", str(out), str(img / "1/0.png"), str(img / "1/1.png")]) == 0
    same = capsys.readouterr().out
    lo, hi = card["pairs"]["score_range"]
    assert same.startswith("predicted score ") and f"{lo:g}..{hi:g} scale" in same
    assert lo <= float(same.split()[2]) <= hi


def test_pairs_of_vector_rows_train_and_bad_row_numbers_are_refused(tmp_path, capsys):
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.data[:120], d.target[:120]
    with open(tmp_path / "vec.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(64)])
        w.writerows(x.tolist())
    rng = np.random.default_rng(1)
    rows = ["a,b,label"]
    for k in range(200):
        i = int(rng.integers(120))
        j = int(rng.choice(np.flatnonzero(y == y[i]))) if k % 2 else int(rng.integers(120))
        rows.append(f"{i},{j},{int(y[i] == y[j])}")
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "run"
    assert main(["train", "--pairs", str(tmp_path / "p.csv"), "--data", str(tmp_path / "vec.csv"),
                 "--epochs", "3", "--batch-size", "32", "--quiet", "--out", str(out)]) == 0
    assert siamese.load(out).preprocessing.input_shape == [64]
    assert main(["evaluate", str(out), "--pairs", str(tmp_path / "p.csv"), "--data",
                 str(tmp_path / "vec.csv"), "--out", str(tmp_path)]) == 0
    (tmp_path / "same.csv").write_text("a,b,label\n0,1,1\n3,4,1\n")
    capsys.readouterr()
    assert main(["train", "--pairs", str(tmp_path / "same.csv"), "--data",
                 str(tmp_path / "vec.csv"), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert "every pair has the label 1" in capsys.readouterr().err
    (tmp_path / "bad.csv").write_text("a,b,label\n0,1,1\n3,120,0\n")
    capsys.readouterr()
    assert main(["train", "--pairs", str(tmp_path / "bad.csv"), "--data",
                 str(tmp_path / "vec.csv"), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv line 3: '120' is not a row number of the table (0 to 119)" in err
    assert not (tmp_path / "x").exists()
