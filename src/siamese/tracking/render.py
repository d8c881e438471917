"""Draw the tracked box on every frame and write a GIF (Pillow) or a video (OpenCV, e.g. MP4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import atomic_write
from ..errors import ConfigError

VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v"}


def draw(frame: np.ndarray, box: np.ndarray, truth: np.ndarray | None = None) -> np.ndarray:
    import cv2

    img = np.ascontiguousarray(frame).copy()
    thick = max(2, round(max(img.shape[:2]) / 240))
    if truth is not None and np.isfinite(truth).all():
        x, y, w, h = np.round(truth).astype(int)
        cv2.rectangle(img, (x, y), (x + w, y + h), (40, 200, 60), max(1, thick - 1))
    x, y, w, h = np.round(box).astype(int)
    cv2.rectangle(img, (x, y), (x + w, y + h), (230, 30, 30), thick)
    return img


def render(frames: list[np.ndarray], boxes: np.ndarray, path: str | Path, fps: float = 25.0,
           truth: np.ndarray | None = None) -> None:
    """Every frame with its box (red; the truth in green where given) -> a .gif or video."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix != ".gif" and suffix not in VIDEO_SUFFIXES:
        raise ConfigError(f"--render {path}: give a .gif, .mp4, .avi, .mkv or .mov file")
    drawn = [draw(f, b, None if truth is None or i >= len(truth) else truth[i])
             for i, (f, b) in enumerate(zip(frames, boxes, strict=False))]
    if suffix == ".gif":
        from PIL import Image

        images = [Image.fromarray(d) for d in drawn]

        def write(tmp: Path) -> None:
            images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                           duration=round(1000 / fps), loop=0, optimize=False)
    else:
        import cv2

        def write(tmp: Path) -> None:
            h, w = drawn[0].shape[:2]
            out = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES[suffix]),
                                  fps, (w, h))
            if not out.isOpened():
                raise ConfigError(f"--render {path}: OpenCV cannot write this video type here; "
                                  "try .gif or .avi")
            for d in drawn:
                out.write(cv2.cvtColor(d, cv2.COLOR_RGB2BGR))
            out.release()
    atomic_write(path, write, suffix=suffix)
