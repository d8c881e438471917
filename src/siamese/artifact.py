"""A run folder is one self-contained artifact.

    runs/x/
      card.json           resolved config, preprocessing, classes, split summary, threshold,
                          metrics, history, package and format versions
      model.safetensors   the best weights (never pickle)
      split.json          the exact sample indices of each split
      checkpoints/last.safetensors + last.json   model + optimiser state for --resume
      *.png               plots

Every file is written atomically, so a run killed at any moment keeps its last good checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save_file

from . import __version__
from .atomic import atomic_write, atomic_write_json
from .errors import ArtifactError

FORMAT = "siamese-run"
FORMAT_VERSION = 1


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata={"format": FORMAT}))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return read_weights(path)[0]


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """-> (tensors, fingerprint): the file is read once; the fingerprint is a short sha256 of
    its bytes, so that a gallery built by other weights can be refused."""
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; the run folder is incomplete: train it again")
    data = path.read_bytes()
    try:
        tensors = load(data)
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ArtifactError(
            f"{path} is truncated or not a safetensors file ({str(e)[:60]}); "
            "restore it or train again"
        ) from None
    return tensors, hashlib.sha256(data).hexdigest()[:20]


def write_card(run: Path, card: dict) -> None:
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "siamese_version": __version__}
    card = {**header, **{k: v for k, v in card.items() if k not in header}}
    atomic_write_json(run / "card.json", card)


def read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise ArtifactError(f"{path} is missing; is {path.parent} a run folder made by "
                            f"'siamese train'? ({what})")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{path} is corrupt ({e}); restore it or train again") from None


def read_card(run: Path) -> dict:
    run = Path(run)
    if not run.exists():
        raise ArtifactError(f"run folder {run} does not exist; train one with "
                            f"'siamese train --out {run}'")
    card = read_json(run / "card.json", "the model card")
    if card.get("format") != FORMAT:
        raise ArtifactError(f"{run / 'card.json'} is not a siamese run card")
    if card.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{run} was written in run format {card.get('format_version')} by siamese "
            f"{card.get('siamese_version')}; this is format {FORMAT_VERSION} (siamese "
            f"{__version__}): retrain, or use the version that wrote it"
        )
    return card


MAX_IMAGE_SIDE = 1024
MAX_FEATURES = 1_000_000


def _number_list(v, n: int) -> bool:
    return isinstance(v, list) and len(v) == n and all(
        isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in v)


def check_card(card: dict, path: Path) -> None:
    """Check every field a model is built from, before anything is allocated: a crafted card
    (an input shape of 20000 x 20000, std 0, a threshold of nan) is an ArtifactError."""
    def bad(what: str) -> ArtifactError:
        return ArtifactError(f"{path} is invalid ({what}); restore the run folder or train again")

    pre = card.get("preprocessing")
    fields = {"kind", "input_shape", "mean", "std"}
    if not isinstance(pre, dict) or set(pre) - {"sample_rate"} != fields:
        raise bad("preprocessing must hold kind, input_shape, mean and std")
    kind, shape = pre["kind"], pre["input_shape"]
    if not (isinstance(shape, list) and all(type(v) is int for v in shape)):
        raise bad("input_shape must be a list of integers")
    if kind == "image":
        ok = len(shape) == 3 and shape[0] in (1, 3) and 8 <= shape[1] == shape[2] <= \
            MAX_IMAGE_SIDE
        want = f"[1 or 3, S, S] with 8 <= S <= {MAX_IMAGE_SIDE}"
    elif kind == "vector":
        ok, want = len(shape) == 1 and 1 <= shape[0] <= MAX_FEATURES, f"[D], D <= {MAX_FEATURES}"
    elif kind == "tracking":  # SiamFC: the exemplar crop, pixel values as they are
        ok = len(shape) == 3 and shape[0] == 3 and 63 <= shape[1] == shape[2] <= 1023
        want = "[3, E, E] with 63 <= E <= 1023"
    elif kind == "audio":
        rate = pre.get("sample_rate")
        ok = (len(shape) == 1 and type(rate) is int and 4000 <= rate <= 48000
              and rate // 5 <= shape[0] <= 30 * rate)
        want = "[crop samples] of 0.2 to 30 s at a sample_rate of 4000 to 48000"
    else:
        raise bad(f"preprocessing kind '{kind}' is not image, vector, audio or tracking")
    if not ok:
        raise bad(f"input_shape {shape[:4]} is not {want}")
    stats = 1 if kind == "audio" else shape[0]  # audio: the waveform passes as it is
    if not _number_list(pre["mean"], stats) or not _number_list(pre["std"], stats):
        raise bad(f"mean and std must be {stats} finite numbers each")
    if min(pre["std"]) <= 0:
        raise bad("std must be > 0")
    t = card.get("threshold")
    if t is not None and not (isinstance(t, int | float) and not isinstance(t, bool)
                              and math.isfinite(t) and 0 <= t <= 1):
        raise bad(f"threshold {t!r} is not a number in [0, 1]")
    if not isinstance(card.get("config"), dict):
        raise bad("it has no config")


def save_checkpoint(run: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    meta: dict) -> None:
    """Model and optimiser state; the tensors go to safetensors, the rest to JSON.

    The JSON is written after the tensors, and names their file's size, so that a JSON that
    points at a half-written tensor file is impossible.
    """
    ckpt = run / "checkpoints"
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    scalars: dict = {}
    for pid, state in opt["state"].items():
        for name, value in state.items():
            if torch.is_tensor(value):
                tensors[f"opt.{pid}.{name}"] = value
            else:
                scalars[f"{pid}.{name}"] = value
    save_tensors(ckpt / "last.safetensors", tensors)
    meta = {**meta, "param_groups": opt["param_groups"], "opt_scalars": scalars,
            "tensor_bytes": (ckpt / "last.safetensors").stat().st_size}
    atomic_write_json(ckpt / "last.json", meta)


def load_checkpoint(run: Path) -> tuple[dict, dict, dict]:
    """-> (model state dict, optimiser state dict, meta)."""
    ckpt = Path(run) / "checkpoints"
    meta = read_json(ckpt / "last.json", "the resume checkpoint")
    tensors = load_tensors(ckpt / "last.safetensors")
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    state: dict = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, pid, name = k.split(".", 2)
            state.setdefault(int(pid), {})[name] = v
    for k, v in meta.pop("opt_scalars").items():
        pid, name = k.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    opt_state = {"state": state, "param_groups": meta.pop("param_groups")}
    return model_state, opt_state, meta
