"""Speech from pretrained networks: Google's speech embedding as a word encoder
(pretrained/speech.py) and the GE2E speaker encoder (models/ge2e.py): the resampling against
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

from siamese.data.audio import pad_batch, resample


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


def _word_folder(data: Path) -> None:
    import soundfile as sf

    for k in range(3):
        (data / f"w{k}").mkdir(parents=True)
        for i in range(4):
            x = _word(10 * k + (i % 2), rate=8000)
            x = x * (0.6 + 0.1 * i)  # louder takes of the same word
            sf.write(data / f"w{k}/{i}.wav", x, 8000)


WORDS_RUN = {"split": {"mode": "samples", "test_fraction": 0.0},
             "model": {"pretrained": "speech_embedding"}, "loss": {"name": "arcface"},
             "train": {"epochs": 2, "batch_size": 6, "samples_per_class": 2}}


@needs_files
def test_a_second_run_on_the_same_recordings_reuses_their_pooled_frames(tmp_path, monkeypatch):
    import siamese
    from siamese.pretrained.speech import SpeechEmbeddingEncoder

    _word_folder(tmp_path / "words")
    data = {"path": str(tmp_path / "words"), "sample_rate": 8000, "crop_seconds": 1.0}
    first = siamese.train({**WORDS_RUN, "data": data}, tmp_path / "a", quiet=True)
    calls = []
    pooled = SpeechEmbeddingEncoder.pooled
    monkeypatch.setattr(SpeechEmbeddingEncoder, "pooled",
                        lambda self, x: calls.append(len(x)) or pooled(self, x))
    second = siamese.train({**WORDS_RUN, "data": data}, tmp_path / "b", quiet=True)
    assert calls == []  # nothing embedded again for training
    assert torch.equal(first.net.encoder.center, second.net.encoder.center)
    (tmp_path / "words/w0/0.wav").write_bytes((tmp_path / "words/w1/0.wav").read_bytes())
    siamese.train({**WORDS_RUN, "data": data}, tmp_path / "c", quiet=True, force=True)
    assert calls  # other samples: computed anew


@needs_files
def test_a_run_on_the_speech_embedding_trains_reloads_and_embeds_alike(tmp_path):
    import siamese

    data = tmp_path / "words"
    _word_folder(data)
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
    from siamese.errors import ArtifactError
    from siamese.runtime.export import export_onnx

    with pytest.raises(ArtifactError, match="speech_embedding"):  # one line, nothing written
        export_onnx(again)
    assert not (tmp_path / "run" / "model.onnx").exists()


@needs_files
def test_windows_pooled_from_a_streams_frames_match_each_window_embedded_alone(encoder):
    rate, quiet = 16000, np.zeros(16000, np.float32)
    a, b = _word(3, seconds=0.8), _word(4, seconds=0.8)
    stream = np.concatenate([quiet, a, quiet, b, quiet])
    n = 16000  # one-second windows, one centred on each word, one on silence
    starts = np.array([int(rate * 0.9), int(rate * 2.7), 0])
    with torch.no_grad():
        pooled = encoder.pool_windows(torch.from_numpy(stream), torch.from_numpy(starts), n)
        alone = encoder(pad_batch([torch.from_numpy(stream[s:s + n]) for s in starts]))
    cos = torch.nn.functional.cosine_similarity(pooled, alone, dim=1)
    assert cos[0] > 0.95 and cos[1] > 0.95  # each word's window agrees with the word alone
    to_a = torch.nn.functional.cosine_similarity(pooled[:2], alone[:1], dim=1)
    assert to_a[0] > to_a[1]  # and tells the two words apart


def _resemblyzer_reference(encoder, x: np.ndarray) -> np.ndarray:
    """Resemblyzer's embed_utterance on normalize_volume's output, written from its code:
    librosa's mel power, its partial slices, the mean of the partials' embeddings."""
    import librosa

    dbfs = 10 * np.log10(np.mean(x.astype(np.float64) ** 2))
    x = x * 10 ** (max(0.0, -30 - dbfs) / 20)
    n_frames = int(np.ceil((len(x) + 1) / 160))
    step = int(np.round(16000 / 1.3 / 160))
    starts = list(range(0, max(1, n_frames - 160 + step + 1), step))
    if (len(x) - starts[-1] * 160) / (160 * 160) < 0.75 and len(starts) > 1:
        starts = starts[:-1]
    x = np.pad(x, (0, max(0, (starts[-1] + 160) * 160 - len(x))))
    mel = librosa.feature.melspectrogram(y=x, sr=16000, n_fft=400, hop_length=160,
                                         n_mels=40).astype(np.float32).T
    with torch.no_grad():
        e = encoder.embed_partials(torch.from_numpy(np.stack([mel[s:s + 160]
                                                              for s in starts]))).numpy()
    e = e.mean(0)
    return e / np.linalg.norm(e)


@pytest.mark.parametrize("seconds", [0.4, 1.0, 3.7])
def test_ge2e_embeds_as_resemblyzer_does_from_its_code(seconds):
    from siamese.models.ge2e import GE2E

    torch.manual_seed(0)
    encoder = GE2E(16000).eval()  # any weights: the front end and the partials are tested
    x = _word(5, seconds=seconds) * 0.05  # quiet: the volume is raised to -30 dBFS
    with torch.no_grad():
        got = encoder(torch.from_numpy(x)[None])[0].numpy()
        padded = encoder(pad_batch([torch.from_numpy(x), torch.zeros(80000)]))[0].numpy()
    want = _resemblyzer_reference(encoder, x)
    np.testing.assert_allclose(got, want, atol=2e-5)
    np.testing.assert_allclose(padded, want, atol=2e-5)  # trailing zeros are the batch's padding


def test_a_run_starts_from_resemblyzers_checkpoint(tmp_path):
    from siamese.config import Config
    from siamese.models.build import build_net
    from siamese.pretrained.catalogue import resolve
    from siamese.pretrained.setup import load_weights, prepare

    try:
        path = resolve("ge2e_resemblyzer").path
    except Exception:
        pytest.skip("pip install --no-deps resemblyzer==0.1.4")
    cfg = Config()
    cfg.model.pretrained = "ge2e_resemblyzer"
    opened = prepare(cfg, quiet=True)
    assert cfg.model.encoder == "ge2e"  # the catalogue names the architecture
    net = build_net(cfg, [16000], "audio")
    load_weights(net.encoder, opened, cfg)  # the checkpoint's extras (similarity) left out
    state = torch.load(path, map_location="cpu", weights_only=True)["model_state"]
    assert torch.equal(net.encoder.lstm.weight_hh_l2, state["lstm.weight_hh_l2"])
    assert not any(p.requires_grad for p in net.encoder.parameters())  # frozen by default
    x = torch.from_numpy(_word(6, seconds=1.2))[None]
    with torch.no_grad():
        a = net.encoder(x)
    np.testing.assert_allclose(a[0].numpy(), _resemblyzer_reference(net.encoder, x[0].numpy()),
                               atol=2e-5)
