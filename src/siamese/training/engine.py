"""How a run uses the machine: where the data lives (memory or disk), how many worker processes
read it, and the numeric precision of the forward pass. Each a small decision from the config,
made here once and recorded in the run's card."""

from __future__ import annotations

import os

import torch

from ..config import Config
from ..data.lazy import ImageFiles
from ..data.loader import default_workers
from ..errors import ConfigError


def memory_bytes() -> int:
    """Physical memory of this machine (0 if unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def cache_budget(cfg: Config) -> int:
    """Bytes of decoded images that data.cache = "auto" keeps in memory."""
    if cfg.data.cache_gb > 0:
        return int(cfg.data.cache_gb * 2**30)
    return memory_bytes() // 4 or 4 * 2**30


def workers(cfg: Config, x) -> int:
    """train.workers, with -1 resolved: none for data in memory, a few for files on disk."""
    if cfg.train.workers >= 0:
        return cfg.train.workers
    return default_workers() if isinstance(x, ImageFiles) else 0


def amp_dtype(name: str, device: str) -> torch.dtype | None:
    """train.amp -> the autocast dtype, or None for full precision."""
    cuda = device.startswith("cuda")
    if name == "off" or (name == "auto" and not cuda):
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if name == "fp16" and not cuda:
        raise ConfigError("train.amp fp16 needs a CUDA GPU; on the CPU use bf16 or off")
    return torch.bfloat16 if name == "bf16" else torch.float16
