"""Spotting an enrolled word in a stream (siamese spot, /spot): on a stream built with known
positions of the 'word' (one synthetic speaker's clips) among other 'words' and noise, the
detections fall on those positions and nowhere else; bad input is one line / a JSON 4xx."""

import io
import json
import shutil

import numpy as np
import pytest
import soundfile

import siamese
from conftest import Server
from siamese.cli import main
from siamese.serve.app import create_app
from siamese.spot import Detection, detect, spot

RATE = 8000


def build_stream(voices, path, word: str = "spk1", others=("spk0", "spk2", "spk3"),
                 seed: int = 0) -> list[tuple[float, float]]:
    """word clips 1-4 and other clips in a row, 0.4-0.9 s of faint noise between them -> the
    word's (start, end) seconds."""
    rng = np.random.default_rng(seed)
    pieces, where, t = [], [], 0.0
    order = [(word, k) for k in range(1, 5)] + [(o, k) for o in others for k in range(2)]
    for i in rng.permutation(len(order)):
        gap = rng.normal(0, 0.005, int(RATE * rng.uniform(0.4, 0.9)))
        speaker, k = order[i]
        x, _ = soundfile.read(voices / speaker / f"{k}.wav")
        pieces += [gap, x]
        t += len(gap) / RATE
        if speaker == word:
            where.append((t, t + len(x) / RATE))
        t += len(x) / RATE
    soundfile.write(path, np.concatenate(pieces), RATE)
    return where


def hits(found: list[dict], where: list[tuple[float, float]]) -> int:
    """Truths overlapped by a detection's middle."""
    return sum(any(s <= (d["start"] + d["end"]) / 2 <= e for d in found) for s, e in where)


def test_a_stream_at_another_rate_than_its_examples_spots_the_same(audio_run_session,
                                                                    tmp_path):
    """(issue 43) every input is resampled to the model's rate: a stream recorded at twice the
    examples' rate is searched, not refused"""
    voices = audio_run_session.parent / "voices"
    model = siamese.load(audio_run_session)
    stream, fast = tmp_path / "stream.wav", tmp_path / "fast.wav"
    where = build_stream(voices, stream)
    x, _ = soundfile.read(stream)
    soundfile.write(fast, np.repeat(x, 2), 2 * RATE)
    a = spot(model, [voices / "spk1/0.wav"], stream)
    b = spot(model, [voices / "spk1/0.wav"], fast)
    assert hits(b["detections"], where) == hits(a["detections"], where) > 0


def test_detect_groups_overlapping_windows_at_their_best():
    scores = np.array([0.1, 0.8, 0.9, 0.7, 0.1, 0.1, 0.95, 0.2])
    starts = np.arange(8) * 100
    got = detect(scores, starts, n=250, rate=1000, threshold=0.5)
    assert got == [Detection(0.2, 0.45, 0.9), Detection(0.6, 0.85, 0.95)]
    assert detect(scores, starts, 250, 1000, threshold=0.99) == []


def test_spotting_finds_the_word_where_it_was_put(audio_run_session, tmp_path):
    voices = audio_run_session.parent / "voices"
    model = siamese.load(audio_run_session)
    stream = tmp_path / "stream.wav"
    where = build_stream(voices, stream)
    result = spot(model, [voices / "spk1/0.wav"], stream)
    assert result["threshold_from"] == "the run's verification threshold"
    assert result["threshold"] == pytest.approx(model.threshold)
    found = result["detections"]
    assert hits(found, where) == len(where) == 4
    # no detection away from the word (its middle outside every truth, with 0.3 s of slack)
    stray = [d for d in found if not any(s - 0.3 <= (d["start"] + d["end"]) / 2 <= e + 0.3
                                         for s, e in where)]
    assert not stray, stray
    assert all(0 <= d["score"] <= 1 for d in found)


def test_threshold_calibrated_on_negatives_and_given(audio_run_session, tmp_path):
    voices = audio_run_session.parent / "voices"
    model = siamese.load(audio_run_session)
    stream = tmp_path / "stream.wav"
    build_stream(voices, stream)
    ex = [voices / "spk1/0.wav", voices / "spk1/4.wav"]
    calibrated = spot(model, ex, stream, negatives=[voices / "spk0/4.wav",
                                                    voices / "spk2/4.wav"])
    assert calibrated["threshold_from"] == "examples against negatives"
    assert 0 < calibrated["threshold"] < 1
    everything = spot(model, ex, stream, threshold=0.0)
    assert len(everything["detections"]) == 1  # every window: one run of overlapping ones
    assert spot(model, ex, stream, threshold=1.0)["detections"] == []


@pytest.mark.parametrize("case, message", [
    ("short stream", "shorter than the examples"),
    ("silent example", "is silent"),
    ("bad threshold", "a number in [0, 1]"),
    ("nan hop", "hop (seconds)"),
    ("small hop", "give a hop of at least"),  # (issue 43) a 5-s clip at hop 0 took 31 s
    ("long example", "at most 5 s"),  # an example is a word or a phrase, not a recording
])
def test_bad_spotting_input_is_one_line_and_a_json_4xx(audio_run_session, tmp_path, capsys,
                                                       case, message):
    voices = audio_run_session.parent / "voices"
    example, stream = voices / "spk1/0.wav", tmp_path / "stream.wav"
    build_stream(voices, stream)
    args = []
    if case == "short stream":
        soundfile.write(stream, np.random.default_rng(0).normal(0, 0.1, RATE // 10), RATE)
    elif case == "silent example":
        example = tmp_path / "silent.wav"
        soundfile.write(example, np.zeros(RATE), RATE)
    elif case == "bad threshold":
        args = ["--threshold", "1.5"]
    elif case in ("nan hop", "small hop"):
        args = ["--hop", "nan" if case == "nan hop" else "0.02"]  # the least: a 10th of ~1 s
    elif case == "long example":
        example = tmp_path / "long.wav"
        soundfile.write(example, np.random.default_rng(0).normal(0, 0.1, 6 * RATE), RATE)
    out = tmp_path / "d.json"
    assert main(["spot", str(audio_run_session), "--example", str(example), "--audio",
                 str(stream), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not out.exists()
    # the service says the same as a JSON 4xx
    run = shutil.copytree(audio_run_session, tmp_path / "run")
    with Server(create_app(run)) as client:
        data = {"threshold": "1.5"} if case == "bad threshold" else {"hop": args[1]} if (
            "hop" in case) else {}
        r = client.post("/spot", data=data, files=[
            ("examples", (example.name, example.read_bytes())),
            ("audio", (stream.name, stream.read_bytes()))])
    assert 400 <= r.status_code < 500
    assert ("between 0 and 1" if case == "bad threshold" else message) in r.json()["error"]


def test_cli_and_service_give_the_library_s_detections(audio_run_session, tmp_path, capsys):
    voices = audio_run_session.parent / "voices"
    stream = tmp_path / "stream.wav"
    build_stream(voices, stream, seed=3)
    want = spot(siamese.load(audio_run_session), [voices / "spk1/0.wav"], stream)
    out = tmp_path / "d.json"
    assert main(["spot", str(audio_run_session), "--example", str(voices / "spk1/0.wav"),
                 "--audio", str(stream), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{len(want['detections'])} detection(s)" in printed
    assert json.loads(out.read_text())["detections"] == want["detections"]
    buf = io.BytesIO(stream.read_bytes())
    run = shutil.copytree(audio_run_session, tmp_path / "run")
    with Server(create_app(run)) as client:
        r = client.post("/spot", files=[
            ("examples", ("w.wav", (voices / "spk1/0.wav").read_bytes())),
            ("audio", ("s.wav", buf.getvalue()))])
    assert r.status_code == 200, r.text
    assert r.json()["detections"] == want["detections"]


def test_windows_read_block_by_block_score_as_each_window_alone(audio_run_session):
    """The stream read in blocks of any size (a 4-hour stream is never whole in memory) gives
    the windows and scores of each window cut from the whole stream and scored alone."""
    from siamese.data.audio import Waveforms
    from siamese.spot import window_scores

    model = siamese.load(audio_run_session)
    rng = np.random.default_rng(0)
    stream = (rng.normal(0, 0.1, 3 * RATE) + np.sin(np.arange(3 * RATE) / 3)).astype(
        np.float32)
    example = stream[RATE:RATE + 4000].copy()
    hop = 0.05
    n, step = len(example), int(hop * RATE)
    want_starts = np.arange(0, len(stream) - n + 1, step)
    emb_ex = model.embed_tensor(Waveforms.from_arrays([example]))
    want = np.array([model.score_embeddings(model.embed_tensor(Waveforms.from_arrays(
        [stream[s:s + n]])), emb_ex)[0] for s in want_starts])
    for sizes in ([len(stream)], [1, 399, 4001, 7000, len(stream) - 11401],
                  [137] * (len(stream) // 137 + 1)):
        cuts = np.cumsum([0, *sizes])
        blocks = [stream[a:b] for a, b in zip(cuts[:-1], cuts[1:], strict=True) if a < b]
        scores, starts, m = window_scores(model, [example], iter(blocks), hop)
        assert m == n
        np.testing.assert_array_equal(starts, want_starts)
        np.testing.assert_allclose(scores, want, atol=1e-5)


def test_a_long_stream_is_never_whole_in_memory(audio_run_session, tmp_path, monkeypatch):
    """(issue 43) the stream's samples held at once are bounded by a block and a chunk of
    windows: here a 20-minute stream, read in 4-second blocks, is never held whole"""
    import tracemalloc

    import siamese.data.audio as audio

    monkeypatch.setattr(audio, "BLOCK_SECONDS", 4.0)
    monkeypatch.setattr(audio.audio_blocks, "__defaults__",
                        (audio.MAX_SECONDS, 4.0))
    monkeypatch.setattr("siamese.spot.CHUNK_SAMPLES", 2**18)
    path = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(path, "w", RATE, 1, subtype="PCM_16") as f:
        for _ in range(20):
            f.write(rng.normal(0, 0.05, 60 * RATE))
    voices = audio_run_session.parent / "voices"
    model = siamese.load(audio_run_session)
    tracemalloc.start()
    try:
        result = spot(model, [voices / "spk1/0.wav"], path, hop_seconds=1.0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result["stream_seconds"] == 1200 and result["windows"] > 1190
    whole = 1200 * RATE * 4  # the stream as float32
    assert peak < whole / 8, f"{peak / 1e6:.1f} MB held for a {whole / 1e6:.0f} MB stream"


def test_the_service_stops_spotting_when_its_client_goes(audio_run_session, tmp_path,
                                                         monkeypatch):
    """(issue 43) a request whose client has gone stops working: the work is polled between
    chunks of windows and gives up"""
    import socket
    import time

    import siamese.serve.app as app_module
    from siamese.spot import Cancelled

    outcomes, polls = [], []

    def slow_spot(*args, stop, **kwargs):
        def slow_stop():
            polls.append(1)
            time.sleep(0.05)  # every chunk slow: the work outlasts the client
            return stop()
        try:
            return spot(*args, stop=slow_stop, **kwargs)
        except Cancelled:
            outcomes.append("cancelled")
            raise
        finally:
            outcomes.append("ended")

    monkeypatch.setattr(app_module, "spot", slow_spot)
    monkeypatch.setattr("siamese.spot.WINDOW_CHUNK", 2)
    voices = audio_run_session.parent / "voices"
    stream = io.BytesIO()
    soundfile.write(stream, np.random.default_rng(0).normal(0, 0.05, 120 * RATE), RATE,
                    format="FLAC")
    import httpx

    request = httpx.Request("POST", "http://x/spot", files=[
        ("examples", ("w.wav", (voices / "spk1/0.wav").read_bytes())),
        ("audio", ("s.flac", stream.getvalue()))])
    body = request.read()
    head = "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k != "host")
    run = shutil.copytree(audio_run_session, tmp_path / "run")
    with Server(create_app(run)) as client:
        with socket.create_connection(("127.0.0.1", int(str(client.base_url).split(":")[-1]))) as c:
            c.sendall(f"POST /spot HTTP/1.1\r\nhost: 127.0.0.1\r\n{head}\r\n".encode() + body)
            deadline = time.time() + 20
            while not polls and time.time() < deadline:
                time.sleep(0.02)  # the work has begun
        deadline = time.time() + 10
        while "ended" not in outcomes and time.time() < deadline:
            time.sleep(0.05)
        assert client.get("/health").status_code == 200
    assert outcomes[:1] == ["cancelled"], outcomes
    windows = 120 * RATE // 800  # at the default hop of 0.1 s
    assert len(polls) < windows / 2 / 4, f"{len(polls)} chunks of 2 windows polled"


@pytest.mark.parametrize("n", [8000, 8001, 12345, 40000])
def test_the_default_hop_is_taken_again_and_keeps_the_overlap_bound(n):
    """the hop spot() chose passes its own check when window_scores is given it in seconds,
    whatever the examples' length (a 8001-sample example once rounded below the bound)"""
    from siamese.spot import MAX_OVERLAP, hop_samples

    hop = hop_samples(None, n, RATE)
    assert hop_samples(hop / RATE, n, RATE) == hop
    assert hop * MAX_OVERLAP >= n and hop >= int(0.1 * RATE)
