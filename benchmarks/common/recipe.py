"""A benchmark's recipe: a TOML config as a dict, with `--set SECTION.KEY=VALUE` changes
(VALUE as JSON: 3, 0.5, true, "ecapa"; a bare word is a string: cuda)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path


def load_recipe(path: str | Path, sets: list[str]) -> dict:
    cfg = tomllib.loads(Path(path).read_text())
    for item in sets:
        key, _, value = item.partition("=")
        section, name = key.split(".")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        cfg.setdefault(section, {})[name] = parsed
    return cfg
