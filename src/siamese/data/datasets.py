"""Loaders: class-per-folder images (folder or .zip), CSV/NPY vectors, the bundled digits.

Every loader returns a `LabeledData`. The class of an image is the folder that holds it, relative
to the root (`photos/<class>/x.jpg`, or `<alphabet>/<character>/x.png` for Omniglot, whose first
component becomes the class's group). A single top folder shared by everything (as in most zips)
is dropped from the class names.
"""

from __future__ import annotations

import os
import re
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import ConfigError, DataError
from .audio import is_audio_name, load_waveforms
from .decoded import decode_to_disk
from .images import ZipMember, image_is_grey, is_image_name, load_images, resize_arrays
from .labeled import LabeledData
from .lazy import ImageFiles
from .loader import default_workers
from .roots import join_roots
from .table import load_table


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


def _walk(path: Path, accept) -> list[str]:
    """Files under `path` whose name `accept`s, relative to it, sorted by path component.

    os.walk and strings, not pathlib: 200,000 files are listed in about a second. Hidden files
    and folders are skipped, symlinked folders not followed; the order is that of the path
    components (as pathlib sorts), so runs stay comparable."""
    root, rels = str(path), []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        sub = os.path.relpath(folder, root)
        prefix = "" if sub == "." else sub.replace(os.sep, "/") + "/"
        rels += [prefix + n for n in names if not n.startswith(".") and accept(n)
                 and os.path.isfile(os.path.join(folder, n))]
    rels.sort(key=lambda r: r.split("/"))
    return rels


def select(rels: list[str], include: str = "", exclude: str = "", what: str = "") -> list[str]:
    """The paths (relative to the data root, '/'-separated) that the regular expression
    `include` finds (anywhere in the path; "" = all) and `exclude` does not, e.g. include
    '/[89a-f][0-9a-f]*_nohash_' for some speakers, exclude '^(zero|one)/' for some words."""
    out = rels
    for key, pattern, keep in (("include", include, True), ("exclude", exclude, False)):
        if not pattern:
            continue
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise ConfigError(f"data.{key} '{pattern}' is not a regular expression ({e})") \
                from None
        out = [r for r in out if (rx.search(r) is not None) == keep]
    if rels and not out:
        raise DataError(f"data.include '{include}' / data.exclude '{exclude}' leave none of the "
                        f"{len(rels)} files in {what}; they match paths relative to it, such as "
                        f"'{rels[0]}'")
    return out


def _image_listing(path: Path, include: str = "", exclude: str = ""
                   ) -> tuple[list[str], list, list[str]]:
    """(member names relative to the root, sources for reading, display names)."""
    if path.is_dir():
        rels, root = select(_walk(path, is_image_name), include, exclude, str(path)), str(path)
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
    keep = set(select([i.filename for i in infos], include, exclude, str(path)))
    infos = [i for i in infos if i.filename in keep]
    members = [i.filename for i in infos]
    sources = [ZipMember(path, i.filename, i.file_size) for i in infos]
    return members, sources, [f"{path}:{m}" for m in members]


def image_samples(sources: list, names: list[str], image_size: int, channels: int = 0,
                  cache: str = "memory", budget: int = 0, cache_dir: str = ""):
    """Images (paths or zip members) as samples: an (N, C, S, S) tensor, or `ImageFiles`
    decoded when read, as `cache` says (see `load_image_tree`). channels 0: 1 if every image
    is grey, else 3."""
    if channels == 0:
        grey = all(image_is_grey(s, n) for s, n in zip(sources, names, strict=True))
        channels = 1 if grey else 3
    files = ImageFiles(tuple(sources), tuple(names), channels, image_size)
    if cache == "auto":
        cache = "memory" if files.nbytes <= budget else "none"
    if cache == "memory":
        return load_images(sources, names, channels, image_size)
    if cache == "disk":
        return decode_to_disk(files, cache_dir, default_workers())
    return files


def load_image_tree(path: Path, image_size: int, channels: int = 0,
                    cache: str = "memory", budget: int = 0, cache_dir: str = "",
                    include: str = "", exclude: str = "") -> LabeledData:
    """Images in class folders, from a folder or a .zip. channels 0 = decide from the images.

    cache "memory": decode every image now into one tensor; "none": leave them on disk
    (`ImageFiles`, decoded when read); "disk": decoded once into a file of uint8 pixels under
    `cache_dir` and read from it; "auto": memory if the decoded tensor fits `budget` bytes,
    else none.
    """
    members, sources, names = _image_listing(path, include, exclude)
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
    x = image_samples(sources, names, image_size, channels, cache, budget, cache_dir)
    classes = sorted(set(class_paths))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in class_paths], dtype=np.int64)
    groups = [c.split("/")[0] for c in classes] if all("/" in c for c in classes) else None
    return LabeledData(x=x, y=y, classes=classes, sources=names, kind="image", groups=groups)


def _labels_from_names(rels: list[str], pattern: str, path: Path) -> list[str]:
    """The class of each file from its name by a regular expression: its group 'label', else
    its first group, else the whole match (e.g. '^([0-9]+)_' for FSDD's digit)."""
    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ConfigError(f"--label-pattern '{pattern}' is not a regular expression ({e})") \
            from None
    out = []
    for r in rels:
        m = rx.search(PurePosixPath(r).name)
        if m is None:
            raise DataError(f"file {path}/{r} does not match --label-pattern '{pattern}'; fix "
                            "the pattern ('' reads the class from folders) or move the file out")
        out.append(m.group("label") if "label" in rx.groupindex else
                   m.group(1) if rx.groups else m.group(0))
    return out


def load_audio_tree(path: Path, rate: int, label_pattern: str = "", include: str = "",
                    exclude: str = "") -> LabeledData:
    """Audio files (WAV, FLAC, OGG) in class folders, or anywhere under `path` with the class
    taken from the file name by `label_pattern`; read and resampled to `rate` Hz mono."""
    rels = select(_walk(path, is_audio_name), include, exclude, str(path))
    if not rels:
        raise DataError(f"no audio files found in {path}; expected .wav, .flac or .ogg files")
    if label_pattern:
        labels = _labels_from_names(rels, label_pattern, path)
    else:
        labels = _strip_common_top([_class_of(r) for r in rels])
        if any(c in (".", "") for c in labels):
            loose = next(r for r, c in zip(rels, labels, strict=True) if c in (".", ""))
            raise DataError(f"audio file {path}/{loose} is not inside a class folder; put each "
                            f"file in {path}/<class>/, or give --label-pattern to read the "
                            "class from the file name")
    files = [f"{path}/{r}" for r in rels]
    x = load_waveforms(files, files, rate)
    classes = sorted(set(labels))
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[c] for c in labels], dtype=np.int64)
    return LabeledData(x=x, y=y, classes=classes, sources=files, kind="audio")


def _holds_audio(p: Path) -> bool:
    """A folder holds audio when the first image or audio file found in it is audio."""
    if not p.is_dir():
        return False
    for _folder, dirs, names in os.walk(p):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for n in sorted(names):
            if is_image_name(n):
                return False
            if is_audio_name(n):
                return True
    return False


def load_dataset(path: str | list[str], image_size: int = 32, channels: int = 0,
                 label_column: str = "label", cache: str = "memory",
                 budget: int = 0, cache_dir: str = "", sample_rate: int = 16000,
                 label_pattern: str = "", include: str = "", exclude: str = "") -> LabeledData:
    """Load any supported data set; `path` "" means the bundled digits, a list several roots
    read alike and joined (data/roots.py). include, exclude: regular expressions choosing
    files of a folder by their relative path (see `select`).

    cache, budget: whether image folders are decoded into memory (see `load_image_tree`);
    vectors, audio and the digits are always in memory."""
    if isinstance(path, list):
        if not path:
            raise ConfigError("data.path is an empty list; give one or more folders")
        if len(path) == 1:
            path = path[0]
        else:
            parts = [load_dataset(p, image_size, channels, label_column, cache, budget,
                                  cache_dir, sample_rate, label_pattern, include, exclude)
                     for p in path]
            return join_roots([str(p) for p in path], parts)
    if not path:
        if include or exclude:
            raise ConfigError("data.include / data.exclude choose files of a folder or zip; "
                              "give data.path (the bundled digits have no files)")
        return load_digits_data(image_size)
    p = Path(path)
    if not p.exists():
        raise DataError(f"data path {p} does not exist; give a folder, .zip, .csv or .npy file")
    suffix = p.suffix.lower()
    if _holds_audio(p):
        data = load_audio_tree(p, sample_rate, label_pattern, include, exclude)
    elif p.is_dir() or suffix == ".zip":
        data = load_image_tree(p, image_size, channels, cache, budget, cache_dir, include,
                               exclude)
    elif suffix in (".csv", ".npy"):
        if include or exclude:
            raise ConfigError(f"data.include / data.exclude choose files of a folder or zip; "
                              f"{p} is a table: select its rows before training")
        data = load_table(p, label_column)
    else:
        raise DataError(f"unsupported data file {p}; give a folder of class folders, a .zip, "
                        "a .csv or a .npy")
    if len(data.classes) < 2:
        raise DataError(f"data {p} has only {len(data.classes)} class; Siamese training needs "
                        "at least 2 classes")
    return data
