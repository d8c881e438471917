"""Tasks: what turns a batch into a loss. The `Trainer` owns the loop (schedule, budget,
mixed precision, DDP, callbacks); a task owns only its model's forward pass and its objective,
so a new kind of training (twin regression, tracking) is a new task, not a new loop.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..losses.base import TupleLoss
from ..losses.miners import Miner
from .distributed import Dist, gather


class Task:
    """model: the module whose forward the step calls (the trainer may wrap it in DDP or
    torch.compile); module: the unwrapped one, whose parameters train and are saved."""

    model: nn.Module
    module: nn.Module
    inputs_per_sample = 1  # inputs through the encoder per sample of a batch (a pair: 2)

    def step(self, batch, gen: torch.Generator) -> torch.Tensor:
        """One batch (this rank's share) -> the scalar loss of the global batch. `gen` is seeded
        by (seed, epoch, batch): the same on every rank and on resume."""
        raise NotImplementedError


Augment = Callable[..., torch.Tensor]  # (x, gen, offset=, total=) -> x


class MetricLearningTask(Task):
    """P x K batch -> (augment) -> shared encoder -> embeddings of the GLOBAL batch (gathered
    with their gradient from every rank) -> miner -> loss."""

    def __init__(self, net: nn.Module, loss_fn: TupleLoss, miner: Miner,
                 augment: Augment | None = None, device: str = "cpu",
                 dist: Dist | None = None, features: bool = False) -> None:
        self.model = self.module = net
        self.loss_fn, self.miner, self.augment = loss_fn, miner, augment
        self.device, self.dist = device, dist or Dist()
        self.features = features  # batches hold a frozen encoder's outputs, computed once

    def step(self, batch, gen: torch.Generator) -> torch.Tensor:
        x, y = batch
        if isinstance(x, torch.Tensor):
            x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.augment is not None:  # this rank's rows of the global batch's distortions
            x = self.augment(x, gen, offset=self.dist.rank * len(x),
                             total=self.dist.world * len(x))  # (audio: crops, on the CPU)
            x = x.to(self.device, non_blocking=True)
        (emb,) = self.model(x, features=True) if self.features else self.model(x)
        emb, y = gather(emb.float(), self.dist), gather(y, self.dist)
        with torch.autocast(emb.device.type, enabled=False):  # mining and loss in fp32
            self.miner.generator = gen
            tuples = self.miner(emb, y, self.loss_fn.tuple_kind)
            return self.loss_fn(emb, y, tuples)


class PairTask(Task):
    """Explicit pairs (x_a, x_b, target): no classes known. Both sides (augmented) through the
    shared encoder, the embeddings of the GLOBAL batch's pairs gathered from every rank, then a
    pair loss (tuple_kind "pair": the head with BCE, contrastive, mse) on pairs (a_k, b_k)
    with target 1/0 or a graded score in [0, 1]."""

    inputs_per_sample = 2

    def __init__(self, net: nn.Module, loss_fn: TupleLoss, augment: Augment | None = None,
                 device: str = "cpu", dist: Dist | None = None) -> None:
        self.model = self.module = net
        self.loss_fn, self.augment = loss_fn, augment
        self.device, self.dist = device, dist or Dist()

    def step(self, batch, gen: torch.Generator) -> torch.Tensor:
        xa, xb, target = (t.to(self.device, non_blocking=True) for t in batch)
        if self.augment is not None:  # each side: this rank's rows of the global batch's
            at, total = self.dist.rank * len(xa), self.dist.world * len(xa)
            xa = self.augment(xa, gen, offset=at, total=total)
            xb = self.augment(xb, gen, offset=at, total=total)
        ea, eb = self.model(xa, xb)
        ea, eb = gather(ea.float(), self.dist), gather(eb.float(), self.dist)
        target = gather(target, self.dist)
        n = len(ea)
        k = torch.arange(n, device=ea.device)
        with torch.autocast(ea.device.type, enabled=False):
            return self.loss_fn(torch.cat([ea, eb]), target, (k, k + n, target))


class TwinRegressionTask(Task):
    """Twin-network regression (Wetzel et al. 2022): rows x with a numeric label y; every
    ordered pair (i, j) of the GLOBAL batch is a training example whose target is y_i - y_j,
    predicted by the difference head on the shared encoder's embeddings; loss: mean squared
    error over the pairs."""

    def __init__(self, net: nn.Module, device: str = "cpu", dist: Dist | None = None) -> None:
        self.model = self.module = net
        self.device, self.dist = device, dist or Dist()

    def step(self, batch, gen: torch.Generator) -> torch.Tensor:
        x, y = (t.to(self.device, non_blocking=True) for t in batch)
        (h,) = self.model(x)
        h, y = gather(h.float(), self.dist), gather(y.float(), self.dist)
        with torch.autocast(h.device.type, enabled=False):
            pred = self.module.pairwise_difference(h, h)  # (n, n): y_i - y_j
            return (pred - (y[:, None] - y[None, :])).pow(2).mean()
