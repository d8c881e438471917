"""Large image folders for the scale-out benchmarks, made from Omniglot without copying bytes:
images_background.zip is extracted once, then each copy k is a tree of hard links
`c<k>-<alphabet>/<character>/<file>.png` (distinct names and classes, one inode per image), so
that 200,000 files cost a few seconds and no disk space.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path


def extracted(zip_path: Path, cache: Path) -> Path:
    """The zip extracted under `cache` (once); returns the folder holding the alphabets."""
    done = cache / ".extracted"
    if not done.exists():
        with zipfile.ZipFile(zip_path) as zf:
            zf.extractall(cache)
        done.touch()
    tops = [p for p in cache.iterdir() if p.is_dir()]
    return tops[0] if len(tops) == 1 else cache


def image_tree(source: Path, out: Path, n_files: int) -> Path:
    """`out` holding exactly n_files images: hard links to the images under `source` (as
    <alphabet>/<character>/<file>), copy after copy. Reused if already complete."""
    marker = out / f".complete-{n_files}"
    if marker.exists():
        return out
    files = sorted(p.relative_to(source) for p in source.rglob("*.png"))
    made, k = 0, 0
    while made < n_files:
        for rel in files:
            if made == n_files:
                break
            alphabet, rest = rel.parts[0], Path(*rel.parts[1:])
            dst = out / f"c{k}-{alphabet}" / rest
            dst.parent.mkdir(parents=True, exist_ok=True)
            if not dst.exists():
                os.link(source / rel, dst)
            made += 1
        k += 1
    marker.touch()
    return out
