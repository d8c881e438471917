"""Several data roots as one labeled set: `data.path = ["corpus_a/", "corpus_b/"]`.

Each root is read as it would be alone (the same image size, sample rate, label pattern,
include and exclude), its classes are named `<root>/<class>` so that two corpora never merge a
class by name, and the root is each class's group: `train.group_batches` then draws each
batch's classes from one corpus (negatives that differ by the speaker or object, not by the
microphone or camera), and the log says what share of the samples each corpus holds.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .audio import Waveforms
from .labeled import LabeledData
from .lazy import ImageFiles


def root_tags(paths: list[str]) -> list[str]:
    """A short, distinct name per root: its folder or file name (without a .zip suffix),
    with the parent's name before it where two roots share one."""
    tags = [Path(p).name.removesuffix(".zip") or str(p) for p in paths]
    names = list(tags)
    for i, t in enumerate(names):
        parent = Path(paths[i]).parent.name
        if names.count(t) > 1:
            tags[i] = f"{parent}-{t}" if parent else f"{t}{i}"
    if len(set(tags)) < len(tags):
        tags = [f"{t}{i}" for i, t in enumerate(tags)]
    return tags


def _join_x(parts: list[LabeledData], paths: list[str]):
    xs = [p.x for p in parts]
    if all(isinstance(x, Waveforms) for x in xs):
        return Waveforms.concat(xs)
    if all(isinstance(x, torch.Tensor) for x in xs):
        shapes = {tuple(x.shape[1:]) for x in xs}
        if len(shapes) > 1:
            raise ConfigError(f"data.path: the roots {', '.join(paths)} give inputs of shapes "
                              f"{sorted(shapes)}; set data.channels = 3 (or 1) so that they agree")
        return torch.cat(xs)
    if all(isinstance(x, ImageFiles) and x.decoded is None and x.variants == 1 for x in xs):
        if len({(x.channels, x.size) for x in xs}) > 1:
            raise ConfigError(f"data.path: the roots {', '.join(paths)} differ in channels; "
                              "set data.channels = 3 (or 1) so that they agree")
        return replace(xs[0], sources=sum((x.sources for x in xs), ()),
                       names=sum((x.names for x in xs), ()))
    raise ConfigError(f"data.path: the roots {', '.join(paths)} are read in different ways "
                      "(some into memory, some from disk); set data.cache = \"memory\" or "
                      "\"none\" for all of them")


def join_roots(paths: list[str], parts: list[LabeledData]) -> LabeledData:
    """The labeled sets read from `paths`, one after the other, as one set."""
    kinds = {p.kind for p in parts}
    if len(kinds) > 1:
        raise ConfigError(f"data.path: the roots {', '.join(paths)} hold different kinds of "
                          f"data ({', '.join(sorted(kinds))}); give roots of one kind")
    if kinds == {"vector"}:
        raise ConfigError("data.path: several tables cannot be joined here; merge them into one "
                          ".csv or .npy (their columns must agree)")
    tags = root_tags(paths)
    classes, groups, ys, offset = [], [], [], 0
    for tag, p in zip(tags, parts, strict=True):
        classes += [f"{tag}/{c}" for c in p.classes]
        groups += [tag if p.groups is None else f"{tag}/{g}" for g in (p.groups or p.classes)]
        ys.append(p.y + offset)
        offset += len(p.classes)
    return LabeledData(x=_join_x(parts, paths), y=np.concatenate(ys), classes=classes,
                       sources=[s for p in parts for s in p.sources], kind=parts[0].kind,
                       groups=groups)


def root_shares(data: LabeledData) -> dict[str, float]:
    """Share of the samples per root (the part of a class name before its first '/')."""
    root = np.array([c.split("/", 1)[0] for c in data.classes])[data.y]
    names, counts = np.unique(root, return_counts=True)
    return {str(n): float(c) / len(root) for n, c in zip(names, counts, strict=True)}
