"""Many episodes of Lake's task on images_evaluation: 20-way, within-alphabet, one-shot.

The 20 official runs give 400 trials: at 96% their binomial standard error is about 1 point,
as large as the differences between recipes. Here each episode is built the way an official run
is (20 characters of one alphabet; the training images drawn by one person, the test items by
another) from the whole evaluation set (`images_evaluation.zip`: 20 alphabets, 659 characters,
20 drawers each), at random and reproducibly from a seed; 1,000 episodes are 20,000 trials.
Every image is embedded once, so the episodes cost almost nothing beyond that.

They draw on the same alphabets as the official runs: a lower-noise estimate of the same test,
for comparing recipes with fewer seeds, not a validation set (tuning on it is tuning on the test
alphabets) and not a replacement of the official figure.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..errors import DataError

_NAME = re.compile(r"^(?P<char>\d+)_(?P<drawer>\d+)\.png$")


@dataclass
class EvaluationSet:
    names: list[str]  # image names, the rows of the embedding matrix
    alphabets: list[str]
    characters: list[tuple[int, str]]  # (alphabet index, character folder)
    image: np.ndarray  # (characters, drawers): row index into names, -1 where missing
    files: dict[str, bytes]


def load_evaluation_set(path: str | Path) -> EvaluationSet:
    """images_evaluation.zip (or its extracted folder): <alphabet>/<character>/<id>_<drawer>.png,
    under at most one top folder."""
    path = Path(path)
    files: dict[str, bytes] = {}
    if path.is_dir():
        for p in sorted(path.rglob("*.png")):
            files[p.relative_to(path).as_posix()] = p.read_bytes()
    elif path.is_file():
        try:
            with zipfile.ZipFile(path) as zf:
                files = {n: zf.read(n) for n in sorted(zf.namelist()) if n.endswith(".png")}
        except zipfile.BadZipFile:
            raise DataError(f"cannot read {path}: not a zip; give images_evaluation.zip or its "
                            "extracted folder") from None
    else:
        raise DataError(f"{path} does not exist; give images_evaluation.zip or its folder")
    cells: dict[tuple[str, str], dict[int, str]] = {}
    for name in files:
        parts = PurePosixPath(name).parts
        m = _NAME.match(parts[-1])
        if m is None or len(parts) < 3:
            continue
        cells.setdefault((parts[-3], parts[-2]), {})[int(m["drawer"])] = name
    if not cells:
        raise DataError(f"{path} has no <alphabet>/<character>/<id>_<drawer>.png images; "
                        "is it Omniglot's images_evaluation.zip?")
    alphabets = sorted({a for a, _ in cells})
    drawers = sorted({d for c in cells.values() for d in c})
    keys = sorted(cells)
    names = [cells[k][d] for k in keys for d in drawers if d in cells[k]]
    row = {n: i for i, n in enumerate(names)}
    image = np.full((len(keys), len(drawers)), -1, dtype=np.int64)
    for i, k in enumerate(keys):
        for j, d in enumerate(drawers):
            if d in cells[k]:
                image[i, j] = row[cells[k][d]]
    characters = [(alphabets.index(a), c) for a, c in keys]
    return EvaluationSet(names, alphabets, characters, image, files)


def draw_episodes(es: EvaluationSet, episodes: int, ways: int = 20,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """-> (support, query), each (episodes, ways) row indices: episode e's query i is a drawing
    of the character of support i, by another drawer. The alphabet is drawn uniformly among
    those with at least `ways` characters, then `ways` of its characters and two drawers who
    drew them all."""
    rng = np.random.default_rng(seed)
    alpha = np.array([a for a, _ in es.characters])
    eligible = [a for a in range(len(es.alphabets)) if (alpha == a).sum() >= ways]
    if not eligible:
        raise DataError(f"no alphabet has {ways} characters; use fewer ways")
    support = np.empty((episodes, ways), dtype=np.int64)
    query = np.empty((episodes, ways), dtype=np.int64)
    for e in range(episodes):
        chars = rng.choice(np.flatnonzero(alpha == rng.choice(eligible)), ways, replace=False)
        both = np.flatnonzero((es.image[chars] >= 0).all(0))
        if len(both) < 2:
            raise DataError("fewer than two drawers drew all the characters of an episode")
        d1, d2 = rng.choice(both, 2, replace=False)
        support[e], query[e] = es.image[chars, d1], es.image[chars, d2]
    return support, query


def episode_accuracy(emb: torch.Tensor, support: np.ndarray, query: np.ndarray,
                     score_matrix) -> np.ndarray:
    """Accuracy of each episode: every query answered by its most similar support image."""
    out = np.empty(len(support))
    with torch.no_grad():
        for e in range(len(support)):
            sim = score_matrix(emb[query[e]], emb[support[e]]).numpy()
            out[e] = (sim.argmax(1) == np.arange(support.shape[1])).mean()
    return out


def score_episodes(model, path: str | Path, episodes: int = 1000, ways: int = 20,
                   seed: int = 0, views: int | None = None) -> dict:
    """Mean accuracy over `episodes` drawn episodes, its standard error over episodes, the
    accuracy per alphabet and per episode (the same episodes for every model with one seed:
    compare two models episode by episode). views as in score_official_runs (None: the
    model's own)."""
    return score_episodes_views(model, path, [views], episodes, ways, seed)[0]


def score_episodes_views(model, path: str | Path, views: list[int | None],
                         episodes: int = 1000, ways: int = 20, seed: int = 0) -> list[dict]:
    """score_episodes for each entry of `views`, the set read and decoded once."""
    es = load_evaluation_set(path)
    x = torch.cat([model.preprocessing.load_input(es.files[n]) for n in es.names])
    support, query = draw_episodes(es, episodes, ways, seed)
    alpha = np.array([a for a, _ in es.characters])
    char_of = np.full(len(es.names), -1)
    for i, rows in enumerate(es.image):
        char_of[rows[rows >= 0]] = i
    episode_alpha = alpha[char_of[support[:, 0]]]
    out = []
    for v in views:
        emb = model.embed_tensor(x, views=v)
        acc = episode_accuracy(emb, support, query, model.net.score_matrix)
        per_alphabet = {es.alphabets[a]: float(acc[episode_alpha == a].mean())
                        for a in np.unique(episode_alpha)}
        out.append({
            "accuracy": float(acc.mean()),
            "stderr": float(acc.std(ddof=1) / np.sqrt(len(acc))) if len(acc) > 1 else 0.0,
            "episodes": episodes, "ways": ways, "trials": episodes * ways, "seed": seed,
            "views": model.views if v is None else v, "per_alphabet": per_alphabet,
            "per_episode": acc.round(4).tolist()})
    return out
