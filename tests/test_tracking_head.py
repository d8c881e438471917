"""A tracker's head imported whole (track.pretrained_head, as NanoTrack's head.onnx) over an
imported backbone; and a tracking run's branches exported to ONNX and tracked by ONNX
Runtime. The networks are tiny ones the test makes: a NanoTrack-like pixel-wise correlation
head, exported for a batch of one, with ReLU6-style Clip bounds as initializers."""

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import load_file
from test_pretrained import tiny_cnn
from test_tracking import _sequences

import siamese
from siamese.cli import main
from siamese.pretrained.encoder import graph_state
from siamese.pretrained.graph import GraphModule
from siamese.pretrained.onnx_reader import read_onnx

ort = pytest.importorskip("onnxruntime")
SMALL = ["--task", "tracking", "--batch-size", "4", "--epochs", "1", "--quiet"]


def tiny_head(path, z: int = 32, x: int = 64, seed: int = 0):
    """input1 (1, 6, z, z), input2 (1, 6, x, x) -> output1 (1, 2, x, x) class logits
    (background, target), output2 (1, 4, x, x) distances: each exemplar cell correlated with
    every search cell (Reshape to (1, 6, -1), Transpose, MatMul, Reshape back), then 1x1
    convolutions; the distances clipped to [0, 6] (bounds as initializers) and exponentiated."""
    r = np.random.default_rng(seed)
    n = z * z

    def t(name, a):
        out = numpy_helper.from_array(np.asarray(a))
        out.name = name
        return out

    inits = [t("flat", np.array([1, 6, -1], np.int64)), t("back", np.array([1, -1, x, x],
                                                                           np.int64)),
             t("cls.w", (r.normal(size=(2, n, 1, 1)) * 0.05).astype(np.float32)),
             t("cls.b", np.zeros(2, np.float32)),
             t("box.w", (r.normal(size=(4, n, 1, 1)) * 0.05).astype(np.float32)),
             t("box.b", np.full(4, 1.0, np.float32)),
             t("lo", np.array(0.0, np.float32)), t("hi", np.array(6.0, np.float32))]
    nodes = [helper.make_node("Reshape", ["input1", "flat"], ["zf"]),
             helper.make_node("Transpose", ["zf"], ["zt"], perm=[0, 2, 1]),
             helper.make_node("Reshape", ["input2", "flat"], ["xf"]),
             helper.make_node("MatMul", ["zt", "xf"], ["corr"]),
             helper.make_node("Reshape", ["corr", "back"], ["c"]),
             helper.make_node("Conv", ["c", "cls.w", "cls.b"], ["output1"], name="cls"),
             helper.make_node("Conv", ["c", "box.w", "box.b"], ["b0"], name="box"),
             helper.make_node("Clip", ["b0", "lo", "hi"], ["b1"]),
             helper.make_node("Exp", ["b1"], ["output2"])]
    g = helper.make_graph(
        nodes, "head", [helper.make_tensor_value_info("input1", TensorProto.FLOAT,
                                                      [1, 6, z, z]),
                        helper.make_tensor_value_info("input2", TensorProto.FLOAT,
                                                      [1, 6, x, x])],
        [helper.make_tensor_value_info("output1", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("output2", TensorProto.FLOAT, None)], inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def test_the_head_takes_a_batch_as_each_sample_alone_and_its_clip_bounds_do_not_train(
        tmp_path):
    path = tiny_head(tmp_path / "head.onnx", 4, 8)
    spec, weights = read_onnx(path, inputs=2)
    assert spec["inputs"] == ["input1", "input2"] and spec["outputs"] == ["output1", "output2"]
    assert set(weights) == {"cls_w", "cls_b", "box_w", "box_b"}  # not lo, hi
    head = GraphModule(spec)
    head.load_state_dict(graph_state(spec, weights))
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 6, 4, 4)).astype(np.float32)
    x = rng.normal(size=(3, 6, 8, 8)).astype(np.float32)
    with torch.no_grad():
        cls, box = head(torch.from_numpy(z), torch.from_numpy(x))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for i in range(3):
        want = session.run(None, {"input1": z[i:i + 1], "input2": x[i:i + 1]})
        np.testing.assert_allclose(cls[i:i + 1].numpy(), want[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(box[i:i + 1].numpy(), want[1], rtol=1e-5, atol=1e-5)


def test_an_even_map_s_distances_are_read_on_the_head_s_own_grid(tmp_path):
    """pysot-style heads put cell i at (i - R // 2) x stride; the boxes the tracker reads
    (models/siambox.boxes_of, a centred grid) must be those boxes"""
    from siamese.models.siambox import boxes_of
    from siamese.pretrained.tracking import ImportedHead

    spec, weights = read_onnx(tiny_head(tmp_path / "head.onnx", 4, 8), inputs=2)
    z, x = torch.randn(1, 6, 4, 4), torch.randn(1, 6, 8, 8)
    head = ImportedHead(spec, 16, z, x)
    head.graph.load_state_dict(graph_state(spec, weights))
    with torch.no_grad():
        logit, ltrb = head(z, x)
        raw_cls, raw = head.graph(z, x)
    grid = (torch.arange(8) - 8 // 2) * 16.0
    want = torch.stack([grid[None, :] - raw[0, 0], grid[:, None] - raw[0, 1],
                        grid[None, :] + raw[0, 2], grid[:, None] + raw[0, 3]])
    torch.testing.assert_close(boxes_of(ltrb, 16)[0], want)
    torch.testing.assert_close(torch.sigmoid(logit[0, 0]), torch.softmax(raw_cls[0], 0)[1])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return _sequences(tmp_path_factory.mktemp("otb") / "data", n=2, frames=12)


def _config(tmp_path, head: str, head_train: str = "frozen", extra: str = "") -> str:
    cfg = tmp_path / "t.toml"
    cfg.write_text("[track]\npairs_per_epoch = 16\nexemplar = 63\nsearch = 127\n"
                   f"pretrained_head = \"{head}\"\nhead_train = \"{head_train}\"\n{extra}"
                   "[model]\npretrained_output = \"fmap\"\n[train]\nlr = 0.01\n")
    return str(cfg)


@pytest.fixture(scope="module")
def head_run(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("head_run")
    backbone, head = tiny_cnn(tmp / "net.onnx"), tiny_head(tmp / "head.onnx")
    run = tmp / "run"
    assert main(["train", "--config", _config(tmp, str(head)), "--data", str(data),
                 "--pretrained", str(backbone), "--out", str(run), *SMALL]) == 0
    return run, backbone, head


def test_an_imported_head_trains_frozen_and_tracks_without_its_files(head_run, data):
    run, backbone, head = head_run
    spec, weights = read_onnx(head, inputs=2)
    saved = load_file(run / "model.safetensors")
    for k, v in graph_state(spec, weights).items():  # frozen: as it came
        assert torch.equal(saved["head.graph." + k], v)
    assert not torch.equal(saved["backbone.adjust.weight"], torch.eye(6)[:, :, None, None])
    card = siamese.load(run).card
    assert card["pretrained"]["head_graph"] == "head_graph.json"
    assert card["pretrained"]["head"]["train"] == "frozen"
    first = [float(v) for v in (data / "Seq0/groundtruth_rect.txt").read_text().split()[0]
             .split(",")]
    copy = run.parent / "moved"
    import shutil

    shutil.copytree(run, copy)
    model = siamese.load(copy)  # the run holds both graphs: no ONNX file needed
    boxes, sure, fps = model.track(data / "Seq0/img", first, confidence=True)
    assert boxes.shape == (12, 4) and np.isfinite(boxes).all()
    assert ((sure >= 0) & (sure <= 1)).all()


def test_head_train_all_moves_the_head(data, tmp_path):
    backbone, head = tiny_cnn(tmp_path / "net.onnx"), tiny_head(tmp_path / "head.onnx")
    run = tmp_path / "run"
    assert main(["train", "--config", _config(tmp_path, str(head), "all"), "--data", str(data),
                 "--pretrained", str(backbone), "--out", str(run), *SMALL]) == 0
    spec, weights = read_onnx(head, inputs=2)
    saved = load_file(run / "model.safetensors")
    assert any(not torch.equal(saved["head.graph." + k], v)
               for k, v in graph_state(spec, weights).items())


@pytest.mark.parametrize("extra, says", [
    ("redetect = 5\n", "track.redetect"),
    ("head = \"box\"\n", "leave out track.head"),
])
def test_what_an_imported_head_cannot_do_is_one_line(data, tmp_path, capsys, extra, says):
    backbone, head = tiny_cnn(tmp_path / "net.onnx"), tiny_head(tmp_path / "head.onnx")
    out = tmp_path / "run"
    assert main(["train", "--config", _config(tmp_path, str(head), extra=extra), "--data",
                 str(data), "--pretrained", str(backbone), "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and says in err and err.count("\n") == 1
    assert not out.exists()


def test_a_head_without_a_backbone_is_refused(data, tmp_path, capsys):
    head = tiny_head(tmp_path / "head.onnx")
    cfg = tmp_path / "t.toml"
    cfg.write_text(f"[track]\npretrained_head = \"{head}\"\n")
    assert main(["train", "--config", str(cfg), "--data", str(data), "--out",
                 str(tmp_path / "run"), *SMALL]) == 2
    assert "model.pretrained" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["imported", "fc"])
def test_exported_branches_compute_what_the_net_does(head_run, data, tmp_path, kind):
    """siamese export RUN on a tracking run -> the backbone and head as ONNX; ONNX Runtime's
    features and maps equal PyTorch's on the same crops (the exemplar's and the search
    crop's sizes), and the tracker runs on them"""
    import shutil

    from siamese.tracking.model import TrackingModel

    if kind == "imported":
        run = tmp_path / "run"
        shutil.copytree(head_run[0], run)
    else:
        run = tmp_path / "fc"
        assert main(["train", "--data", str(data), "--out", str(run), "--width", "4",
                     "--set", "track.pairs_per_epoch=8", *SMALL]) == 0
    assert main(["export", str(run)]) == 0
    torch_model, ort_model = TrackingModel.load(run), TrackingModel.load(run,
                                                                         runtime="onnxruntime")
    k = torch_model.cfg.track
    z = torch.rand(1, 3, k.exemplar, k.exemplar) * 255
    x = torch.rand(3 if kind == "fc" else 1, 3, k.search, k.search) * 255
    with torch.no_grad():
        want = [torch_model.net.embed(z), torch_model.net.embed(x)]
    got = [ort_model.engine.embed(z), ort_model.engine.embed(x)]
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        maps = torch_model.net.respond(*want)
    out = ort_model.engine.respond(*want)
    maps, out = ((maps,), (out,)) if kind == "fc" else (maps, out)
    for a, b in zip(out, maps, strict=True):
        if b is None:
            assert a is None
        else:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    first = [float(v) for v in (data / "Seq0/groundtruth_rect.txt").read_text().split()[0]
             .split(",")]
    boxes, fps = ort_model.track(data / "Seq0/img", first)
    assert boxes.shape == (12, 4) and np.isfinite(boxes).all()
    if kind == "imported":  # the OTB evaluation on ONNX Runtime too
        assert main(["evaluate", str(run), "--otb", str(data), "--runtime", "onnxruntime",
                     "--out", str(tmp_path / "ev")]) == 0
        assert (tmp_path / "ev" / "otb_metrics.json").is_file()


def test_branches_of_other_weights_are_refused(head_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(head_run[0], run)
    assert main(["track", str(run), "--frames", "x", "--box", "1,1,5,5", "--runtime",
                 "onnxruntime"]) == 2
    assert "siamese export" in capsys.readouterr().err  # not exported yet
    assert main(["export", str(run), "--out", str(tmp_path / "x.onnx")]) == 2
    assert "leave out --out" in capsys.readouterr().err  # both files go into the run
    assert main(["export", str(run)]) == 0
    state = load_file(run / "model.safetensors")
    state["backbone.adjust.bias"] += 1
    from siamese.artifact import save_tensors

    save_tensors(run / "model.safetensors", state)
    assert main(["track", str(run), "--frames", "x", "--box", "1,1,5,5", "--runtime",
                 "onnxruntime"]) == 2
    assert "other weights" in capsys.readouterr().err
