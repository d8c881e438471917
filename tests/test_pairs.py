"""Pairs files (CSV a,b,label and LFW pairs.txt) and the k-fold verification protocol."""

import json

import numpy as np
import pytest

from conftest import digit_folder
from siamese.cli import main
from siamese.data.pairs import assign_folds, read_pairs
from siamese.errors import DataError
from siamese.evaluation.pairs import graded_metrics, kfold_accuracy


def _accuracy(labels, scores, t):
    return ((scores >= t) == (labels == 1)).mean()


def test_kfold_accuracy_matches_a_naive_search_per_fold():
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 0], 300)
    scores = np.round(rng.normal(labels * 1.2, 1.0), 2)  # rounding: ties, as real scores have
    folds = assign_folds(600, 10, seed=1)
    r = kfold_accuracy(labels, scores, folds)
    accs = []
    for f in range(10):
        train, test = folds != f, folds == f
        cands = np.concatenate([[np.inf], np.unique(scores)])  # every distinct cut
        best = max(_accuracy(labels[train], scores[train], t) for t in cands)
        t = r["thresholds"][f]
        assert _accuracy(labels[train], scores[train], t) == pytest.approx(best)
        accs.append(_accuracy(labels[test], scores[test], t))
    assert r["per_fold"] == pytest.approx(accs)
    assert r["accuracy"] == pytest.approx(np.mean(accs))
    assert r["accuracy_std"] == pytest.approx(np.std(accs, ddof=1))
    assert 0.65 < r["accuracy"] < 0.85


def test_graded_metrics_match_numpy():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 5, 200)
    pred = true / 5 + rng.normal(0, 0.1, 200)  # continuous: no ties for the ranks below
    g = graded_metrics(true, pred)
    t = (true - true.min()) / (true.max() - true.min())
    assert g["pearson"] == pytest.approx(np.corrcoef(pred, t)[0, 1])
    ranks = [np.argsort(np.argsort(v)) for v in (pred, t)]  # no ties in continuous data
    assert g["spearman"] == pytest.approx(np.corrcoef(*ranks)[0, 1])
    assert g["mae"] == pytest.approx(np.abs(pred - t).mean())


@pytest.fixture
def lfw(tmp_path):
    """An LFW-style tree of digit images (person = digit) and a pairs.txt of 2 folds x 3+3."""
    root = tmp_path / "lfw"
    for d in ("3", "5", "7"):
        digit_folder(tmp_path / "src", per_class=4, classes=[int(d)])
        (root / f"p{d}").mkdir(parents=True)
        for k, f in enumerate(sorted((tmp_path / "src" / d).glob("*.png")), start=1):
            f.rename(root / f"p{d}" / f"p{d}_{k:04d}.png")
    lines = ["2\t3"]
    for _fold in range(2):
        lines += ["p3\t1\t2", "p5\t1\t3", "p7\t2\t4"]
        lines += ["p3\t1\tp5\t2", "p5\t4\tp7\t1", "p7\t3\tp3\t4"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    return tmp_path / "pairs.txt"


def test_lfw_pairs_txt_is_read_with_its_folds(lfw):
    p = read_pairs(lfw)
    assert len(p) == 12 and p.folds.tolist() == [0] * 6 + [1] * 6
    assert p.label.tolist() == ([1.0] * 3 + [0.0] * 3) * 2 and not p.graded
    assert p.a[0].endswith("lfw/p3/p3_0001.png") and p.b[0].endswith("lfw/p3/p3_0002.png")
    assert p.b[3].endswith("lfw/p5/p5_0002.png")


def test_csv_pairs_with_or_without_header_and_graded_scores(tmp_path):
    digit_folder(tmp_path / "img", per_class=2, classes=[1, 2])
    body = "img/1/0.png,img/1/1.png,1\nimg/1/0.png,img/2/0.png,0\n"
    (tmp_path / "h.csv").write_text("a,b,label\n" + body)
    (tmp_path / "n.csv").write_text(body)
    for name in ("h.csv", "n.csv"):
        p = read_pairs(tmp_path / name)
        assert p.label.tolist() == [1.0, 0.0] and p.folds is None and not p.graded
        assert p.a[0] == str(tmp_path / "img/1/0.png")
    (tmp_path / "g.csv").write_text(body.replace(",1\n", ",4.5\n").replace(",0\n", ",2\n"))
    assert read_pairs(tmp_path / "g.csv").graded


@pytest.mark.parametrize("content, match", [
    ("img/1/0.png,missing.png,1\n", "line 1 names .*missing.png, which does not exist"),
    ("img/1/0.png,img/1/1.png\n", "line 1 has 2 fields; expected a,b,label"),
    ("a,b,label\nimg/1/0.png,img/1/1.png,same\n", "line 2: label 'same' is not a number"),
    ("img/1/0.png,img/1/1.png,nan\n", "line 1: label nan is not finite"),
    ("a,b,label\n", "holds no pairs"),
])
def test_bad_csv_pairs_are_one_line_naming_file_and_line(tmp_path, content, match):
    digit_folder(tmp_path / "img", per_class=2, classes=[1])
    (tmp_path / "p.csv").write_text(content)
    with pytest.raises(DataError, match=match):
        read_pairs(tmp_path / "p.csv")


def test_bad_lfw_files_and_folds(lfw, tmp_path):
    text = lfw.read_text()
    lfw.write_text(text.replace("2\t3", "2\t4", 1))
    with pytest.raises(DataError, match="has 12 pairs; its header promises 2 folds x 8"):
        read_pairs(lfw)
    lfw.write_text(text.replace("p5\t1\t3", "p5\t1\t9"))
    with pytest.raises(DataError, match="line 3 names image 9 of p5"):
        read_pairs(lfw)
    with pytest.raises(DataError, match="does not exist"):
        read_pairs(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="601 pairs do not divide into 10 folds"):
        assign_folds(601, 10)


def test_evaluate_pairs_from_the_command_line(lfw, tiny_run_session, tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    assert main(["evaluate", str(tiny_run_session), "--pairs", str(lfw), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "12 pairs, 2-fold accuracy" in text
    m = json.loads((out / "pairs_metrics.json").read_text())
    assert m["protocol"]["folds"] == 2 and len(m["protocol"]["per_fold"]) == 2
    assert 0 <= m["verification"]["roc_auc"] <= 1 and (out / "pairs_roc.png").exists()
    graded = tmp_path / "g.csv"
    p = read_pairs(lfw)
    graded.write_text("".join(f"{a},{b},{3 * y + i % 2}\n"
                              for i, (a, b, y) in enumerate(zip(p.a, p.b, p.label, strict=True))))
    assert main(["evaluate", str(tiny_run_session), "--pairs", str(graded), "--out",
                 str(out)]) == 0
    assert "12 graded pairs: Pearson" in capsys.readouterr().out
    assert (out / "pairs_scatter.png").exists()
    (tmp_path / "bad.csv").write_text("x.png,y.png,1\n")
    assert main(["evaluate", str(tiny_run_session), "--pairs", str(tmp_path / "bad.csv")]) == 2
    assert "error: pairs file" in capsys.readouterr().err
