import pytest

from siamese.config import (
    Config,
    TrackConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    resolve,
)
from siamese.errors import ConfigError


def test_unknown_key_is_an_error_naming_it(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text("[train]\nepochs = 3\nepocs = 4\n")
    with pytest.raises(ConfigError, match="unknown key 'epocs'.*epochs"):
        load_config(p)


def test_unknown_section_is_an_error():
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        config_from_dict({"trian": {}})


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match="train.*epochs"):
        config_from_dict({"train": {"epochs": "ten"}})


def test_toml_values_and_overrides(tmp_path):
    p = tmp_path / "c.toml"
    p.write_text('[loss]\nname = "contrastive"\n[split]\ntest_classes = ["a", "b"]\n')
    cfg = load_config(p)
    apply_overrides(cfg, {"train.epochs": 7, "loss.margin": None, "split.test_classes": "x,y"})
    assert cfg.loss.name == "contrastive" and cfg.train.epochs == 7
    assert cfg.split.test_classes == ["x", "y"]


def test_resolve_fills_loss_defaults():
    cfg = resolve(config_from_dict({"loss": {"name": "triplet"}}))
    assert cfg.loss.margin == 0.2 and cfg.loss.miner == "semi-hard"
    cfg = resolve(config_from_dict({"loss": {"name": "contrastive", "margin": 2}}))
    assert cfg.loss.margin == 2.0


def test_roundtrip_through_dict():
    cfg = resolve(Config())
    assert config_from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("values, match", [
    ({"loss": {"name": "hinge"}}, "unknown loss 'hinge'"),
    ({"loss": {"distance": "manhattan"}}, "unknown distance"),
    ({"train": {"epochs": 0}}, "epochs"),
    ({"train": {"keep": "middle"}}, "train.keep 'middle'"),
    ({"train": {"ema": 1.0, "keep": "last"}}, "train.ema must be in"),
    ({"train": {"ema": 0.999}}, "train.ema keeps the average"),
    ({"eval": {"tta": -1}}, "eval.tta must be >= 0"),
    ({"model": {"views": 65}}, "model.views must be in"),
    ({"data": {"cache": "ssd"}}, "data.cache 'ssd'"),
    ({"data": {"cache_gb": -1}}, "data.cache_gb must be >= 0"),
    ({"train": {"workers": -2}}, "train.workers must be in"),
    ({"train": {"amp": "fp8"}}, "train.amp 'fp8'"),
    ({"split": {"mode": "random"}}, "split mode"),
])
def test_resolve_rejects_bad_values(values, match):
    with pytest.raises(ConfigError, match=match):
        resolve(config_from_dict(values))


def test_saved_config_without_a_changed_key_takes_its_former_default():
    """A run saved before track.jitter existed trained without jitter: resume and --reuse
    read it so; a saved value, or a key whose default never changed, is kept as is."""
    from siamese.config import saved_values

    assert config_from_dict(saved_values({})).track.jitter == 0.0
    assert config_from_dict(saved_values({"track": {"shift": 8.0}})).track.jitter == 0.0
    assert config_from_dict(saved_values({"track": {"jitter": 0.3}})).track.jitter == 0.3
    assert config_from_dict(saved_values({"track": {}})).track.shift == TrackConfig().shift
    assert config_from_dict({}).track.jitter == 0.3  # a new run takes today's default


def test_set_values_read_as_the_toml_file_reads_them(tmp_path):
    """--set SECTION.KEY=VALUE and the same line in a TOML file give the same config."""
    from siamese.config import parse_sets

    sets = ["train.epochs=7", "train.lr=5e-4", "augment.enabled=false", "loss.name=contrastive",
            'model.encoder="koch"', "split.test_classes=a,b", 'split.val_classes=["c", "d"]',
            "train.max_minutes=2"]
    p = tmp_path / "c.toml"
    p.write_text('[train]\nepochs = 7\nlr = 5e-4\nmax_minutes = 2\n[augment]\nenabled = false\n'
                 '[loss]\nname = "contrastive"\n[model]\nencoder = "koch"\n'
                 '[split]\ntest_classes = ["a", "b"]\nval_classes = ["c", "d"]\n')
    assert apply_overrides(Config(), parse_sets(sets)) == load_config(p)


@pytest.mark.parametrize("item, match", [
    ("train.epochs", "write SECTION.KEY=VALUE"),
    ("=3", "write SECTION.KEY=VALUE"),
    ("epochs=3", "write SECTION.KEY"),
    ("trian.epochs=3", "write SECTION.KEY.*train"),
    ("train.epocs=3", "unknown key 'epocs'"),
    ("train.epochs=ten", "train.epochs.*expected .*int.*got .ten."),
    ("train.a.b=1", "write SECTION.KEY"),
])
def test_bad_set_is_a_config_error_naming_it(item, match):
    from siamese.config import parse_sets

    with pytest.raises(ConfigError, match=match):
        apply_overrides(Config(), parse_sets([item]))


def test_every_shipped_recipe_loads_and_resolves():
    """a key misspelt in configs/*.toml is an error here, not in a user's first run"""
    from pathlib import Path

    from siamese.config import load_config, resolve

    recipes = sorted((Path(__file__).parents[1] / "configs").glob("*.toml"))
    assert len(recipes) >= 9
    for path in recipes:
        cfg = resolve(load_config(path))
        assert cfg.train.task in ("similarity", "tracking", "regression"), path
