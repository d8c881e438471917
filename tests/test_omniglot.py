"""The Omniglot pipeline on the real release: loaders, a few training steps, the 20 official runs.

Skips where ../shared/data (or $SIAMESE_DATA) has no Omniglot.
"""

import json
import zipfile

import numpy as np
import pytest

import siamese
from conftest import SHARED_DATA
from siamese.cli import main
from siamese.data.datasets import load_dataset
from siamese.evaluation.omniglot import load_official_runs, score_official_runs

OMNI = SHARED_DATA / "omniglot"
pytestmark = pytest.mark.skipif(not (OMNI / "all_runs.zip").exists(),
                                reason=f"Omniglot not found in {OMNI}")


def test_official_runs_are_read_as_published():
    runs, files = load_official_runs(OMNI / "all_runs.zip")
    assert len(runs) == 20 and [r.name for r in runs][:2] == ["run01", "run02"]
    for r in runs:
        assert len(r.training) == 20 and len(r.test) == 20
        assert sorted(r.answer.tolist()) == list(range(20))  # one test item per character
    assert runs[0].test[0] == "run01/test/item01.png"
    assert runs[0].training[runs[0].answer[0]] == "run01/training/class08.png"


def test_extracted_folder_reads_like_the_zip(tmp_path):
    with zipfile.ZipFile(OMNI / "all_runs.zip") as zf:
        zf.extractall(tmp_path / "all_runs")
    a, _ = load_official_runs(OMNI / "all_runs.zip")
    b, _ = load_official_runs(tmp_path / "all_runs")
    assert [(r.name, r.answer.tolist()) for r in a] == [(r.name, r.answer.tolist()) for r in b]


def test_minimal_background_set_keeps_alphabets_as_groups():
    d = load_dataset(str(OMNI / "images_background_small1.zip"), 28, 1)
    assert len({g for g in d.groups}) == 5
    assert all(c.startswith(g + "/") for c, g in zip(d.classes, d.groups, strict=True))
    assert np.bincount(d.y).min() == 20  # 20 drawers per character


def test_pipeline_trains_and_scores_the_20_runs(tmp_path):
    cfg = {
        "data": {"path": str(OMNI / "images_background_small1.zip"), "image_size": 28,
                 "channels": 1, "class_rotations": True},
        "split": {"mode": "samples", "val_fraction": 0.1, "test_fraction": 0.0},
        "model": {"width": 16, "embedding_dim": 0},
        "loss": {"name": "proto"},
        "train": {"epochs": 1, "batch_size": 128, "max_minutes": 0.15, "val_pairs": 500},
    }
    model = siamese.train(cfg, tmp_path / "run", quiet=True)
    r = score_official_runs(model, OMNI / "all_runs.zip")
    assert r["trials"] == 400 and len(r["per_run"]) == 20
    assert r["accuracy"] == pytest.approx(np.mean(list(r["per_run"].values())))
    assert r["accuracy"] > 0.25  # chance is 5%; a few seconds of training is far above it
    assert len(r["wrong"]) == round(400 * (1 - r["accuracy"]))
    tta = score_official_runs(model, OMNI / "all_runs.zip", views=2)
    assert tta["views"] == 2 and tta["accuracy"] > 0.25
    assert main(["evaluate", str(tmp_path / "run"), "--omniglot-runs",
                 str(OMNI / "all_runs.zip")]) == 0
    saved = json.loads((tmp_path / "run" / "omniglot.json").read_text())
    assert saved["accuracy"] == pytest.approx(r["accuracy"])
    assert saved["seconds"] < 5
    assert (tmp_path / "run" / "omniglot_trials.png").stat().st_size > 10_000
