"""File names as text. Python keeps the bytes of a non-UTF-8 file name as lone surrogates
("surrogateescape"); such a string cannot be encoded as UTF-8, printed to a UTF-8 terminal or put
in a JSON response. `display` is the form shown to people (U+FFFD for each bad byte), `raw_bytes`
the lossless form for hashing and byte-exact files."""

from __future__ import annotations

import os


def raw_bytes(name: str) -> bytes:
    """The exact bytes of a name as the file system has them."""
    return name.encode("utf-8", "surrogateescape")


def display(name: str | os.PathLike) -> str:
    """A name safe to print or send as JSON: undecodable bytes become U+FFFD."""
    return raw_bytes(os.fspath(name)).decode("utf-8", "replace")
