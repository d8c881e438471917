"""`GalleryStore`: a run's gallery on disk, shared safely by the CLI and a running server.

    runs/x/gallery.safetensors     the gallery (embeddings, items, index), written atomically
    runs/x/gallery_uploads/<id>.<ext>   the gallery's own copy of every enrolled image
    runs/x/gallery.lock            an advisory lock (flock) held by whoever changes the gallery

- Every change is one transaction under the thread lock and the file lock: re-read the file if
  another process changed it, change, write the image copies, save; on any failure the copies
  written are deleted and the gallery is read back from disk, so nothing half-happens.
- Readers never lock the file (a save replaces it atomically); before each use the store checks
  the file's identity (inode, size, mtime) and re-reads it when another process saved.
- The gallery serves and re-embeds only its own copies, named by id and by the format detected
  from the bytes (never the client's extension). Removing an item deletes its copy; copies no
  item refers to, and temp files of killed saves, are swept when the store opens.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from ..atomic import atomic_write, atomic_write_bytes
from ..errors import ArtifactError
from .gallery import Gallery

GALLERY_FILE = "gallery.safetensors"
UPLOADS = "gallery_uploads"


def _stamp(path: Path):
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns


class GalleryStore:
    def __init__(self, run: str | Path, model, index_type: str = "flat",
                 read: bool = True, sweep: bool = True) -> None:
        """read=False: no gallery is read (reindex builds a new one without reading a possibly
        damaged file). sweep=False: read only, for commands that change nothing."""
        self.run = Path(run)
        self.path = self.run / GALLERY_FILE
        self.uploads = self.run / UPLOADS
        self.model, self.index_type = model, index_type
        self.lock = threading.RLock()
        self._depth = 0  # nesting of locked(): flock is taken once per store
        self._stamp = None
        self.gallery: Gallery | None = None
        if read and sweep:
            with self.locked():  # read and sweep as one: no save can come in between
                self.gallery = self._read()
                self._sweep()
        elif read:  # a save replaces the file atomically: reading needs no lock
            self.gallery = self._read()

    # -- reading ----------------------------------------------------------------------------
    def _read(self) -> Gallery:
        self._stamp = _stamp(self.path)
        if self._stamp is not None:
            return Gallery.load(self.path, fingerprint=self.model.fingerprint)
        net = self.model.net
        return Gallery(net.dim, "ip" if net.normalize else "l2", self.index_type,
                       self.model.fingerprint)

    def current(self) -> Gallery:
        """The gallery, re-read first if another process saved it since."""
        with self.lock:
            if _stamp(self.path) != self._stamp:
                self.gallery = self._read()
            return self.gallery

    @contextmanager
    def locked(self):
        """This thread alone, and this process alone among those sharing the run (flock).
        Re-entrant: a second flock on a new descriptor would wait for ourselves."""
        with self.lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self.run.mkdir(parents=True, exist_ok=True)
            with open(self.run / "gallery.lock", "a") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                self._depth = 1
                try:
                    yield
                finally:
                    self._depth = 0
                    fcntl.flock(f, fcntl.LOCK_UN)

    # -- changing ---------------------------------------------------------------------------
    def transaction(self, change: Callable[[Gallery, list[Path]], object]):
        """Run `change(gallery, written)` and save, all or nothing. `change` appends every file
        it writes to `written` (deleted again if anything fails)."""
        with self.locked():
            g = self.current()
            written: list[Path] = []
            try:
                result = change(g, written)
                g.save(self.path)
            except BaseException:
                for p in written:
                    p.unlink(missing_ok=True)
                self.gallery = self._read()  # the last saved state
                raise
            self._stamp = _stamp(self.path)
            return result

    def write_copy(self, item_id: str, data: bytes | Path, suffix: str,
                   written: list[Path]) -> str:
        """Store the gallery's own copy of an enrolled image -> its file name."""
        name = f"{item_id}{suffix}"
        target = self.uploads / name
        written.append(target)
        if isinstance(data, bytes):
            atomic_write_bytes(target, data)
        else:
            atomic_write(target, lambda tmp: shutil.copyfile(data, tmp))
        return name

    def add(self, embeddings, labels: list[str], sources: list[str],
            blobs: list[bytes | Path], suffixes: list[str]) -> list[str]:
        """Enroll embedded items with their images (bytes or a path to copy)."""
        def change(g: Gallery, written: list[Path]) -> list[str]:
            ids = g.reserve_ids(len(labels))
            files = [self.write_copy(i, b, s, written)
                     for i, b, s in zip(ids, blobs, suffixes, strict=True)]
            return g.add(embeddings, labels, sources, ids, files)

        return self.transaction(change)

    def remove(self, ids: list[str]) -> int:
        gone: list[str] = []

        def change(g: Gallery, written: list[Path]) -> None:
            gone.extend(g.remove(ids))
            if g.needs_rebuild and g.index_type == "flat":
                g.build_index()  # cheap; HNSW is rebuilt by `rebuild` off the request path

        self.transaction(change)
        for name in gone:  # only once the gallery without them is saved
            if name:
                (self.uploads / name).unlink(missing_ok=True)
        return len(ids)

    def rebuild(self) -> bool:
        """Rebuild the index without its deleted slots. The slow part runs without the lock;
        the result is installed only if the gallery did not change meanwhile."""
        with self.lock:
            g = self.current()
            version, x = g.version, g.embeddings.copy()
        index = g.new_index(x)
        with self.locked():
            if self.current() is not g or g.version != version:
                return False
            g.install_index(index)
            g.save(self.path)
            self._stamp = _stamp(self.path)
        return True

    def replace(self, fresh: Gallery) -> None:
        """Save a whole new gallery (reindex) in place of the current one."""
        with self.locked():
            fresh.save(self.path)
            self.gallery, self._stamp = fresh, _stamp(self.path)

    # -- files ------------------------------------------------------------------------------
    def image_bytes(self, item_id: str) -> tuple[bytes, str]:
        """The owned copy of an item's image -> (bytes, suffix). Opened without following
        links, and only inside the uploads folder."""
        g = self.current()
        try:
            name = g.files[g.ids.index(item_id)]
        except ValueError:
            raise ArtifactError(f"no gallery item with id {item_id}") from None
        if not name or "/" in name or name.startswith("."):
            raise FileNotFoundError(item_id)
        fd = os.open(self.uploads / name, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise FileNotFoundError(item_id)
            return f.read(), Path(name).suffix

    def _sweep(self) -> None:
        """Delete copies no item refers to and temp files of killed writes (under the lock)."""
        for tmp in self.run.glob(f".{GALLERY_FILE}.*.tmp"):
            tmp.unlink(missing_ok=True)
        if not self.uploads.is_dir():
            return
        owned = set(self.gallery.files)
        for p in self.uploads.iterdir():
            if p.name not in owned and (p.is_file() or p.is_symlink()):
                p.unlink(missing_ok=True)

