"""SiamFC training (train.task = "tracking") on sequences in the OTB layout.

Each step draws its pairs from the step's own generator (seeded by seed, epoch and batch, so a
resumed run draws the same): a target uniformly among the training targets, an exemplar frame,
a search frame at most `track.max_gap` frames away (or, for a `still_share` of pairs, the same
frame: a still image made into a pseudo-video by the random shift and scale below; for an
`object_share` of pairs, a still pair around a random box of the frame, any object or texture,
so that the net learns to find what it is shown and not only the training targets' kind; for
a `negative_share`, the search crop is around another target, so that no cell is positive and
the net learns that a look-alike is not the target, as in DaSiamRPN's distractor pairs). The
exemplar is the target with context at 127 px; the search crop is centred off the target by up
to `track.shift` px and scaled by up to `track.stretch`, so the net must find it; both crops
are flipped together half the time and turned grey together a tenth of the time; with
`jitter` > 0 each crop gets its own brightness, contrast and colour gains. The loss is
the balanced logistic loss on the response map (losses/response.py). For a `scale_share` of
the pairs the search crop is also cut SCALE_CONTRAST times smaller and larger around the same
point (the same flip and light): the tracker picks the scale whose response peaks highest, so
the three peaks' softmax is trained to pick the crop where the target has the exemplar's
scale (cross-entropy, added to the map loss).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..artifact import save_tensors, write_card
from ..config import Config
from ..data.crops import centre_of, context_size, crop, frame_mean
from ..data.loader import IndexedSamples, ShuffledBatches, make_loader
from ..data.otb import list_targets, read_frames
from ..errors import ConfigError
from ..evaluation.plots import plot_history
from ..losses.response import balanced_logistic_loss, response_labels
from ..models.siamfc import SiamFC
from ..tracking.net import build_tracker_net
from .distributed import Dist
from .run import fit_run, new_card, start_folder, start_run
from .task import Task
from .trainer import batch_generator

# the offset of a target that is not in the search crop: no cell of its map is positive
FAR = 1e4
# recalibrate_norms' batches: their generators' "epoch", apart from training's
RECALIBRATION = 2**31 - 1
# track.scale_share's pairs: their search crop also cut this many times smaller and larger
SCALE_CONTRAST = 1.2


def random_box(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """A box inside a frame of this shape: its area 0.5% to 10% of the frame's, its aspect
    ratio 1:3 to 3:1 (about the range of tracked targets)."""
    fh, fw = shape[:2]
    area = fh * fw * float(np.exp(rng.uniform(np.log(0.005), np.log(0.1))))
    aspect = float(np.exp(rng.uniform(-np.log(3), np.log(3))))
    w = min(np.sqrt(area * aspect), fw - 1.0)
    h = min(np.sqrt(area / aspect), fh - 1.0)
    return np.array([rng.uniform(0, fw - w), rng.uniform(0, fh - h), w, h])


class TrackingTask(Task):
    inputs_per_sample = 2

    def __init__(self, net: SiamFC, videos: list[tuple[list[np.ndarray], np.ndarray]],
                 cfg: Config, device: str = "cpu", rank: int = 0) -> None:
        self.model = self.module = net
        self.videos, self.cfg, self.device, self.rank = videos, cfg.track, device, rank
        self.means = [frame_mean(frames[0]) for frames, _ in videos]

    def pair(self, rng: np.random.Generator, scaled: list | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> exemplar crop, search crop (uint8 HWC), the target's offset (x, y) from the
        search crop's centre in crop pixels (FAR where the target is not in the crop). For a
        track.scale_share of the pairs (drawn only where `scaled` is a list), the search crop
        cut SCALE_CONTRAST times smaller and larger is appended to `scaled` with the index (0
        smaller, 1 as returned, 2 larger) of the one where the target has the exemplar's scale."""
        k = self.cfg
        v = int(rng.integers(len(self.videos)))
        frames, boxes = self.videos[v]
        i = int(rng.integers(len(boxes)))
        j = i if rng.random() < k.still_share else int(np.clip(
            i + rng.integers(-k.max_gap, k.max_gap + 1), 0, len(boxes) - 1))
        box_i, box_j = boxes[i], boxes[j]
        if rng.random() < k.object_share:  # any object or texture of the frame, held still
            j, box_i = i, random_box(frames[i].shape, rng)
            box_j = box_i
        (cx, cy), (w, h) = centre_of(box_i), box_i[2:]
        z = crop(frames[i], cx, cy, context_size(w, h, k.context), k.exemplar, self.means[v])
        # another target's crop: a look-alike, not the target (no draw when the share is 0;
        # with one training target, a random box of one of its frames)
        if k.negative_share and rng.random() < k.negative_share:
            u = (v + 1 + int(rng.integers(len(self.videos) - 1))) % len(self.videos) \
                if len(self.videos) > 1 else v
            frames_u, boxes_u = self.videos[u]
            j = int(rng.integers(len(boxes_u)))
            box_u = boxes_u[j] if u != v else random_box(frames_u[j].shape, rng)
            x, _ = self._search(frames_u[j], box_u, self.means[u], rng)
            return z, x, np.full(2, FAR)
        contrast = scaled is not None and k.scale_share and rng.random() < k.scale_share
        x, offset = self._search(frames[j], box_j, self.means[v], rng,
                                 scaled if contrast else None)
        return z, x, offset

    def _search(self, frame: np.ndarray, box: np.ndarray, mean, rng: np.random.Generator,
                scaled: list | None = None):
        """The search crop around a box, shifted by up to track.shift px and scaled by up to
        track.stretch -> the crop and the box centre's offset from the crop's centre. With
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
        return crop(frame, cx, cy, side, k.search, mean), offset

    def batch(self, n: int, gen: torch.Generator) -> tuple:
        """-> exemplars (n), search crops (n, then the scale pairs' smaller and larger
        crops), offsets (n, 2), and None or the scale pairs' (indices, true-scale index)."""
        # the step's generator is the same on every rank: each rank draws its own pairs
        rng = np.random.default_rng([int(torch.randint(2 ** 62, (1,), generator=gen)),
                                     self.rank])
        zs, xs, offsets, which, truth, extra = [], [], [], [], [], [[], []]
        for i in range(n):
            scaled = [] if self.cfg.scale_share else None
            for out, item in zip((zs, xs, offsets), self.pair(rng, scaled), strict=True):
                out.append(item)
            if scaled:
                which.append(i)
                truth.append(scaled[0][1])
                for out, item in zip(extra, scaled[0][0], strict=True):
                    out.append(item)
        z = torch.from_numpy(np.stack(zs)).permute(0, 3, 1, 2).float()
        x = torch.from_numpy(np.stack(xs + extra[0] + extra[1])).permute(0, 3, 1, 2).float()
        off = torch.from_numpy(np.stack(offsets)).float()
        # a scale pair's three crops share their pair's flip, grey and light
        src = torch.cat([torch.arange(n), torch.tensor(which * 2, dtype=torch.long)])
        flip = torch.from_numpy(rng.random(n) < 0.5)
        z[flip], x[flip[src]] = z[flip].flip(-1), x[flip[src]].flip(-1)
        off[flip, 0] = -off[flip, 0]
        grey = torch.from_numpy(rng.random(n) < 0.1)
        z[grey] = z[grey].mean(1, keepdim=True).expand(-1, 3, -1, -1)
        x[grey[src]] = x[grey[src]].mean(1, keepdim=True).expand(-1, 3, -1, -1)
        if self.cfg.jitter > 0:  # each crop its own light: the target's look changes
            z, x = self._jitter(z, rng), self._jitter(x, rng, src)
        cl = torch.channels_last
        scales = (torch.tensor(which), torch.tensor(truth)) if which else None
        return z.contiguous(memory_format=cl), x.contiguous(memory_format=cl), off, scales

    def _jitter(self, t: torch.Tensor, rng: np.random.Generator,
                src: torch.Tensor | None = None) -> torch.Tensor:
        """Each crop's brightness and contrast scaled by exp(U(-j, j)), each colour channel's
        gain by a further exp(U(-j/2, j/2)) (j = track.jitter), kept in [0, 255]. With `src`,
        crop i takes the draws of crop src[i] (one draw per distinct crop)."""
        j = self.cfg.jitter
        n = t.shape[0] if src is None else int(src.max()) + 1
        pick = slice(None) if src is None else src

        def draw(*shape, s=j):
            return torch.from_numpy(np.exp(rng.uniform(-s, s, shape))).float()[pick]

        gain = draw(n, 1, 1, 1) * draw(n, 3, 1, 1, s=j / 2)
        mean = t.mean((1, 2, 3), keepdim=True)
        return (((t - mean) * draw(n, 1, 1, 1) + mean) * gain).clamp(0, 255)

    def step(self, batch, gen: torch.Generator) -> torch.Tensor:
        return self.loss(*self.batch(len(batch[0]), gen))

    def loss(self, z: torch.Tensor, x: torch.Tensor, offsets: torch.Tensor,
             scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The response loss of exemplar/search crops whose targets lie `offsets` off the
        search crops' centres (in whatever mode the net is in); with `scales` (the scale
        pairs' indices and true-scale index, their extra crops after x's first n), plus the
        cross-entropy of the three crops' response peaks."""
        n = len(offsets)
        if scales is not None:  # one forward pass: the extra crops share the batch's norm
            z = torch.cat([z, z[scales[0]], z[scales[0]]])
        logits = self.model(z.to(self.device), x.to(self.device)).float()
        labels = response_labels(logits.shape[-1], self.module.stride, self.cfg.radius, offsets)
        loss = balanced_logistic_loss(logits[:n], labels.to(logits.device))
        if scales is None:
            return loss
        m, peaks = len(scales[0]), logits.flatten(1).amax(1)
        trio = torch.stack([peaks[n:n + m], peaks[scales[0]], peaks[n + m:]], 1)
        return loss + F.cross_entropy(trio, scales[1].to(trio.device))


def recalibrate_norms(task: TrackingTask, batches: int, batch_size: int, seed: int) -> None:
    """The batch-norm running averages recomputed with the net's present weights: a
    cumulative average over `batches` batches of training search crops (drawn as in training,
    from generators apart from training's). In training they trail the weights by about
    1 / momentum steps and the exemplars are normalised by them, so the net learns with
    averages of some steps before; the tracker runs every crop through them."""
    net = task.module
    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was = net.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average
    net.train()
    try:
        with torch.no_grad():
            for b in range(batches):
                x = task.batch(batch_size, batch_generator(seed, RECALIBRATION, b))[1]
                net.embed(x.to(task.device))
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        net.train(was)


def load_videos(cfg: Config) -> tuple[list, list[str]]:
    """The training targets' frames (decoded once, in memory) and boxes."""
    targets = list_targets(Path(cfg.data.path), cfg.track.sequences or None)
    cache: dict[Path, list[np.ndarray]] = {}
    videos = []
    for t in targets:
        if t.sequence not in cache:
            cache[t.sequence] = read_frames(t.frames)
        frames = cache[t.sequence]
        n = min(len(frames), len(t.boxes))
        valid = [i for i in range(n) if t.boxes[i][2] > 0 and t.boxes[i][3] > 0]
        videos.append(([frames[i] for i in valid], t.boxes[valid]))
    return videos, [t.name for t in targets]


def train_tracking(cfg: Config, out: Path, d: Dist, resume: bool, force: bool,
                   quiet: bool):
    from ..tracking.model import TrackingModel

    device, amp = start_run(cfg, d)
    if not cfg.data.path:
        raise ConfigError("train.task tracking needs --data: a folder of sequences in the OTB "
                          "layout (<Seq>/img/0001.jpg, <Seq>/groundtruth_rect.txt)")
    videos, names = load_videos(cfg)
    net = build_tracker_net(cfg).to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr,
                                  weight_decay=cfg.train.weight_decay)
    k = cfg.track
    batches = ShuffledBatches(k.pairs_per_epoch, cfg.train.batch_size, cfg.train.seed, d.rank,
                              d.world)
    start_folder(out, cfg, {"mode": "sequences", "train": names}, d, resume, force)
    card = new_card(cfg, d, 0, amp,
                    preprocessing={"kind": "tracking", "input_shape": [3, k.exemplar,
                                                                       k.exemplar],
                                   "mean": [0.0] * 3, "std": [255.0] * 3},
                    classes=[], data={"kind": "tracking", "targets": names,
                                      "frames": sum(len(b) for _, b in videos)},
                    tracking={"exemplar": k.exemplar, "search": k.search,
                              "response_size": net.response_size, "stride": net.stride},
                    split={"mode": "sequences", "train": names})
    loader = make_loader(IndexedSamples(torch.zeros(k.pairs_per_epoch, 1),
                                        np.zeros(k.pairs_per_epoch)), batches, 0)
    task = TrackingTask(net, videos, cfg, device, d.rank)
    fit_run(cfg, out, d, task, optimizer, loader, card, None, "none", resume, quiet, amp)
    if not d.main:
        return None
    if k.recalibrate:  # the kept weights' own averages
        recalibrate_norms(task, k.recalibrate, cfg.train.batch_size, cfg.train.seed)
        save_tensors(out / "model.safetensors", net.state_dict())
        card["recalibrated_batches"] = k.recalibrate
    card["status"] = "trained"
    write_card(out, card)
    plot_history(card["history"], out / "training.png")
    return TrackingModel.load(out, device)
