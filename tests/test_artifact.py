import json
import os

import pytest
import torch

from siamese.artifact import load_tensors, read_card, save_tensors, write_card
from siamese.atomic import atomic_write_bytes
from siamese.errors import ArtifactError


def test_tensors_roundtrip(tmp_path):
    t = {"a": torch.randn(3, 4), "b": torch.arange(5)}
    save_tensors(tmp_path / "m.safetensors", t)
    back = load_tensors(tmp_path / "m.safetensors")
    assert all(torch.equal(t[k], back[k]) for k in t)


def test_truncated_weights_are_a_clear_error(tmp_path):
    save_tensors(tmp_path / "m.safetensors", {"a": torch.randn(100, 100)})
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="truncated"):
        load_tensors(tmp_path / "m.safetensors")


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    p = tmp_path / "f.bin"
    atomic_write_bytes(p, b"old")

    class Boom(Exception):
        pass

    from siamese.atomic import atomic_write

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(b"half")
        raise Boom

    with pytest.raises(Boom):
        atomic_write(p, write)
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]  # no temp file left behind


def test_card_from_another_format_version_is_refused(tmp_path):
    write_card(tmp_path, {"config": {}})
    card = json.loads((tmp_path / "card.json").read_text())
    card["format_version"] = 99
    (tmp_path / "card.json").write_text(json.dumps(card))
    with pytest.raises(ArtifactError, match="format 99.*retrain"):
        read_card(tmp_path)


def test_missing_run_folder(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist"):
        read_card(tmp_path / "nope")
