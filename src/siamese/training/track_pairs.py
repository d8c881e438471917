"""SiamFC's training pairs, streamed: a `torch.utils.data.Dataset` whose batches DataLoader
workers cut from frames they decode on demand (a bounded cache of decoded frames per process),
so that a training set of any size (GOT-10k's 1.4 M frames) is never decoded into memory.

Pair `i` of epoch `e` is a pure function of (seed, e, i): the same whatever the batch, the
rank or the worker that makes it, and on resume. How a pair is drawn (training/tracking.py's
docstring has the whole recipe): a track uniformly among the tracks, an exemplar frame among
its visible ones, a search frame at most `track.max_gap` frames away (or the same frame for a
`still_share`; a random box of the frame for an `object_share`; another track's crop for a
`negative_share`), the search crop shifted and scaled off the target. The crops travel as
uint8 (N, H, W, 3) with each pair's flip, grey and light draws beside them; the training
device applies those (TrackingTask), so a batch is moved once, in a quarter of float's bytes.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import TrackConfig
from ..data.crops import centre_of, context_size, crop, frame_mean
from ..data.loader import ShuffledBatches
from ..data.otb import read_frame
from ..data.tracks import Track

# the offset of a target that is not in the search crop: no cell of its map is positive
FAR = 1e4
# track.scale_share's pairs: their search crop also cut this many times smaller and larger
SCALE_CONTRAST = 1.2
# decoded frames each process keeps (bytes): 2,300 frames of 320 x 240, 190 of 1280 x 720
FRAME_CACHE_BYTES = 1 << 29


class FrameCache:
    """Decoded frames by path, the least recently used dropped past `budget` bytes."""

    def __init__(self, budget: int = FRAME_CACHE_BYTES) -> None:
        self.budget, self.used = budget, 0
        self.frames: OrderedDict[Path, tuple[np.ndarray, tuple]] = OrderedDict()

    def get(self, path: Path) -> tuple[np.ndarray, tuple]:
        """-> the RGB frame (H, W, 3) uint8 and its mean colour (a crop's padding)."""
        hit = self.frames.get(path)
        if hit is not None:
            self.frames.move_to_end(path)
            return hit
        frame = read_frame(path)
        hit = (frame, frame_mean(frame))
        self.frames[path] = hit
        self.used += frame.nbytes
        while self.used > self.budget and len(self.frames) > 1:
            _, (old, _) = self.frames.popitem(last=False)
            self.used -= old.nbytes
        return hit


def random_box(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A box inside a frame of this shape: its area 0.5% to 10% of the frame's, its aspect
    ratio 1:3 to 3:1 (about the range of tracked targets)."""
    fh, fw = shape[:2]
    area = fh * fw * float(np.exp(rng.uniform(np.log(0.005), np.log(0.1))))
    aspect = float(np.exp(rng.uniform(-np.log(3), np.log(3))))
    w = min(np.sqrt(area * aspect), fw - 1.0)
    h = min(np.sqrt(area / aspect), fh - 1.0)
    return np.array([rng.uniform(0, fw - w), rng.uniform(0, fh - h), w, h])


class PairBatches(ShuffledBatches):
    """ShuffledBatches whose items carry their epoch (item e * n + i), so that a worker knows
    which pair it makes without being told the epoch."""

    def __iter__(self):
        for b in super().__iter__():
            yield [self.epoch * self.n + i for i in b]


class TrackPairs(Dataset):
    """Items e * n + i (PairBatches) -> batches of training pairs (see `__getitems__`)."""

    def __init__(self, tracks: list[Track], cfg: TrackConfig, n: int, seed: int,
                 cache_bytes: int = FRAME_CACHE_BYTES) -> None:
        self.tracks, self.cfg, self.n, self.seed = tracks, cfg, n, seed
        self.usable = [t.usable for t in tracks]
        self.cache_bytes = cache_bytes
        self._cache: FrameCache | None = None  # made in the process that reads (a worker)

    @classmethod
    def in_memory(cls, videos: list[tuple[list[np.ndarray], np.ndarray]], cfg: TrackConfig,
                  n: int = 1024, seed: int = 0) -> TrackPairs:
        """Pairs from decoded videos ((frames, (N, 4) boxes) each) held in memory: the frames
        sit in the cache under stand-in paths, never read from disk."""
        tracks, frames = [], {}
        for v, (video, boxes) in enumerate(videos):
            paths = [Path(f"<memory>/{v}/{i}") for i in range(len(video))]
            frames.update(zip(paths, video, strict=True))
            boxes = np.asarray(boxes, dtype=np.float64)
            visible = np.isfinite(boxes).all(1) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
            tracks.append(Track(str(v), "memory", paths, boxes, visible, str(v)))
        pairs = cls(tracks, cfg, n, seed, cache_bytes=1 << 62)
        for path, frame in frames.items():
            pairs.cache.frames[path] = (frame, frame_mean(frame))
            pairs.cache.used += frame.nbytes
        return pairs

    def __len__(self) -> int:
        return self.n

    def batch(self, first: int, size: int):
        """Items first .. first + size - 1 (`__getitems__`): a batch outside any loader."""
        return self.__getitems__(list(range(first, first + size)))

    @property
    def cache(self) -> FrameCache:
        if self._cache is None:
            self._cache = FrameCache(self.cache_bytes)
        return self._cache

    def pair(self, rng: np.random.Generator, scaled: list | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> exemplar crop, search crop (uint8 HWC), the target in the search crop: its
        centre's offset (x, y) from the crop's centre and its size (w, h), in crop pixels
        (offset FAR and size 0 where the target is not in the crop). For a
        track.scale_share of the pairs (drawn only where `scaled` is a list), the search crop
        cut SCALE_CONTRAST times smaller and larger is appended to `scaled` with the index (0
        smaller, 1 as returned, 2 larger) of the one where the target has the exemplar's
        scale."""
        k = self.cfg
        v = int(rng.integers(len(self.tracks)))
        track, usable = self.tracks[v], self.usable[v]
        a = int(rng.integers(len(usable)))
        i = int(usable[a])
        if rng.random() < k.still_share:
            j = i
        else:  # a visible frame at most max_gap frames away
            lo, hi = np.searchsorted(usable, [i - k.max_gap, i + k.max_gap + 1])
            j = int(usable[int(rng.integers(lo, hi))])
        frame_i, mean_i = self.cache.get(track.frames[i])
        box_i, box_j = track.boxes[i], track.boxes[j]
        if rng.random() < k.object_share:  # any object or texture of the frame, held still
            j, box_i = i, random_box(frame_i.shape, rng)
            box_j = box_i
        (cx, cy), (w, h) = centre_of(box_i), box_i[2:]
        z = crop(frame_i, cx, cy, context_size(w, h, k.context), k.exemplar, mean_i)
        # another track's crop: a look-alike, not the target (no draw when the share is 0;
        # with one training track, a random box of one of its frames)
        if k.negative_share and rng.random() < k.negative_share:
            u = (v + 1 + int(rng.integers(len(self.tracks) - 1))) % len(self.tracks) \
                if len(self.tracks) > 1 else v
            j = int(self.usable[u][int(rng.integers(len(self.usable[u])))])
            frame_u, mean_u = self.cache.get(self.tracks[u].frames[j])
            box_u = self.tracks[u].boxes[j] if u != v else random_box(frame_u.shape, rng)
            x, _ = self._search(frame_u, box_u, mean_u, rng)
            return z, x, np.array([FAR, FAR, 0.0, 0.0])
        frame_j, mean_j = self.cache.get(track.frames[j])
        contrast = scaled is not None and k.scale_share and rng.random() < k.scale_share
        x, offset = self._search(frame_j, box_j, mean_j, rng, scaled if contrast else None)
        return z, x, offset

    def _search(self, frame: np.ndarray, box: np.ndarray, mean, rng: np.random.Generator,
                scaled: list | None = None):
        """The search crop around a box, shifted by up to track.shift px and scaled by up to
        track.stretch -> the crop and the box's centre offset from the crop's centre and its
        size, (4,) in crop pixels. With
        `scaled`, the same point cut SCALE_CONTRAST times smaller and larger is appended to
        it, with the index of the crop whose scale is nearest the exemplar's (see pair)."""
        k = self.cfg
        (cx, cy), (w, h) = centre_of(box), box[2:]
        stretch = float(np.exp(rng.uniform(-1, 1) * np.log1p(k.stretch)))
        side = context_size(w, h, k.context) * k.search / k.exemplar * stretch
        offset = rng.uniform(-k.shift, k.shift, 2)
        # the crop's centre is the target's centre minus the offset (in frame pixels)
        a = side / k.search
        cx, cy = cx - offset[0] * a, cy - offset[1] * a
        if scaled is not None:
            factors = np.array([1 / SCALE_CONTRAST, 1.0, SCALE_CONTRAST])
            scaled.append(([crop(frame, cx, cy, side * f, k.search, mean)
                            for f in factors[::2]],
                           int(np.argmin(np.abs(np.log(stretch * factors))))))
        return (crop(frame, cx, cy, side, k.search, mean),
                np.concatenate([offset, np.asarray(box[2:], dtype=float) / a]))

    def looks(self, rng: np.random.Generator) -> np.ndarray:
        """A pair's flip, grey and light draws: (11,) float32: flip, grey, then for the
        exemplar and the search crop each contrast, brightness and 3 colour gains (1 where
        track.jitter is 0)."""
        j = self.cfg.jitter
        flip, grey = float(rng.random() < 0.5), float(rng.random() < 0.1)
        light = np.ones(10)
        if j > 0:
            for c in (0, 5):
                light[c:c + 2] = np.exp(rng.uniform(-j, j, 2))
                light[c + 2:c + 5] = np.exp(rng.uniform(-j / 2, j / 2, 3))
        return np.concatenate([[flip, grey], light]).astype(np.float32)

    def __getitems__(self, items: list[int]):
        """-> (exemplars (n, E, E, 3) uint8, search crops (n + 2m, S, S, 3) uint8: the n, then
        the m scale pairs' smaller and larger crops, targets (n, 4): each target's offset from the
        search crop's centre and its size there, looks (n, 11), and None or
        the scale pairs' (indices, true-scale index))."""
        zs, xs, offsets, looks, which, truth, extra = [], [], [], [], [], [], [[], []]
        for row, item in enumerate(items):
            epoch, i = divmod(int(item), self.n)
            rng = np.random.default_rng([self.seed, epoch, i])
            scaled = [] if self.cfg.scale_share else None
            z, x, offset = self.pair(rng, scaled)
            zs.append(z)
            xs.append(x)
            offsets.append(offset)
            looks.append(self.looks(rng))
            if scaled:
                which.append(row)
                truth.append(scaled[0][1])
                for out, c in zip(extra, scaled[0][0], strict=True):
                    out.append(c)
        scales = (torch.tensor(which), torch.tensor(truth)) if which else None
        return (torch.from_numpy(np.stack(zs)), torch.from_numpy(np.stack(xs + extra[0] +
                                                                          extra[1])),
                torch.from_numpy(np.stack(offsets)).float(),
                torch.from_numpy(np.stack(looks)), scales)


def apply_looks(z: torch.Tensor, x: torch.Tensor, offsets: torch.Tensor, looks: torch.Tensor,
                src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """On the training device: uint8 (N, H, W, 3) crops -> float (N, 3, H, W) in [0, 255]
    (channels-last), each pair flipped (its target's x offset too), made grey and lit as `looks`
    says; search crop r takes pair src[r]'s draws (a scale pair's three crops share them)."""
    def lit(t: torch.Tensor, light: torch.Tensor, grey: torch.Tensor) -> torch.Tensor:
        t = t.permute(0, 3, 1, 2).float()
        t = torch.where(grey[:, None, None, None], t.mean(1, keepdim=True).expand_as(t), t)
        mean = t.mean((1, 2, 3), keepdim=True)
        gain = light[:, 1, None, None, None] * light[:, 2:5, None, None]
        return (((t - mean) * light[:, 0, None, None, None] + mean) * gain).clamp(0, 255)

    flip, grey = looks[:, 0] > 0.5, looks[:, 1] > 0.5
    z = lit(z, looks[:, 2:7], grey)
    x = lit(x, looks[src, 7:12], grey[src])
    z = torch.where(flip[:, None, None, None], z.flip(-1), z)
    x = torch.where(flip[src][:, None, None, None], x.flip(-1), x)
    offsets = torch.cat([torch.where(flip, -offsets[:, 0], offsets[:, 0])[:, None],
                         offsets[:, 1:]], 1)
    cl = torch.channels_last
    return z.contiguous(memory_format=cl), x.contiguous(memory_format=cl), offsets
