"""Audio: reading (formats, rates, channels, bad files), the log-mel front end against
librosa, crops and windows, and end-to-end runs on synthetic clips and on FSDD."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import siamese
from conftest import AUDIO_RUN, tone, voices
from siamese.cli import main
from siamese.data.audio import Waveforms, crop, read_audio, windows
from siamese.errors import DataError
from siamese.models.audio import LogMel, mel_filterbank

DATA = Path(os.environ.get("SIAMESE_DATA", Path(__file__).parents[2] / "shared" / "data"))


@pytest.mark.parametrize("fmt, rate, channels", [("wav", 44100, 2), ("flac", 8000, 1),
                                                 ("ogg", 22050, 1)])
def test_any_format_rate_and_channel_count_becomes_mono_at_the_model_rate(tmp_path, fmt, rate,
                                                                          channels):
    mono = tone(440.0, rate, 1.0)
    data = np.stack([mono, mono * 0.5], 1) if channels == 2 else mono
    path = tmp_path / f"x.{fmt}"
    sf.write(path, data, rate)
    a = read_audio(str(path), str(path), 16000)
    assert a.dtype == np.float32 and a.ndim == 1
    assert abs(len(a) - 16000) <= 2  # one second at the new rate
    spectrum = np.abs(np.fft.rfft(a))
    assert np.argmax(spectrum) == pytest.approx(440, abs=2)  # the pitch survives resampling
    if channels == 2 and fmt == "wav":  # mixed down: the mean of the channels
        assert np.abs(a).max() == pytest.approx(0.3 * 0.75, rel=0.02)


def test_unreadable_empty_and_silent_files_are_refused_naming_the_file(tmp_path):
    (tmp_path / "text.wav").write_text("not audio")
    sf.write(tmp_path / "empty.wav", np.zeros(0), 8000)
    sf.write(tmp_path / "silent.wav", np.zeros(8000), 8000)
    for name, message in [("text.wav", "cannot read audio file .*text.wav"),
                          ("empty.wav", "empty.wav holds no samples"),
                          ("silent.wav", "silent.wav is silent")]:
        with pytest.raises(DataError, match=message):
            read_audio(str(tmp_path / name), str(tmp_path / name), 8000)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_audio_cut_short_is_refused_like_a_truncated_image(tmp_path, fmt):
    """(issue 43, item 5) one behaviour for truncated frames, images and audio: refused, named.
    libsndfile reads a WAV cut short as the part that is left, saying nothing."""
    path = tmp_path / f"cut.{fmt.lower()}"
    sf.write(path, tone(300.0, 16000, 2.0), 16000, format=fmt)
    whole = path.read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(DataError, match=f"audio file .*cut.{fmt.lower()}"):
        read_audio(str(path), str(path), 16000)


@pytest.mark.parametrize("size", [0xFFFFFFFF, 0x7FFFFFFF])
def test_a_wav_streamed_with_a_placeholder_length_is_read_whole(tmp_path, size):
    """what a WAV written to a pipe declares (its length unknown then) is no cut"""
    path = tmp_path / "live.wav"
    x = tone(300.0, 16000, 1.0)
    sf.write(path, x, 16000, subtype="PCM_16")
    raw = bytearray(path.read_bytes())
    at = raw.find(b"data")
    raw[at + 4:at + 8] = size.to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    a = read_audio(str(path), str(path), 16000)
    np.testing.assert_allclose(a, x, atol=1e-4)


@pytest.mark.parametrize("rate, n_mels", [(16000, 64), (8000, 40)])
def test_the_filterbank_and_log_mel_match_librosa(rate, n_mels):
    librosa = pytest.importorskip("librosa")
    fe = LogMel(rate, n_mels).eval()
    want = librosa.filters.mel(sr=rate, n_fft=fe.n_fft, n_mels=n_mels)
    np.testing.assert_allclose(mel_filterbank(rate, fe.n_fft, n_mels), want, atol=1e-6)
    x = np.random.default_rng(0).normal(0, 0.1, rate).astype(np.float32)
    power = librosa.feature.melspectrogram(
        y=x, sr=rate, n_fft=fe.n_fft, hop_length=fe.hop, win_length=fe.win, window="hann",
        center=True, pad_mode="reflect", power=2.0, n_mels=n_mels)
    ref = np.log(power + 1e-6)
    ref -= ref.mean(1, keepdims=True)
    got = fe(torch.from_numpy(x)[None])[0, 0].numpy()
    assert got.shape == ref.shape == (n_mels, fe.frames(rate))
    np.testing.assert_allclose(got, ref, atol=2e-3)


def test_spec_augment_masks_only_in_training():
    fe = LogMel(8000, 40, freq_mask=8, time_mask=10)
    x = torch.randn(4, 8000) * 0.1
    torch.manual_seed(0)
    masked = fe.train()(x)
    clean = fe.eval()(x)
    zeroed = (masked == 0) & (clean != 0)
    assert zeroed.any() and torch.equal(masked[~zeroed], clean[~zeroed])


def test_crops_and_windows_cover_every_utterance():
    w = Waveforms.from_arrays([np.arange(10, dtype=np.float32), np.arange(3, dtype=np.float32)])
    c = crop(w, 4, torch.Generator().manual_seed(0))
    assert c.shape == (2, 4)
    s = int(c[0, 0])
    assert c[0].tolist() == list(range(s, s + 4))  # a contiguous piece of the first
    assert c[1].tolist() == [0, 1, 2, 0]  # the short one repeated to length
    win, owner = windows(w, 4, 2)
    assert owner.tolist() == [0, 0, 0, 0, 1]
    assert win[3].tolist() == [6, 7, 8, 9]  # the last window ends at the end
    # ranks draw the rows of the global batch's crops
    g = [torch.Generator().manual_seed(5) for _ in range(3)]
    full = crop(Waveforms.concat([w, w]), 4, g[0])
    torch.testing.assert_close(torch.cat([crop(w, 4, g[1], 0, 4), crop(w, 4, g[2], 2, 4)]),
                               full)


def test_an_audio_run_trains_compares_and_embeds(tmp_path, capsys):
    root = voices(tmp_path / "voices")
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--epochs", "2", "--split", "samples",
                 "--out", str(out), *AUDIO_RUN]) == 0
    model = siamese.load(out)
    assert model.preprocessing.kind == "audio" and model.preprocessing.sample_rate == 8000
    assert model.card["config"]["model"]["encoder"] == "ecapa"  # the default for audio
    a, b = root / "spk0/0.wav", root / "spk0/1.wav"
    capsys.readouterr()
    assert main(["compare", str(out), str(a), str(b)]) == 0
    assert capsys.readouterr().out.startswith("similarity ")
    e = model.embed([a, b, root / "spk3/0.wav"])
    assert e.shape == (3, model.net.dim) and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5)
    # whole utterances: the same clip gives the same embedding, whatever else is in the batch
    np.testing.assert_allclose(model.embed([a])[0], e[0], atol=1e-5)
    assert main(["embed", str(out), str(root), "--out", str(tmp_path / "e.npy")]) == 0
    assert np.load(tmp_path / "e.npy").shape == (20, model.net.dim)


def test_labels_from_file_names_by_pattern(tmp_path, capsys):
    root = voices(tmp_path / "flat", flat=True)
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--label-pattern", r"^(\d+)_", "--epochs", "1",
                 "--split", "samples", "--out", str(out), *AUDIO_RUN]) == 0
    assert siamese.load(out).card["data"]["classes"] == 4
    sf.write(root / "stray.wav", tone(300, 8000, 0.5), 8000)
    capsys.readouterr()
    assert main(["train", "--data", str(root), "--label-pattern", r"^(\d+)_", "--out",
                 str(tmp_path / "r2"), *AUDIO_RUN]) == 2
    err = capsys.readouterr().err
    assert "stray.wav does not match --label-pattern" in err and not (tmp_path / "r2").exists()
    assert main(["train", "--data", str(root), "--label-pattern", "(", "--out",
                 str(tmp_path / "r3"), *AUDIO_RUN]) == 2
    assert "is not a regular expression" in capsys.readouterr().err
    # evaluated on class folders: the run's pattern does not fit them; --label-pattern '' does
    folders = voices(tmp_path / "folders", speakers=3, clips=2)
    assert main(["evaluate", str(out), "--data", str(folders), "--out", str(tmp_path / "e")]) == 2
    assert "does not match --label-pattern" in capsys.readouterr().err
    assert main(["evaluate", str(out), "--data", str(folders), "--label-pattern", "",
                 "--out", str(tmp_path / "e")]) == 0
    got = json.loads((tmp_path / "e" / "metrics.json").read_text())["data"]
    assert got["samples"] == 6 and got["classes"] == 3


@pytest.mark.skipif(not (DATA / "fsdd" / "recordings").is_dir(), reason="no FSDD in shared data")
def test_fsdd_digits_end_to_end(tmp_path):
    src = DATA / "fsdd" / "recordings"
    for f in sorted(src.glob("[0-3]_*_?.wav")):  # 4 digits x 6 speakers x 10 takes
        shutil.copy(f, tmp_path / f.name)
    out = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path), "--label-pattern", r"^(\d)_", "--epochs",
                 "5", "--split", "samples", "--out", str(out), "--sample-rate", "8000",
                 "--crop-seconds", "0.5", "--width", "8", "--batch-size", "32", "--quiet"]) == 0
    m = siamese.load(out).card["metrics"]["seen"]["verification"]
    assert m["roc_auc"] > 0.7  # spoken digits are told apart after seconds of training


def test_noise_is_added_at_the_drawn_signal_to_noise_ratio():
    from siamese.data.audio import add_noise

    x = torch.from_numpy(np.stack([tone(200 + 50 * k, 8000, 1.0) for k in range(6)])).float()
    out = add_noise(x, 10.0, torch.Generator().manual_seed(0))
    u = torch.rand(6, 2, generator=torch.Generator().manual_seed(0))
    gain = 10 ** ((12 * u[:, 1] - 6) / 20)
    noise = out / gain[:, None] - x
    snr = 10 * torch.log10(x.pow(2).mean(1) / noise.pow(2).mean(1))
    torch.testing.assert_close(snr, 10 + 20 * u[:, 0], atol=0.3, rtol=0)  # as drawn
    halves = [add_noise(x[:3], 10.0, torch.Generator().manual_seed(0), 0, 6),
              add_noise(x[3:], 10.0, torch.Generator().manual_seed(0), 3, 6)]
    torch.testing.assert_close(torch.cat(halves), out)  # ranks draw the global batch's rows


def test_speed_perturbation_moves_the_pitch_by_the_drawn_factor():
    from siamese.data.audio import speed_crop

    rate, n = 8000, 4000
    w = Waveforms.from_arrays([tone(250, rate, 1.5)] * 8)
    out = speed_crop(w, n, 0.2, torch.Generator().manual_seed(0))
    f = 1 + 0.2 * (2 * torch.rand(8, generator=torch.Generator().manual_seed(0)) - 1)
    pitch = np.abs(np.fft.rfft(out.numpy(), axis=1)).argmax(1) * rate / n
    np.testing.assert_allclose(pitch, 250 * f.numpy(), atol=2.5)  # faster = higher, by f
    halves = [speed_crop(w[torch.arange(0, 3)], n, 0.2, torch.Generator().manual_seed(0), 0, 8),
              speed_crop(w[torch.arange(3, 8)], n, 0.2, torch.Generator().manual_seed(0), 3, 8)]
    torch.testing.assert_close(torch.cat(halves), out)  # ranks draw the global batch's rows


def test_the_default_crop_is_the_median_recording_between_half_a_second_and_two(tmp_path):
    from siamese.data.audio import auto_crop_seconds

    assert auto_crop_seconds(np.array([8000, 9000, 30000]), 8000) == 1.12
    assert auto_crop_seconds(np.array([1000, 2000]), 8000) == 0.5
    assert auto_crop_seconds(np.array([16000 * 12] * 3), 16000) == 2.0
    root = voices(tmp_path / "v", speakers=3, clips=3)
    rate = 8000
    lengths = [len(read_audio(str(f), str(f), rate)) for f in sorted(root.rglob("*.wav"))]
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--epochs", "1", "--split", "samples",
                 "--sample-rate", str(rate), "--width", "4", "--batch-size", "12", "--quiet",
                 "--out", str(out)]) == 0
    model = siamese.load(out)
    crop_s = model.card["config"]["data"]["crop_seconds"]  # resolved in the saved config
    assert crop_s == auto_crop_seconds(np.array(lengths), rate)
    assert model.preprocessing.input_shape == [round(rate * crop_s)]


def test_reversed_waveforms_are_each_utterance_backwards():
    rng = np.random.default_rng(0)
    w = Waveforms.from_arrays([rng.normal(size=n).astype(np.float32) for n in (5, 1, 9, 3)])
    w = w.take(np.array([2, 0, 3]))  # a view with gaps and another order
    r = w.reversed()
    assert [r.get(i).tolist() for i in range(len(r))] == \
        [w.get(i).flip(0).tolist() for i in range(len(w))]


def test_class_reversals_train_twice_the_classes_and_the_backward_clips(tmp_path, monkeypatch):
    import siamese.api

    seen = {}
    create = siamese.api.create_loss

    def spy(*a, **k):
        seen["classes"] = k["classes"]
        return create(*a, **k)

    monkeypatch.setattr(siamese.api, "create_loss", spy)
    root = voices(tmp_path / "v", speakers=4, clips=4)
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--loss", "arcface", "--epochs", "1", "--split",
                 "samples", "--set", "data.class_reversals=true", "--out", str(out),
                 *AUDIO_RUN]) == 0
    assert seen["classes"] == 8 and siamese.load(out).card["data"]["classes"] == 4
    assert main(["train", "--set", "data.class_reversals=true", "--out", str(tmp_path / "r2"),
                 "--epochs", "1", "--quiet"]) == 2  # the bundled digits are images
    assert not (tmp_path / "r2").exists()


def test_include_and_exclude_choose_files_by_relative_path(tmp_path, capsys):
    from siamese.data.datasets import load_audio_tree

    root = voices(tmp_path / "v", speakers=4, clips=3)
    all_files = load_audio_tree(root, 8000)
    some = load_audio_tree(root, 8000, include=r"^spk[0-2]/", exclude=r"/0\.wav$")
    expected = [f for f in all_files.sources
                if f.split("/")[-2] in ("spk0", "spk1", "spk2") and not f.endswith("/0.wav")]
    assert some.sources == expected and some.classes == ["spk0", "spk1", "spk2"]
    out = tmp_path / "run"
    assert main(["train", "--data", str(root), "--exclude", "^spk3/", "--epochs", "1",
                 "--split", "samples", "--out", str(out), *AUDIO_RUN]) == 0
    assert siamese.load(out).card["data"]["classes"] == 3
    # evaluated on a folder of its own, the training run's choice of files does not apply
    metrics = siamese.evaluate(siamese.load(out), data=root, out=tmp_path / "e")
    assert metrics["data"]["samples"] == 12 and metrics["data"]["classes"] == 4
    capsys.readouterr()
    assert main(["train", "--data", str(root), "--include", "nothing-matches", "--out",
                 str(tmp_path / "r2"), *AUDIO_RUN]) == 2
    err = capsys.readouterr().err
    assert "leave none of the 12 files" in err and "spk0/0.wav" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "r2").exists()


def test_a_dataloader_worker_sends_only_its_batch_of_audio():
    from torch.utils.data import BatchSampler

    from siamese.data.loader import IndexedSamples, make_loader

    w = Waveforms.from_arrays([np.full(1000 + k, k, dtype=np.float32) for k in range(20)])
    loader = make_loader(IndexedSamples(w, np.arange(20)),
                         BatchSampler(list(range(20)), 4, False), workers=1)
    for xb, yb in loader:
        assert len(xb.data) == int(xb.length.sum()) < len(w.data)  # not the whole set
        assert [int(xb.get(i)[0]) for i in range(len(xb))] == yb.tolist()


def test_evaluate_with_a_cohort_reports_as_norm_of_the_same_pairs(audio_run_session, tmp_path,
                                                                   capsys):
    from siamese.data.datasets import load_audio_tree
    from siamese.data.sampling import sample_pairs
    from siamese.evaluation.score_norm import as_norm
    from siamese.evaluation.verification import equal_error_rate

    test = voices(tmp_path / "test", speakers=4, clips=4)
    cohort = voices(tmp_path / "cohort", speakers=3, clips=2)
    capsys.readouterr()
    assert main(["evaluate", str(audio_run_session), "--data", str(test), "--cohort",
                 str(cohort), "--cohort-top", "3", "--out", str(tmp_path / "e")]) == 0
    assert "EER, AS-norm" in capsys.readouterr().out
    got = json.loads((tmp_path / "e" / "metrics.json").read_text())["data"]
    model = siamese.load(audio_run_session)
    data = load_audio_tree(test, 8000)
    emb = model.embed(data.sources)
    cfg = model.card["config"]
    i, j, y = sample_pairs(data.y, cfg["eval"]["pairs"],
                           np.random.default_rng(cfg["train"]["seed"]))
    cohort_emb = model.embed(load_audio_tree(cohort, 8000).sources)
    normed = as_norm(emb, i, j, cohort_emb, 3)
    assert got["verification_as_norm"]["eer"] == pytest.approx(equal_error_rate(y, normed),
                                                                abs=1e-6)
    assert "verification_as_norm" not in siamese.evaluate(model, data=test,
                                                          out=tmp_path / "e2")["data"]
    # "training": the run's own training folder (audio_run_session's "voices") as the cohort
    own = siamese.evaluate(model, data=test, cohort="training", cohort_top=3,
                           out=tmp_path / "e3")["data"]["verification_as_norm"]
    theirs = as_norm(emb, i, j, model.embed(load_audio_tree(
        audio_run_session.parent / "voices", 8000).sources), 3)
    assert own["eer"] == pytest.approx(equal_error_rate(y, theirs), abs=1e-6)


def test_crop_min_cuts_each_batch_to_one_drawn_length_between_it_and_the_crop(tmp_path,
                                                                               monkeypatch):
    import siamese.api

    made = {}
    task = siamese.api.MetricLearningTask

    def spy(net, loss_fn, miner, augment, *a, **k):
        made["augment"] = augment
        return task(net, loss_fn, miner, augment, *a, **k)

    monkeypatch.setattr(siamese.api, "MetricLearningTask", spy)
    root = voices(tmp_path / "v", speakers=4, clips=4)
    assert main(["train", "--data", str(root), "--epochs", "1", "--split", "samples",
                 "--set", "augment.crop_min=0.25", "--out", str(tmp_path / "run"),
                 *AUDIO_RUN]) == 0  # 0.5-s crops at 8 kHz: 4,000 samples
    w = Waveforms.from_arrays([tone(200, 8000, 1.0)] * 6)
    lengths = {made["augment"](w, torch.Generator().manual_seed(s)).shape for s in range(40)}
    assert {b for b, _ in lengths} == {6} and len(lengths) > 20
    assert min(n for _, n in lengths) >= 2000 and max(n for _, n in lengths) <= 4000
