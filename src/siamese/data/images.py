"""Reading images of any format, size, mode and bit depth into float tensors of one fixed shape.

One decoder serves training, the CLI and the HTTP service, so that every entry point accepts the
same images and refuses the same ones with the same one-line `DataError`:

- formats: PNG, JPEG (also MPO, as phones write it), BMP, GIF, TIFF, WebP, PGM/PPM/PBM;
- at most `MAX_PIXELS` pixels, checked from the header before any pixel is decoded;
- values mapped to [0, 1] by bit depth, never by the image's own range: 8-bit / 255, 16- and
  32-bit integers / 65535 (Pillow opens 16-bit PNG and TIFF as I;16 or I), float images are
  taken as [0, 1] and clipped. The same picture stored in 8 or 16 bits gives the same tensor.
- transparent images are composited on white; LAB and CMYK are converted to RGB.
"""

from __future__ import annotations

import io
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DataError
from ..names import display

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".pgm", ".ppm", ".pbm", ".bmp", ".gif", ".tif",
                  ".tiff", ".webp"}
# Pillow's names of the accepted formats, and the file suffix each is stored under.
FORMAT_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "MPO": ".jpg", "BMP": ".bmp", "GIF": ".gif",
                 "TIFF": ".tif", "WEBP": ".webp", "PPM": ".ppm"}
ACCEPTED = "PNG, JPEG, BMP, GIF, TIFF, WebP, PGM/PPM"
GREY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}
WIDE_INT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
MAX_PIXELS = 64_000_000  # per image: far more than any image this tool needs
MAX_MEMBER_BYTES = 64 * 1024 * 1024  # per image inside a zip, by its declared size
# Pillow refuses above twice this with DecompressionBombError; we check MAX_PIXELS ourselves.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class NotAnImage(DataError):
    """The bytes are no image of an accepted type (the service answers 415)."""


class TooManyPixels(DataError):
    """The header declares more pixels than allowed (the service answers 413)."""


@dataclass(frozen=True)
class ZipMember:
    """An image inside a zip file, read only when it is decoded (never all at once)."""

    zip_path: Path
    name: str
    size: int  # declared uncompressed size; zipfile never reads past it


_zips = threading.local()


def _member_bytes(m: ZipMember) -> bytes:
    if m.size > MAX_MEMBER_BYTES:
        raise DataError(f"{m.zip_path}:{display(m.name)} declares {m.size} bytes, over the "
                        f"{MAX_MEMBER_BYTES >> 20} MiB limit for an image in a zip; extract the "
                        "zip into a folder or remove that file")
    cache = _zips.__dict__.setdefault("open", {})
    zf = cache.get(m.zip_path)
    if zf is None:  # one handle per thread: reads from several threads never share a position
        zf = cache[m.zip_path] = zipfile.ZipFile(m.zip_path)
    return zf.read(m.name)


def is_image_name(name: str) -> bool:
    return Path(name).suffix.lower() in IMAGE_SUFFIXES


def _open(source, name: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and check format and size before any pixel is decoded."""
    if isinstance(source, ZipMember):
        source = _member_bytes(source)
    try:
        img = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
    except UnidentifiedImageError:
        raise NotAnImage(f"cannot read image {display(name)}: it is no image of an accepted "
                         f"type ({ACCEPTED}); replace or remove the file") from None
    except Image.DecompressionBombError:
        raise TooManyPixels(f"{display(name)} has too many pixels (the limit is "
                            f"{max_pixels}); scale it down") from None
    if img.format not in FORMAT_SUFFIX:
        raise NotAnImage(f"cannot read image {display(name)}: type {img.format} is not "
                         f"accepted ({ACCEPTED}); convert or remove the file")
    if img.width * img.height > max_pixels:
        raise TooManyPixels(f"{display(name)} has {img.width}x{img.height} pixels; the limit "
                            f"is {max_pixels}: scale it down")
    return img


def _fail(name: str, e: Exception) -> DataError:
    if isinstance(e, DataError):
        return e
    return DataError(f"cannot read image {display(name)} ({type(e).__name__}: "
                     f"{display(str(e))[:80]}); replace or remove the file")


def open_image(source, name: str, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and decode an image from a path, bytes or ZipMember. Any failure (unreadable,
    truncated, unknown type, too many pixels) is a DataError naming `name`."""
    try:
        img = _open(source, name, max_pixels)
        img.load()
        return ImageOps.exif_transpose(img) or img
    except Exception as e:  # a malformed file can make Pillow raise almost anything
        raise _fail(name, e) from None


def image_header(source, name: str,
                 max_pixels: int = MAX_PIXELS) -> tuple[str, int, int, str]:
    """(format, width, height, mode) from the header alone; the same checks as `open_image`."""
    try:
        with _open(source, name, max_pixels) as img:
            return img.format, img.width, img.height, img.mode
    except Exception as e:
        raise _fail(name, e) from None


def image_format(source, name: str, max_pixels: int = MAX_PIXELS) -> tuple[str, int, int]:
    """(format, width, height) from the header alone."""
    return image_header(source, name, max_pixels)[:3]


def image_is_grey(source, name: str) -> bool:
    """Whether an image is single-channel, from its header alone (no pixel decoding)."""
    return image_header(source, name)[3] in GREY_MODES


def _to_8bit(img: Image.Image) -> Image.Image:
    """Wide integer and float images -> 8-bit grey by the documented bit-depth mapping."""
    a = np.asarray(img, dtype=np.float64)
    if img.mode in WIDE_INT_MODES:
        a = a / 65535.0
    elif not np.isfinite(a).all():
        raise ValueError("the float image holds nan or inf values")
    return Image.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8), "L")


def _to_colour(img: Image.Image) -> Image.Image:
    if img.mode == "LAB":
        from PIL import ImageCms

        t = ImageCms.buildTransform(ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB"),
                                    "LAB", "RGB")
        return ImageCms.applyTransform(img, t)
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
            img.mode == "P" and "transparency" in img.info):
        # Composite transparent images on white, the usual background of drawings and scans.
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba)
    return img


def to_array(img: Image.Image, channels: int, size: int) -> np.ndarray:
    """PIL image -> (C, size, size) float32 in [0, 1] (see the module doc for the mapping)."""
    if img.mode in WIDE_INT_MODES or img.mode == "F":
        img = _to_8bit(img)
    img = _to_colour(img).convert("L" if channels == 1 else "RGB")
    if img.size != (size, size):
        img = img.resize((size, size), Image.Resampling.BILINEAR)
    a = np.asarray(img, dtype=np.float32) / 255.0
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def to_rgb(img: Image.Image) -> np.ndarray:
    """PIL image -> (H, W, 3) uint8 RGB by the same mapping (a video frame at its own size)."""
    if img.mode in WIDE_INT_MODES or img.mode == "F":
        img = _to_8bit(img)
    return np.asarray(_to_colour(img).convert("RGB"))


def array_to_image(arr: np.ndarray, name: str = "array") -> Image.Image:
    """An (H, W[, C]) array -> PIL image by the same bit-depth mapping as files: uint8 as is,
    uint16 / 65535, bool 0/1, float taken as [0, 1], other integers as 0-255 (clipped)."""
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise DataError(f"{name} has shape {arr.shape}; an image array is (H, W), (H, W, 1), "
                        "(H, W, 3) or (H, W, 4)")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.dtype == np.uint16:
        arr = np.round(arr / 65535.0 * 255)
    elif arr.dtype == np.bool_:
        arr = arr * 255.0
    elif np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise DataError(f"{name} holds nan or inf values; give finite pixel values")
        arr = np.round(np.clip(arr, 0, 1) * 255)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{name} has dtype {arr.dtype}; give numbers")
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def decode(source, name: str, channels: int, size: int,
           max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A path, bytes or ZipMember -> (C, size, size) float32 in [0, 1]; DataError on failure."""
    img = open_image(source, name, max_pixels)
    try:
        return to_array(img, channels, size)
    except Exception as e:  # e.g. a mode Pillow cannot convert
        raise _fail(name, e) from None


def load_images(
    sources: list, names: list[str], channels: int, size: int, threads: int = 8
) -> torch.Tensor:
    """Read many images (paths, bytes or ZipMembers) into one (N, C, size, size) tensor."""

    def one(i: int) -> np.ndarray:
        return decode(sources[i], names[i], channels, size)

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
