"""Checks on what a command will write and on the numbers a user gives, made before any work
starts (issue 43): an output that is a folder, an empty path, two outputs on one file; a number
that is not finite or out of its range. Each is a one-line ConfigError naming the option."""

from __future__ import annotations

import math
import os
from pathlib import Path

from .errors import ConfigError


def check_outputs(*outputs: tuple[str, str | os.PathLike | None]) -> None:
    """(option, path) pairs; None = not asked for. Refused: an empty path, a folder, a path
    under a file, and two options naming one file."""
    seen: dict[Path, str] = {}
    for option, path in outputs:
        if path is None:
            continue
        if not str(path).strip():
            raise ConfigError(f"{option} is empty; give a file name, e.g. {option} out.txt")
        p = Path(path)
        if p.is_dir() or str(path).endswith(("/", os.sep)):
            raise ConfigError(f"{option} {path} is a folder; give a file name inside it, e.g. "
                              f"{option} {p / 'out.txt'}")
        for parent in p.absolute().parents:
            if parent.exists():
                if not parent.is_dir():
                    raise ConfigError(f"{option} {path}: {parent} is a file, not a folder")
                break
        key = p.absolute().resolve()
        if key in seen:
            raise ConfigError(f"{option} and {seen[key]} both name {path}; give each its own "
                              "file")
        seen[key] = option


def check_number(name: str, value: float, low: float, high: float,
                 low_open: bool = False) -> float:
    """value as a finite float in [low, high] ((low, high] with low_open), or a ConfigError
    that names the range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    ok = math.isfinite(v) and (v > low if low_open else v >= low) and v <= high
    if not ok:
        raise ConfigError(f"{name} {value!r}: give a number in {'(' if low_open else '['}"
                          f"{low:g}, {high:g}]")
    return v
