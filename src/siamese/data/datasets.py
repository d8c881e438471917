"""Loaders: class-per-folder images (folder or .zip), CSV/NPY vectors, the bundled digits.

Every loader returns a `LabeledData`. The class of an image is the folder that holds it, relative
to the root (`photos/<class>/x.jpg`, or `<alphabet>/<character>/x.png` for Omniglot, whose first
component becomes the class's group). A single top folder shared by everything (as in most zips)
is dropped from the class names.
"""

from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..errors import DataError
from .decoded import decode_to_disk
from .images import ZipMember, image_is_grey, is_image_name, load_images, resize_arrays
from .labeled import LabeledData
from .lazy import ImageFiles
from .loader import default_workers


def load_digits_data(image_size: int) -> LabeledData:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images, real data, no download)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = resize_arrays(d.images.astype(np.float32) / 16.0, image_size)
    return LabeledData(
        x=x,
        y=d.target.astype(np.int64),
        classes=[str(c) for c in range(10)],
        sources=[f"digits:{i}" for i in range(len(d.target))],
        kind="image",
    )


def _class_of(member: str) -> str:
    return str(PurePosixPath(member).parent)


def _strip_common_top(classes: list[str]) -> list[str]:
    parts = [c.split("/") for c in classes]
    if len(parts) > 0 and all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) == 1:
        return ["/".join(p[1:]) for p in parts]
    return classes


def _image_listing(path: Path) -> tuple[list[str], list, list[str]]:
    """(member names relative to the root, sources for reading, display names)."""
    if path.is_dir():
        # os.walk and strings, not pathlib: 200,000 files are listed in about a second.
        # Hidden files and folders are skipped, symlinked folders not followed; the order is
        # that of the path components (as pathlib sorts), so runs stay comparable.
        root, rels = str(path), []
        for folder, dirs, names in os.walk(root):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            sub = os.path.relpath(folder, root)
            prefix = "" if sub == "." else sub.replace(os.sep, "/") + "/"
            rels += [prefix + n for n in names if not n.startswith(".") and is_image_name(n)
                     and os.path.isfile(os.path.join(folder, n))]
        rels.sort(key=lambda r: r.split("/"))
        files = [f"{root}/{r}" for r in rels]
        return rels, files, files
    try:
        with zipfile.ZipFile(path) as zf:
            infos = sorted(
                (i for i in zf.infolist()
                 if not i.is_dir() and is_image_name(i.filename) and "__MACOSX" not in i.filename
                 and not PurePosixPath(i.filename).name.startswith(".")),
                key=lambda i: i.filename)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(
            f"cannot read zip file {path} ({e}); check that the download is complete"
        ) from None
    # Members are read one at a time when decoded, each capped by its declared size: a zip
    # bomb cannot fill the memory.
    members = [i.filename for i in infos]
    sources = [ZipMember(path, i.filename, i.file_size) for i in infos]
    return members, sources, [f"{path}:{m}" for m in members]


def load_image_tree(path: Path, image_size: int, channels: int = 0,
                    cache: str = "memory", budget: int = 0, cache_dir: str = "") -> LabeledData:
    """Images in class folders, from a folder or a .zip. channels 0 = decide from the images.

    cache "memory": decode every image now into one tensor; "none": leave them on disk
    (`ImageFiles`, decoded when read); "disk": decoded once into a file of uint8 pixels under
    `cache_dir` and read from it; "auto": memory if the decoded tensor fits `budget` bytes,
    else none.
    """
    members, sources, names = _image_listing(path)
    if not members:
        raise DataError(
            f"no images found in {path}; expected {path}/<class>/<image>.png (or .jpg, .bmp, ...)"
        )
    class_paths = _strip_common_top([_class_of(m) for m in members])
    if any(c in (".", "") for c in class_paths):
        loose = next(n for n, c in zip(names, class_paths, strict=True) if c in (".", ""))
        raise DataError(
            f"image {loose} is not inside a class folder; put each image in {path}/<class>/"
        )
    if channels == 0:
        grey = all(image_is_grey(s, n) for s, n in zip(sources, names, strict=True))
        channels = 1 if grey else 3
    files = ImageFiles(tuple(sources), tuple(names), channels, image_size)
    if cache == "auto":
        cache = "memory" if files.nbytes <= budget else "none"
    if cache == "memory":
        x = load_images(sources, names, channels, image_size)
    elif cache == "disk":
        x = decode_to_disk(files, cache_dir, default_workers())
    else:
        x = files
    classes = sorted(set(class_paths))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in class_paths], dtype=np.int64)
    groups = [c.split("/")[0] for c in classes] if all("/" in c for c in classes) else None
    return LabeledData(x=x, y=y, classes=classes, sources=names, kind="image", groups=groups)


def _labels_to_index(raw: list[str]) -> tuple[np.ndarray, list[str]]:
    def key(c: str) -> tuple:
        try:
            return (0, float(c), c)
        except ValueError:
            return (1, 0.0, c)

    classes = sorted(set(raw), key=key)
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[c] for c in raw], dtype=np.int64), classes


def _label_text(value: object) -> str:
    f = float(value)  # type: ignore[arg-type]
    return str(int(f)) if f.is_integer() else str(f)


def _finite(a: np.ndarray, path: Path, where) -> torch.Tensor:
    """Refuse nan and inf (also numbers beyond float32's range, which become inf): they would
    train into a model that scores nothing."""
    bad = ~np.isfinite(a)
    if bad.any():
        r = int(np.flatnonzero(bad.any(axis=1))[0])
        raise DataError(f"{path} {where(r)} holds nan or inf (or a number beyond float32's "
                        "range); fix or remove that row")
    return torch.from_numpy(np.ascontiguousarray(a))


def load_csv(path: Path, label_column: str) -> LabeledData:
    """A CSV with a header row: one label column (by name), every other column numeric."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read CSV file {path} ({e}); it must be UTF-8 text") from None
    if len(rows) < 2:
        raise DataError(f"CSV file {path} has no data rows; expected a header and one row each")
    header = [h.strip() for h in rows[0]]
    if label_column not in header:
        raise DataError(
            f"CSV file {path} has no column '{label_column}' (columns: {', '.join(header[:8])}); "
            "name the label column with --label-column"
        )
    li = header.index(label_column)
    labels, feats = [], []
    for n, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise DataError(f"CSV file {path} line {n} has {len(row)} fields, header has "
                            f"{len(header)}; fix that line")
        try:
            feats.append([float(v) for i, v in enumerate(row) if i != li])
        except ValueError:
            raise DataError(
                f"CSV file {path} line {n} has a non-numeric feature; only the label column "
                "may hold text"
            ) from None
        labels.append(row[li].strip())
    y, classes = _labels_to_index(labels)
    with np.errstate(over="ignore"):  # beyond float32's range -> inf, refused by _finite
        x32 = np.array(feats, dtype=np.float32)
    x = _finite(x32, path, lambda r: f"line {r + 2}")
    sources = [f"{path}:{i + 2}" for i in range(len(y))]
    return LabeledData(x=x, y=y, classes=classes, sources=sources, kind="vector")


def load_npy(path: Path, label_column: str) -> LabeledData:
    """A 2-D .npy array; the label column is `label_column` if it is an integer, else the last."""
    try:
        a = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read NPY file {path} ({str(e)[:80]}); save it with numpy.save "
                        "as a plain numeric array") from None
    if a.ndim != 2 or a.shape[1] < 2 or not np.issubdtype(a.dtype, np.number):
        raise DataError(f"NPY file {path} has shape {a.shape} and dtype {a.dtype}; expected a "
                        "numeric (N, D+1) array whose last column is the label")
    li = int(label_column) if label_column.lstrip("-").isdigit() else a.shape[1] - 1
    if not -a.shape[1] <= li < a.shape[1]:
        raise DataError(f"NPY file {path} has {a.shape[1]} columns; label column {li} does not "
                        "exist: pass --label-column with a column index")
    _finite(a[:, [li]].astype(np.float64), path, lambda r: f"row {r} (its label)")
    y, classes = _labels_to_index([_label_text(v) for v in a[:, li]])
    with np.errstate(over="ignore"):
        x32 = np.delete(a, li, axis=1).astype(np.float32)
    x = _finite(x32, path, lambda r: f"row {r}")
    sources = [f"{path}:{i}" for i in range(len(y))]
    return LabeledData(x=x, y=y, classes=classes, sources=sources, kind="vector")


def load_dataset(path: str, image_size: int = 32, channels: int = 0,
                 label_column: str = "label", cache: str = "memory",
                 budget: int = 0, cache_dir: str = "") -> LabeledData:
    """Load any supported data set; `path` "" means the bundled digits.

    cache, budget: whether image folders are decoded into memory (see `load_image_tree`);
    vectors and the digits are always in memory."""
    if not path:
        return load_digits_data(image_size)
    p = Path(path)
    if not p.exists():
        raise DataError(f"data path {p} does not exist; give a folder, .zip, .csv or .npy file")
    suffix = p.suffix.lower()
    if p.is_dir() or suffix == ".zip":
        data = load_image_tree(p, image_size, channels, cache, budget, cache_dir)
    elif suffix == ".csv":
        data = load_csv(p, label_column)
    elif suffix == ".npy":
        data = load_npy(p, label_column)
    else:
        raise DataError(f"unsupported data file {p}; give a folder of class folders, a .zip, "
                        "a .csv or a .npy")
    if len(data.classes) < 2:
        raise DataError(f"data {p} has only {len(data.classes)} class; Siamese training needs "
                        "at least 2 classes")
    return data
