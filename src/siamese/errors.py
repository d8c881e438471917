"""User-facing errors. Each one carries a single line that names the file or value and the fix.

The CLI turns these into `error: <message>` and exit code 2; anything else is a bug and keeps its
traceback.
"""


import re

_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")


class SiameseError(Exception):
    """Base class of every error caused by the user's input rather than by a bug."""

    def __init__(self, message: str = "") -> None:
        # A DataLoader worker's error comes back re-raised as the same type with the worker's
        # traceback in its message ("Caught DataError in DataLoader worker process 0. Original
        # Traceback ..."): keep the one line the worker raised.
        if message.startswith("Caught ") and "Original Traceback" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.split(": ", 1)[1] if ": " in last else last
        # a library's message may name an in-memory upload by its repr
        # ("<_io.BytesIO object at 0x7f...>"): the user never saw that object
        message = _REPR.sub("the upload", message)
        super().__init__(message)


class DataError(SiameseError):
    """A data set, image or vector file is missing, empty, unreadable or malformed."""


class ConfigError(SiameseError):
    """A configuration value or key is wrong (unknown key, unknown component, bad range)."""


class ArtifactError(SiameseError):
    """A run folder, checkpoint or gallery is missing, truncated or incompatible."""


def raise_first_failed(checks: list[tuple[bool, str]]) -> None:
    """Config checks as (ok, message) pairs: the first that failed is a ConfigError."""
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
