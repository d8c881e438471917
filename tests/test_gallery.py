"""Gallery: FAISS search against numpy brute force; enroll, remove, persist, refuse, reindex."""

import numpy as np
import pytest

from siamese.errors import ArtifactError, ConfigError
from siamese.index import Gallery


def _unit(n, d=16, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_exact_search_matches_brute_force(metric):
    g = Gallery(16, metric)
    x = _unit(300)
    g.add(x, [str(i % 7) for i in range(300)])
    q = _unit(20, seed=1)
    sims, pos = g.search(q, 5)
    if metric == "ip":
        brute = (1 + q @ x.T) / 2
    else:
        brute = 1 / (1 + ((q[:, None] - x[None]) ** 2).sum(-1))
    want = np.argsort(-brute, axis=1)[:, :5]
    assert np.array_equal(pos, want)
    np.testing.assert_allclose(sims, np.take_along_axis(brute, want, 1), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_approximate_indexes_find_most_true_neighbours(index_type):
    # clustered data, as embeddings are
    rng = np.random.default_rng(0)
    centers = _unit(50, seed=2)
    x = centers[rng.integers(0, 50, 5000)] + 0.1 * rng.normal(size=(5000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exact, approx = Gallery(16), Gallery(16, index_type=index_type, nprobe=32)
    for g in (exact, approx):
        g.add(x, ["a"] * len(x))
    q = x[:100] + 0.05 * rng.normal(size=(100, 16)).astype(np.float32)
    _, p_exact = exact.search(q, 10)
    _, p_approx = approx.search(q, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(p_exact, p_approx, strict=True)])
    assert recall >= 0.9


def test_add_remove_ids_and_persist(tmp_path):
    g = Gallery(16, index_type="hnsw", fingerprint="abc")
    ids = g.add(_unit(10), list("aabbccddee"), [f"s{i}" for i in range(10)])
    assert ids[0] == "g000001" and len(set(ids)) == 10
    g.search(_unit(1), 3)  # build the index, then change the gallery
    assert len(g.remove(["g000002", "g000005"])) == 2
    more = g.add(_unit(2, seed=3), ["z", "z"])
    assert more == ["g000011", "g000012"]  # ids are never reused
    with pytest.raises(ConfigError, match="g000002"):
        g.remove(["g000002"])
    with pytest.raises(ConfigError, match="already used"):
        g.add(_unit(1), ["y"], ids=["g000001"])
    g.save(tmp_path / "g.safetensors")
    h = Gallery.load(tmp_path / "g.safetensors", fingerprint="abc")
    assert h.ids == g.ids and h.labels == g.labels and h.sources == g.sources
    q = _unit(4, seed=9)
    assert np.array_equal(h.search(q, 3)[1], g.search(q, 3)[1])
    with pytest.raises(ArtifactError, match="other model weights.*reindex"):
        Gallery.load(tmp_path / "g.safetensors", fingerprint="xyz")


def test_prototypes_are_label_means():
    g = Gallery(16)
    x = _unit(6)
    g.add(x, ["a", "b", "a", "b", "a", "b"])
    labels, p = g.prototypes()
    want = x[[0, 2, 4]].mean(0)
    np.testing.assert_allclose(p[0], want / np.linalg.norm(want), rtol=1e-5)
    assert labels == ["a", "b"]


def test_truncated_gallery_is_a_clear_error(tmp_path):
    g = Gallery(16)
    g.add(_unit(50), ["a"] * 50)
    g.save(tmp_path / "g.safetensors")
    data = (tmp_path / "g.safetensors").read_bytes()
    (tmp_path / "g.safetensors").write_bytes(data[:100])
    with pytest.raises(ArtifactError, match="unreadable"):
        Gallery.load(tmp_path / "g.safetensors")
