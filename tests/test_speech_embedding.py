"""Google's speech embedding as a word encoder (pretrained/speech.py): the resampling against
the analytic signal, the frames against ONNX Runtime running openWakeWord's two files, the
pooling's indifference to silence, and a run that trains on it, reloads and embeds the same.
The network tests need the files of `pip install --no-deps openwakeword==0.4.0` (make
installs it for the tests) and skip without them."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from siamese.pretrained.speech import pad_batch, resample


def test_resampling_a_band_limited_tone_gives_the_tone_at_the_new_rate():
    t8 = np.arange(8000) / 8000
    t16 = np.arange(16000) / 16000
    for f in (440.0, 1250.0, 3000.0):  # whole cycles in 1 s: periodic, as the FFT assumes
        x = torch.from_numpy(np.sin(2 * np.pi * f * t8)).float()[None]
        y = resample(x, 8000, 16000)[0].numpy()
        np.testing.assert_allclose(y, np.sin(2 * np.pi * f * t16), atol=1e-4)
    x = torch.randn(2, 300)
    assert torch.equal(resample(x, 16000, 16000), x)


def test_pad_batch_puts_silence_after_the_shorter_recordings():
    a, b = torch.ones(3), torch.full((5,), 2.0)
    out = pad_batch([a, b])
    assert out.shape == (2, 5)
    assert out[0].tolist() == [1, 1, 1, 0, 0] and out[1].tolist() == [2] * 5


def _models_dir() -> Path | None:
    spec = importlib.util.find_spec("openwakeword")
    if spec is None or not spec.submodule_search_locations:
        return None
    d = Path(list(spec.submodule_search_locations)[0]) / "resources/models"
    return d if (d / "embedding_model.onnx").is_file() else None


needs_files = pytest.mark.skipif(_models_dir() is None,
                                 reason="pip install --no-deps openwakeword==0.4.0")


def _word(seed: int, rate: int = 16000, seconds: float = 0.6) -> np.ndarray:
    """A word-like sound: two formant-ish tones under a syllable envelope, in light noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    f1, f2 = rng.uniform(300, 900), rng.uniform(1000, 2500)
    env = np.sin(np.pi * t / seconds) ** 2
    x = env * (np.sin(2 * np.pi * f1 * t) + 0.5 * np.sin(2 * np.pi * f2 * t))
    return (0.3 * x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def encoder():
    from siamese.config import Config
    from siamese.models.build import build_net
    from siamese.pretrained.setup import load_weights, prepare

    if _models_dir() is None:
        pytest.skip("pip install --no-deps openwakeword==0.4.0")
    cfg = Config()
    cfg.model.pretrained = "speech_embedding"
    cfg.data.sample_rate = 16000
    opened = prepare(cfg, quiet=True)
    net = build_net(cfg, [16000], "audio", graph=opened.spec)
    load_weights(net.encoder, opened, cfg)
    return net.encoder.eval()


@needs_files
def test_the_frames_are_onnx_runtimes_of_the_two_files(encoder):
    import onnxruntime as rt

    d = _models_dir()
    mel = rt.InferenceSession(str(d / "melspectrogram.onnx"), providers=["CPUExecutionProvider"])
    emb = rt.InferenceSession(str(d / "embedding_model.onnx"),
                              providers=["CPUExecutionProvider"])
    x = _word(0, seconds=0.9)
    side = np.zeros(8000, np.float32)  # the encoder's 0.5 s of silence on each side
    padded = np.concatenate([side, x, side]) * 32767
    spec = np.squeeze(mel.run(None, {"input": padded[None]})[0]) / 10 + 2
    windows = np.stack([spec[i:i + 76] for i in range(0, len(spec) - 75, 8)])
    want = emb.run(None, {"input_1": windows[..., None].astype(np.float32)})[0].reshape(-1, 96)
    with torch.no_grad():
        got = encoder.frames(torch.from_numpy(x)[None])[0].numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()


@needs_files
def test_silence_around_a_word_hardly_moves_its_embedding_and_words_differ(encoder):
    a, b = _word(1), _word(2)
    quiet = np.zeros(8000, np.float32)
    with torch.no_grad():
        e = encoder.pooled(pad_batch([torch.from_numpy(v) for v in
                                      (a, np.concatenate([quiet, a, quiet]), b)]))
    e = torch.nn.functional.normalize(e, dim=1)
    same, other = float(e[0] @ e[1]), float(e[0] @ e[2])
    assert same > 0.98 and same > other


@needs_files
def test_a_run_on_the_speech_embedding_trains_reloads_and_embeds_alike(tmp_path):
    import soundfile as sf

    import siamese

    data = tmp_path / "words"
    for k in range(3):
        (data / f"w{k}").mkdir(parents=True)
        for i in range(4):
            x = _word(10 * k + (i % 2), rate=8000)
            x = x * (0.6 + 0.1 * i)  # louder takes of the same word
            sf.write(data / f"w{k}/{i}.wav", x, 8000)
    model = siamese.train({"data": {"path": str(data), "sample_rate": 8000,
                                    "crop_seconds": 1.0},
                           "split": {"mode": "samples", "test_fraction": 0.0},
                           "model": {"pretrained": "speech_embedding"},
                           "loss": {"name": "arcface"},
                           "train": {"epochs": 2, "batch_size": 6, "samples_per_class": 2}},
                          tmp_path / "run", quiet=True)
    card = model.card
    assert card["config"]["model"]["encoder"] == "speech_embedding"
    assert card["pretrained"]["feature_cache"] == "memory"
    assert card["pretrained"]["train"] == "frozen"
    assert float(model.net.encoder.center.abs().sum()) > 0  # the training mean, kept
    files = sorted(data.glob("*/*.wav"))
    again = siamese.load(tmp_path / "run")
    np.testing.assert_allclose(again.embed(files), model.embed(files), atol=1e-5)
    e = again.embed(files)
    sim = e @ e.T
    same = np.array([[f.parent == g.parent for g in files] for f in files])
    assert sim[same & ~np.eye(len(files), dtype=bool)].mean() > sim[~same].mean()
