"""`Gallery`: enrolled embeddings with ids, labels and sources, searched with FAISS.

The embeddings (float32, (N, D)) are the source of truth; the FAISS index is derived from them.
Exact search (IndexFlat) by default; HNSW or IVF for large galleries. Similarities are the
model's own: for unit-length embeddings the inner product ip gives (1 + ip) / 2, which equals the
model's score for both cosine and squared-L2 scorers; otherwise squared L2 d gives 1 / (1 + d).

Saved as ONE safetensors file (embeddings + serialised index as tensors, ids/labels/sources as
JSON metadata), written atomically: a process killed during an enroll keeps the previous gallery.
"""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..atomic import atomic_write
from ..errors import ArtifactError, ConfigError

FORMAT = "siamese-gallery"
INDEX_TYPES = ("flat", "hnsw", "ivf")


class Gallery:
    def __init__(self, dim: int, metric: str = "ip", index_type: str = "flat",
                 fingerprint: str = "", hnsw_m: int = 32, ef_search: int = 64,
                 nprobe: int = 16) -> None:
        if index_type not in INDEX_TYPES:
            raise ConfigError(f"unknown index type '{index_type}'; choose one of: "
                              f"{', '.join(INDEX_TYPES)}")
        if metric not in ("ip", "l2"):
            raise ConfigError(f"unknown gallery metric '{metric}'; choose ip or l2")
        self.dim, self.metric, self.index_type = dim, metric, index_type
        self.fingerprint = fingerprint
        self.hnsw_m, self.ef_search, self.nprobe = hnsw_m, ef_search, nprobe
        self.embeddings = np.zeros((0, dim), np.float32)
        self.ids: list[str] = []
        self.labels: list[str] = []
        self.sources: list[str] = []
        self.next_id = 1
        self._index: faiss.Index | None = None

    def __len__(self) -> int:
        return len(self.ids)

    # -- building ---------------------------------------------------------------------------
    def _faiss_metric(self) -> int:
        return faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2

    def build_index(self) -> faiss.Index:
        """(Re)build the FAISS index from the stored embeddings."""
        x = np.ascontiguousarray(self.embeddings, dtype=np.float32)
        if self.index_type == "hnsw":
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, self._faiss_metric())
            index.hnsw.efConstruction = 64
            index.hnsw.efSearch = self.ef_search
        elif self.index_type == "ivf" and len(x) >= 1000:
            nlist = int(min(4 * np.sqrt(len(x)), len(x) // 39))
            quantizer = faiss.IndexFlat(self.dim, self._faiss_metric())
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, self._faiss_metric())
            index.train(x)
            index.nprobe = self.nprobe
        else:  # exact (also IVF on galleries too small to train it)
            index = faiss.IndexFlat(self.dim, self._faiss_metric())
        if len(x):
            index.add(x)
        self._index = index
        return index

    @property
    def index(self) -> faiss.Index:
        return self._index if self._index is not None else self.build_index()

    def add(self, embeddings: np.ndarray, labels: list[str], sources: list[str] | None = None,
            ids: list[str] | None = None) -> list[str]:
        """Enroll (N, D) embeddings; returns their ids (generated unless given)."""
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(-1, self.dim)
        n = len(embeddings)
        sources = sources if sources is not None else [""] * n
        if ids is None:
            ids = [f"g{self.next_id + i:06d}" for i in range(n)]
            self.next_id += n
        taken = set(self.ids)
        clash = [i for i in ids if i in taken]
        if clash or len(set(ids)) != len(ids):
            raise ConfigError(f"gallery id {clash[0] if clash else ids[0]} is already used; "
                              "ids must be unique")
        if not (len(labels) == len(sources) == len(ids) == n):
            raise ValueError("embeddings, labels, sources and ids differ in length")
        self.embeddings = np.concatenate([self.embeddings, embeddings])
        self.ids += list(ids)
        self.labels += [str(lab) for lab in labels]
        self.sources += [str(s) for s in sources]
        if self._index is not None and self.index_type != "ivf":
            self._index.add(embeddings)  # flat and HNSW grow in place
        else:
            self._index = None
        return list(ids)

    def remove(self, ids: list[str]) -> int:
        """Remove items by id; unknown ids are an error (nothing is removed then)."""
        pos = {i: p for p, i in enumerate(self.ids)}
        missing = [i for i in ids if i not in pos]
        if missing:
            raise ConfigError(f"no gallery item with id {missing[0]}; see 'siamese gallery list'")
        keep = np.ones(len(self.ids), bool)
        keep[[pos[i] for i in ids]] = False
        self.embeddings = self.embeddings[keep]
        for name in ("ids", "labels", "sources"):
            setattr(self, name, [v for v, k in zip(getattr(self, name), keep, strict=True) if k])
        self._index = None  # HNSW cannot remove: rebuild on next search
        return int((~keep).sum())

    # -- searching --------------------------------------------------------------------------
    def to_similarity(self, raw: np.ndarray) -> np.ndarray:
        return (1 + raw) / 2 if self.metric == "ip" else 1 / (1 + np.maximum(raw, 0))

    def search(self, queries: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """(M, D) queries -> (similarities (M, k'), positions (M, k')), best first; k' = min(k, N)
        """
        k = min(k, len(self))
        q = np.ascontiguousarray(np.asarray(queries, np.float32).reshape(-1, self.dim))
        if k == 0:
            return np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64)
        raw, pos = self.index.search(q, k)
        return self.to_similarity(raw), pos

    def prototypes(self) -> tuple[list[str], np.ndarray]:
        """One prototype per label: the mean embedding (re-normalised for the ip metric)."""
        labels = sorted(set(self.labels))
        lab = np.array(self.labels)
        protos = np.stack([self.embeddings[lab == c].mean(0) for c in labels])
        if self.metric == "ip":
            protos /= np.linalg.norm(protos, axis=1, keepdims=True).clip(1e-12)
        return labels, protos.astype(np.float32)

    # -- persistence ------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        tensors = {"embeddings": torch.from_numpy(np.ascontiguousarray(self.embeddings))}
        if self.index_type != "flat" and len(self):
            tensors["index"] = torch.from_numpy(faiss.serialize_index(self.index).copy())
        meta = {
            "format": FORMAT, "version": "1", "dim": str(self.dim), "metric": self.metric,
            "index_type": self.index_type, "fingerprint": self.fingerprint,
            "next_id": str(self.next_id), "ids": json.dumps(self.ids),
            "labels": json.dumps(self.labels), "sources": json.dumps(self.sources),
            "params": json.dumps({"hnsw_m": self.hnsw_m, "ef_search": self.ef_search,
                                  "nprobe": self.nprobe}),
        }
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))

    @classmethod
    def load(cls, path: Path, fingerprint: str | None = None) -> Gallery:
        try:
            with safe_open(str(path), "pt") as f:
                meta = f.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            raise ArtifactError(f"gallery {path} is unreadable ({str(e)[:60]}); rebuild it "
                                "with 'siamese gallery reindex' or remove it") from None
        if meta.get("format") != FORMAT:
            raise ArtifactError(f"{path} is not a siamese gallery")
        if fingerprint is not None and meta["fingerprint"] != fingerprint:
            raise ArtifactError(
                f"gallery {path} was built with other model weights; run 'siamese gallery "
                "reindex RUN' to re-embed its sources with these weights"
            )
        g = cls(int(meta["dim"]), meta["metric"], meta["index_type"], meta["fingerprint"],
                **json.loads(meta["params"]))
        g.embeddings = tensors["embeddings"].numpy()
        g.ids, g.labels = json.loads(meta["ids"]), json.loads(meta["labels"])
        g.sources, g.next_id = json.loads(meta["sources"]), int(meta["next_id"])
        if "index" in tensors:
            g._index = faiss.deserialize_index(tensors["index"].numpy())
            if g.index_type == "hnsw":
                g._index.hnsw.efSearch = g.ef_search
            elif g.index_type == "ivf" and hasattr(g._index, "nprobe"):
                g._index.nprobe = g.nprobe
        return g
