"""Tracking data in the OTB layout, frame folders and video files.

    <root>/<Seq>/img/0001.jpg ...           the frames
    <root>/<Seq>/groundtruth_rect.txt       one box per frame: x,y,w,h (pixels, top-left)
    <root>/<Seq>/groundtruth_rect.<k>.txt   a sequence with several targets (Jogging: 1, 2)
    <root>/<Seq>/results/<Tracker>[.k].txt  other trackers' boxes on the same frames

A target is named like the OTB toolkit names it: the sequence, or `<Seq>-<k>` (Jogging-1).
Frames are RGB uint8 arrays (H, W, 3); grey frames are repeated to 3 channels.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError

FRAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


@dataclass
class Target:
    name: str  # Dog1, Jogging-1
    sequence: Path
    boxes: np.ndarray  # (N, 4) x, y, w, h per frame
    results: dict[str, Path] = field(default_factory=dict)  # published tracker -> its boxes

    @property
    def frames(self) -> list[Path]:
        return frame_files(self.sequence / "img")[:len(self.boxes)]


def read_boxes(path: Path, polygons: bool = False) -> np.ndarray:
    """A box file (x,y,w,h per line; commas, tabs or spaces) -> (N, 4) float64. polygons: a
    row of 8 numbers (VOT's x1,y1,...,x4,y4) is taken as its bounding box. NaN rows are kept
    (frames without a box)."""
    rows = []
    for k, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = [p for p in re.split(r"[,\s]+", line.strip()) if p]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if polygons and len(values) == 8:
            xs, ys = values[0::2], values[1::2]
            values = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
        if len(values) != 4:
            raise DataError(f"{path}:{k}: expected 4 numbers x,y,w,h"
                            f"{' (or an 8-number polygon)' if polygons else ''}, got "
                            f"{line.strip()[:60]!r}")
        rows.append(values)
    if not rows:
        raise DataError(f"{path} holds no boxes; give one x,y,w,h line per frame")
    return np.asarray(rows, dtype=np.float64)


def frame_files(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"frame folder {folder} does not exist; give a folder of JPEG/PNG frames")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
    if not files:
        raise DataError(f"frame folder {folder} holds no JPEG, PNG or BMP frames")
    return files


def list_targets(root: Path, sequences: list[str] | None = None) -> list[Target]:
    """The targets of the sequences under `root` (all of them, or those named; a name may be a
    sequence, e.g. Jogging, or one target, e.g. Jogging-1)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"OTB folder {root} does not exist; give the folder that holds the "
                        "sequences (<Seq>/img, <Seq>/groundtruth_rect.txt)")
    found: list[Target] = []
    for seq in sorted(p for p in root.iterdir() if p.is_dir()):
        truths = sorted(seq.glob("groundtruth_rect*.txt"))
        for truth in truths:
            k = truth.name[len("groundtruth_rect"):-len(".txt")].strip(".")
            name = f"{seq.name}-{k}" if k else seq.name
            suffix = f".{k}.txt" if k else ".txt"
            results = {p.name[:-len(suffix)]: p for p in sorted((seq / "results").glob(
                f"*{suffix}")) if (k or p.name.count(".") == 1)}
            found.append(Target(name, seq, read_boxes(truth), results))
    if not found:
        raise DataError(f"{root} holds no sequences in the OTB layout "
                        "(<Seq>/img/*.jpg and <Seq>/groundtruth_rect.txt)")
    if sequences:
        wanted = set(sequences)
        known = {t.name for t in found} | {t.sequence.name for t in found}
        missing = sorted(wanted - known)
        if missing:
            raise DataError(f"{root} has no sequence {', '.join(missing)}; choose from "
                            f"{', '.join(sorted({t.sequence.name for t in found}))}")
        found = [t for t in found if t.name in wanted or t.sequence.name in wanted]
    return found


def read_frame(path: Path) -> np.ndarray:
    """One frame -> (H, W, 3) uint8 RGB, decoded by the images' own decoder: a truncated or
    corrupt frame is refused with its name (OpenCV would decode it half grey and go on)."""
    from .images import open_image, to_rgb

    path = Path(path)
    img = open_image(path, str(path))
    try:
        return to_rgb(img)
    except Exception as e:  # a mode Pillow cannot convert
        raise DataError(f"cannot read frame {path} ({type(e).__name__}); replace or remove "
                        "the file") from None


def read_frames(files: list[Path]) -> list[np.ndarray]:
    """Every frame, decoded; frames of different sizes are refused (not one video)."""
    frames = [read_frame(f) for f in files]
    for f, frame in zip(files, frames, strict=True):
        if frame.shape != frames[0].shape:
            h, w = frames[0].shape[:2]
            raise DataError(f"frame {f} is {frame.shape[1]}x{frame.shape[0]}, the first "
                            f"{w}x{h}; give the frames of one video")
    return frames


def read_video(path: Path, max_frames: int = 100_000) -> list[np.ndarray]:
    """A video file (anything FFmpeg decodes) -> RGB frames."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"video file {path} does not exist")
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while len(frames) < max_frames:
            ok, img = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise DataError(f"cannot read video {path}: no frame decoded; give a video file "
                        "(MP4, AVI, MKV, GIF, ...) or --frames DIR")
    return frames


def parse_box(text: str) -> np.ndarray:
    """'x,y,w,h' -> (4,) float64; a one-line DataError otherwise."""
    try:
        box = np.array([float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError:
        box = np.zeros(0)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise DataError(f"--box {text!r}: give x,y,w,h (pixels, top-left corner), e.g. "
                        "--box 139,112,51,36")
    return box


def check_box(box: np.ndarray, frame: np.ndarray, where: str = "--box") -> None:
    """A box x,y,w,h on the first frame: 4 finite numbers, with an area, at most twice the
    frame's size, overlapping the frame."""
    h, w = frame.shape[:2]
    box = np.asarray(box, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or not np.isfinite(box).all():
        raise DataError(f"{where} {box.tolist()[:6]}: give 4 finite numbers x,y,w,h (pixels, "
                        "top-left corner)")
    x, y, bw, bh = box
    if bw > 2 * w or bh > 2 * h:
        raise DataError(f"{where} {x:g},{y:g},{bw:g},{bh:g} is larger than twice the {w}x{h} "
                        f"frame; give a width in (0, {2 * w}] and a height in (0, {2 * h}]")
    if bw <= 0 or bh <= 0:
        raise DataError(f"{where} {x:g},{y:g},{bw:g},{bh:g} has no area; give a width and "
                        "height above 0")
    if x >= w or y >= h or x + bw <= 0 or y + bh <= 0:
        raise DataError(f"{where} {x:g},{y:g},{bw:g},{bh:g} lies outside the {w}x{h} first "
                        "frame; give a box on the target in the first frame")
