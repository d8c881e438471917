"""Many Lake-style episodes on images_evaluation: the layout is read, episodes are built as the
official runs are (one alphabet, two drawers), and scoring agrees with a naive loop."""

import zipfile

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA
from siamese.errors import DataError
from siamese.evaluation.omniglot_episodes import (
    draw_episodes,
    episode_accuracy,
    load_evaluation_set,
    score_episodes,
)


def _fake_set(root, missing=("Alpha", "character01", 4)):
    """Alpha: 5 characters, Beta: 3; drawers 1-4; one image missing. Each file's bytes name
    its alphabet and character (for a fake model; nothing here decodes them)."""
    for alphabet, n in (("Alpha", 5), ("Beta", 3)):
        for c in range(1, n + 1):
            folder = root / "images_evaluation" / alphabet / f"character{c:02d}"
            folder.mkdir(parents=True)
            for d in range(1, 5):
                if (alphabet, f"character{c:02d}", d) != missing:
                    (folder / f"{100 * len(alphabet) + c}_{d:02d}.png").write_bytes(
                        f"{alphabet} {c}".encode())
    return root


def test_layout_is_read_with_missing_drawings_marked(tmp_path):
    es = load_evaluation_set(_fake_set(tmp_path))
    assert es.alphabets == ["Alpha", "Beta"] and len(es.characters) == 8
    assert len(es.names) == 8 * 4 - 1 and es.image.shape == (8, 4)
    assert (es.image < 0).sum() == 1 and es.image[0, 3] == -1
    ok = es.image[es.image >= 0]
    assert sorted(ok.tolist()) == list(range(len(es.names)))
    for (a, c), rows in zip(es.characters, es.image, strict=True):
        for r in rows[rows >= 0]:
            assert es.names[r].split("/")[-3:-1] == [es.alphabets[a], c]


def test_zip_reads_like_the_folder(tmp_path):
    _fake_set(tmp_path / "f")
    with zipfile.ZipFile(tmp_path / "e.zip", "w") as zf:
        for p in sorted((tmp_path / "f").rglob("*.png")):
            zf.write(p, p.relative_to(tmp_path / "f").as_posix())
    a, b = load_evaluation_set(tmp_path / "f"), load_evaluation_set(tmp_path / "e.zip")
    assert a.names == b.names and (a.image == b.image).all()


@pytest.mark.parametrize("ways", [3, 5])
def test_episodes_are_built_like_the_official_runs(tmp_path, ways):
    es = load_evaluation_set(_fake_set(tmp_path))
    support, query = draw_episodes(es, 300, ways, seed=1)
    assert support.shape == query.shape == (300, ways)
    where = {int(r): (i, j) for i, rows in enumerate(es.image) for j, r in enumerate(rows)
             if r >= 0}
    alphabets = set()
    for s, q in zip(support, query, strict=True):
        (cs, ds), (cq, dq) = zip(*map(where.get, s), strict=True), zip(*map(where.get, q),
                                                                         strict=True)
        assert cs == cq and len(set(cs)) == ways  # query i is support i's character
        assert len(set(ds)) == 1 and len(set(dq)) == 1 and ds[0] != dq[0]  # two drawers
        alpha = {es.characters[c][0] for c in cs}
        assert len(alpha) == 1  # within one alphabet
        alphabets |= alpha
    assert alphabets == ({0, 1} if ways == 3 else {0})  # Beta has only 3 characters
    again = draw_episodes(es, 300, ways, seed=1)
    assert (again[0] == support).all() and (again[1] == query).all()  # reproducible


def test_accuracy_matches_a_naive_loop(tmp_path):
    es = load_evaluation_set(_fake_set(tmp_path))
    support, query = draw_episodes(es, 50, 3, seed=0)
    emb = torch.randn(len(es.names), 6)

    def cosine(q, g):
        return torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(g, dim=1).T

    got = episode_accuracy(emb, support, query, cosine)
    e = emb.numpy() / np.linalg.norm(emb.numpy(), axis=1, keepdims=True)
    for k in range(50):
        right = 0
        for i in range(3):
            sims = [float(e[query[k, i]] @ e[support[k, j]]) for j in range(3)]
            right += int(max(range(3), key=sims.__getitem__) == i)
        assert got[k] == pytest.approx(right / 3)


def test_a_perfect_embedding_scores_one_and_a_constant_one_chance(tmp_path):
    es = load_evaluation_set(_fake_set(tmp_path))
    support, query = draw_episodes(es, 40, 5, seed=2)
    char = np.full(len(es.names), -1)
    for i, rows in enumerate(es.image):
        char[rows[rows >= 0]] = i
    onehot = torch.nn.functional.one_hot(torch.as_tensor(char), len(es.characters)).float()
    assert episode_accuracy(onehot, support, query, lambda q, g: q @ g.T).mean() == 1.0
    const = torch.ones(len(es.names), 2)
    assert episode_accuracy(const, support, query, lambda q, g: q @ g.T).mean() == 1 / 5


class _OnlyAlpha:
    """A fake model that tells Alpha's characters apart and sees every Beta drawing alike."""
    views = 8

    class preprocessing:  # noqa: N801
        @staticmethod
        def load_input(data: bytes):
            alphabet, c = data.decode().split()
            return torch.nn.functional.one_hot(torch.tensor([int(c)]), 6).float() \
                if alphabet == "Alpha" else torch.ones(1, 6)

    def embed_tensor(self, x, views=None):
        return x

    class net:  # noqa: N801
        score_matrix = staticmethod(lambda q, g: q @ g.T)


def test_score_reports_each_alphabet_and_episode(tmp_path):
    r = score_episodes(_OnlyAlpha(), _fake_set(tmp_path), episodes=200, ways=3, seed=3)
    assert r["per_alphabet"] == {"Alpha": 1.0, "Beta": pytest.approx(1 / 3)}
    assert len(r["per_episode"]) == 200 and r["trials"] == 600 and r["views"] == 8
    assert r["accuracy"] == pytest.approx(np.mean(r["per_episode"]), abs=1e-4)  # rounded
    assert 1 / 3 < r["accuracy"] < 1 and r["stderr"] > 0


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_evaluation_set(tmp_path / "nope.zip")
    (tmp_path / "x.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a zip"):
        load_evaluation_set(tmp_path / "x.zip")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="images_evaluation"):
        load_evaluation_set(tmp_path / "empty")
    es = load_evaluation_set(_fake_set(tmp_path / "f"))
    with pytest.raises(DataError, match="fewer ways"):
        draw_episodes(es, 1, ways=6)


@pytest.mark.skipif(not (SHARED_DATA / "omniglot" / "images_evaluation.zip").exists(),
                    reason="Omniglot not found")
def test_the_real_evaluation_set_is_complete():
    es = load_evaluation_set(SHARED_DATA / "omniglot" / "images_evaluation.zip")
    assert len(es.alphabets) == 20 and len(es.characters) == 659
    assert es.image.shape == (659, 20) and (es.image >= 0).all()
