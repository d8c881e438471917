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
                 dist: Dist | None = None) -> None:
        self.model = self.module = net
        self.loss_fn, self.miner, self.augment = loss_fn, miner, augment
        self.device, self.dist = device, dist or Dist()

    def step(self, batch, gen: torch.Generator) -> torch.Tensor:
        x, y = batch
        x = x.to(self.device, non_blocking=True)
        y = y.to(self.device, non_blocking=True)
        if self.augment is not None:  # this rank's rows of the global batch's distortions
            x = self.augment(x, gen, offset=self.dist.rank * len(x),
                             total=self.dist.world * len(x))
        (emb,) = self.model(x)
        emb, y = gather(emb.float(), self.dist), gather(y, self.dist)
        with torch.autocast(emb.device.type, enabled=False):  # mining and loss in fp32
            self.miner.generator = gen
            tuples = self.miner(emb, y, self.loss_fn.tuple_kind)
            return self.loss_fn(emb, y, tuples)
