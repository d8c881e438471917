"""Tracking training data as people have it: every layout read into the same `Track` records
(frame files, one box per frame, whether the target is visible there). Nothing is decoded
here: the frames stay on disk until a pair needs them (training/track_pairs.py).

Layouts, found by what a video folder holds (anywhere up to three folders below a root):

    OTB      <Seq>/img/0001.jpg, <Seq>/groundtruth_rect.txt (or .1.txt, .2.txt: several targets)
    GOT-10k  <video>/00000001.jpg, <video>/groundtruth.txt, absence.label (1: absent),
             cover.label (0: fully covered), e.g. train/GOT-10k_Train_000001/
    LaSOT    <class>/<class>-<n>/img/00000001.jpg, groundtruth.txt, full_occlusion.txt,
             out_of_view.txt (comma-separated 0/1 flags on one line)

Box files: x,y,w,h per line, separated by commas, tabs or spaces; a row of 8 numbers is a
polygon (VOT), taken as its bounding box; NaN rows are frames without a box. A frame is used
only where the target is visible: a finite box with area, not absent, not fully covered, not
out of view. `data.path` may name several roots (a list in the config).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DataError
from .otb import FRAME_SUFFIXES, frame_files, read_boxes

MAX_DEPTH = 3  # video folders are looked for this many folders below a root


@dataclass
class Track:
    name: str  # Dog1, Jogging-1, GOT-10k_Train_000001, airplane-1
    layout: str  # otb | got10k | lasot
    frames: list[Path]
    boxes: np.ndarray  # (N, 4) x, y, w, h per frame (NaN where none)
    visible: np.ndarray  # (N,) bool: frames a pair may use
    video: str = ""  # the video folder's name (Jogging for Jogging-1)

    @property
    def usable(self) -> np.ndarray:
        """The indices of the frames a pair may use."""
        return np.flatnonzero(self.visible)


def read_flags(path: Path, n: int) -> np.ndarray:
    """A per-frame flag file (one integer a line, or comma-separated on one line) -> (n,)
    int64; its count must match the frames'."""
    text = Path(path).read_text().replace(",", " ").split()
    try:
        flags = np.array([int(float(v)) for v in text], dtype=np.int64)
    except ValueError:
        raise DataError(f"{path} is not a list of integers, one per frame") from None
    if len(flags) != n:
        raise DataError(f"{path} has {len(flags)} values for {n} frames; give one per frame")
    return flags


def _has_area(boxes: np.ndarray) -> np.ndarray:
    return np.isfinite(boxes).all(1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)


def _one_box_per_frame(truth: Path, boxes: np.ndarray, frames: list[Path]) -> None:
    if len(boxes) != len(frames):
        raise DataError(f"{truth} has {len(boxes)} boxes for the {len(frames)} frames in "
                        f"{frames[0].parent}; give one box per frame")


def _frames_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in FRAME_SUFFIXES)


def read_otb_video(folder: Path) -> list[Track]:
    """An OTB sequence: one track per groundtruth_rect[.k].txt. As the OTB toolkit does, a
    box file may cover the first frames only (the rest are not used)."""
    frames = frame_files(folder / "img")
    tracks = []
    for truth in sorted(folder.glob("groundtruth_rect*.txt")):
        k = truth.name[len("groundtruth_rect"):-len(".txt")].strip(".")
        boxes = read_boxes(truth, polygons=True)
        if len(boxes) > len(frames):
            raise DataError(f"{truth} has {len(boxes)} boxes for the {len(frames)} frames in "
                            f"{folder / 'img'}; give one box per frame")
        tracks.append(Track(f"{folder.name}-{k}" if k else folder.name, "otb",
                            frames[:len(boxes)], boxes, _has_area(boxes), folder.name))
    return tracks


def read_got10k_video(folder: Path) -> list[Track]:
    truth = folder / "groundtruth.txt"
    frames = _frames_in(folder)
    if not frames:
        raise DataError(f"{folder} holds no frames (GOT-10k: 00000001.jpg ... beside "
                        "groundtruth.txt); remove the folder or add its frames")
    boxes = read_boxes(truth, polygons=True)
    _one_box_per_frame(truth, boxes, frames)
    absence = folder / "absence.label"
    if not absence.exists():
        raise DataError(f"{absence} is missing: a GOT-10k video says in it which frames lack "
                        "the target (one 0/1 per frame); restore it from the data set")
    visible = _has_area(boxes) & (read_flags(absence, len(frames)) == 0)
    cover = folder / "cover.label"
    if cover.exists():  # 0: the target fully covered
        visible &= read_flags(cover, len(frames)) > 0
    return [Track(folder.name, "got10k", frames, boxes, visible, folder.name)]


def read_lasot_video(folder: Path) -> list[Track]:
    truth = folder / "groundtruth.txt"
    frames = frame_files(folder / "img")
    boxes = read_boxes(truth, polygons=True)
    _one_box_per_frame(truth, boxes, frames)
    visible = _has_area(boxes)
    for name in ("full_occlusion.txt", "out_of_view.txt"):
        if (folder / name).exists():
            visible &= read_flags(folder / name, len(frames)) == 0
    return [Track(folder.name, "lasot", frames, boxes, visible, folder.name)]


def video_layout(folder: Path) -> str | None:
    """otb, lasot, got10k, or None for a folder that is no video."""
    if any(folder.glob("groundtruth_rect*.txt")) and (folder / "img").is_dir():
        return "otb"
    if (folder / "groundtruth.txt").is_file():
        return "lasot" if (folder / "img").is_dir() else "got10k"
    return None


READERS = {"otb": read_otb_video, "got10k": read_got10k_video, "lasot": read_lasot_video}


def _video_folders(root: Path) -> list[Path]:
    found = []
    for here, dirs, _ in os.walk(root):
        folder = Path(here)
        depth = len(folder.relative_to(root).parts)
        if video_layout(folder) is not None:
            found.append(folder)
            dirs[:] = []  # a video's own folders (img/) hold no videos
        elif depth >= MAX_DEPTH:
            dirs[:] = []
        dirs.sort()
    return found


def read_tracks(roots: str | Path | list, names: list[str] | None = None) -> list[Track]:
    """Every track under the roots (or those named: a video, e.g. Jogging, or a track, e.g.
    Jogging-1). Each root may hold videos of any layout; a root may be a video itself."""
    roots = [roots] if isinstance(roots, str | Path) else list(roots)
    tracks: list[Track] = []
    for root in map(Path, roots):
        if not root.is_dir():
            raise DataError(f"tracking data {root} does not exist; give folders of videos in "
                            "the OTB, GOT-10k or LaSOT layout")
        folders = _video_folders(root)
        if not folders:
            raise DataError(f"{root} holds no videos in the OTB, GOT-10k or LaSOT layout "
                            "(<Seq>/img/*.jpg + groundtruth_rect.txt, <video>/*.jpg + "
                            "groundtruth.txt + absence.label, <video>/img/ + groundtruth.txt)")
        for folder in folders:
            tracks += READERS[video_layout(folder)](folder)
    if names:
        wanted = set(names)
        known = {t.name for t in tracks} | {t.video for t in tracks}
        missing = sorted(wanted - known)
        if missing:
            where = ", ".join(map(str, roots))
            raise DataError(f"no video or track {', '.join(missing)} in {where}; choose from "
                            f"{', '.join(sorted({t.video for t in tracks})[:20])}")
        tracks = [t for t in tracks if t.name in wanted or t.video in wanted]
    empty = [t for t in tracks if len(t.usable) == 0]
    if empty:
        raise DataError(f"{empty[0].frames[0].parent}: the target of {empty[0].name} is visible "
                        "in no frame; remove the video or fix its boxes")
    return tracks
