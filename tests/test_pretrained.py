"""Starting from a network trained elsewhere (issue 40): import fidelity, freezing, the feature
cache, a run that keeps its imported graph, the catalogue, and bad input. Tiny ONNX models are
made here; the real ones (MobileNetV2, NanoTrack v2) are checked where ../shared/data has them."""

import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import torch  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import siamese  # noqa: E402
from conftest import SHARED_DATA, make_image_tree  # noqa: E402
from siamese.cli import main  # noqa: E402
from siamese.config import Config, resolve  # noqa: E402
from siamese.errors import ConfigError  # noqa: E402
from siamese.losses import create_loss, create_miner  # noqa: E402
from siamese.models.build import build_net  # noqa: E402
from siamese.pretrained import catalogue  # noqa: E402
from siamese.pretrained.encoder import graph_state, open_start, set_trainable  # noqa: E402
from siamese.pretrained.graph import GraphModule  # noqa: E402
from siamese.pretrained.onnx_reader import read_onnx  # noqa: E402
from siamese.pretrained.setup import param_groups  # noqa: E402
from siamese.training.task import MetricLearningTask  # noqa: E402


def tiny_cnn(path: Path, seed: int = 0, flat: bool = False) -> Path:
    """conv-BN-relu-conv-relu -> 'fmap' (N, 6, H/2, W/2) and 'features' (its mean, N x 6);
    flat: 'features' through a Gemm on the flattened 8 x 8 map instead (fixed input size)."""
    r = np.random.default_rng(seed)

    def w(*s, scale=0.5):
        return numpy_helper.from_array((r.normal(size=s) * scale).astype(np.float32))

    inits = {"c1.w": w(4, 3, 3, 3), "c1.b": w(4), "bn.s": w(4), "bn.b": w(4),
             "bn.m": w(4, scale=0.1), "bn.v": numpy_helper.from_array(
                 r.uniform(0.5, 1.5, 4).astype(np.float32)),
             "c2.w": w(6, 4, 3, 3), "c2.b": w(6), "fc.w": w(6, 6 * 4 * 4), "fc.b": w(6),
             "axes": numpy_helper.from_array(np.asarray([2, 3], np.int64))}
    for name, t in inits.items():
        t.name = name
    nodes = [helper.make_node("Conv", ["image", "c1.w", "c1.b"], ["a"], pads=[1, 1, 1, 1],
                              name="conv1"),
             helper.make_node("BatchNormalization", ["a", "bn.s", "bn.b", "bn.m", "bn.v"],
                              ["b"], name="bn1"),
             helper.make_node("Relu", ["b"], ["c"]),
             helper.make_node("Conv", ["c", "c2.w", "c2.b"], ["d"], pads=[1, 1, 1, 1],
                              strides=[2, 2], name="conv2"),
             helper.make_node("Relu", ["d"], ["fmap"], name="relu2")]
    if flat:
        nodes += [helper.make_node("Flatten", ["fmap"], ["flat"]),
                  helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["features"], transB=1,
                                   name="fc")]
    else:
        nodes.append(helper.make_node("ReduceMean", ["fmap", "axes"], ["features"],
                                      keepdims=0, name="pool"))
    used = {i for n in nodes for i in n.input}
    g = helper.make_graph(
        nodes, "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                      ["batch", 3, "h", "w"])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("fmap", TensorProto.FLOAT, None)],
        [t for n, t in inits.items() if n in used])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    helper.set_model_props(model, {"preprocessing": "RGB, x / 127.5 - 1 (trained at 8)"})
    onnx.save(model, path)
    return path


@pytest.fixture
def tiny_onnx(tmp_path) -> Path:
    return tiny_cnn(tmp_path / "tiny.onnx")


def imported(path, output="features"):
    spec, weights = read_onnx(path, [output])
    g = GraphModule(spec)
    g.load_state_dict(graph_state(spec, weights))
    return g.eval()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torch_to_onnx_to_import_gives_the_same_outputs(tmp_path):
    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.BatchNorm2d(5), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(5, 7, 3, stride=2, groups=1),
        torch.nn.Hardswish(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(7, 4)).eval()
    net[1].running_mean.uniform_(-1, 1)
    x = torch.randn(3, 3, 16, 16)
    path = tmp_path / "t.onnx"
    torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"],
                      dynamo=False, dynamic_axes={"x": {0: "n"}})
    with torch.no_grad():
        want = net(x)
        got = imported(path, "y")(x)[0]
        got5 = imported(path, "y")(torch.randn(5, 3, 16, 16))[0]  # any batch
    assert got.shape == want.shape and got5.shape == (5, 4)
    assert (got - want).abs().max() <= 1e-5


def test_the_graph_is_cut_at_the_output_asked_for(tiny_onnx):
    x = np.random.default_rng(0).normal(size=(2, 3, 8, 8)).astype(np.float32)
    ref = ort.InferenceSession(str(tiny_onnx)).run(["fmap", "features"], {"image": x})
    spec, _ = read_onnx(tiny_onnx, ["fmap"])
    assert "pool" not in [n["name"] for n in spec["nodes"]]  # pruned past the cut
    with torch.no_grad():
        np.testing.assert_allclose(imported(tiny_onnx, "fmap")(torch.from_numpy(x))[0],
                                   ref[0], atol=1e-5)
        np.testing.assert_allclose(imported(tiny_onnx)(torch.from_numpy(x))[0], ref[1],
                                   atol=1e-5)


def _tiny_net(tiny_onnx, mode: str, **model):
    cfg = Config()
    cfg.model.pretrained, cfg.model.pretrained_train = str(tiny_onnx), mode
    for k, v in model.items():
        setattr(cfg.model, k, v)
    opened = open_start(str(tiny_onnx), "features")
    cfg.model.encoder = "imported"
    resolve(cfg)
    net = build_net(cfg, [3, 8, 8], "image", graph=opened.spec)
    net.encoder.graph.load_state_dict(opened.weights)
    set_trainable(net.encoder, mode)
    return cfg, net


def test_frozen_weights_and_statistics_do_not_move_in_a_step(tiny_onnx):
    cfg, net = _tiny_net(tiny_onnx, "frozen")
    before = {k: v.clone() for k, v in net.encoder.state_dict().items()}
    proj = net.proj.weight.clone()
    opt = torch.optim.AdamW(param_groups(net, cfg, []), lr=0.1)
    net.train()
    x, y = torch.randn(16, 3, 8, 8), torch.arange(4).repeat_interleave(4)
    loss = create_loss("triplet", margin=0.2, distance="euclidean")
    task = MetricLearningTask(net, loss, create_miner("batch-all", 0.2, "euclidean"))
    task.step((x, y), torch.Generator().manual_seed(0)).backward()
    opt.step()
    after = net.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # batch norm's buffers too
    assert not torch.equal(proj, net.proj.weight)  # ... while the part on top trains


def test_last_n_layers_train_and_all_trains_at_its_own_rate(tiny_onnx):
    cfg, net = _tiny_net(tiny_onnx, "last:1")
    trains = {k for k, p in net.encoder.named_parameters() if p.requires_grad}
    assert trains == {"graph.weights.c2_w", "graph.weights.c2_b"}
    cfg, net = _tiny_net(tiny_onnx, "all", pretrained_lr=0.1)
    groups = param_groups(net, cfg, [])
    assert [g.get("lr") for g in groups] == [None, cfg.train.lr * 0.1]
    slow = {id(p) for p in [*net.encoder.parameters(), *net.proj.parameters()]}
    assert {id(p) for p in groups[1]["params"]} == slow  # (the projection starts as identity)


def test_an_imported_network_starts_from_its_own_geometry(tiny_onnx):
    _, net = _tiny_net(tiny_onnx, "frozen")
    assert net.dim == net.encoder.num_features == 6  # projection "auto": identity
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        want = torch.nn.functional.normalize(net.encoder.eval()(x), dim=1)
        assert torch.allclose(net.eval().embed(x), want, atol=1e-6)
    _, net = _tiny_net(tiny_onnx, "frozen", projection="random", embedding_dim=4)
    assert net.dim == 4


def test_the_loss_is_the_same_with_and_without_the_feature_cache(tiny_onnx):
    _, net = _tiny_net(tiny_onnx, "frozen")
    net.train()
    x, y = torch.randn(16, 3, 8, 8), torch.arange(4).repeat_interleave(4)
    with torch.no_grad():
        feats = net.encoder.eval()(x)
    loss = create_loss("triplet", margin=0.2, distance="euclidean")
    miner = create_miner("semi-hard", 0.2, "euclidean")
    raw = MetricLearningTask(net, loss, miner).step((x, y), torch.Generator().manual_seed(3))
    cached = MetricLearningTask(net, loss, miner, features=True).step(
        (feats, y), torch.Generator().manual_seed(3))
    assert torch.allclose(raw, cached, atol=1e-6) and raw > 0


def test_a_run_from_an_onnx_file_keeps_its_graph_loads_exports_and_compares(tmp_path):
    data = make_image_tree(tmp_path / "photos", classes=6, per_class=6, size=8, mode="RGB")
    start = tiny_cnn(tmp_path / "net.onnx")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--pretrained", str(start),
                 "--no-augment", "--epochs", "2", "--quiet", "--set", "split.validation=classes",
                 "--set", "eval.episodes=10"]) == 0
    card = json.loads((run / "card.json").read_text())
    p = card["pretrained"]
    assert p["format"] == "onnx" and p["output"] == "features" and p["feature_cache"] == "memory"
    assert card["config"]["model"]["encoder"] == "imported"
    assert card["config"]["data"]["image_size"] == 8  # from the file's metadata
    assert card["preprocessing"]["mean"] == pytest.approx([0.5] * 3)  # x / 127.5 - 1
    start.unlink()  # the run needs the file no more
    model = siamese.load(run)
    ref = imported(tiny_cnn(tmp_path / "again.onnx"))  # the same weights: frozen
    img = sorted(data.rglob("*.png"))[:5]
    x = model.to_tensor(img)
    with torch.no_grad():
        assert torch.allclose(model.net.encoder(x), ref(x)[0], atol=1e-6)
    assert 0 <= model.similarity(img[0], img[1]) <= 1
    assert main(["export", str(run)]) == 0
    onnx_model = siamese.load(run, runtime="onnxruntime")
    assert np.abs(onnx_model.embed(img) - model.embed(img)).max() <= 1e-4


def test_fine_tuning_moves_the_imported_weights_and_the_run_reloads_them(tmp_path):
    data = make_image_tree(tmp_path / "photos", classes=6, per_class=6, size=8, mode="RGB")
    start = tiny_cnn(tmp_path / "net.onnx")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(run), "--pretrained", str(start),
                 "--pretrained-train", "all", "--epochs", "2", "--quiet",
                 "--set", "split.validation=classes", "--set", "eval.episodes=10"]) == 0
    model = siamese.load(run)
    orig = imported(start)
    moved = model.net.encoder.graph.weights["c1_w"]
    assert not torch.allclose(moved, orig.weights["c1_w"])
    assert json.loads((run / "card.json").read_text())["pretrained"]["feature_cache"] is False


def _serve(folder: Path):
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(folder))  # noqa
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_catalogue_name_downloads_once_checks_sha256_and_then_works_offline(
        tmp_path, monkeypatch):
    served = tmp_path / "www"
    served.mkdir()
    good = tiny_cnn(served / "tiny.onnx")
    sha = catalogue.sha256_of(good)
    server = _serve(served)
    url = f"http://127.0.0.1:{server.server_address[1]}/tiny.onnx"
    entries = {"tiny": {"file": "tiny.onnx", "format": "onnx", "sha256": sha, "url": url,
                        "license": "MIT", "output": "features", "preprocessing": {"size": 8}},
               "bad": {"file": "bad.onnx", "format": "onnx", "sha256": "0" * 64,
                       "url": url, "license": "MIT"}}
    monkeypatch.setattr(catalogue, "entries", lambda: entries)
    monkeypatch.setenv("SIAMESE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SIAMESE_PRETRAINED_PATH", raising=False)
    try:
        found = catalogue.find("tiny")
        assert found.path == tmp_path / "cache" / "pretrained" / "tiny.onnx"
        with pytest.raises(ConfigError, match="sha256"):
            catalogue.find("bad")
        assert not (tmp_path / "cache" / "pretrained" / "bad.onnx").exists()  # nothing kept
    finally:
        server.shutdown()
        server.server_close()
    assert catalogue.find("tiny", allow_download=False).sha256 == sha  # from the cache now
    (tmp_path / "cache" / "pretrained" / "tiny.onnx").write_bytes(b"damaged")
    with pytest.raises(ConfigError, match="sha256.*delete it"):
        catalogue.find("tiny")


def test_every_catalogue_entry_says_where_from_license_and_sha256():
    for name, e in catalogue.entries().items():
        assert len(e["sha256"]) == 64 and e["license"] and e["source"], name
        assert e["format"] in ("onnx", "torch-state-dict"), name


def _fails(capsys, tmp_path, *args) -> str:
    run = tmp_path / "run_bad"
    code = main(["train", "--out", str(run), "--quiet", "--epochs", "1", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert not run.exists()  # nothing written
    return err


def test_bad_starting_points_get_one_line_and_nothing_written(tmp_path, capsys, monkeypatch):
    data = make_image_tree(tmp_path / "photos", classes=4, per_class=4, size=8, mode="RGB")
    good = tiny_cnn(tmp_path / "good.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("not a network at all\n")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    d = ["--data", str(data)]
    assert "not a readable ONNX" in _fails(capsys, tmp_path, *d, "--pretrained", str(text))
    assert str(cut) in _fails(capsys, tmp_path, *d, "--pretrained", str(cut))
    err = _fails(capsys, tmp_path, *d, "--pretrained", str(good), "--pretrained-output", "nope")
    assert "no tensor 'nope'" in err and "features" in err
    flat = tiny_cnn(tmp_path / "flat.onnx", flat=True)  # takes 8 x 8 inputs only
    err = _fails(capsys, tmp_path, *d, "--pretrained", str(flat), "--image-size", "12")
    assert "cannot take inputs of shape [3, 12, 12]" in err
    assert "does not exist" in _fails(capsys, tmp_path, *d, "--pretrained", "nowhere.onnx") \
        or "neither a file" in _fails(capsys, tmp_path, *d, "--pretrained", "nowhere.onnx")
    # a recipe's path to a catalogued file that is missing: where the file comes from
    err = _fails(capsys, tmp_path, *d, "--pretrained", str(tmp_path / "no" /
                                                            "mobilenet_v2_imagenet.onnx"))
    assert "catalogue's 'mobilenet_v2_imagenet'" in err and "Apache-2.0" in err
    folder = tmp_path / "shelf"
    folder.mkdir()
    (folder / "mobilenet_v2_imagenet.onnx").write_bytes(good.read_bytes())  # another file
    monkeypatch.setenv("SIAMESE_PRETRAINED_PATH", str(folder))
    err = _fails(capsys, tmp_path, *d, "--pretrained", "mobilenet_v2_imagenet")
    assert "sha256" in err and "delete it" in err


def test_an_operator_the_importer_lacks_is_named_with_its_node(tmp_path):
    g = helper.make_graph([helper.make_node("Hardmax", ["x"], ["y"], name="the_odd_one")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "odd.onnx")
    with pytest.raises(ConfigError, match="operator 'Hardmax' \\(node 'the_odd_one'\\)"):
        read_onnx(tmp_path / "odd.onnx")


REAL = [("pretrained/mobilenet_v2_imagenet.onnx", ["features", "stride16"], (2, 3, 160, 160)),
        ("peers/nanotrack_v2/backbone.onnx", ["output"], (2, 3, 255, 255)),
        ("speech_embedding", ["conv2d_19"], (2, 76, 32, 1))]  # from the openwakeword wheel


@pytest.mark.parametrize("rel,outputs,shape", REAL,
                         ids=["mobilenet_v2", "nanotrack_v2", "speech_embedding"])
def test_real_networks_import_as_onnx_runtime_runs_them(rel, outputs, shape):
    """(benchmarks/pretrained_fidelity.py does the same on real images and clips)"""
    if rel in catalogue.entries():
        try:
            path = catalogue.find(rel, allow_download=False).path
        except ConfigError:
            pytest.skip(f"{rel} is not installed (pip install openwakeword==0.4.0)")
    else:
        path = SHARED_DATA / rel
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    x = np.random.default_rng(0).uniform(0, 1, shape).astype(np.float32)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for out in outputs:
        g = imported(path, out)
        with torch.no_grad():
            got = g(torch.from_numpy(x))[0].numpy()
        # the file fixes NanoTrack's batch at 1: ONNX Runtime sees one crop at a time
        want = np.concatenate([sess.run([out], {sess.get_inputs()[0].name: x[i:i + 1]})[0]
                               for i in range(len(x))])
        assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


@pytest.fixture
def pretrained_run(tmp_path):
    data = make_image_tree(tmp_path / "photos", classes=6, per_class=6, size=8, mode="RGB")
    run = tmp_path / "prun"
    assert main(["train", "--data", str(data), "--out", str(run), "--pretrained",
                 str(tiny_cnn(tmp_path / "net.onnx")), "--epochs", "2", "--quiet",
                 "--set", "split.validation=classes", "--set", "eval.episodes=10"]) == 0
    return run, sorted(data.rglob("*.png"))


def test_a_pretrained_run_serves_what_the_library_computes(pretrained_run):
    from conftest import KEY, Server
    from siamese.serve.app import create_app

    run, files = pretrained_run
    model = siamese.load(run)
    with Server(create_app(run, api_key=KEY)) as client:
        r = client.post("/verify", files={"a": ("a.png", files[0].read_bytes()),
                                          "b": ("b.png", files[9].read_bytes())}).json()
    assert r["similarity"] == pytest.approx(model.similarity(files[0], files[9]), abs=1e-4)


def test_torchrun_trains_an_imported_network_on_two_processes(tmp_path):
    import os
    import subprocess
    import sys

    data = make_image_tree(tmp_path / "photos", classes=6, per_class=6, size=8, mode="RGB")
    start = tiny_cnn(tmp_path / "net.onnx")
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                        "--nproc-per-node", "2", "-m", "siamese", "train", "--data", str(data),
                        "--pretrained", str(start), "--pretrained-train", "all", "--epochs", "2",
                        "--batch-size", "16", "--quiet", "--out", str(tmp_path / "run"),
                        "--set", "split.validation=classes", "--set", "eval.episodes=10"],
                       capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    model = siamese.load(tmp_path / "run")
    assert model.card["engine"]["ranks"] == 2 and model.card["pretrained"]["train"] == "all"


def test_features_over_the_memory_budget_are_cached_on_disk_with_the_same_loss(tmp_path):
    from siamese.pretrained.setup import feature_store

    small = feature_store(10, 4, 10 * 4 * 4, tmp_path)
    assert type(small) is np.ndarray and not list(tmp_path.iterdir())
    big = feature_store(10, 4, 100, tmp_path)  # 160 bytes > 100
    assert isinstance(big, np.memmap) and len(list(tmp_path.glob("features-*.f32"))) == 1
    data = make_image_tree(tmp_path / "photos", classes=6, per_class=6, size=8, mode="RGB")
    start = tiny_cnn(tmp_path / "net.onnx")
    cards = []
    for gb, run in ((0, "mem"), (1e-9, "disk")):
        assert main(["train", "--data", str(data), "--out", str(tmp_path / run), "--pretrained",
                     str(start), "--epochs", "2", "--quiet", "--set", f"data.cache_gb={gb}",
                     "--set", f"data.cache_dir={tmp_path / 'cache'}", "--set",
                     "split.validation=classes", "--set", "eval.episodes=10"]) == 0
        cards.append(json.loads((tmp_path / run / "card.json").read_text()))
    assert [c["pretrained"]["feature_cache"] for c in cards] == ["memory", "disk"]
    assert [h["loss"] for h in cards[0]["history"]] == pytest.approx(
        [h["loss"] for h in cards[1]["history"]], abs=1e-6)
