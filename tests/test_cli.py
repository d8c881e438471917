"""The CLI as a user runs it: train, evaluate, compare, embed, bad input, kill and resume."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import TINY_TOML, digit_png, make_image_tree
from siamese.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "siamese", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def tiny_run(tiny_run_session):
    return tiny_run_session


def test_train_writes_one_self_contained_artifact(tiny_run):
    card = json.loads((tiny_run / "card.json").read_text())
    assert card["status"] == "trained" and card["siamese_version"]
    assert card["split"]["test_classes"] == ["7", "8", "9"]
    assert 0 <= card["threshold"] <= 1
    assert {"unseen", "seen", "val"} <= set(card["metrics"])
    for f in ("model.safetensors", "split.json", "config.json", "roc.png", "training.png",
              "scores_unseen.png", "checkpoints/last.safetensors"):
        assert (tiny_run / f).is_file(), f
    assert not list(tiny_run.rglob("*.pt")) and not list(tiny_run.rglob("*.pkl"))


def test_evaluate_prints_a_table_and_writes_metrics(tiny_run, capsys, tmp_path):
    assert main(["evaluate", str(tiny_run), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "verification ROC AUC" in out and "3-way 1-shot" in out and "MAP@R" in out
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 <= m["unseen"]["verification"]["roc_auc"] <= 1


def test_compare_and_embed(tiny_run, tmp_path, capsys):
    a = digit_png(tmp_path / "a.png", 0)
    b = digit_png(tmp_path / "b.png", 1)
    assert main(["compare", str(tiny_run), str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("similarity ") and "threshold" in out and ("same" in out or
                                                                     "different" in out)
    folder = tmp_path / "imgs" / "zero"
    folder.mkdir(parents=True)
    for i in range(3):
        digit_png(folder / f"{i}.png", i * 10)
    assert main(["embed", str(tiny_run), str(tmp_path / "imgs"), "--out",
                 str(tmp_path / "e.npy")]) == 0
    e = np.load(tmp_path / "e.npy")
    assert e.shape == (3, 16)
    assert (tmp_path / "e.csv").read_text().splitlines()[1].endswith(",zero")


def test_api_matches_cli(tiny_run, tmp_path):
    import siamese

    m = siamese.load(tiny_run)
    a = digit_png(tmp_path / "a.png", 3)
    b = digit_png(tmp_path / "b.png", 4)
    s = m.similarity(a, b)
    e = m.embed([a, b])
    assert s == pytest.approx(float(m.score_embeddings(e[:1], e[1:])[0]), abs=1e-5)
    assert m.verify(a, b) == (pytest.approx(s), s >= m.threshold)


def _corrupt(tmp_path):
    root = make_image_tree(tmp_path / "corrupt")
    (root / "class_1" / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    return root


def _single(tmp_path):
    root = make_image_tree(tmp_path / "single", classes=3)
    for f in list((root / "class_2").iterdir())[1:]:
        f.unlink()
    return root


BAD = {
    "missing path": (lambda t: ["train", "--data", t / "nope"], "does not exist"),
    "empty folder": (lambda t: ["train", "--data", (t / "e").mkdir() or t / "e"],
                     "no images found"),
    "single sample": (lambda t: ["train", "--data", _single(t), "--split", "samples"],
                      "class 'class_2' has only 1"),
    "corrupt image": (lambda t: ["train", "--data", _corrupt(t)], "broken.jpg"),
    "bad csv": (lambda t: ["train", "--data", (t / "x.csv").write_bytes(b"\xff\xfe\x00") and
                           t / "x.csv"], "x.csv"),
    "unknown encoder": (lambda t: ["train", "--encoder", "vgg"], "unknown encoder 'vgg'"),
    "unknown loss": (lambda t: ["train", "--loss", "hinge"], "unknown loss 'hinge'"),
    "unknown miner": (lambda t: ["train", "--miner", "hardest"], "unknown miner 'hardest'"),
    "bad config key": (lambda t: ["train", "--config", (t / "c.toml").write_text(
        "[train]\nepoch = 1\n") and t / "c.toml"], "unknown key 'epoch'"),
    "not a run": (lambda t: ["evaluate", t], "card.json is missing"),
    "bad --set": (lambda t: ["train", "--set", "train.epocs=2"], "unknown key 'epocs'"),
    "--set without =": (lambda t: ["train", "--set", "train.epochs"], "SECTION.KEY=VALUE"),
    "compare missing image": (lambda t: ["compare", t / "nope", "a.png", "b.png"],
                              "does not exist"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2(case, tmp_path, capsys):
    make_args, match = BAD[case]
    args = [str(a) for a in make_args(tmp_path)]
    args += ["--out", str(tmp_path / "run")] if args[0] == "train" else []
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err
    assert not (tmp_path / "run" / "card.json").exists()


def test_set_changes_nested_fields_of_train_and_evaluate(tiny_config, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--config", str(tiny_config), "--out", str(out), "--quiet",
                 "--epochs", "3", "--set", "train.epochs=1", "--set", "split.val_fraction=0.3",
                 "--set", "eval.episodes=20"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["epochs"] == 1  # --set has the last word over the flags
    assert saved["split"]["val_fraction"] == 0.3 and saved["eval"]["episodes"] == 20
    capsys.readouterr()
    assert main(["evaluate", str(out), "--out", str(tmp_path / "e"), "--set",
                 "eval.ways=[2]"]) == 0
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert list(metrics["unseen"]["few_shot"]) == ["2-way 1-shot"]
    assert main(["evaluate", str(out), "--set", "train.epochs=3"]) == 2
    assert "evaluate takes --set eval.KEY" in capsys.readouterr().err


def test_truncated_and_incompatible_runs(tiny_run, tmp_path, capsys):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(tiny_run, bad)
    w = (bad / "model.safetensors").read_bytes()
    (bad / "model.safetensors").write_bytes(w[: len(w) // 3])
    img = digit_png(tmp_path / "a.png", 0)
    assert main(["compare", str(bad), str(img), str(img)]) == 2
    assert "truncated" in capsys.readouterr().err
    card = json.loads((bad / "card.json").read_text())
    card["format_version"] = 0
    (bad / "card.json").write_text(json.dumps(card))
    assert main(["evaluate", str(bad)]) == 2
    assert "format 0" in capsys.readouterr().err


def test_existing_run_is_not_overwritten(run_copy, capsys):
    before = (run_copy / "model.safetensors").read_bytes()
    assert main(["train", "--out", str(run_copy)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (run_copy / "model.safetensors").read_bytes() == before


def test_subprocess_error_has_no_traceback_and_debug_shows_it(tmp_path):
    r = run_cli("train", "--data", tmp_path / "missing", "--out", tmp_path / "r")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error: data path")
    r = run_cli("--debug", "train", "--data", tmp_path / "missing", "--out", tmp_path / "r")
    assert "Traceback" in r.stderr


@pytest.mark.slow
def test_kill_and_resume(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(TINY_TOML.replace("epochs = 2", "epochs = 40"))
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "siamese", "train", "--config", str(cfg), "--out", str(out),
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = out / "checkpoints" / "last.json"
    deadline = time.time() + 120
    while time.time() < deadline:
        if meta.exists() and json.loads(meta.read_text())["epoch"] >= 2:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads(meta.read_text())["epoch"]
    assert 2 <= killed_at < 40
    import siamese

    siamese.load(out)  # the best weights so far load after a hard kill
    r = run_cli("train", "--out", out, "--resume", "--quiet")
    assert r.returncode == 0, r.stderr
    card = json.loads((out / "card.json").read_text())
    epochs = [h["epoch"] for h in card["history"]]
    assert epochs == list(range(1, 41))


def test_vector_data_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 5)) * 3
    y = np.repeat(np.arange(6), 20)
    x = centers[y] + rng.normal(size=(120, 5))
    path = tmp_path / "v.csv"
    path.write_text("f1,f2,f3,f4,f5,label\n" + "\n".join(
        ",".join(f"{v:.4f}" for v in row) + f",c{t}" for row, t in zip(x, y, strict=True)))
    out = tmp_path / "run"
    assert main(["train", "--data", str(path), "--out", str(out), "--epochs", "3", "--quiet",
                 "--test-classes", "c4,c5"]) == 0
    card = json.loads((out / "card.json").read_text())
    assert card["config"]["model"]["encoder"] == "mlp" and card["preprocessing"]["kind"] == "vector"
    a = ",".join(f"{v}" for v in x[0])
    capsys.readouterr()
    assert main(["compare", str(out), "--", a, a]) == 0  # '--': vectors may start with '-'

    assert capsys.readouterr().out.startswith("similarity 1.000 -> same")
    assert main(["compare", str(out), "--", "x.png", a]) == 2
    assert "comma-separated numbers" in capsys.readouterr().err
    assert main(["embed", str(out), str(path), "--out", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape == (120, 64)
