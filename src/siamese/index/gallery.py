"""`Gallery`: enrolled embeddings with ids, labels and sources, searched with FAISS.

The embeddings (float32, (N, D)) are the source of truth; the FAISS index is derived from them.
Exact search (IndexFlat) by default; HNSW or IVF for large galleries; IVF-PQ for galleries
beyond memory: product-quantised codes of at most 32 bytes a vector, the best candidates
re-ranked exactly against the stored embeddings. Similarities are the
model's own: for unit-length embeddings the inner product ip gives (1 + ip) / 2, which equals the
model's score for both cosine and squared-L2 scorers; otherwise squared L2 d gives 1 / (1 + d).

Removal marks the item's index slot deleted (`slots[s] = -1`, skipped at search time by a FAISS
ID selector) instead of rebuilding the index: HNSW cannot remove, and rebuilding it took 68 s at
1M items. Once a quarter of the slots are dead, `needs_rebuild` says so; the caller rebuilds
(the service does it on a background thread).

Saved as ONE safetensors file, written atomically: `embeddings`, `items` (ids, labels, sources and
owned file names as JSON bytes, not in the header, which safetensors caps at 100 MB), `index` and
`slots` (HNSW/IVF only). The header holds a sha256 of every tensor; `load` checks them and every
field, so a damaged file is one `ArtifactError`, never a crash or a silent wrong answer.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import faiss
import numpy as np
import torch
from safetensors.torch import save_file

from ..atomic import atomic_write
from ..errors import ConfigError, DataError
from ..names import display
from .gallery_file import read_gallery
from .gallery_format import FORMAT, INDEX_TYPES, PARAMS, _sha

VERSION = "2"
IVFPQ_MIN_ITEMS = 10_000  # below this a compressed index saves nothing worth its training
IVFPQ_MAX_LISTS = 4096  # k-means over more lists takes minutes on 2 cores
MAX_LABEL_CHARS = 256
MAX_SOURCE_CHARS = 1024
REBUILD_FRACTION = 0.25  # rebuild the index once this share of its slots is deleted
_ID = re.compile(r"g(\d+)")


class Gallery:
    def __init__(self, dim: int, metric: str = "ip", index_type: str = "flat",
                 fingerprint: str = "", hnsw_m: int = 32, ef_search: int = 64,
                 nprobe: int = 16, rerank: int = 1024) -> None:
        if index_type not in INDEX_TYPES:
            raise ConfigError(f"unknown index type '{index_type}'; choose one of: "
                              f"{', '.join(INDEX_TYPES)}")
        if metric not in ("ip", "l2"):
            raise ConfigError(f"unknown gallery metric '{metric}'; choose ip or l2")
        self.dim, self.metric, self.index_type = dim, metric, index_type
        self.fingerprint = fingerprint
        self.hnsw_m, self.ef_search, self.nprobe = hnsw_m, ef_search, nprobe
        self.rerank = rerank  # ivfpq: candidates re-ranked exactly
        self.embeddings = np.zeros((0, dim), np.float32)
        self.ids: list[str] = []
        self.labels: list[str] = []
        self.sources: list[str] = []  # what was enrolled, for people (relative, display-safe)
        self.files: list[str] = []  # the gallery's own copy (a name in the uploads folder) or ""
        self.next_id = 1
        self.version = 0  # counts changes, so a background rebuild knows if it is stale
        self._index: faiss.Index | None = None
        self._slots = np.zeros(0, np.int64)  # index slot -> position, -1 = deleted
        self._cached_params: tuple | None = None

    def __len__(self) -> int:
        return len(self.ids)

    # -- building ---------------------------------------------------------------------------
    def _faiss_metric(self) -> int:
        return faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2

    def new_index(self, x: np.ndarray) -> faiss.Index:
        """A FAISS index over (N, D) embeddings, slot i = row i."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.index_type == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, self._faiss_metric())
            index.hnsw.efConstruction = 64
        elif self.index_type == "ivf" and len(x) >= 1000:
            nlist = int(min(4 * np.sqrt(len(x)), len(x) // 39))
            quantizer = faiss.IndexFlat(self.dim, self._faiss_metric())
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss_metric())
            index.train(x)
        elif self.index_type == "ivfpq" and len(x) >= IVFPQ_MIN_ITEMS:
            nlist = int(min(4 * np.sqrt(len(x)), len(x) // 39, IVFPQ_MAX_LISTS))
            m = next(m for m in (32, 16, 8, 4, 2, 1) if self.dim % m == 0)  # m bytes a code
            quantizer = faiss.IndexFlat(self.dim, self._faiss_metric())
            index = faiss.IndexIVFPQ(quantizer, self.dim, nlist, m, 8, self._faiss_metric())
            sample = x[np.random.default_rng(0).choice(len(x), min(len(x), 64 * nlist),
                                                       replace=False)]
            index.train(sample)
        else:  # exact (also IVF on galleries too small to train it)
            index = faiss.IndexFlat(self.dim, self._faiss_metric())
        if len(x):
            index.add(x)
        return index

    def build_index(self) -> faiss.Index:
        """(Re)build the FAISS index from the stored embeddings, with no deleted slots."""
        self.install_index(self.new_index(self.embeddings))
        return self._index

    def install_index(self, index: faiss.Index) -> None:
        """Use an index built by `new_index` over the current embeddings."""
        self._index, self._slots = index, np.arange(len(self), dtype=np.int64)

    @property
    def index(self) -> faiss.Index:
        return self._index if self._index is not None else self.build_index()

    @property
    def deleted(self) -> int:
        return int((self._slots < 0).sum()) if self._index is not None else 0

    @property
    def needs_rebuild(self) -> bool:
        return self._index is not None and self.deleted > REBUILD_FRACTION * max(
            len(self._slots), 1)

    def reserve_ids(self, n: int) -> list[str]:
        ids = [f"g{self.next_id + i:06d}" for i in range(n)]
        self.next_id += n
        return ids

    def add(self, embeddings: np.ndarray, labels: list[str], sources: list[str] | None = None,
            ids: list[str] | None = None, files: list[str] | None = None) -> list[str]:
        """Enroll (N, D) embeddings; returns their ids (generated unless given). Everything is
        checked before anything changes."""
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(-1, self.dim)
        n = len(embeddings)
        # stored display-safe (non-UTF-8 bytes as U+FFFD), so that listing them costs nothing
        sources = [display(str(s))[:MAX_SOURCE_CHARS] for s in (sources or [""] * n)]
        files = [str(f) for f in (files or [""] * n)]
        labels = [display(str(lab)) for lab in labels]
        if not (len(labels) == len(sources) == len(files) == n) or (ids and len(ids) != n):
            raise ValueError("embeddings, labels, sources, files and ids differ in length")
        if not np.isfinite(embeddings).all():
            raise DataError("an embedding holds nan or inf; the input was not a valid sample")
        for lab in labels:
            if not lab.strip():
                raise DataError("a label is empty; give every item a name")
            if len(lab) > MAX_LABEL_CHARS:
                raise DataError(f"label '{lab[:40]}...' has {len(lab)} characters; the limit "
                                f"is {MAX_LABEL_CHARS}: give a shorter name")
        taken = set(self.ids)
        if ids is not None:
            clash = [i for i in ids if i in taken]
            if clash or len(set(ids)) != len(ids):
                raise ConfigError(f"gallery id {clash[0] if clash else ids[0]} is already used; "
                                  "ids must be unique")
        ids = list(ids) if ids is not None else self.reserve_ids(n)
        for i in ids:  # generated ids never collide with given ones later
            m = _ID.fullmatch(i)
            if m:
                self.next_id = max(self.next_id, int(m.group(1)) + 1)
        start = len(self)
        self.embeddings = np.concatenate([self.embeddings, embeddings])
        self.ids += ids
        self.labels += labels
        self.sources += sources
        self.files += files
        self.version += 1
        if self._index is not None and not (self.index_type in ("ivf", "ivfpq") and
                                            not isinstance(self._index, faiss.IndexIVF)):
            self._index.add(embeddings)  # new slots at the end
            self._slots = np.concatenate([self._slots, np.arange(start, start + n)])
        else:
            self._index = None  # an IVF still too small for its quantizer: rebuilt on demand
        return ids

    def remove(self, ids: list[str]) -> list[str]:
        """Remove items by id -> their owned file names ("" where none). Unknown ids are an
        error (nothing is removed then). The index only marks their slots deleted."""
        pos = {i: p for p, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise ConfigError(f"no gallery item with id {missing[0]}; see 'siamese gallery list'")
        keep = np.ones(len(self.ids), bool)
        keep[[pos[i] for i in ids]] = False
        gone = [f for f, k in zip(self.files, keep, strict=True) if not k]
        new_pos = np.where(keep, np.cumsum(keep) - 1, -1)
        if self._index is not None:
            self._slots = np.where(self._slots >= 0, new_pos[self._slots.clip(0)], -1)
        self.embeddings = self.embeddings[keep]
        for name in ("ids", "labels", "sources", "files"):
            setattr(self, name, [v for v, k in zip(getattr(self, name), keep, strict=True) if k])
        self.version += 1
        return gone

    # -- searching --------------------------------------------------------------------------
    def to_similarity(self, raw: np.ndarray) -> np.ndarray:
        return (1 + raw) / 2 if self.metric == "ip" else 1 / (1 + np.maximum(raw, 0))

    def _params(self):
        """Search parameters: a selector that skips deleted slots (with the gallery's efSearch /
        nprobe), or None (FAISS's plain path) when nothing is deleted. Cached per change: a
        scan of the slots costs more than an HNSW query."""
        index = self.index
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = self.ef_search
        elif isinstance(index, faiss.IndexIVF):
            index.nprobe = self.nprobe
        key = (self.version, id(index), len(self._slots), self.ef_search, self.nprobe)
        if self._cached_params is not None and self._cached_params[0] == key:
            return self._cached_params[1]
        dead = np.flatnonzero(self._slots < 0).astype(np.int64)
        p = None
        if len(dead):
            if isinstance(index, faiss.IndexHNSW):
                p = faiss.SearchParametersHNSW()
                p.efSearch = self.ef_search
            elif isinstance(index, faiss.IndexIVF):
                p = faiss.SearchParametersIVF()
                p.nprobe = self.nprobe
            else:
                p = faiss.SearchParameters()
            inner = faiss.IDSelectorBatch(dead)
            p.sel = faiss.IDSelectorNot(inner)
            p._keep = (inner, p.sel)  # FAISS holds raw pointers: keep the selectors alive
        self._cached_params = (key, p)
        return p

    def search(self, queries: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(M, D) queries -> (similarities (M, k'), positions (M, k')), best first; k' = min(k, N);
        position -1 where fewer than k' items were found."""
        if k < 1:
            raise ConfigError(f"k = {k}: ask for at least 1 match")
        k = min(k, len(self))
        q = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, self.dim))
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        if isinstance(self.index, faiss.IndexIVFPQ):
            return self._search_reranked(q, k)
        raw, slot = self.index.search(q, k, params=self._params())
        pos = np.where(slot >= 0, self._slots[slot.clip(0)], -1)
        return self.to_similarity(raw), pos

    def _search_reranked(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Compressed codes propose `rerank` candidates; the stored embeddings rank them. On
        10M clustered vectors 64 candidates found half the true top 10
        (docs/research/scaling.md)."""
        _, slot = self.index.search(q, min(max(k, self.rerank), len(self)),
                                    params=self._params())
        pos = np.where(slot >= 0, self._slots[slot.clip(0)], -1)
        cand = self.embeddings[pos.clip(0)]  # (M, C, D)
        if self.metric == "ip":
            raw = np.einsum("mcd,md->mc", cand, q)
            raw[pos < 0] = -np.inf
            order = np.argsort(-raw, axis=1)[:, :k]
        else:
            raw = ((cand - q[:, None]) ** 2).sum(-1)
            raw[pos < 0] = np.inf
            order = np.argsort(raw, axis=1)[:, :k]
        raw, pos = np.take_along_axis(raw, order, 1), np.take_along_axis(pos, order, 1)
        return self.to_similarity(np.where(pos >= 0, raw, 0)).astype(np.float32), pos

    def prototypes(self) -> tuple[list[str], np.ndarray]:
        """One prototype per label: the mean embedding (re-normalised for the ip metric)."""
        labels = sorted(set(self.labels))
        lab = np.array(self.labels)
        protos = np.stack([self.embeddings[lab == c].mean(0) for c in labels])
        if self.metric == "ip":
            protos /= np.linalg.norm(protos, axis=1, keepdims=True).clip(1e-12)
        return labels, protos.astype(np.float32)

    # -- persistence ------------------------------------------------------------------------
    def items_json(self) -> dict:
        return {"ids": self.ids, "labels": self.labels, "sources": self.sources,
                "files": self.files}

    def save(self, path: Path) -> None:
        items = json.dumps(self.items_json()).encode()  # ascii: non-UTF-8 names survive
        tensors = {"embeddings": torch.from_numpy(np.ascontiguousarray(self.embeddings)),
                   "items": torch.frombuffer(bytearray(items), dtype=torch.uint8)}
        if self.index_type != "flat" and len(self):
            tensors["index"] = torch.from_numpy(faiss.serialize_index(self.index).copy())
            tensors["slots"] = torch.from_numpy(self._slots.copy())
        meta = {
            "format": FORMAT, "version": VERSION, "dim": str(self.dim), "metric": self.metric,
            "index_type": self.index_type, "fingerprint": self.fingerprint,
            "next_id": str(self.next_id), "count": str(len(self)),
            "params": json.dumps({p: getattr(self, p) for p in PARAMS}),
            "sha256": json.dumps({k: _sha(v) for k, v in tensors.items()}),
        }
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    @classmethod
    def load(cls, path: Path, fingerprint: str | None = None) -> Gallery:
        return read_gallery(cls, Path(path), fingerprint)
