"""The HTTP service, started for real on a free loopback port: every endpoint, the API key, the
limits, bad input, and a restart (also after a hard kill)."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import KEY, Server, digit_folder, digit_png, free_port
from siamese.serve.app import Limits, create_app


def png_bytes(path) -> bytes:
    return path.read_bytes()


@pytest.fixture
def served(run_copy):
    app = create_app(run_copy, api_key=KEY, limits=Limits(max_request_bytes=200_000,
                                                          max_pixels=100_000, max_files=8))
    with Server(app) as client:
        yield client, run_copy


def test_health_model_and_openapi(served):
    client, _ = served
    assert client.get("/health").json()["status"] == "ok"
    card = client.get("/model").json()
    assert card["format"] == "siamese-run" and "threshold" in card
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/embed", "/verify", "/identify", "/search", "/gallery"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and "Verify" in page.text


def test_verify_and_embed_match_the_library(served, tmp_path):
    import siamese

    client, run = served
    a, b = digit_png(tmp_path / "a.png", 0), digit_png(tmp_path / "b.png", 10)
    r = client.post("/verify", files={"a": ("a.png", png_bytes(a)),
                                      "b": ("b.png", png_bytes(b))}).json()
    model = siamese.load(run)
    assert r["similarity"] == pytest.approx(model.similarity(a, b), abs=1e-4)
    assert r["same"] == (r["similarity"] >= r["threshold"])
    e = client.post("/embed", files=[("files", ("a.png", png_bytes(a))),
                                     ("files", ("b.png", png_bytes(b)))]).json()
    np.testing.assert_allclose(np.array(e["embeddings"]), model.embed([a, b]), atol=1e-4)


def test_gallery_changes_need_the_key_and_survive_a_restart(served, tmp_path):
    client, run = served
    folder = digit_folder(tmp_path / "g", per_class=2, classes=range(4))
    files = [("files", (f"{p.parent.name}_{p.name}", p.read_bytes()))
             for p in sorted(folder.rglob("*.png"))]
    labels = json.dumps([p.parent.name for p in sorted(folder.rglob("*.png"))])
    r = client.post("/gallery", files=files, data={"labels": labels})
    assert r.status_code == 401 and "X-API-Key" in r.json()["error"]
    r = client.post("/gallery", files=files, data={"labels": labels},
                    headers={"X-API-Key": "wrong"})
    assert r.status_code == 401
    r = client.post("/gallery", files=files, data={"labels": labels}, headers={"X-API-Key": KEY})
    assert r.status_code == 200 and r.json()["count"] == 8
    ids = r.json()["ids"]
    listing = client.get("/gallery").json()
    assert listing["count"] == 8 and listing["items"][0]["label"] == "0"
    q = folder / "2" / "0.png"
    s = client.post("/search?k=3", files={"file": ("q.png", q.read_bytes())}).json()
    assert s["matches"][0]["label"] == "2" and s["matches"][0]["similarity"] == pytest.approx(1,
                                                                                            abs=1e-3)
    thumb = client.get(f"/gallery/{s['matches'][0]['id']}/image")
    assert thumb.status_code == 200 and thumb.content == q.read_bytes()
    ident = client.post("/identify", files={"file": ("q.png", q.read_bytes())}).json()
    assert ident["label"] == "2"
    cls = client.post("/classify", files={"file": ("q.png", q.read_bytes())}).json()
    assert cls["label"] in {"0", "1", "2", "3"}
    assert client.delete(f"/gallery/{ids[0]}").status_code == 401
    r = client.delete(f"/gallery/{ids[0]}", headers={"X-API-Key": KEY})
    assert r.json()["count"] == 7
    assert client.delete(f"/gallery/{ids[0]}", headers={"X-API-Key": KEY}).status_code == 404
    # a new server on the same run sees the same gallery
    with Server(create_app(run, api_key=KEY)) as c2:
        assert c2.get("/gallery").json()["count"] == 7


def test_no_key_configured_means_no_gallery_changes(run_copy, tmp_path):
    with Server(create_app(run_copy, api_key=None)) as client:
        p = digit_png(tmp_path / "a.png", 0)
        r = client.post("/gallery", files={"files": ("a.png", p.read_bytes())},
                        data={"labels": "zero"}, headers={"X-API-Key": "anything"})
        assert r.status_code == 403 and "SIAMESE_API_KEY" in r.json()["error"]


def _img_bytes(size, fmt="PNG"):
    buf = io.BytesIO()
    Image.new("L", size, 128).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("case, status", [
    ("not an image", 415), ("too many pixels", 413), ("too large", 413), ("too many files", 413),
    ("missing field", 422), ("bad k", 422), ("truncated png", 400), ("unknown path", 404),
    ("no content-length", 411),
])
def test_bad_requests_get_4xx_json_and_the_server_keeps_serving(served, case, status):
    client, _ = served
    ok = _img_bytes((8, 8))
    if case == "not an image":
        r = client.post("/verify", files={"a": ("a.txt", b"hello"), "b": ("b.png", ok)})
    elif case == "too many pixels":
        r = client.post("/verify", files={"a": ("a.png", _img_bytes((400, 400))),
                                          "b": ("b.png", ok)})
    elif case == "too large":
        r = client.post("/embed", files={"files": ("a.bin", b"\0" * 300_000)})
    elif case == "too many files":
        r = client.post("/embed", files=[("files", (f"{i}.png", ok)) for i in range(9)])
    elif case == "missing field":
        r = client.post("/verify", files={"a": ("a.png", ok)})
    elif case == "bad k":
        r = client.post("/search?k=0", files={"file": ("a.png", ok)})
    elif case == "truncated png":
        noise = io.BytesIO()
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8)).save(
            noise, format="PNG")
        cut = noise.getvalue()[: len(noise.getvalue()) * 2 // 3]  # header fine, pixels cut off
        r = client.post("/verify", files={"a": ("a.png", cut), "b": ("b.png", ok)})
    elif case == "unknown path":
        r = client.get("/nope")
    else:
        def gen():
            yield b"x" * 10
        r = client.post("/embed", content=gen(), headers={"content-type": "multipart/form-data"})
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    assert client.get("/health").status_code == 200


def test_concurrent_verifies_are_batched(served, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    client, _ = served
    a = png_bytes(digit_png(tmp_path / "a.png", 0))
    b = png_bytes(digit_png(tmp_path / "b.png", 1))
    port = client.base_url.port

    def one(_):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            return c.post("/verify", files={"a": ("a.png", a), "b": ("b.png", b)}).json()

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(one, range(64)))
    assert len({round(r["similarity"], 5) for r in results}) == 1


@pytest.mark.slow
def test_killed_server_keeps_the_gallery(run_copy, tmp_path):
    port = free_port()
    env = {**os.environ, "SIAMESE_API_KEY": KEY}
    cmd = [sys.executable, "-m", "siamese", "serve", str(run_copy), "--port", str(port)]

    def start():
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    return p
            except httpx.TransportError:
                time.sleep(0.1)
        p.kill()
        raise AssertionError("server did not start")

    p = start()
    url = f"http://127.0.0.1:{port}"
    img = digit_png(tmp_path / "a.png", 0).read_bytes()
    for i in range(3):
        r = httpx.post(f"{url}/gallery", files={"files": (f"{i}.png", img)},
                       data={"labels": f"l{i}"}, headers={"X-API-Key": KEY})
        assert r.status_code == 200
    p.send_signal(signal.SIGKILL)
    p.wait()
    p = start()
    try:
        assert httpx.get(f"{url}/gallery").json()["count"] == 3
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(10)
