"""The gallery file's format: its name, the index types and search parameters it records,
the checksums of its tensors, and the errors for a file that is damaged or unreadable."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open

from ..errors import ArtifactError

FORMAT = "siamese-gallery"
INDEX_TYPES = ("flat", "hnsw", "ivf", "ivfpq")
PARAMS = ("hnsw_m", "ef_search", "nprobe", "rerank")


def _sha(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()


def damaged(path: Path, what: str) -> ArtifactError:
    return ArtifactError(f"gallery {path} is damaged ({what}); rebuild it from its stored "
                         "images with 'siamese gallery reindex RUN', or delete the file")


def open_safetensors(path: Path):
    try:
        return safe_open(str(path), "pt")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ArtifactError(f"gallery {path} is unreadable ({str(e)[:60]}); it cannot be "
                            "repaired: delete it and enroll again") from None
