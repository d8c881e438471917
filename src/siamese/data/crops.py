"""Square crops around a target, as SiamFC takes them.

The exemplar covers the target plus a context margin: side sqrt((w + p)(h + p)) with
p = context * (w + h), resized to 127 px; the search crop covers 255/127 times that. Where a
crop reaches past the frame, it is filled with the frame's mean colour (not black, which the
net would learn as a cue). Coordinates: a box x,y,w,h has its centre at (x + (w-1)/2,
y + (h-1)/2), pixel centres at integers, as the OTB toolkit counts.
"""

from __future__ import annotations

import numpy as np


def centre_of(box: np.ndarray) -> tuple[float, float]:
    x, y, w, h = box
    return x + (w - 1) / 2, y + (h - 1) / 2


def box_of(cx: float, cy: float, w: float, h: float) -> np.ndarray:
    return np.array([cx - (w - 1) / 2, cy - (h - 1) / 2, w, h])


def context_size(w, h, context: float = 0.5):
    """The side of the exemplar's region in frame pixels (of floats or, elementwise, arrays)."""
    p = context * (w + h)
    return np.sqrt((w + p) * (h + p))


def frame_mean(frame: np.ndarray) -> tuple[float, float, float]:
    return tuple(float(v) for v in frame.reshape(-1, frame.shape[-1]).mean(0))


def crop(frame: np.ndarray, cx: float, cy: float, size: float, out: int,
         mean: tuple[float, ...] | None = None) -> np.ndarray:
    """The square of side `size` frame pixels centred on (cx, cy), resized to (out, out, 3)
    uint8 (bilinear), mean-coloured past the frame's edges."""
    import cv2

    a = size / out  # frame pixels per output pixel
    # output pixel u -> frame x = cx + (u - (out - 1) / 2) * a
    m = np.array([[a, 0, cx - a * (out - 1) / 2], [0, a, cy - a * (out - 1) / 2]])
    if mean is None:
        mean = frame_mean(frame)
    return cv2.warpAffine(frame, m, (out, out), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=mean)
