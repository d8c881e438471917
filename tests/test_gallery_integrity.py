"""A gallery nothing can corrupt: damaged files, scale, removal without rebuilds, all-or-nothing
changes, CLI and server sharing one gallery, owned copies (issue: hardening, items 2, 4, 5, 9,
11, 12)."""

import json
import struct

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

import siamese
from conftest import digit_folder
from siamese.cli import main
from siamese.errors import ArtifactError, DataError
from siamese.index.enroll import enroll, labeled_files, open_store
from siamese.index.gallery import Gallery, _sha


def _unit(n, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _gallery_file(tmp_path, index_type="hnsw", n=40):
    g = Gallery(16, index_type=index_type, fingerprint="fp")
    g.add(_unit(n), [f"l{i % 5}" for i in range(n)], [f"s{i}" for i in range(n)])
    path = tmp_path / "g.safetensors"
    g.save(path)
    return path


def _rewrite(path, change, rehash=True):
    """Rewrite a gallery file with `change(tensors, meta)` applied; rehash = recompute the
    checksums, as a careless tool would, so that only the validation can catch it."""
    with safe_open(str(path), "pt") as f:
        meta = dict(f.metadata())
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    change(tensors, meta)
    if rehash:
        meta["sha256"] = json.dumps({k: _sha(v) for k, v in tensors.items()})
    save_file(tensors, str(path), metadata=meta)


DAMAGE = {
    "missing params": lambda t, m: m.pop("params"),
    "items not JSON": lambda t, m: t.update(items=torch.frombuffer(bytearray(b"{not json"),
                                                                    dtype=torch.uint8)),
    "extra key": lambda t, m: t.update(extra=torch.zeros(3)),
    "changed dim": lambda t, m: m.update(dim="8"),
    "garbage index": lambda t, m: t.update(index=torch.randint(0, 255, (500,),
                                                               dtype=torch.uint8)),
    "more vectors than ids": lambda t, m: t.update(
        embeddings=torch.cat([t["embeddings"], t["embeddings"][:1]])),
    "slots out of range": lambda t, m: t["slots"].__setitem__(0, 10_000),
    "nan embedding": lambda t, m: t["embeddings"].__setitem__((0, 0), float("nan")),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_gallery_is_one_artifact_error(tmp_path, case):
    path = _gallery_file(tmp_path)
    _rewrite(path, DAMAGE[case])
    with pytest.raises(ArtifactError) as e:
        Gallery.load(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_bit_flips_and_truncation_are_caught(tmp_path):
    path = _gallery_file(tmp_path)
    data = bytearray(path.read_bytes())
    header = struct.unpack("<Q", data[:8])[0]
    rng = np.random.default_rng(0)
    for _ in range(20):  # any flipped bit in the tensor data is caught by the checksums
        flipped = bytearray(data)
        pos = int(rng.integers(8 + header, len(data)))
        flipped[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(flipped))
        with pytest.raises(ArtifactError, match="checksum|damaged"):
            Gallery.load(path)
    path.write_bytes(bytes(data[: len(data) * 2 // 3]))
    with pytest.raises(ArtifactError, match="delete it"):
        Gallery.load(path)


def test_items_live_outside_the_header_and_labels_are_bounded(tmp_path):
    g = Gallery(16)
    n = 5000
    g.add(_unit(n), ["x" * 200] * n, ["s" * 900] * n)  # ~5.5 MB of text
    path = tmp_path / "g.safetensors"
    g.save(path)
    header = struct.unpack("<Q", path.read_bytes()[:8])[0]
    assert header < 4096  # what grows with the items is a tensor, not the (100 MB) header
    assert Gallery.load(path).labels == g.labels
    with pytest.raises(DataError, match="characters"):
        g.add(_unit(1), ["y" * 900_000])
    assert len(g) == n  # refused before anything changed


@pytest.mark.parametrize("index_type", ["flat", "hnsw", "ivf"])
def test_removal_marks_deleted_and_search_matches_brute_force(tmp_path, index_type):
    x = _unit(1500, seed=1)
    g = Gallery(16, index_type=index_type)
    ids = g.add(x, [str(i) for i in range(1500)])
    index = g.index
    gone = set(ids[::7])
    g.remove(sorted(gone))
    assert g.index is index and g.deleted == len(gone)  # no rebuild
    q = _unit(20, seed=2)
    sims, pos = g.search(q, 5)
    keep = [i for i, v in enumerate(ids) if v not in gone]
    brute = q @ x[keep].T
    for r in range(len(q)):
        found = [g.ids[p] for p in pos[r] if p >= 0]
        assert not gone & set(found)
        if index_type == "flat":  # exact: the same top 5 as numpy over what is left
            want = [ids[keep[j]] for j in np.argsort(-brute[r])[:5]]
            assert found == want
            np.testing.assert_allclose(sims[r], (1 + np.sort(brute[r])[::-1][:5]) / 2,
                                       atol=1e-5)
    path = tmp_path / "g.safetensors"
    g.save(path)
    g2 = Gallery.load(path)
    np.testing.assert_array_equal(g2.search(q, 5)[1], pos)
    g.remove([i for i in g.ids[: len(g) // 2]])
    assert g.needs_rebuild
    g.build_index()
    assert g.deleted == 0 and not g.needs_rebuild


@pytest.fixture
def enrolled(run_copy, tmp_path):
    model = siamese.load(run_copy)
    store = open_store(model)
    folder = digit_folder(tmp_path / "people", per_class=2, classes=range(3))
    files, labels = labeled_files(folder)
    enroll(model, store, files, labels, root=folder)
    return model, store, folder


def test_failed_enroll_changes_nothing(enrolled, monkeypatch):
    model, store, folder = enrolled
    before = (list(store.gallery.ids), sorted(p.name for p in store.uploads.iterdir()),
              store.path.read_bytes())
    import siamese.index.store as store_module

    calls = {"n": 0}
    real = store_module.atomic_write_bytes

    def failing(path, data):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(36, "File name too long")
        real(path, data)

    monkeypatch.setattr(store_module, "atomic_write_bytes", failing)
    blob = (folder / "0" / "0.png").read_bytes()
    with pytest.raises(OSError):
        store.add(model.embed([blob, blob]), ["a", "b"], ["x.png", "y.png"], [blob, blob],
                  [".png", ".png"])
    after = (list(store.gallery.ids), sorted(p.name for p in store.uploads.iterdir()),
             store.path.read_bytes())
    assert after == before


def test_cli_and_server_share_the_gallery(enrolled, tmp_path):
    model, server_store, folder = enrolled
    assert main(["gallery", "add", str(model.run), str(folder / "1"), "--label", "cli"]) == 0
    seen = server_store.current()  # the server notices the CLI's save
    cli_ids = [i for i, lab in zip(seen.ids, seen.labels, strict=True) if lab == "cli"]
    assert len(cli_ids) == 2
    blob = (folder / "2" / "0.png").read_bytes()
    new = server_store.add(model.embed([blob]), ["srv"], ["q.png"], [blob], [".png"])
    assert new[0] not in cli_ids  # no id handed out twice
    fresh = open_store(model).gallery  # and the server's save kept the CLI's items
    assert set(cli_ids + new) <= set(fresh.ids) and len(fresh) == 9


def test_owned_copies_relative_sources_removal_and_sweep(enrolled, capsys):
    model, store, folder = enrolled
    g = store.current()
    assert all(not s.startswith("/") and s.startswith("people/") for s in g.sources)
    copies = {p.name for p in store.uploads.iterdir()}
    assert copies == set(g.files)
    gone = g.ids[0]
    file = g.files[0]
    store.remove([gone])
    assert not (store.uploads / file).exists()  # forgetting a face deletes its photo
    (store.uploads / "g999999.png").write_bytes(b"orphan")
    (store.run / ".gallery.safetensors.abc.tmp").write_bytes(b"killed save")
    open_store(model)
    assert not (store.uploads / "g999999.png").exists()
    assert not (store.run / ".gallery.safetensors.abc.tmp").exists()


def test_reindex_repairs_a_damaged_index_from_the_stored_copies(enrolled, capsys):
    model, store, folder = enrolled
    import shutil

    shutil.rmtree(folder)  # the originals are gone; the gallery's copies are enough
    n = len(store.gallery)
    _rewrite(store.path, lambda t, m: t.update(
        embeddings=torch.cat([t["embeddings"], t["embeddings"][:1]])), rehash=False)
    assert main(["gallery", "list", str(model.run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "reindex" in err
    assert main(["gallery", "reindex", str(model.run)]) == 0
    assert main(["gallery", "list", str(model.run)]) == 0
    assert capsys.readouterr().out.count("\n") == n + 2


def test_a_format_1_gallery_loads_and_reindex_gives_it_copies(run_copy, tmp_path):
    """Galleries written by the previous release (items in the header, absolute sources)."""
    model = siamese.load(run_copy)
    folder = digit_folder(tmp_path / "old", per_class=2, classes=range(2))
    files = sorted(folder.rglob("*.png"))
    emb = model.embed(files)
    meta = {"format": "siamese-gallery", "version": "1", "dim": str(emb.shape[1]),
            "metric": "ip", "index_type": "flat", "fingerprint": model.fingerprint,
            "next_id": str(len(files) + 1),
            "ids": json.dumps([f"g{i + 1:06d}" for i in range(len(files))]),
            "labels": json.dumps([f.parent.name for f in files]),
            "sources": json.dumps([str(f) for f in files]),
            "params": json.dumps({"hnsw_m": 32, "ef_search": 64, "nprobe": 16})}
    save_file({"embeddings": torch.from_numpy(emb)}, str(run_copy / "gallery.safetensors"),
              metadata=meta)
    g = open_store(model).gallery
    assert len(g) == 4 and g.files == [""] * 4
    assert main(["gallery", "reindex", str(run_copy)]) == 0
    g = open_store(model).gallery
    assert all(g.files) and len(list((run_copy / "gallery_uploads").iterdir())) == 4
    np.testing.assert_allclose(g.embeddings, emb, atol=1e-5)


def test_ivfpq_codes_are_small_and_reranked_results_match_brute_force(tmp_path):
    import faiss

    rng = np.random.default_rng(3)
    centers = rng.normal(size=(200, 32)).astype(np.float32)
    x = centers[rng.integers(0, 200, 12_000)] + 0.3 * rng.normal(size=(12_000, 32))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    g = Gallery(32, index_type="ivfpq", nprobe=32)
    ids = g.add(x, ["x"] * len(x))
    assert isinstance(g.index, faiss.IndexIVFPQ) and g.index.code_size <= 32
    q = x[:50] + 0.05 * rng.normal(size=(50, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    sims, pos = g.search(q, 10)
    exact = q @ x.T
    truth = np.argsort(-exact, axis=1)[:, :10]
    recall = np.mean([len(set(p) & set(t)) / 10 for p, t in zip(pos, truth, strict=True)])
    assert recall >= 0.9
    # re-ranked exactly: each similarity is the true one, in order
    np.testing.assert_allclose(sims, (1 + np.take_along_axis(exact, pos, 1)) / 2, atol=1e-5)
    assert (np.diff(sims, axis=1) <= 1e-7).all()
    gone = {ids[int(p)] for p in pos[:, 0]}
    g.remove(sorted(gone))
    _, pos2 = g.search(q, 10)
    assert not gone & {g.ids[p] for p in pos2.ravel() if p >= 0}
    g.save(tmp_path / "g.safetensors")
    g2 = Gallery.load(tmp_path / "g.safetensors")
    np.testing.assert_array_equal(g2.search(q, 10)[1], pos2)
