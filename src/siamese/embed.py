"""Embed a file, a folder or a vector table with a trained run, writing .npy + an index CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes
from .data.audio import is_audio_name
from .data.images import is_image_name
from .errors import DataError


def list_inputs(path: Path, audio: bool = False) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        accept = is_audio_name if audio else is_image_name
        files = sorted(p for p in path.rglob("*") if p.is_file() and accept(p.name))
        if files:
            return files
        what = "audio files (wav, flac, ogg)" if audio else "image files (png, jpg, ...)"
        raise DataError(f"no {what} found in {path}")
    raise DataError(f"{path} does not exist; give an image, a folder or a .csv/.npy")


def embed_path(run: str | Path, inputs: str | Path, out: str | Path,
               device: str = "cpu", runtime: str = "torch") -> tuple[int, int]:
    from .data.table import load_table
    from .model import Model

    model = Model.load(run, device=device, runtime=runtime)
    inputs, out = Path(inputs), Path(out)
    if model.preprocessing.kind == "vector":
        if inputs.suffix.lower() not in (".csv", ".npy") or not inputs.is_file():
            raise DataError(f"{inputs}: this model embeds vectors; give a .csv or .npy file")
        label_column = model.card["config"]["data"]["label_column"]
        data = load_table(inputs, label_column)
        emb = model.embed_tensor(model.preprocessing.normalize(data.x)).numpy()
        rows = [(s, data.classes[y]) for s, y in zip(data.sources, data.y, strict=True)]
    else:
        files = list_inputs(inputs, audio=model.preprocessing.kind == "audio")
        root = inputs if inputs.is_dir() else inputs.parent
        emb = np.concatenate([model.embed(files[i:i + 256]) for i in range(0, len(files), 256)])
        rows = [(str(f), f.parent.relative_to(root).as_posix() if f.parent != root else "")
                for f in files]
    # Both files are made in memory first, so that a failure writes neither. File names are
    # written as their exact bytes (a non-UTF-8 name stays a usable path).
    buf = io.BytesIO()
    np.save(buf, emb.astype(np.float32))
    text = io.StringIO()
    w = csv.writer(text)
    w.writerow(["row", "source", "label"])
    for i, (s, label) in enumerate(rows):
        w.writerow([i, s, label])
    index_bytes = text.getvalue().encode("utf-8", "surrogateescape")
    atomic_write_bytes(out, buf.getvalue())
    atomic_write_bytes(out.with_suffix(".csv"), index_bytes)
    return emb.shape[0], emb.shape[1]
