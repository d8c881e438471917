"""Training from a pairs file alone: no classes known, only pairs marked same (1) / different
(0), or pairs with a graded similarity score.

Objectives that work on explicit pairs are the losses whose tuples are pairs (`pair`: the head
with BCE, soft targets for graded scores; `contrastive`; `mse` on the similarity). Triplet and
prototype losses draw their tuples from class labels and are refused. A seeded share of the
pairs (split.val_fraction) is held out: model selection, and the verification threshold (binary
pairs) or the correlation (graded pairs) the card reports.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from ..artifact import read_card, write_card
from ..config import Config
from ..data.datasets import image_samples
from ..data.loader import PairSamples, ShuffledBatches, make_loader
from ..data.pairs import Pairs, read_pairs
from ..data.preprocessing import Preprocessing
from ..data.table import read_table
from ..data.transforms import random_affine
from ..errors import ConfigError, DataError
from ..evaluation.pairs import graded_metrics, plot_graded
from ..evaluation.plots import plot_history
from ..evaluation.verification import best_threshold, verification_metrics
from ..losses import LOSSES, create_loss
from ..model import Model
from ..models.build import build_net
from ..models.encoders import default_encoder
from ..models.siamese import PairHead
from ..models.views import check_views
from ..names import raw_bytes
from .distributed import Dist, first_on_each_machine, from_main
from .engine import cache_budget
from .engine import workers as engine_workers
from .run import fit_run, new_card, start_folder, start_run
from .task import PairTask


def pair_losses() -> list[str]:
    """The registry's losses that train on explicit pairs (their tuples are pairs)."""
    with torch.random.fork_rng(devices=[]):  # making them draws weights: not from the run's
        head = PairHead(1)
        return [n for n in LOSSES.names()
                if create_loss(n, margin=1.0, distance="euclidean", head=head, classes=2,
                               dim=1).tuple_kind == "pair"]


def _inputs(cfg: Config) -> tuple[Pairs, object, str]:
    """(pairs, their items as samples, kind): images named by the pairs file, or the rows of
    the vector table in data.path."""
    path = cfg.data.path
    if path and Path(path).suffix.lower() in (".csv", ".npy"):
        table = read_table(path, cfg.data.label_column, need_label=False)
        pairs = read_pairs(cfg.data.pairs, cfg.data.images or None, rows=len(table.x))
        return pairs, table.x, "vector"
    if path:
        raise ConfigError(f"with a pairs file, --data names the vector table (.csv/.npy) whose "
                          f"rows the pairs number; {path} is not one (images are named by the "
                          "pairs file itself: leave out --data)")
    pairs = read_pairs(cfg.data.pairs, cfg.data.images or None)
    return pairs, None, "image"


def _index_items(pairs: Pairs) -> tuple[list, np.ndarray, np.ndarray]:
    """(distinct items in order of first use, index of a, index of b)."""
    items = list(dict.fromkeys([*pairs.a, *pairs.b]))
    where = {it: i for i, it in enumerate(items)}
    return items, np.array([where[v] for v in pairs.a]), np.array([where[v] for v in pairs.b])


def _split(pairs: Pairs, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n = len(pairs)
    order = np.random.default_rng([seed, 11]).permutation(n)
    n_val = int(round(n * fraction)) if n >= 20 else 0
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    if n_val and not pairs.graded and len(np.unique(pairs.label[val])) < 2:
        val, train = val[:0], np.arange(n)  # a validation set of one kind scores nothing
    if len(train) < 2:
        raise DataError(f"pairs file {pairs.source} has {n} pairs; training needs at least 2")
    return train, val


def train_pairs(cfg: Config, out: Path, d: Dist, resume: bool, force: bool,
                quiet: bool) -> Model:
    device, amp = start_run(cfg, d)
    pairs, x, kind = _inputs(cfg)
    check_views(cfg.model.views, kind)
    if cfg.loss.name not in pair_losses():
        raise ConfigError(f"loss '{cfg.loss.name}' draws its tuples from class labels, which a "
                          f"pairs file does not give; train from pairs with --loss "
                          f"{' | '.join(pair_losses())}")
    lo, hi = float(pairs.label.min()), float(pairs.label.max())
    if lo == hi:
        raise DataError(f"pairs file {pairs.source}: every pair has the label {lo:g}; training "
                        "needs same (1) and different (0) pairs, or scores that differ")
    items, ia, ib = _index_items(pairs)
    if kind == "image":
        names = [str(p) for p in items]
        with first_on_each_machine(d, when=cfg.data.cache == "disk"):
            x = image_samples(names, names, cfg.data.image_size, cfg.data.channels,
                              cfg.data.cache, cache_budget(cfg), cfg.data.cache_dir)
    else:
        x = x[torch.as_tensor(items)]
    if cfg.model.encoder == "auto":
        cfg.model.encoder = default_encoder(kind)
    target = (pairs.label - lo) / (hi - lo) if pairs.graded and hi > lo else pairs.label
    train, val = _split(pairs, cfg.split.val_fraction, cfg.train.seed)

    n_workers = engine_workers(cfg, x)
    pre = from_main(Preprocessing.fit(x, kind, cfg.train.seed, n_workers) if d.main else None, d)
    xn = pre.normalize(x)
    net = build_net(cfg, pre.input_shape, kind).to(device)
    loss_fn = create_loss(cfg.loss.name, margin=cfg.loss.margin, distance=cfg.loss.distance,
                          head=net.head, scale=cfg.loss.scale, normalize=cfg.model.normalize)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr,
                                  weight_decay=cfg.train.weight_decay)
    batches = ShuffledBatches(len(train), cfg.train.batch_size, cfg.train.seed, d.rank, d.world)

    split = {"mode": "pairs", "indices": {"train": train.tolist(), "val": val.tolist()}}
    start_folder(out, cfg, split, d, resume, force)
    fingerprint = hashlib.sha256(raw_bytes("\n".join(map(str, items))) +
                                 pairs.label.tobytes()).hexdigest()[:16]
    card = new_card(cfg, d, n_workers, amp, preprocessing=pre.to_dict(), classes=[],
                    data={"kind": kind, "samples": len(items), "fingerprint": fingerprint},
                    pairs={"file": str(cfg.data.pairs), "pairs": len(pairs),
                           "graded": bool(pairs.graded), "score_range": [lo, hi]},
                    split={"mode": "pairs", "train_pairs": len(train), "val_pairs": len(val)})
    model = Model(net, pre, card, out, device)

    def val_scores(views: int | None = None) -> np.ndarray:
        used = np.unique(np.concatenate([ia[val], ib[val]]))
        emb = torch.zeros(len(items), net.dim)
        emb[torch.as_tensor(used)] = model.embed_tensor(xn[torch.as_tensor(used)],
                                                        workers=n_workers, views=views)
        return model.score_embeddings(emb[ia[val]], emb[ib[val]])

    def val_score() -> float:  # every epoch: one pass (the model's views only at the end)
        s = val_scores(views=0)
        if pairs.graded:
            r = graded_metrics(pairs.label[val], s, (lo, hi))["spearman"]
            return r if np.isfinite(r) else -1.0
        return verification_metrics(pairs.label[val].astype(np.int64), s)["roc_auc"]

    augment = None
    if cfg.augment.enabled and kind == "image":
        def augment(xb: torch.Tensor, gen: torch.Generator, offset: int = 0,
                    total: int | None = None) -> torch.Tensor:
            return random_affine(xb, cfg.augment, gen, offset, total)

    samples = PairSamples(xn, ia[train], ib[train], target[train])
    loader = make_loader(samples, batches, n_workers, pin_memory=device.startswith("cuda"))
    task = PairTask(net, loss_fn, augment, device, d)
    name = "val_spearman" if pairs.graded else "val_auc"
    fit_run(cfg, out, d, task, optimizer, loader, card, val_score if len(val) else None, name,
            resume, quiet, amp)
    if not d.main:
        return model
    if len(val):
        s = val_scores()
        if pairs.graded:
            card["metrics"]["val"] = graded_metrics(pairs.label[val], s, (lo, hi))
            plot_graded(pairs.label[val], s, card["metrics"]["val"], out / "pairs_val.png",
                        "held-out pairs")
        else:
            y = pairs.label[val].astype(np.int64)
            card["threshold"] = best_threshold(y, s)
            card["threshold_calibrated_on"] = "held-out pairs of the pairs file"
            card["metrics"]["val"] = verification_metrics(y, s, card["threshold"])
    card["status"] = "trained"
    write_card(out, card)
    plot_history(card["history"], out / "training.png")
    model.card = read_card(out)
    return model
