"""The tracking part of the run configuration: the [track] section (SiamFC's training pairs
and the tracker's settings) and how a train.task = "tracking" config is resolved."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .errors import ConfigError, raise_first_failed

if TYPE_CHECKING:
    from .config import Config


@dataclass
class TrackConfig:
    """train.task tracking (SiamFC, docs/tracking.md): data.path is a folder of sequences in
    the OTB layout. Training pairs, then the tracker's settings (saved with the run)."""
    # fc: SiamFC's one correlation map, the size searched over scales; box: a head that
    # regresses the box at every cell (anchor-free, SiamFC++-like; models/siambox.py);
    # imported: set by pretrained_head
    head: str = "fc"
    # a tracker's own head imported from ONNX (a catalogue name or a file: two inputs, the
    # exemplar's and the search crop's feature maps of model.pretrained; outputs a class map
    # and the l, t, r, b distances per cell, as NanoTrack's head.onnx); head_train: frozen
    # or all (at model.pretrained_lr x train.lr)
    pretrained_head: str = ""
    head_train: str = "frozen"
    sequences: list[str] = field(default_factory=list)  # to train on; [] = every one
    exemplar: int = 127  # crop sizes (px): the target with context, and the search region
    search: int = 255
    context: float = 0.5  # margin around the target: p = context x (w + h)
    max_gap: int = 100  # at most this many frames between a pair's exemplar and search frame
    still_share: float = 0.2  # pairs of one frame with itself, moved by the random shift/scale
    object_share: float = 0.2  # still pairs around a random box (any object, not the target)
    negative_share: float = 0.0  # pairs whose search crop shows another target (no positive)
    scale_share: float = 0.0  # pairs also cut 1.2x smaller and larger: which is the target's scale
    jitter: float = 0.3  # each crop's light: brightness/contrast x exp(U(-j, j)) (0: none)
    shift: float = 24.0  # the target lies up to this many px off the search crop's centre
    stretch: float = 0.1  # and is scaled by up to +-10% against the exemplar
    radius: float = 16.0  # response cells within this many search-crop px are positives
    # batch, shared or renorm: exemplars' norm in training (docs/research/tracking.md)
    norm: str = "batch"
    pairs_per_epoch: int = 1024
    recalibrate: int = 0  # batches to recompute the norms' averages over after training (0: not)
    scales: int = 3  # the tracker's scale pyramid
    scale_step: float = 1.0375
    scale_penalty: float = 0.9745  # a changed scale must win by this factor
    scale_lr: float = 0.59  # damping of the size update
    window_influence: float = 0.176  # cosine window's share in the response (motion prior)
    upsample: int = 16  # the response map is upsampled (bicubic) by this factor
    template_lr: float = 0.0  # each frame the exemplar moves this far to the new one (0: fixed)
    # lost and found: after `redetect` frames in a row whose confidence (the peak's sigmoid)
    # is below lost_below, search a region `widen` times wider until it is back; 0: never
    redetect: int = 0
    lost_below: float = 0.5
    widen: float = 2.5
    # the box head's tracker (SiamFC++'s published settings): a change of size or aspect is
    # penalised by exp(-(change - 1) * box_penalty), the class x quality score is blended
    # with a cosine window (box_window), the size moves box_lr x the score towards the box
    box_penalty: float = 0.04
    box_window: float = 0.21
    box_lr: float = 0.52


# the tracker's own settings: they change how a trained net tracks, not how it is trained, so a
# run can be scored again with others (TrackingModel.with_settings)
TRACKER_SETTINGS = ("scales", "scale_step", "scale_penalty", "scale_lr", "window_influence",
                    "upsample", "template_lr", "redetect", "lost_below", "widen",
                    "box_penalty", "box_window", "box_lr")


def resolve_tracking(cfg: Config) -> Config:
    """SiamFC: a fully-convolutional encoder, the logistic loss on the response map, the last
    weights (there is no validation split: held-out sequences are for testing only)."""
    from .models.siamfc import TRACKING_ENCODERS

    if cfg.model.pretrained:  # an imported network is the backbone (pretrained/tracking.py)
        if cfg.model.encoder not in ("auto", "imported"):
            raise ConfigError(f"model.pretrained {cfg.model.pretrained} is the tracker's "
                              f"backbone; leave out --encoder {cfg.model.encoder}")
        cfg.model.encoder = "imported"
    if cfg.track.pretrained_head:
        if not cfg.model.pretrained:
            raise ConfigError(f"track.pretrained_head {cfg.track.pretrained_head} reads the "
                              "features of an imported backbone: give its network as "
                              "model.pretrained (e.g. nanotrack_v2_backbone)")
        if cfg.track.head not in ("fc", "imported"):
            raise ConfigError(f"track.pretrained_head is the tracker's head; leave out "
                              f"track.head = {cfg.track.head}")
        cfg.track.head = "imported"
    if cfg.model.encoder == "auto":
        cfg.model.encoder = "siamfc_small"
    if cfg.model.encoder not in TRACKING_ENCODERS | {"imported"}:
        raise ConfigError(f"train.task tracking needs a fully-convolutional encoder: "
                          f"{' or '.join(sorted(TRACKING_ENCODERS))}, not "
                          f"'{cfg.model.encoder}'")
    if cfg.loss.name not in ("auto", "logistic"):
        raise ConfigError(f"train.task tracking trains with the logistic loss on the response "
                          f"map; leave out --loss {cfg.loss.name}")
    cfg.loss.name, cfg.train.keep = "logistic", "last"
    k, t = cfg.track, cfg.train
    checks = [
        (t.epochs >= 1, "train.epochs must be >= 1"),
        (t.batch_size >= 2, "train.batch_size must be >= 2"),
        (t.lr > 0, "train.lr must be > 0"),
        (1 <= cfg.model.width <= 512, "model.width must be in [1, 512]"),
        (63 <= k.exemplar < k.search <= 1023, "track: need 63 <= exemplar < search <= 1023"),
        (k.context >= 0 and k.max_gap >= 0, "track.context and track.max_gap must be >= 0"),
        (all(0 <= s <= 1 for s in (k.still_share, k.object_share, k.negative_share,
                                   k.scale_share)),
         "track.still_share, object_share, negative_share and scale_share must be in [0, 1]"),
        (0 <= k.stretch < 0.5 and k.shift >= 0, "track.stretch in [0, 0.5), track.shift >= 0"),
        (0 <= k.jitter <= 1, "track.jitter must be in [0, 1]"),
        (k.radius > 0 and k.pairs_per_epoch >= t.batch_size and k.recalibrate >= 0,
         "track: radius > 0, pairs_per_epoch >= train.batch_size, recalibrate >= 0"),
        (k.scales >= 1 and k.scales % 2 == 1, "track.scales must be odd (1, 3, 5)"),
        (k.scale_step >= 1 and 0 < k.scale_penalty <= 1 and 0 <= k.scale_lr <= 1,
         "track: scale_step >= 1, scale_penalty in (0, 1], scale_lr in [0, 1]"),
        (0 <= k.window_influence <= 1 and 1 <= k.upsample <= 32 and 0 <= k.template_lr <= 1,
         "track: window_influence and template_lr in [0, 1], upsample in [1, 32]"),
        (k.redetect >= 0 and 0 < k.lost_below < 1 and 1 <= k.widen <= 8,
         "track: redetect >= 0 (0: off), lost_below in (0, 1), widen in [1, 8]"),
        (k.head in ("fc", "box") or (k.head == "imported" and k.pretrained_head),
         f"track.head '{k.head}': choose fc or box (imported: set by track.pretrained_head)"),
        (k.head != "imported" or k.redetect == 0,
         "track.redetect searches a wider crop, whose map an imported head cannot take (its "
         "graph fixes the map's size): leave it 0 with track.pretrained_head"),
        (k.head_train in ("frozen", "all"), f"track.head_train '{k.head_train}': choose "
         "frozen or all"),
        (k.head == "fc" or k.scale_share == 0,
         "track.scale_share trains SiamFC's scale search; the box head reads the size: "
         "leave it 0 with track.head = box"),
        (k.box_penalty >= 0 and 0 <= k.box_window <= 1 and 0 <= k.box_lr <= 1,
         "track: box_penalty >= 0, box_window and box_lr in [0, 1]"),
        (k.norm in ("batch", "shared", "renorm"),
         f"track.norm '{k.norm}': choose batch, shared or renorm"),
        (t.device in ("cpu", "cuda") or t.device.startswith("cuda:"), "train.device: cpu|cuda"),
        (t.amp in ("auto", "off", "bf16", "fp16"),
         f"train.amp '{t.amp}': choose auto, off, bf16 or fp16"),
    ]
    raise_first_failed(checks)
    return cfg
