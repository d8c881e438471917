"""data.cache = "disk": every image decoded once into one file of uint8 pixels, then read back
row by row (a few microseconds an image instead of a PNG or JPEG decode).

For image sets too big for memory on machines whose cores the training already fills, where
decoding every image every epoch costs throughput. The file lives under `data.cache_dir`
(default ~/.cache/siamese), named by a hash of the files (names, sizes, modification times),
the image size and channels: a changed file makes a new one. Written to a temporary name and
renamed, so a killed run leaves no half file. Values equal the decoded images' exactly (the
decoder's float is an 8-bit value / 255).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_write
from ..errors import DataError
from .images import ZipMember
from .lazy import ImageFiles
from .loader import read_chunks


def default_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "siamese"


def _stamp(source) -> str:
    if isinstance(source, ZipMember):
        st = os.stat(source.zip_path)
        return f"{source.zip_path}:{source.name}:{source.size}:{st.st_mtime_ns}"
    st = os.stat(source)
    return f"{source}:{st.st_size}:{st.st_mtime_ns}"


def cache_key(files: ImageFiles) -> str:
    h = hashlib.sha256(f"v1 {files.channels} {files.size}\n".encode())
    for s in files.sources:
        h.update(os.fsencode(_stamp(s)) + b"\n")
    return h.hexdigest()[:24]


def decode_to_disk(files: ImageFiles, cache_dir: str | Path, workers: int = 0) -> ImageFiles:
    """`files` with a decoded copy on disk (made now unless it exists); reads use it."""
    if files.decoded is not None:
        return files
    cache_dir = Path(cache_dir) if cache_dir else default_dir()
    path = cache_dir / f"{cache_key(files)}.u8"
    row = files.channels * files.size * files.size
    if not (path.exists() and path.stat().st_size == len(files.sources) * row):
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            _write(files, path, workers)
        except OSError as e:
            raise DataError(f"cannot write the decoded-image cache {path} ({e.strerror}); free "
                            "disk space, set data.cache_dir, or use data.cache none") from None
    return files.from_decoded(str(path))


def _write(files: ImageFiles, path: Path, workers: int) -> None:
    plain = ImageFiles(files.sources, files.names, files.channels, files.size)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f, tqdm(total=len(plain), desc="decoding images once",
                                        unit="img", file=sys.stderr, disable=None,
                                        leave=False) as bar:
            for xb in read_chunks(plain, np.arange(len(plain)), workers, 1024):
                f.write(np.round(xb.numpy() * 255).astype(np.uint8).tobytes())
                bar.update(len(xb))

    atomic_write(path, write)
