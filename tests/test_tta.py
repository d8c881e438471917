"""Views: the embedding averaged over fixed distortions of each image, as test-time
augmentation (--tta N) and folded into the model (model.views)."""

import json

import pytest
import torch
import torch.nn.functional as F

import siamese
from conftest import with_views
from siamese.cli import main
from siamese.config import AugmentConfig
from siamese.data.transforms import apply_affine
from siamese.errors import ConfigError
from siamese.models.views import check_views, view_thetas

ZERO = {"enabled": True, "rotate": 0.0, "shear": 0.0, "scale": 0.0, "translate": 0.0}


@pytest.fixture
def model_and_x(tiny_run_session):
    model = siamese.load(tiny_run_session)
    x = torch.randn(10, *model.preprocessing.input_shape)
    return model, x


def naive_views(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """One image at a time: the mean of its embedding and of each of the k distortions'."""
    aug = AugmentConfig(**model.card["config"]["augment"])
    thetas = view_thetas(k, aug)
    rows = []
    with torch.no_grad():
        for img in x:
            img = img[None]
            embs = [model.net.embed(img)] + [model.net.embed(apply_affine(img, t[None]))
                                             for t in thetas]
            rows.append(F.normalize(torch.cat(embs).mean(0, keepdim=True), dim=1))
    return torch.cat(rows)


def test_no_views_is_the_plain_embedding(model_and_x):
    model, x = model_and_x
    assert model.views == 0
    assert torch.equal(model.embed_tensor(x, views=0), model.embed_tensor(x))


def test_views_average_the_distorted_copies_like_a_naive_loop(model_and_x):
    model, x = model_and_x
    got = model.embed_tensor(x, views=3, batch_size=4)
    assert torch.allclose(got, naive_views(model, x, 3), atol=1e-5)
    assert torch.allclose(got.norm(dim=1), torch.ones(len(x)), atol=1e-5)
    assert not torch.allclose(got, model.embed_tensor(x), atol=1e-3)


def test_an_images_embedding_does_not_depend_on_its_batch(model_and_x):
    model, x = model_and_x
    together = model.embed_tensor(x, views=4)
    alone = torch.cat([model.embed_tensor(x[i:i + 1], views=4) for i in range(len(x))])
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(model.embed_tensor(x.flip(0), views=4), together.flip(0), atol=1e-5)


def test_fewer_views_are_the_first_of_more():
    aug = AugmentConfig(**ZERO | {"rotate": 10.0, "translate": 0.1})
    assert torch.equal(view_thetas(3, aug), view_thetas(8, aug)[:3])
    assert len(torch.unique(view_thetas(8, aug), dim=0)) == 8


def test_identity_distortions_leave_the_embedding_unchanged(model_and_x):
    model, x = model_and_x
    model.card["config"]["augment"] = ZERO
    assert torch.allclose(model.embed_tensor(x, views=4), model.embed_tensor(x), atol=1e-5)


def test_a_model_with_views_embeds_with_them_everywhere(run_copy, tmp_path):
    from conftest import digit_folder

    model = siamese.load(with_views(run_copy, 3))
    assert model.views == 3
    files = sorted(digit_folder(tmp_path / "d", per_class=1).rglob("*.png"))
    x = model.to_tensor(files)
    assert torch.allclose(torch.from_numpy(model.embed(files)), naive_views(model, x, 3),
                          atol=1e-5)
    assert torch.equal(model.embed_tensor(x), model.embed_tensor(x, views=3))
    one_pass = model.embed_tensor(x, views=0)
    assert not torch.allclose(one_pass, model.embed_tensor(x), atol=1e-3)
    s = model.similarity(files[0], files[1])
    e = naive_views(model, x[:2], 3)
    assert s == pytest.approx(float(model.score_embeddings(e[:1], e[1:])[0]), abs=1e-5)


def test_cli_evaluate_with_tta(run_copy, tmp_path, capsys):
    assert main(["evaluate", str(run_copy), "--tta", "2", "--out", str(tmp_path)]) == 0
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert 0 <= m["unseen"]["verification"]["roc_auc"] <= 1
    assert main(["evaluate", str(run_copy), "--tta", "-1"]) == 2
    assert "--tta -1" in capsys.readouterr().err


def test_cli_evaluate_scores_as_the_model_embeds_unless_told(run_copy, tmp_path):
    def auc(*extra):
        assert main(["evaluate", str(run_copy), "--out", str(tmp_path), *extra]) == 0
        return json.loads((tmp_path / "metrics.json").read_text())["unseen"]["verification"]
    one_pass = auc()
    with_views(run_copy, 3)
    assert auc("--tta", "0") == one_pass
    assert auc() == auc("--tta", "3") != one_pass


@pytest.mark.parametrize("kind", ["audio", "vector"])
def test_views_are_for_images_only(kind):
    check_views(0, kind)
    check_views(4, "image")
    with pytest.raises(ConfigError, match="model.views = 4 averages distortions of images"):
        check_views(4, kind)


def test_views_out_of_range_is_a_config_error(tiny_config, tmp_path, capsys):
    out = tmp_path / "r"
    assert main(["train", "--config", str(tiny_config), "--out", str(out),
                 "--views", "-1"]) == 2
    assert "model.views must be in [0, 64]" in capsys.readouterr().err
    assert not out.exists()
