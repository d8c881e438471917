"""A model's gallery: enroll files, search, identify (open-set) and classify by prototypes.

The gallery lives in the run folder (`gallery.safetensors`) and belongs to the weights that
built it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..embed import list_inputs
from ..errors import ArtifactError, DataError
from .gallery import Gallery

GALLERY_FILE = "gallery.safetensors"
UNKNOWN = "unknown"


def gallery_path(model) -> Path:
    if model.run is None:
        raise ArtifactError("this model has no run folder to keep a gallery in")
    return Path(model.run) / GALLERY_FILE


def open_gallery(model, index_type: str = "flat") -> Gallery:
    """The run's gallery, or a new empty one (saved only when something is enrolled)."""
    path = gallery_path(model)
    if path.exists():
        return Gallery.load(path, fingerprint=model.fingerprint)
    return Gallery(model.net.dim, "ip" if model.net.normalize else "l2", index_type,
                   model.fingerprint)


def save_gallery(model, gallery: Gallery) -> None:
    gallery.save(gallery_path(model))


def labeled_files(path: Path, label: str | None = None) -> tuple[list[Path], list[str]]:
    """A file (label required), a folder of class folders (label = folder), or a flat folder of
    images (label required)."""
    files = list_inputs(path)
    if path.is_dir():
        labels = [f.parent.relative_to(path).as_posix() for f in files]
        if label is not None:
            labels = [label] * len(files)
    else:
        labels = [label] * len(files)
    if any(lab in (None, ".", "") for lab in labels):
        raise DataError(f"no label for the images in {path}: put them in {path}/<label>/ "
                        "folders or pass --label")
    return files, labels  # type: ignore[return-value]


def enroll(model, gallery: Gallery, items: list, labels: list[str],
           sources: list[str] | None = None, ids: list[str] | None = None) -> list[str]:
    emb = np.concatenate([model.embed(items[i:i + 256]) for i in range(0, len(items), 256)])
    return gallery.add(emb, labels, sources, ids)


def _rerank_with_head(model, q: np.ndarray, gallery: Gallery, pos: np.ndarray) -> tuple:
    """The pair head is no metric: FAISS proposes candidates, the head scores them."""
    g = torch.from_numpy(gallery.embeddings[pos.ravel()])
    qq = torch.from_numpy(np.repeat(q, pos.shape[1], axis=0))
    sims = model.score_embeddings(qq, g).reshape(pos.shape)
    order = np.argsort(-sims, axis=1)
    return np.take_along_axis(sims, order, 1), np.take_along_axis(pos, order, 1)


def search_embeddings(model, gallery: Gallery, q: np.ndarray, k: int = 5) -> list[list[dict]]:
    """(M, D) query embeddings -> for each, the k most similar gallery items."""
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


def reindex(model, gallery: Gallery) -> Gallery:
    """Re-embed every item from its stored source with the model's weights."""
    missing = [s for s in gallery.sources if not s or not Path(s).is_file()]
    if missing:
        raise DataError(f"cannot reindex: source {missing[0] or '(none)'} is missing; "
                        "remove that item or restore the file")
    fresh = Gallery(model.net.dim, "ip" if model.net.normalize else "l2", gallery.index_type,
                    model.fingerprint, gallery.hnsw_m, gallery.ef_search, gallery.nprobe)
    fresh.next_id = gallery.next_id
    if len(gallery):
        enroll(model, fresh, [Path(s) for s in gallery.sources], gallery.labels,
               gallery.sources, gallery.ids)
    return fresh


def reindex_run(model, index_type: str | None = None) -> Gallery:
    """Rebuild the run's gallery even when it was built with other weights."""
    path = gallery_path(model)
    if not path.exists():
        raise ArtifactError(f"{path} does not exist; nothing to reindex")
    old = Gallery.load(path, fingerprint=None)
    if index_type:
        old.index_type = index_type
    fresh = reindex(model, old)
    save_gallery(model, fresh)
    return fresh
