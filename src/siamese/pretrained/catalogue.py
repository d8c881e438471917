"""Known starting points by name: `catalogue.json` beside this file is the data (file, sha256,
source URL, license, preprocessing, outputs); this module finds an entry's file.

A name resolves, in this order, to
1. a file of that name in a folder of SIAMESE_PRETRAINED_PATH (folders separated by ':');
2. the cache folder, SIAMESE_CACHE (default ~/.cache/siamese) / pretrained;
3. the file inside an installed wheel that carries it (e.g. openwakeword's models), found
   without importing the package;
4. a download from the entry's URL into the cache, where the entry has one and the network
   reaches it.
The sha256 is checked before use wherever the file came from; a file given by path whose sha256
is an entry's gets that entry's preprocessing and outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ..atomic import atomic_write_bytes
from ..errors import ConfigError

CATALOGUE = Path(__file__).with_name("catalogue.json")


def entries() -> dict[str, dict]:
    return json.loads(CATALOGUE.read_text())


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cache_dir() -> Path:
    root = os.environ.get("SIAMESE_CACHE") or Path.home() / ".cache" / "siamese"
    return Path(root) / "pretrained"


@dataclass
class Start:
    """A starting point found: its file, and its catalogue entry (None for an unknown file)."""
    path: Path
    name: str | None
    entry: dict | None
    sha256: str


def _checked(path: Path, name: str, entry: dict) -> Start:
    digest = sha256_of(path)
    if digest != entry["sha256"]:
        raise ConfigError(f"{path} has sha256 {digest[:16]}..., the catalogue's '{name}' has "
                          f"{entry['sha256'][:16]}...: the file is damaged or another one; "
                          "delete it and fetch it again")
    return Start(path, name, entry, digest)


def _in_package(entry: dict) -> Path | None:
    if not entry.get("package"):
        return None
    dist = entry["package"].split("==")[0]
    try:
        found = Path(str(metadata.distribution(dist).locate_file(entry["package_path"])))
    except metadata.PackageNotFoundError:
        return None
    return found if found.is_file() else None


def download(url: str, timeout: float = 60.0) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - the entry's URL
            return r.read()
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ConfigError(f"could not download {url} ({str(e)[:80]}); download it by hand into "
                          f"{cache_dir()}, or give the file's path") from None


def find(name: str, allow_download: bool = True) -> Start:
    """A catalogue name -> its checked file (see the module's docstring for the order)."""
    catalogue = entries()
    entry = catalogue[name]
    folders = [Path(p) for p in os.environ.get("SIAMESE_PRETRAINED_PATH", "").split(":") if p]
    for folder in [*folders, cache_dir()]:
        if (folder / entry["file"]).is_file():
            return _checked(folder / entry["file"], name, entry)
    packaged = _in_package(entry)
    if packaged is not None:
        return _checked(packaged, name, entry)
    if entry.get("url") and allow_download:
        data = download(entry["url"])
        digest = hashlib.sha256(data).hexdigest()
        if digest != entry["sha256"]:  # checked before it is kept: a bad download leaves nothing
            raise ConfigError(f"{entry['url']} sent a file with sha256 {digest[:16]}..., the "
                              f"catalogue's '{name}' has {entry['sha256'][:16]}...; nothing was "
                              "kept: try again later, or download it by hand")
        target = cache_dir() / entry["file"]
        atomic_write_bytes(target, data)
        return Start(target, name, entry, digest)
    how = (f"pip install {entry['package']}" if entry.get("package") else
           f"put {entry['file']} into {cache_dir()} or a folder of SIAMESE_PRETRAINED_PATH")
    raise ConfigError(f"pretrained '{name}' ({entry['file']}) was not found; {how}, or give "
                      "the file's path")


def resolve(given: str, allow_download: bool = True) -> Start:
    """model.pretrained as given -> a Start: a catalogue name, or a path (a run folder means
    its model.safetensors)."""
    catalogue = entries()
    if given in catalogue:
        return find(given, allow_download)
    path = Path(given).expanduser()
    if path.is_dir() and (path / "model.safetensors").is_file():
        path = path / "model.safetensors"
    if not path.is_file():
        known = [(n, e) for n, e in catalogue.items() if e["file"] == path.name]
        if known:  # a recipe's path to a catalogued file that is not there: say where it is
            name, entry = known[0]
            raise ConfigError(f"'{given}' does not exist; it is the catalogue's '{name}' "
                              f"({entry['source']}, {entry['license']}): put {entry['file']} "
                              "there, or give its path or catalogue name")
        raise ConfigError(f"model.pretrained '{given}' is neither a file nor a catalogue name "
                          f"({', '.join(catalogue)}); check the path")
    digest = sha256_of(path)
    for name, entry in catalogue.items():
        if entry["sha256"] == digest:
            return Start(path, name, entry, digest)
    return Start(path, None, None, digest)
