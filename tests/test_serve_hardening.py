"""A service no client can stall or trick (issue: hardening, items 1-3, 5-8). The latency under
abusive load is measured by benchmarks/serve_abuse.py; here: the behaviour."""

import io
import json
import os

import httpx
import numpy as np
import pytest
from PIL import Image
from test_inputs_hardening import _lab_tiff, _mpo

from conftest import KEY, Server, digit_folder, digit_png
from siamese.serve.app import Limits, create_app


def _png(a=None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a if a is not None else np.zeros((8, 8), np.uint8)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def served(run_copy):
    app = create_app(run_copy, api_key=KEY, limits=Limits(
        max_request_bytes=400_000, max_pixels=100_000, max_request_pixels=150_000, max_files=8))
    with Server(app) as client:
        yield client, run_copy


def _enroll(client, files, labels, name=None):
    return client.post("/gallery", headers={"X-API-Key": KEY}, data={"labels": labels},
                       files=[("files", (name or f"f{i}.png", f)) for i, f in enumerate(files)])


def test_upload_is_stored_by_its_detected_type_and_served_inert(served):
    client, run = served
    # a real PNG carrying a script in a text chunk, uploaded as an HTML file
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("x", "<script>alert(document.cookie)</script>")
    buf = io.BytesIO()
    Image.new("L", (8, 8)).save(buf, "PNG", pnginfo=info)
    r = _enroll(client, [buf.getvalue()], "eve", name="a.html")
    assert r.status_code == 200, r.text
    item = r.json()["ids"][0]
    assert [p.name for p in (run / "gallery_uploads").iterdir()] == [f"{item}.png"]
    img = client.get(f"/gallery/{item}/image")
    assert img.headers["content-type"] == "image/png"
    assert img.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in img.headers["content-security-policy"]
    page = client.get("/")
    csp = page.headers["content-security-policy"]
    assert "script-src 'sha256-" in csp and "unsafe-inline" not in csp.split("style-src")[0]


def test_long_file_names_enroll_whole_and_sources_are_not_server_paths(served, tmp_path):
    client, run = served
    a = digit_png(tmp_path / "a.png", 0).read_bytes()
    r = _enroll(client, [a], "zero", name="n" * 300 + ".png")
    assert r.status_code == 200, r.text
    listing = client.get("/gallery").json()
    src = listing["items"][0]["source"]
    assert len(src) <= 200 and not src.startswith("/")
    s = client.post("/search", files={"file": ("q.png", a)}).json()["matches"][0]
    assert str(run) not in s["source"]


def test_delete_forgets_the_photo_and_links_are_never_followed(served, tmp_path):
    client, run = served
    ids = _enroll(client, [digit_png(tmp_path / f"{i}.png", i).read_bytes() for i in range(3)],
                  json.dumps(["a", "b", "c"])).json()["ids"]
    uploads = run / "gallery_uploads"
    assert len(list(uploads.iterdir())) == 3
    r = client.delete(f"/gallery/{ids[0]}", headers={"X-API-Key": KEY})
    assert r.status_code == 200 and len(list(uploads.iterdir())) == 2
    victim = uploads / f"{ids[1]}.png"
    victim.unlink()
    victim.symlink_to("/etc/passwd")
    r = client.get(f"/gallery/{ids[1]}/image")
    assert r.status_code == 404 and "root:" not in r.text
    assert client.get(f"/gallery/{ids[0]}/image").status_code == 404


@pytest.mark.parametrize("labels", ["[" + "9" * 5000 + "]", "[" * 100_000, '[["a"]]', "[1]",
                                    "[]"])
def test_hostile_labels_get_json_4xx(served, labels):
    client, _ = served
    r = _enroll(client, [_png()], labels)
    assert 400 <= r.status_code < 500 and "error" in r.json(), r.text
    assert client.get("/gallery").json()["count"] == 0


def test_lab_tiff_and_mpo_are_served_like_the_cli_reads_them(served, tmp_path):
    client, _ = served
    lab = _lab_tiff(tmp_path / "lab.tif").read_bytes()
    mpo = _mpo(tmp_path / "p.jpg").read_bytes()
    r = client.post("/verify", files={"a": ("a.tif", lab), "b": ("b.jpg", mpo)})
    assert r.status_code == 200, r.text
    assert 0 <= r.json()["similarity"] <= 1


def test_pixels_are_capped_per_request_not_only_per_image(served):
    client, _ = served
    one = _png(np.zeros((250, 250), np.uint8))  # 62,500 pixels: under the per-image cap
    r = client.post("/embed", files=[("files", (f"{i}.png", one)) for i in range(2)])
    assert r.status_code == 200
    r = client.post("/embed", files=[("files", (f"{i}.png", one)) for i in range(3)])
    assert r.status_code == 413 and "per request" in r.json()["error"]


def test_gallery_listing_is_paged(served, tmp_path):
    client, _ = served
    files = [digit_png(tmp_path / f"{i}.png", i).read_bytes() for i in range(5)]
    _enroll(client, files, "x")
    page = client.get("/gallery?offset=1&limit=2").json()
    assert page["count"] == 5 and len(page["items"]) == 2 and page["offset"] == 1
    assert client.get("/gallery?limit=100000").status_code == 422
    assert len(client.get("/gallery").json()["items"]) == 5


def test_host_header_must_name_the_server(run_copy):
    with Server(create_app(run_copy)) as client:
        assert client.get("/health").status_code == 200
        r = client.get("/health", headers={"Host": "evil.example:8000"})
        assert r.status_code == 400 and "Host" in r.json()["error"]
    with Server(create_app(run_copy, allowed_hosts=["siamese.internal"])) as client:
        assert client.get("/health", headers={"Host": "siamese.internal"}).status_code == 200
        assert client.get("/health").status_code == 400


def test_a_non_ascii_api_key_matches_a_utf8_client(run_copy, tmp_path):
    key = "clé-ключ-🔑"
    with Server(create_app(run_copy, api_key=key)) as client:
        a = digit_png(tmp_path / "a.png", 0).read_bytes()
        files = [("files", ("a.png", a))]
        ok = client.post("/gallery", data={"labels": "x"}, files=files,
                         headers={"X-API-Key": key.encode()})
        assert ok.status_code == 200, ok.text
        bad = client.post("/gallery", data={"labels": "x"}, files=files,
                          headers={"X-API-Key": b"cle"})
        assert bad.status_code == 401


def test_a_gallery_with_a_non_utf8_source_keeps_serving(run_copy, tmp_path):
    from siamese.cli import main

    folder = digit_folder(tmp_path / "g", per_class=2, classes=range(2))
    (folder / "1" / "0.png").rename(folder / "1" / os.fsdecode(b"\xff\xfe.png"))
    assert main(["gallery", "add", str(run_copy), str(folder)]) == 0
    with Server(create_app(run_copy)) as client:
        assert client.get("/gallery").status_code == 200
        q = (folder / "0" / "0.png").read_bytes()
        assert client.post("/search", files={"file": ("q.png", q)}).status_code == 200
        assert client.post("/identify", files={"file": ("q.png", q)}).status_code == 200


def test_a_damaged_gallery_stops_serve_with_one_line(run_copy, tmp_path, capsys):
    from siamese.cli import main

    folder = digit_folder(tmp_path / "g", per_class=2, classes=range(2))
    assert main(["gallery", "add", str(run_copy), str(folder)]) == 0
    g = run_copy / "gallery.safetensors"
    g.write_bytes(g.read_bytes()[:-40])
    capsys.readouterr()
    assert main(["serve", str(run_copy), "--port", "1"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(httpx.ConnectError):  # nothing was started
        httpx.get("http://127.0.0.1:1/health", timeout=1)


def test_a_vector_model_answers_415_not_500(tmp_path):
    from siamese.cli import main

    path = tmp_path / "t.csv"
    rng = np.random.default_rng(0)
    path.write_text("a,b,label\n" + "".join(f"{rng.normal()},{rng.normal()},{i % 4}\n"
                                            for i in range(40)))
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "r"), "--epochs", "1",
                 "--quiet"]) == 0
    with Server(create_app(tmp_path / "r")) as client:
        r = client.post("/embed", files={"files": ("a.png", _png())})
        assert r.status_code == 415 and "vectors" in r.json()["error"]
