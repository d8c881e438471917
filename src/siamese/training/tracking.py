"""SiamFC training (train.task = "tracking") on videos in the OTB, GOT-10k or LaSOT layout
(data/tracks.py; data.path may list several roots).

DataLoader workers cut the pairs from frames they decode on demand (training/track_pairs.py);
each pair has its own generator (seeded by seed, epoch and the pair's index, so a resumed run
draws the same, whatever the workers): a track uniformly among the tracks, an exemplar frame
among its visible ones,
a search frame at most `track.max_gap` frames away (or, for a `still_share` of pairs, the same
frame: a still image made into a pseudo-video by the random shift and scale below; for an
`object_share` of pairs, a still pair around a random box of the frame, any object or texture,
so that the net learns to find what it is shown and not only the training targets' kind; for
a `negative_share`, the search crop is around another target, so that no cell is positive and
the net learns that a look-alike is not the target, as in DaSiamRPN's distractor pairs). The
exemplar is the target with context at 127 px; the search crop is centred off the target by up
to `track.shift` px and scaled by up to `track.stretch`, so the net must find it; both crops
are flipped together half the time and turned grey together a tenth of the time; with
`jitter` > 0 each crop gets its own brightness, contrast and colour gains (these on the
training device, from draws made with the pair). The loss is
the balanced logistic loss on the response map (losses/response.py). For a `scale_share` of
the pairs the search crop is also cut SCALE_CONTRAST times smaller and larger around the same
point (the same flip and light): the tracker picks the scale whose response peaks highest, so
the three peaks' softmax is trained to pick the crop where the target has the exemplar's
scale (cross-entropy, added to the map loss). With track.head = "box" (models/siambox.py) the
net also regresses the target's box at every cell, trained by losses/box.py on the same pairs
(each pair carries the target's size in the search crop beside its offset).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from ..artifact import save_tensors, write_card
from ..config import Config
from ..data.loader import default_workers, make_loader
from ..data.tracks import read_tracks
from ..errors import ConfigError
from ..evaluation.plots import plot_history
from ..losses.box import box_loss
from ..losses.response import balanced_logistic_loss, response_labels
from ..models.siamfc import SiamFC
from ..tracking.net import build_tracker_net
from .distributed import Dist
from .run import fit_run, new_card, start_folder, start_run
from .task import Task
from .track_pairs import PairBatches, TrackPairs, apply_looks

# recalibrate_norms' batches: their pairs' "epoch", one no training run reaches
RECALIBRATION = 2**31 - 1


class TrackingTask(Task):
    """Batches of pairs (TrackPairs: uint8 crops and each pair's looks) -> on the device,
    the looks applied, the response map's loss (and the scale pairs' cross-entropy)."""

    inputs_per_sample = 2

    def __init__(self, net: SiamFC, cfg: Config, device: str = "cpu") -> None:
        self.model = self.module = net
        self.cfg, self.device = cfg.track, device

    def prepare(self, batch) -> tuple:
        """A TrackPairs batch -> (z, x, offsets, scales) on the device, the looks applied."""
        z, x, offsets, looks, scales = batch
        dev = self.device
        n = len(offsets)
        src = torch.arange(n) if scales is None else torch.cat([torch.arange(n),
                                                                scales[0], scales[0]])
        z, x, offsets = apply_looks(z.to(dev, non_blocking=True), x.to(dev, non_blocking=True),
                                    offsets.to(dev), looks.to(dev), src.to(dev))
        return z, x, offsets, scales

    def step(self, batch, gen: torch.Generator) -> torch.Tensor:
        return self.loss(*self.prepare(batch))

    def loss(self, z: torch.Tensor, x: torch.Tensor, offsets: torch.Tensor,
             scales: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """The response loss of exemplar/search crops whose targets lie `offsets` off the
        search crops' centres ((n, 4): offset x, y and size w, h in crop pixels; in whatever
        mode the net is in); the box head's loss where track.head = "box"; with `scales` (the scale
        pairs' indices and true-scale index, their extra crops after x's first n), plus the
        cross-entropy of the three crops' response peaks."""
        n = len(offsets)
        if scales is not None:  # one forward pass: the extra crops share the batch's norm
            z = torch.cat([z, z[scales[0]], z[scales[0]]])
        if self.cfg.head in ("box", "imported"):
            out = self.model(z.to(self.device), x.to(self.device))
            return box_loss(*(None if o is None else o.float() for o in out),
                            offsets.to(self.device),
                            self.module.stride, self.cfg.radius)
        logits = self.model(z.to(self.device), x.to(self.device)).float()
        labels = response_labels(logits.shape[-1], self.module.stride, self.cfg.radius,
                                 offsets.to(logits.device))
        loss = balanced_logistic_loss(logits[:n], labels)
        if scales is None:
            return loss
        m, peaks = len(scales[0]), logits.flatten(1).amax(1)
        trio = torch.stack([peaks[n:n + m], peaks[scales[0]], peaks[n + m:]], 1)
        return loss + F.cross_entropy(trio, scales[1].to(trio.device))


def recalibrate_norms(task: TrackingTask, pairs: TrackPairs, batches: int,
                      batch_size: int) -> None:
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
                x = task.prepare(pairs.batch(RECALIBRATION * pairs.n + b * batch_size,
                                             batch_size))[1]
                net.embed(x)
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        net.train(was)


def _imported(cfg: Config, quiet: bool):
    """model.pretrained read and its input settled into cfg (pretrained/setup.py), or None."""
    if not cfg.model.pretrained:
        return None
    from ..pretrained.setup import prepare

    opened = prepare(cfg, quiet)
    if opened.format != "onnx":
        raise ConfigError(f"model.pretrained {cfg.model.pretrained}: a tracking backbone is "
                          "imported from an ONNX network (a feature map); give an .onnx file "
                          "or a catalogue name (siamese pretrained list)")
    return opened


def _imported_head(cfg: Config):
    """track.pretrained_head read (two inputs, all its outputs), or None."""
    if not cfg.track.pretrained_head:
        return None
    from ..pretrained.encoder import open_start

    opened = open_start(cfg.track.pretrained_head, inputs=2)
    if opened.format != "onnx":
        raise ConfigError(f"track.pretrained_head {cfg.track.pretrained_head}: a tracker's "
                          "head is imported from an ONNX file (as NanoTrack's head.onnx)")
    return opened


def _start_from(net: SiamFC, opened, head, cfg: Config) -> list[dict]:
    """The imported weights into the backbone (and the head), what trains of them chosen
    (frozen by default: the 1x1 adjustment, scale and bias train); the optimizer's groups,
    the imported weights at pretrained_lr x lr."""
    from ..pretrained.setup import load_weights, optimizer_groups

    load_weights(net.backbone, opened, cfg)
    imported = {id(p) for p in net.backbone.graph.parameters()}
    if head is not None:  # the head was trained on the backbone's own features: the 1x1
        # adjustment (the identity to start) moves at pretrained_lr too (trained at the full
        # rate, 5 minutes scored 0.737, 0.727 and 0.701 over 3 seeds, untrained 0.728)
        net.head.graph.load_state_dict(head.weights)
        net.head.requires_grad_(cfg.track.head_train == "all")
        imported |= {id(p) for p in [*net.head.parameters(), *net.backbone.adjust.parameters()]}
    return optimizer_groups(net.parameters(), imported, cfg)


def train_tracking(cfg: Config, out: Path, d: Dist, resume: bool, force: bool,
                   quiet: bool):
    from ..tracking.model import TrackingModel

    device, amp = start_run(cfg, d)
    if not cfg.data.path:
        raise ConfigError("train.task tracking needs --data: a folder of sequences in the OTB "
                          "layout (<Seq>/img/0001.jpg, <Seq>/groundtruth_rect.txt)")
    tracks = read_tracks(cfg.data.path, cfg.track.sequences or None)
    names = [t.name for t in tracks]
    opened, head = _imported(cfg, quiet), _imported_head(cfg)
    net = build_tracker_net(cfg, opened.spec if opened else None, head.spec if head else None)
    groups = [{"params": list(net.parameters())}]
    if opened is not None:
        groups = _start_from(net, opened, head, cfg)
    net = net.to(device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    k = cfg.track
    batches = PairBatches(k.pairs_per_epoch, cfg.train.batch_size, cfg.train.seed, d.rank,
                          d.world)
    pairs = TrackPairs(tracks, k, k.pairs_per_epoch, cfg.train.seed)
    n_workers = cfg.train.workers if cfg.train.workers >= 0 else default_workers()
    start_folder(out, cfg, {"mode": "sequences", "train": names}, d, resume, force)
    card = new_card(cfg, d, n_workers, amp,
                    preprocessing={"kind": "tracking", "input_shape": [3, k.exemplar,
                                                                       k.exemplar],
                                   "mean": [0.0] * 3, "std": [255.0] * 3},
                    classes=[], data={"kind": "tracking", "targets": names,
                                      "frames": sum(len(t.usable) for t in tracks),
                                      "layouts": sorted({t.layout for t in tracks})},
                    tracking={"exemplar": k.exemplar, "search": k.search,
                              "response_size": net.response_size, "stride": net.stride},
                    split={"mode": "sequences", "train": names})
    if opened is not None:  # the graph beside the weights: the run loads without the file
        from ..atomic import atomic_write_json
        from ..pretrained.setup import GRAPH_FILE
        from ..pretrained.tracking import HEAD_GRAPH_FILE

        if d.main:
            atomic_write_json(out / GRAPH_FILE, opened.spec)
        card["pretrained"] = {**opened.card(cfg.model.pretrained), "graph": GRAPH_FILE,
                              "train": cfg.model.pretrained_train}
        if head is not None:
            if d.main:
                atomic_write_json(out / HEAD_GRAPH_FILE, head.spec)
            card["pretrained"].update(head_graph=HEAD_GRAPH_FILE, head={
                **head.card(cfg.track.pretrained_head), "train": cfg.track.head_train})
    loader = make_loader(pairs, batches, n_workers, pin_memory=device.startswith("cuda"))
    task = TrackingTask(net, cfg, device)
    fit_run(cfg, out, d, task, optimizer, loader, card, None, "none", resume, quiet, amp)
    if not d.main:
        return None
    if k.recalibrate:  # the kept weights' own averages
        recalibrate_norms(task, pairs, k.recalibrate, cfg.train.batch_size)
        save_tensors(out / "model.safetensors", net.state_dict())
        card["recalibrated_batches"] = k.recalibrate
    card["status"] = "trained"
    write_card(out, card)
    plot_history(card["history"], out / "training.png")
    return TrackingModel.load(out, device)
