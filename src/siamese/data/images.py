"""Reading images of any format, size and mode into float tensors of one fixed shape."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pbm", ".bmp", ".gif", ".tif",
                  ".tiff", ".webp"}
GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}
# Refuse decompression bombs: far more pixels than any image this tool needs.
Image.MAX_IMAGE_PIXELS = 64_000_000


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def open_image(source: str | Path | bytes, name: str) -> Image.Image:
    """Open an image from a path or bytes; a DataError names `name` when it cannot be read."""
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        img.load()
        return ImageOps.exif_transpose(img) or img
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(
            f"cannot read image {name} ({type(e).__name__}: {str(e)[:80]}); "
            "replace or remove the file"
        ) from None


def image_is_grey(source: str | Path | bytes, name: str) -> bool:
    """Whether an image is single-channel, from its header alone (no pixel decoding)."""
    try:
        with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
            return img.mode in GREY_MODES
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise DataError(f"cannot read image {name} ({type(e).__name__}); replace or remove "
                        "the file") from None


def to_array(img: Image.Image, channels: int, size: int) -> np.ndarray:
    """PIL image -> (C, size, size) float32 in [0, 1]."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(img, dtype=np.float32)
        span = float(a.max() - a.min()) or 1.0
        img = Image.fromarray(((a - a.min()) / span * 255).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # Composite transparent images on white, the usual background of drawings and scans.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def load_images(
    sources: list, names: list[str], channels: int, size: int, threads: int = 8
) -> torch.Tensor:
    """Read many images (paths or bytes) into one (N, C, size, size) tensor, in parallel."""

    def one(i: int) -> np.ndarray:
        return to_array(open_image(sources[i], names[i]), channels, size)

    out = np.empty((len(sources), channels, size, size), dtype=np.float32)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for i, a in enumerate(pool.map(one, range(len(sources)))):
            out[i] = a
    return torch.from_numpy(out)


def resize_arrays(x: np.ndarray, size: int) -> torch.Tensor:
    """(N, H, W) or (N, C, H, W) float arrays in [0, 1] -> (N, C, size, size), antialiased."""
    t = torch.as_tensor(x, dtype=torch.float32)
    if t.ndim == 3:
        t = t[:, None]
    if t.shape[-1] != size or t.shape[-2] != size:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0, 1)
    return t.contiguous()
