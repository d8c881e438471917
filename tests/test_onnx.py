"""ONNX export and ONNX Runtime inference: parity with PyTorch on real inputs, the pair head,
files from other runs, failed exports (issue: scale out, the ONNX part)."""

import json
import shutil

import numpy as np
import pytest

import siamese
from conftest import KEY, Server, digit_folder, digit_png, with_views
from siamese.cli import main
from siamese.errors import ArtifactError, ConfigError

pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tiny_run_session, tmp_path_factory):
    run = tmp_path_factory.mktemp("onnx") / "run"
    shutil.copytree(tiny_run_session, run)
    assert main(["export", str(run)]) == 0
    return run


def _digits(tmp_path, n=40):
    folder = digit_folder(tmp_path / "d", per_class=4, classes=range(10))
    return sorted(folder.rglob("*.png"))[:n]


def test_onnx_embeddings_and_decisions_match_pytorch(exported, tmp_path):
    files = _digits(tmp_path)
    ref, ort = siamese.load(exported), siamese.load(exported, runtime="onnxruntime")
    a, b = ref.embed(files), ort.embed(files)
    assert np.abs(a - b).max() <= 1e-4
    for n in (1, 7):  # the batch axis is dynamic
        np.testing.assert_allclose(ort.embed(files[:n]), a[:n], atol=1e-4)
    pairs = [(files[i], files[j]) for i in range(0, 40, 3) for j in range(1, 40, 5)]
    assert [ref.verify(x, y)[1] for x, y in pairs] == [ort.verify(x, y)[1] for x, y in pairs]
    card = json.loads((exported / "card.json").read_text())
    assert card["onnx"]["file"] == "model.onnx" and card["onnx"]["input"]["shape"][0] == "batch"


def test_a_model_with_views_exports_its_averaged_embedding(run_copy, tmp_path):
    with_views(run_copy, 2)
    assert main(["export", str(run_copy)]) == 0
    files = _digits(tmp_path, 12)
    ref, ort = siamese.load(run_copy), siamese.load(run_copy, runtime="onnxruntime")
    a = ref.embed(files)
    np.testing.assert_allclose(ort.embed(files), a, atol=1e-4)
    np.testing.assert_allclose(ort.embed(files[:1]), a[:1], atol=1e-4)
    one_pass = ref.embed_tensor(ref.to_tensor(files), views=0).numpy()
    assert np.abs(a - one_pass).max() > 1e-3  # the views are in the file, not one pass
    assert json.loads((run_copy / "card.json").read_text())["onnx"]["views"] == 2
    with pytest.raises(ConfigError, match="needs --runtime torch"):
        ort.embed_tensor(ort.to_tensor(files), views=0)


def test_the_pair_head_is_exported_and_scores_like_pytorch(tmp_path):
    import onnxruntime as ort
    import torch

    run = tmp_path / "pair"
    assert main(["train", "--loss", "pair", "--image-size", "8", "--epochs", "1", "--quiet",
                 "--embedding-dim", "8", "--out", str(run)]) == 0
    assert main(["export", str(run)]) == 0
    model = siamese.load(run)
    h = torch.randn(5, model.net.dim)
    h = torch.nn.functional.normalize(h, dim=1)
    sess = ort.InferenceSession(str(run / "model.head.onnx"))
    got = sess.run(None, {"h1": h[:4].numpy(), "h2": h[1:].numpy()})[0]
    np.testing.assert_allclose(got.reshape(-1), model.score_embeddings(h[:4], h[1:]), atol=1e-5)


def test_cli_and_service_run_on_onnxruntime(exported, tmp_path, capsys):
    from siamese.serve.app import create_app

    a, b = digit_png(tmp_path / "a.png", 0), digit_png(tmp_path / "b.png", 10)
    assert main(["compare", str(exported), str(a), str(b)]) == 0
    torch_line = capsys.readouterr().out
    assert main(["compare", str(exported), str(a), str(b), "--runtime", "onnxruntime"]) == 0
    assert capsys.readouterr().out == torch_line
    with Server(create_app(exported, api_key=KEY, runtime="onnxruntime")) as client:
        r = client.post("/verify", files={"a": ("a.png", a.read_bytes()),
                                          "b": ("b.png", b.read_bytes())}).json()
    assert f"similarity {r['similarity']:.3f}" in torch_line


def test_an_onnx_file_of_other_weights_is_refused(exported, run_copy, capsys):
    shutil.copy(exported / "model.onnx", run_copy / "model.onnx")
    w = run_copy / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\0")  # other weights, same shapes
    with pytest.raises(ArtifactError, match="exported from other weights"):
        siamese.load(run_copy, runtime="onnxruntime")
    assert main(["compare", str(run_copy), "a.png", "b.png", "--runtime", "onnxruntime"]) == 2
    (run_copy / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(ArtifactError, match="not a readable ONNX"):
        siamese.load(run_copy, runtime="onnxruntime")
    (run_copy / "model.onnx").unlink()
    with pytest.raises(ArtifactError, match="siamese export"):
        siamese.load(run_copy, runtime="onnxruntime")


def test_a_failed_export_writes_nothing(run_copy, monkeypatch, capsys):
    import torch

    def unsupported(*a, **k):
        raise RuntimeError("Unsupported: aten::weird_op has no ONNX equivalent")

    monkeypatch.setattr(torch.onnx, "export", unsupported)
    before = sorted(p.name for p in run_copy.iterdir())
    card = (run_copy / "card.json").read_text()
    assert main(["export", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "weird_op" in err
    assert sorted(p.name for p in run_copy.iterdir()) == before
    assert (run_copy / "card.json").read_text() == card


def test_a_speaker_model_exports_with_its_front_end(audio_run_session, tmp_path):
    """The log-mel front end is part of the encoder: the ONNX file takes raw samples, and whole
    recordings (windows, averaged) embed as in PyTorch."""
    run = shutil.copytree(audio_run_session, tmp_path / "run")
    assert main(["export", str(run)]) == 0
    files = sorted((audio_run_session.parent / "voices").rglob("*.wav"))[:6]
    want = siamese.load(run).embed(files)
    got = siamese.load(run, runtime="onnxruntime").embed(files)
    np.testing.assert_allclose(got, want, atol=1e-5)
