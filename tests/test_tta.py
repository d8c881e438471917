"""Test-time augmentation: the embedding averaged over distorted copies of each image."""

import json

import pytest
import torch
import torch.nn.functional as F

import siamese
from siamese.cli import main
from siamese.config import AugmentConfig
from siamese.data.transforms import random_affine

ZERO = {"enabled": True, "rotate": 0.0, "shear": 0.0, "scale": 0.0, "translate": 0.0}


@pytest.fixture
def model_and_x(tiny_run_session):
    model = siamese.load(tiny_run_session)
    x = torch.randn(10, *model.preprocessing.input_shape)
    return model, x


def test_no_views_is_the_plain_embedding(model_and_x):
    model, x = model_and_x
    assert torch.equal(model.embed_tensor(x, views=0), model.embed_tensor(x))


def test_views_average_the_distorted_copies_like_a_naive_loop(model_and_x):
    model, x = model_and_x
    aug = AugmentConfig(**model.card["config"]["augment"])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        views = [model.net.embed(x)] + [model.net.embed(random_affine(x, aug, gen))
                                        for _ in range(3)]
        expected = F.normalize(torch.stack(views).mean(0), dim=1)
    got = model.embed_tensor(x, views=3, batch_size=4)  # batches must not change the draws
    assert torch.allclose(got, expected, atol=1e-5)
    assert torch.allclose(got.norm(dim=1), torch.ones(len(x)), atol=1e-5)
    assert torch.equal(got, model.embed_tensor(x, views=3, batch_size=4))  # repeatable
    assert not torch.allclose(got, model.embed_tensor(x), atol=1e-3)


def test_identity_distortions_leave_the_embedding_unchanged(model_and_x):
    model, x = model_and_x
    model.card["config"]["augment"] = ZERO
    assert torch.allclose(model.embed_tensor(x, views=4), model.embed_tensor(x), atol=1e-5)


def test_cli_evaluate_with_tta(run_copy, tmp_path, capsys):
    assert main(["evaluate", str(run_copy), "--tta", "2", "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 <= m["unseen"]["verification"]["roc_auc"] <= 1
    assert main(["evaluate", str(run_copy), "--tta", "-1"]) == 2
    assert "--tta -1" in capsys.readouterr().err
