"""Tracking on an imported backbone (model.pretrained on a tracking run): a tiny ONNX network
the test makes, cut at its feature map, frozen or fine-tuned under SiamFC's correlation; the
run keeps the graph and tracks without the file."""

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from test_pretrained import tiny_cnn
from test_tracking import _sequences

import siamese
from siamese.cli import main
from siamese.pretrained.encoder import graph_state
from siamese.pretrained.onnx_reader import read_onnx

SMALL = ["--task", "tracking", "--batch-size", "4", "--epochs", "1", "--quiet"]


def _config(tmp_path, train: str = "frozen") -> str:
    cfg = tmp_path / "t.toml"
    cfg.write_text("[track]\npairs_per_epoch = 16\nexemplar = 87\nsearch = 127\nupsample = 4\n"
                   f"[model]\npretrained_output = \"fmap\"\npretrained_train = \"{train}\"\n"
                   "[train]\nlr = 0.01\n")
    return str(cfg)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _sequences(tmp_path_factory.mktemp("otb") / "data", n=2, frames=16)


@pytest.mark.parametrize("train", ["frozen", "all"])
def test_an_imported_backbone_trains_under_siamfc_and_tracks_without_its_file(data, tmp_path,
                                                                              train):
    onnx_path = tiny_cnn(tmp_path / "net.onnx")
    run = tmp_path / "run"
    assert main(["train", "--config", _config(tmp_path, train), "--data", str(data),
                 "--pretrained", str(onnx_path), "--out", str(run), *SMALL]) == 0
    spec, weights = read_onnx(onnx_path, ["fmap"])
    start = graph_state(spec, weights)
    saved = load_file(run / "model.safetensors")
    moved = [k for k, v in start.items()
             if not torch.equal(saved["backbone.graph." + k], v)]
    if train == "frozen":  # the imported weights as they came; what is on top trained
        assert moved == []
        eye = torch.eye(6)[:, :, None, None]
        assert not torch.equal(saved["backbone.adjust.weight"], eye)
    else:
        assert moved
    card = siamese.load(run).card
    assert card["tracking"]["stride"] == 2 and card["pretrained"]["graph"] == "encoder_graph.json"
    onnx_path.unlink()  # the run holds the graph: it loads and tracks without the file
    model = siamese.load(run)
    first = [float(v) for v in (data / "Seq0/groundtruth_rect.txt").read_text().split()[0]
             .split(",")]
    boxes, sure, fps = model.track(data / "Seq0/img", first, confidence=True)
    assert boxes.shape == (16, 4) and np.isfinite(boxes).all() and fps > 0
    assert ((sure >= 0) & (sure <= 1)).all()


def test_the_network_s_own_input_preparation_feeds_the_graph(tmp_path):
    """crops in [0, 1] reach the graph as (x - mean) / std (mean and std of the RGB channels,
    as for images), then reversed for a BGR network"""
    from siamese.pretrained.graph import GraphModule
    from siamese.pretrained.tracking import ImportedBackbone

    spec, weights = read_onnx(tiny_cnn(tmp_path / "net.onnx"), ["fmap"])
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    backbone = ImportedBackbone(spec, mean, std, "BGR", (31, 63))
    backbone.graph.load_state_dict(graph_state(spec, weights))
    plain = GraphModule(spec)
    plain.load_state_dict(graph_state(spec, weights))
    x = torch.rand(2, 3, 31, 31)
    want = plain(((x - torch.tensor(mean).view(1, 3, 1, 1))
                  / torch.tensor(std).view(1, 3, 1, 1)).flip(1))[0]
    torch.testing.assert_close(backbone(x), want)  # the adjustment starts as the identity
    assert backbone.stride == 2 and backbone.num_features == 6


def test_a_pooled_output_is_refused_as_a_tracking_backbone(data, tmp_path, capsys):
    onnx_path = tiny_cnn(tmp_path / "net.onnx")
    out = tmp_path / "run"
    assert main(["train", "--config", _config(tmp_path), "--data", str(data), "--pretrained",
                 str(onnx_path), "--pretrained-output", "features", "--out", str(out),
                 *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a feature map" in err and err.count("\n") == 1
    assert not out.exists()
