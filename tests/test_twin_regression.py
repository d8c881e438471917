"""Twin-network regression: the difference head, the prediction over anchors and the training
objective against naive loops, the run from the command line, and bad input."""

import csv

import numpy as np
import pytest
import torch

import siamese
from siamese.cli import main
from siamese.config import config_from_dict, resolve
from siamese.errors import ConfigError
from siamese.models.build import build_net
from siamese.training.task import TwinRegressionTask


def _twin(anchors: int = 6, d: int = 3):
    torch.manual_seed(0)
    cfg = resolve(config_from_dict({"train": {"task": "regression"},
                                    "model": {"width": 4, "embedding_dim": 5}}))
    return build_net(cfg, [d], "vector", anchors=anchors).eval()


def test_the_difference_is_antisymmetric_and_prediction_is_the_mean_over_anchors():
    net = _twin()
    xa, ya = torch.randn(6, 3), torch.randn(6)
    net.set_anchors(xa, ya, mean=10.0, std=2.0)
    x = torch.randn(4, 3)
    h, ha = net.embed(x), net.embed(xa)
    diff = net.pairwise_difference(h, ha)
    torch.testing.assert_close(diff, -net.pairwise_difference(ha, h).T)
    pred, unc = net.predict(x, chunk=3)
    for i in range(4):  # naive: one anchor at a time, in label units
        with torch.no_grad():
            votes = torch.stack([ya[k] + net.pairwise_difference(h[i:i + 1], ha[k:k + 1])[0, 0]
                                 for k in range(6)]) * 2.0 + 10.0
        assert pred[i] == pytest.approx(float(votes.mean()), abs=1e-5)
        assert unc[i] == pytest.approx(float(votes.std()), abs=1e-5)


def test_the_training_loss_is_the_mean_over_ordered_pairs_of_the_label_difference_error():
    net = _twin()
    x, y = torch.randn(5, 3), torch.randn(5)
    got = TwinRegressionTask(net).step((x, y), torch.Generator())
    h = net.embed(x)
    errors = [(net.pairwise_difference(h[i:i + 1], h[j:j + 1])[0, 0] - (y[i] - y[j])) ** 2
              for i in range(5) for j in range(5)]
    torch.testing.assert_close(got, torch.stack(errors).mean())


def _table(path, rows: int = 120, label: str = "y"):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 4))
    y = 3 * x[:, 0] - 2 * x[:, 1] ** 2 + 0.1 * rng.normal(size=rows)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["a", "b", "c", "d", label])
        w.writerows(np.column_stack([x, y]).tolist())
    return x, y


def test_regression_from_the_command_line_trains_predicts_and_evaluates(tmp_path, capsys):
    x, y = _table(tmp_path / "t.csv")
    out = tmp_path / "run"
    assert main(["train", "--task", "regression", "--data", str(tmp_path / "t.csv"),
                 "--label-column", "y", "--epochs", "15", "--quiet", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "test rows (18): RMSE" in text
    model = siamese.load(out)
    card = model.card
    assert card["task"] == "regression" and card["regression"]["anchors"] == 84
    assert card["metrics"]["test"]["r2"] > 0.5  # a smooth function of the inputs is learned
    # predict: every row, with or without the label column; metrics where it has labels
    assert main(["predict", str(out), str(tmp_path / "t.csv"), "--out",
                 str(tmp_path / "p.csv")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    assert len(rows) == 120 and float(rows[0]["label"]) == pytest.approx(y[0])
    pred, unc = model.predict(x)
    assert float(rows[5]["prediction"]) == pytest.approx(pred[5], rel=1e-5)
    assert "against the table's labels (120): RMSE" in capsys.readouterr().err
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header="a,b,c,d", comments="")
    assert main(["predict", str(out), str(tmp_path / "x.csv")]) == 0
    assert capsys.readouterr().out.count("\n") == 121  # header + rows on stdout
    # the test rows recorded in split.json, again
    assert main(["evaluate", str(out)]) == 0
    assert f"RMSE {card['metrics']['test']['rmse']:.4g}" in capsys.readouterr().out


def test_bad_regression_input_is_one_line_and_writes_nothing(tmp_path, capsys):
    _table(tmp_path / "t.csv")
    text = (tmp_path / "t.csv").read_text().splitlines()
    text[3] = text[3].rsplit(",", 1)[0] + ",tall"
    (tmp_path / "bad.csv").write_text("\n".join(text) + "\n")
    cases = [
        (["--data", str(tmp_path / "bad.csv"), "--label-column", "y"],
         "bad.csv line 4: label 'tall' in column 'y' is not a finite number"),
        (["--data", str(tmp_path / "t.csv"), "--label-column", "z"], "has no column 'z'"),
        (["--data", str(tmp_path / "t.csv"), "--label-column", "y", "--loss", "triplet"],
         "train.task regression trains with mse on label differences"),
    ]
    for args, message in cases:
        code = main(["train", "--task", "regression", *args, "--out", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err
        assert not (tmp_path / "r").exists()


def test_a_regression_run_refuses_to_verify_and_a_similarity_run_to_predict(
        tmp_path, tiny_run_session, capsys):
    _table(tmp_path / "t.csv")
    out = tmp_path / "run"
    assert main(["train", "--task", "regression", "--data", str(tmp_path / "t.csv"),
                 "--label-column", "y", "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["compare", str(out), "1,2,3,4", "1,2,3,5"]) == 2
    assert "is a regression model" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="is a regression model"):
        siamese.load(out).verify([1, 2, 3, 4], [1, 2, 3, 5])
    assert main(["predict", str(tiny_run_session), str(tmp_path / "t.csv")]) == 2
    assert "predict needs a run trained with --task regression" in capsys.readouterr().err
