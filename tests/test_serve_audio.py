"""The HTTP service with a speaker model: /verify, /embed, /identify, /search and the gallery
take audio files (any rate, channels, WAV/FLAC/OGG) and answer as the library does; other
uploads and over-long recordings get a JSON 4xx."""

import io
import shutil

import numpy as np
import pytest
import soundfile

import siamese
from conftest import KEY, Server, digit_png, tone
from siamese.serve.app import Limits, create_app


@pytest.fixture
def served_audio(audio_run_session, tmp_path):
    run = shutil.copytree(audio_run_session, tmp_path / "run")
    app = create_app(run, api_key=KEY, limits=Limits(max_seconds=3, max_request_seconds=12))
    with Server(app) as client:
        yield client, run, audio_run_session.parent / "voices"


def clip(path, rate: int = 8000, fmt: str = "WAV") -> tuple[str, bytes]:
    data, sr = soundfile.read(path)
    buf = io.BytesIO()
    soundfile.write(buf, np.resize(data, int(len(data) * rate / sr)) if rate != sr else data,
                    rate, format=fmt)
    return f"{path.stem}.{fmt.lower()}", buf.getvalue()


def test_verify_embed_and_identify_match_the_library(served_audio):
    client, run, voices = served_audio
    model = siamese.load(run)
    a, b, c = voices / "spk0/0.wav", voices / "spk0/1.wav", voices / "spk2/0.wav"
    for x, y in [(a, b), (a, c)]:
        r = client.post("/verify", files={"a": clip(x), "b": clip(y)})
        assert r.status_code == 200, r.text
        r = r.json()
        assert r["similarity"] == pytest.approx(model.similarity(x, y), abs=1e-4)
        assert r["same"] == (r["similarity"] >= model.threshold)
    e = client.post("/embed", files=[("files", clip(a)), ("files", clip(c, fmt="FLAC"))])
    np.testing.assert_allclose(np.array(e.json()["embeddings"]), model.embed([a, c]), atol=1e-4)

    files = sorted(voices.rglob("[0-1].wav"))
    labels = [f.parent.name for f in files]
    r = client.post("/gallery", files=[("files", clip(f)) for f in files],
                    data={"labels": str(labels).replace("'", '"')}, headers={"X-API-Key": KEY})
    assert r.status_code == 200, r.text
    ids = r.json()["ids"]
    query = voices / "spk3/4.wav"
    got = client.post("/identify", files={"file": clip(query)}).json()
    sims = model.embed([query]) @ model.embed(files).T  # brute force over the gallery
    assert got["label"] == labels[int(np.argmax(sims))]
    matches = client.post("/search?k=3", files={"file": clip(query)}).json()["matches"]
    assert [m["id"] for m in matches] == [ids[k] for k in np.argsort(-sims[0])[:3]]
    stored = client.get(f"/gallery/{ids[0]}/file")
    assert stored.headers["content-type"] == "audio/wav"
    assert stored.content == clip(files[0])[1]  # the upload, byte for byte


def test_other_rates_and_channels_are_the_same_voice(served_audio):
    client, run, voices = served_audio
    path = voices / "spk1/2.wav"
    data, sr = soundfile.read(path)
    stereo = io.BytesIO()
    soundfile.write(stereo, np.stack([data, data], 1), sr, format="WAV")
    r = client.post("/verify", files={"a": clip(path), "b": ("s.wav", stereo.getvalue())}).json()
    assert r["similarity"] > 0.999  # mixed down to the same mono signal


def test_bad_uploads_get_a_json_4xx(served_audio, tmp_path):
    client, _, voices = served_audio
    good = clip(voices / "spk0/0.wav")
    png = ("x.png", digit_png(tmp_path / "x.png", 0).read_bytes())
    long = io.BytesIO()
    soundfile.write(long, tone(200, 8000, 4.0), 8000, format="WAV")
    silent = io.BytesIO()
    soundfile.write(silent, np.zeros(4000), 8000, format="WAV")
    for files, status, message in [
        ({"a": good, "b": png}, 415, "cannot read audio file x.png"),
        ({"a": good, "b": ("l.wav", long.getvalue())}, 413, "l.wav lasts 4 s; at most 3 s"),
        ({"a": good, "b": ("s.wav", silent.getvalue())}, 400, "s.wav is silent"),
    ]:
        r = client.post("/verify", files=files)
        assert r.status_code == status and message in r.json()["error"], r.text
    two_seconds = io.BytesIO()
    soundfile.write(two_seconds, tone(200, 8000, 2.0), 8000, format="WAV")
    r = client.post("/embed", files=[("files", ("t.wav", two_seconds.getvalue()))] * 7)
    assert r.status_code == 413 and "limit per request is 12 s" in r.json()["error"]
    assert client.get("/health").json()["status"] == "ok"
