"""Reading a gallery file: every field is checked before anything is built from it.

A damaged file (bit flips, a missing or extra key, a changed dimension, garbage index bytes, more
vectors than ids, a truncated file) gives one `ArtifactError` that says how to recover; it never
crashes and never loads silently. `read_items` reads only the item list, for `reindex`, so that a
gallery whose embeddings or index are damaged can be rebuilt from its stored images.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from ..errors import ArtifactError
from ..names import display
from .gallery_format import FORMAT, INDEX_TYPES, PARAMS, _sha, damaged, open_safetensors

if TYPE_CHECKING:
    from .gallery import Gallery

ITEM_KEYS = ("ids", "labels", "sources", "files")


def _meta(f, path: Path) -> dict:
    meta = f.metadata() or {}
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not a siamese gallery; move it away or delete it")
    if meta.get("version") not in ("1", "2"):
        raise ArtifactError(f"gallery {path} has format version {meta.get('version')}; this "
                            "siamese reads versions 1 and 2: upgrade siamese")
    return meta


def _checked_tensors(f, path: Path, meta: dict, names: tuple[str, ...]) -> dict:
    try:
        sums = json.loads(meta["sha256"])
        tensors = {k: f.get_tensor(k) for k in names}
    except Exception as e:  # noqa: BLE001 - any failure here means a damaged file
        raise damaged(path, f"{type(e).__name__} reading its tensors") from None
    for k, t in tensors.items():
        if not isinstance(sums, dict) or sums.get(k) != _sha(t):
            raise damaged(path, f"checksum of '{k}' does not match")
    return tensors


def _items(raw: dict, n: int | None, path: Path) -> dict:
    if not isinstance(raw, dict) or set(raw) != set(ITEM_KEYS):
        raise damaged(path, "its item list is not {ids, labels, sources, files}")
    for k in ITEM_KEYS:
        v = raw[k]
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise damaged(path, f"'{k}' is not a list of strings")
        if len(v) != (n if n is not None else len(raw["ids"])):
            raise damaged(path, f"{len(v)} {k} for {n} embeddings")
    if len(set(raw["ids"])) != len(raw["ids"]):
        raise damaged(path, "two items share an id")
    return raw


def read_items(path: Path) -> tuple[dict, dict]:
    """(header metadata, item list) without reading the embeddings or the index."""
    with open_safetensors(path) as f:
        meta = _meta(f, path)
        if meta["version"] == "1":
            try:
                raw = {k: json.loads(meta[k]) for k in ("ids", "labels", "sources")}
            except Exception:  # noqa: BLE001
                raise damaged(path, "its item list is not JSON") from None
            raw["files"] = [""] * len(raw.get("ids", []))
            raw = _items(raw, None, path)
            for k in ("labels", "sources"):  # format 1 kept non-UTF-8 names as they were
                raw[k] = [display(v) for v in raw[k]]
            return meta, raw
        if "items" not in set(f.keys()):
            raise damaged(path, "it has no item list")
        items = _checked_tensors(f, path, meta, ("items",))["items"]
    try:
        raw = json.loads(items.numpy().tobytes())
    except Exception:  # noqa: BLE001
        raise damaged(path, "its item list is not JSON") from None
    return meta, _items(raw, None, path)


def stored_params(meta: dict) -> dict | None:
    """The index parameters in a gallery's header, or None where they are missing or invalid."""
    try:
        params = json.loads(meta["params"])
    except Exception:  # noqa: BLE001
        return None
    ok = (isinstance(params, dict) and set(params) <= set(PARAMS)
          and all(type(v) is int and 1 <= v <= 100_000 for v in params.values()))
    return params if ok else None


def _int(meta: dict, key: str, path: Path, low: int = 0) -> int:
    try:
        v = int(meta[key])
    except (KeyError, ValueError, TypeError):
        raise damaged(path, f"'{key}' is missing or not a number") from None
    if v < low:
        raise damaged(path, f"'{key}' is {v}")
    return v


def read_gallery(cls: type[Gallery], path: Path, fingerprint: str | None) -> Gallery:
    meta, raw = read_items(path)
    if fingerprint is not None and meta.get("fingerprint") != fingerprint:
        raise ArtifactError(
            f"gallery {path} was built with other model weights; run 'siamese gallery "
            "reindex RUN' to re-embed its stored images with these weights")
    dim, next_id = _int(meta, "dim", path, 1), _int(meta, "next_id", path, 1)
    params = stored_params(meta)
    valid = (params is not None and meta.get("metric") in ("ip", "l2")
             and meta.get("index_type") in INDEX_TYPES)
    if not valid:
        raise damaged(path, "its parameters are missing or invalid")
    g = cls(dim, meta["metric"], meta["index_type"], meta.get("fingerprint", ""), **params)
    with open_safetensors(path) as f:
        keys = set(f.keys())
        want = {"embeddings"} if meta["version"] == "1" else {"embeddings", "items"}
        if meta["version"] == "1" and "index" in keys:
            want.add("index")
        elif "index" in keys or "slots" in keys:
            want |= {"index", "slots"}
        if keys != want:
            raise damaged(path, f"it holds tensors {sorted(keys)}, expected {sorted(want)}")
        names = tuple(sorted(want - {"items"}))
        if meta["version"] == "1":
            try:
                tensors = {k: f.get_tensor(k) for k in names}
            except Exception:  # noqa: BLE001
                raise damaged(path, "its tensors cannot be read") from None
        else:
            tensors = _checked_tensors(f, path, meta, names)
    emb = tensors["embeddings"].numpy()
    n = len(raw["ids"])
    if emb.dtype != np.float32 or emb.shape != (n, dim):
        raise damaged(path, f"embeddings of shape {tuple(emb.shape)} for {n} items of "
                            f"dimension {dim}")
    if not np.isfinite(emb).all():
        raise damaged(path, "an embedding holds nan or inf")
    g.embeddings, g.next_id = emb, next_id
    g.ids, g.labels, g.sources, g.files = (raw[k] for k in ITEM_KEYS)
    if "index" in tensors:
        _install(g, tensors, path)
    return g


def _install(g: Gallery, tensors: dict, path: Path) -> None:
    try:
        index = faiss.deserialize_index(np.ascontiguousarray(tensors["index"].numpy()))
    except Exception:  # noqa: BLE001
        raise damaged(path, "its index cannot be read") from None
    slots = tensors["slots"].numpy().astype(np.int64) if "slots" in tensors else \
        np.arange(index.ntotal, dtype=np.int64)
    live = slots[slots >= 0]
    ok = (index.d == g.dim and index.ntotal == len(slots) and slots.min(initial=-1) >= -1
          and len(live) == len(g) and np.array_equal(np.sort(live), np.arange(len(g))))
    if not ok:
        raise damaged(path, f"its index holds {index.ntotal} vectors of dimension {index.d} "
                            f"for {len(g)} items")
    g._index, g._slots = index, slots
