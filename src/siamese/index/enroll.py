"""A model's gallery: enroll files, search, identify (open-set) and classify by prototypes.

The gallery lives in the run folder (see `store.py`) and belongs to the weights that built it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..embed import list_inputs
from ..errors import ArtifactError, ConfigError, DataError
from ..names import display
from .gallery import Gallery
from .gallery_file import read_items, stored_params
from .store import GALLERY_FILE, GalleryStore

UNKNOWN = "unknown"
CHUNK = 256


def _run(model) -> Path:
    if model.run is None:
        raise ArtifactError("this model has no run folder to keep a gallery in")
    return Path(model.run)


def gallery_path(model) -> Path:
    return _run(model) / GALLERY_FILE


def open_store(model, index_type: str = "flat") -> GalleryStore:
    """The run's gallery store (the gallery is created empty, saved at the first enroll)."""
    return GalleryStore(_run(model), model, index_type)


def open_gallery(model, index_type: str = "flat") -> Gallery:
    """The run's gallery, or a new empty one, for reading."""
    return GalleryStore(_run(model), model, index_type, sweep=False).gallery


def labeled_files(path: Path, label: str | None = None,
                  audio: bool = False) -> tuple[list[Path], list[str]]:
    """A file (label required), a folder of class folders (label = folder), or a flat folder of
    images (or audio files: `audio`) (label required)."""
    files = list_inputs(path, audio)
    if path.is_dir() and label is None:
        labels = [display(f.parent.relative_to(path).as_posix()) for f in files]
    else:
        labels = [label] * len(files)
    if any(lab in (None, ".", "") for lab in labels):
        raise DataError(f"no label for the images in {display(path)}: put them in "
                        f"{display(path)}/<label>/ folders or pass --label")
    return files, labels  # type: ignore[return-value]


def embed_files(model, files: list[Path]) -> np.ndarray:
    return np.concatenate([model.embed(files[i:i + CHUNK]) for i in range(0, len(files), CHUNK)])


def stored_suffix(model, f: Path) -> str:
    """The suffix of the gallery's copy: the image's real format, or the audio file's own."""
    from ..data.audio import AUDIO_SUFFIXES
    from ..data.images import FORMAT_SUFFIX, image_format

    if model.preprocessing.kind == "audio":
        if f.suffix.lower() not in AUDIO_SUFFIXES:
            raise DataError(f"{display(f)} is not a WAV, FLAC or OGG file")
        return f.suffix.lower()
    return FORMAT_SUFFIX[image_format(f, str(f))[0]]


def enroll(model, store: GalleryStore, files: list[Path], labels: list[str],
           root: Path | None = None) -> list[str]:
    """Embed image (or audio) files and enroll them with copies owned by the gallery. Sources
    are shown relative to `root`'s parent (what was enrolled), never as absolute server
    paths."""
    suffixes = [stored_suffix(model, f) for f in files]
    base = (root or files[0]).resolve().parent if files else Path(".")
    sources = []
    for f in files:
        try:
            sources.append(display(f.resolve().relative_to(base)))
        except ValueError:
            sources.append(display(f.name))
    return store.add(embed_files(model, files), labels, sources, list(files), suffixes)


def _rerank_with_head(model, q: np.ndarray, gallery: Gallery, pos: np.ndarray) -> tuple:
    """The pair head is no metric: FAISS proposes candidates, the head scores them."""
    valid = pos >= 0
    g = torch.from_numpy(gallery.embeddings[pos.clip(0).ravel()])
    qq = torch.from_numpy(np.repeat(q, pos.shape[1], axis=0))
    sims = np.where(valid, model.score_embeddings(qq, g).reshape(pos.shape), -np.inf)
    order = np.argsort(-sims, axis=1)
    return np.take_along_axis(sims, order, 1), np.take_along_axis(pos, order, 1)


def search_embeddings(model, gallery: Gallery, q: np.ndarray, k: int = 5) -> list[list[dict]]:
    """(M, D) query embeddings -> for each, the k most similar gallery items."""
    if k < 1:
        raise ConfigError(f"k = {k}: ask for at least 1 match")
    if model.net.head is not None:
        sims, pos = gallery.search(q, max(10 * k, 50))
        sims, pos = _rerank_with_head(model, q, gallery, pos)
        sims, pos = sims[:, :k], pos[:, :k]
    else:
        sims, pos = gallery.search(q, k)
    return [[{"id": gallery.ids[p], "label": gallery.labels[p], "source": gallery.sources[p],
              "similarity": float(s)} for s, p in zip(srow, prow, strict=True) if p >= 0]
            for srow, prow in zip(sims, pos, strict=True)]


def identify_embeddings(model, gallery: Gallery, q: np.ndarray, k: int = 10) -> list[dict]:
    """Open-set identification: the label of the most similar item, or 'unknown' when even the
    best similarity is below the run's calibrated threshold."""
    out = []
    for matches in search_embeddings(model, gallery, q, k):
        best = matches[0] if matches else None
        known = best is not None and best["similarity"] >= model.threshold
        out.append({"label": best["label"] if known else UNKNOWN,
                    "similarity": best["similarity"] if best else 0.0,
                    "id": best["id"] if known else None,
                    "threshold": model.threshold, "matches": matches[:5]})
    return out


def classify_embeddings(model, gallery: Gallery, q: np.ndarray) -> list[dict]:
    """Closed-set classification by the nearest class prototype (mean embedding per label)."""
    if len(gallery) == 0:
        raise DataError("the gallery is empty; enroll items first with 'siamese gallery add'")
    labels, protos = gallery.prototypes()
    with torch.no_grad():
        sims = model.net.score_matrix(torch.from_numpy(q), torch.from_numpy(protos)).numpy()
    best = sims.argmax(1)
    return [{"label": labels[b], "similarity": float(sims[i, b])} for i, b in enumerate(best)]


def reindex_run(model, index_type: str | None = None) -> Gallery:
    """Rebuild the run's gallery from its stored images with the model's weights. Reads only
    the item list, so it also repairs a gallery whose embeddings or index are damaged, or that
    was built with other weights. Galleries of format 1 (sources outside the run) get copies."""
    path = gallery_path(model)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist; nothing to reindex")
    store = GalleryStore(_run(model), model, read=False)
    # Under the lock throughout: no enroll can land between reading the items and saving, and
    # no other process can sweep the copies written here before the save names them.
    with store.locked():
        meta, items = read_items(path)
        inputs = [store.uploads / f if f else Path(s)
                  for f, s in zip(items["files"], items["sources"], strict=True)]
        missing = [p for p in inputs if not p.is_file()]
        if missing:
            raise DataError(f"cannot reindex: image {display(missing[0])} is missing; restore "
                            "it, or delete the gallery and enroll again")
        net = model.net
        fresh = Gallery(net.dim, "ip" if net.normalize else "l2",
                        index_type or meta.get("index_type", "flat"), model.fingerprint,
                        **(stored_params(meta) or {}))  # defaults where damaged
        fresh.next_id = int(meta["next_id"]) if str(meta.get("next_id", "")).isdigit() else 1
        written: list[Path] = []
        try:
            files = [f or store.write_copy(i, p, stored_suffix(model, p), written)
                     for i, f, p in zip(items["ids"], items["files"], inputs, strict=True)]
            if inputs:
                fresh.add(embed_files(model, inputs), items["labels"], items["sources"],
                          items["ids"], files)
            store.replace(fresh)
        except BaseException:
            for p in written:
                p.unlink(missing_ok=True)
            raise
    return fresh
