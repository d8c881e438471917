"""Several data roots joined into one labeled set (data/roots.py): classes kept apart by root,
grouped by root, the same files as each root alone, and one-line refusals."""

import numpy as np
import pytest
from PIL import Image

import siamese
from conftest import AUDIO_RUN, voices
from siamese.cli import main
from siamese.data.datasets import load_audio_tree, load_dataset
from siamese.data.roots import root_shares, root_tags
from siamese.errors import ConfigError


def test_two_audio_roots_join_with_their_classes_apart(tmp_path):
    a = voices(tmp_path / "a", speakers=3, clips=4)
    b = voices(tmp_path / "b", speakers=2, clips=2)  # the same class names: spk0, spk1
    both = load_dataset([str(a), str(b)], sample_rate=8000)
    alone = [load_audio_tree(a, 8000), load_audio_tree(b, 8000)]
    assert both.classes == ["a/spk0", "a/spk1", "a/spk2", "b/spk0", "b/spk1"]
    assert both.groups == ["a", "a", "a", "b", "b"]
    assert both.sources == alone[0].sources + alone[1].sources
    np.testing.assert_array_equal(both.y, np.r_[alone[0].y, alone[1].y + 3])
    for k in range(len(both)):  # the same waveform, sample by sample
        part, i = (alone[0], k) if k < 12 else (alone[1], k - 12)
        np.testing.assert_array_equal(both.x.get(k).numpy(), part.x.get(i).numpy())
    assert root_shares(both) == {"a": 12 / 16, "b": 4 / 16}


def test_roots_of_one_name_get_distinct_tags():
    assert root_tags(["x/data", "y/data", "z.zip"]) == ["x-data", "y-data", "z"]


def test_a_run_on_two_roots_records_each_roots_share(tmp_path):
    a, b = voices(tmp_path / "a", speakers=3, clips=4), voices(tmp_path / "b", speakers=3)
    out = tmp_path / "run"
    assert main(["train", "--data", str(a), str(b), "--epochs", "1", "--split", "samples",
                 "--out", str(out), "--set", "train.group_batches=true", *AUDIO_RUN]) == 0
    card = siamese.load(out).card
    assert card["config"]["data"]["path"] == [str(a), str(b)]
    assert card["data"]["classes"] == 6
    shares = card["data"]["training_share_by_root"]
    assert set(shares) == {"a", "b"} and shares["a"] < shares["b"]  # 4 vs 5 clips a speaker


def test_roots_of_different_kinds_are_refused_in_one_line(tmp_path, capsys):
    a = voices(tmp_path / "a", speakers=2, clips=2)
    for c in ("p", "q"):
        (tmp_path / "img" / c).mkdir(parents=True)
        for k in range(2):
            Image.fromarray(np.full((8, 8), 40 * k, np.uint8)).save(
                tmp_path / "img" / c / f"{k}.png")
    with pytest.raises(ConfigError, match="different kinds of data"):
        load_dataset([str(a), str(tmp_path / "img")], sample_rate=8000)
    assert main(["train", "--data", str(a), str(tmp_path / "img"), "--out",
                 str(tmp_path / "r"), *AUDIO_RUN]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "different kinds" in err
    assert not (tmp_path / "r").exists()


def test_two_image_roots_join_whether_decoded_into_memory_or_read_from_disk(tmp_path):
    for root, n in (("r1", 2), ("r2", 3)):
        for c in range(n):
            (tmp_path / root / f"c{c}").mkdir(parents=True)
            for k in range(2):
                Image.fromarray(np.full((8, 8), 30 * c + k, np.uint8)).save(
                    tmp_path / root / f"c{c}" / f"{k}.png")
    paths = [str(tmp_path / "r1"), str(tmp_path / "r2")]
    mem = load_dataset(paths, image_size=8, cache="memory")
    lazy = load_dataset(paths, image_size=8, cache="none")
    assert mem.classes == lazy.classes == ["r1/c0", "r1/c1", "r2/c0", "r2/c1", "r2/c2"]
    assert mem.x.shape == (10, 1, 8, 8) and len(lazy.x) == 10
    assert lazy.sources == mem.sources
