"""The training loop, the same for every task: batches from a DataLoader -> task.step -> loss ->
backward -> optimizer step, on a cosine schedule that follows epochs or a wall-clock budget.
Callbacks do the rest (progress, validation, checkpoints, early stopping); DDP, mixed precision
and torch.compile wrap the task's model here and nowhere else.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..models.renorm import BatchRenorm2d
from .distributed import Dist, agree_max, from_main
from .task import Task


def cosine_factor(progress: float) -> float:
    """The schedule: cosine decay from 1 to 0.01 over progress in [0, 1]; a pure function of
    progress, so that a resumed run follows the same schedule."""
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


class Callback:
    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, epoch: int, n_batches: int) -> None: ...
    def on_batch_end(self, trainer: Trainer, loss: float) -> None: ...
    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


def batch_generator(seed: int, epoch: int, batch: int) -> torch.Generator:
    """The random numbers of one batch (augmentation, mining): a function of where it is in
    the run, so that ranks agree and a resumed run repeats them."""
    state = np.random.SeedSequence([seed, epoch, batch]).generate_state(2, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & (2**63 - 1))


class Trainer:
    def __init__(
        self, task: Task, optimizer: torch.optim.Optimizer, loader: DataLoader, epochs: int,
        seed: int = 0, callbacks: Sequence[Callback] = (), max_seconds: float = 0.0,
        dist: Dist | None = None, amp: torch.dtype | None = None, compile: bool = False,
    ) -> None:
        self.task, self.optimizer, self.loader = task, optimizer, loader
        self.epochs, self.seed, self.callbacks = epochs, seed, list(callbacks)
        self.dist = dist or Dist()
        self.net = task.module  # what callbacks validate and save
        # The schedule's base rates: kept in the optimizer's state ("initial_lr", as torch's
        # schedulers do), so that a resumed run does not take its decayed rate as the base.
        self.base_lrs = [g.setdefault("initial_lr", g["lr"]) for g in optimizer.param_groups]
        self.history: list[dict] = []
        self.epoch = 0
        self.stop = False
        # A wall-clock budget: the schedule follows time instead of epochs, and training stops
        # mid-epoch when the budget is spent (validation and checkpoint still run).
        self.max_seconds = max_seconds
        self.started = 0.0
        device = next(task.module.parameters()).device
        self.device_type = device.type
        self.amp = amp
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
        model = task.module
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel

            ids = None
            if device.type == "cuda":  # batch statistics over the global batch (GPU only)
                ids = [device.index]
                # renormalised layers (tracking) stay: each rank's batch, corrected towards
                # the running averages that DDP broadcasts from rank 0
                if not any(isinstance(m, BatchRenorm2d) for m in model.modules()):
                    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
            model = DistributedDataParallel(model, device_ids=ids)
        if compile:
            model = torch.compile(model)
        task.model = model

    def progress(self, epoch: int, i: int, n: int) -> float:
        by_epoch = (epoch + i / n) / self.epochs
        if self.max_seconds <= 0:
            return by_epoch
        by_time = (time.monotonic() - self.started) / self.max_seconds
        return max(by_epoch, agree_max(by_time, self.dist))  # every rank stops at the same step

    def set_lr(self, progress: float) -> None:
        """The base rate times `cosine_factor(progress)`."""
        f = cosine_factor(progress)
        for g, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = lr * f

    def _autocast(self):
        if self.amp is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.amp)

    def step(self, batch, gen: torch.Generator) -> float:
        with self._autocast():
            loss = self.task.step(batch, gen)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return float(loss.detach())

    def fit(self, start_epoch: int = 0) -> list[dict]:
        self.started = time.monotonic()
        for cb in self.callbacks:
            cb.on_train_start(self)
        batches = self.loader.batch_sampler  # this rank's share of each epoch's P x K batches
        for epoch in range(start_epoch, self.epochs):
            self.epoch = epoch
            self.task.module.train()
            batches.set_epoch(epoch)
            n = len(batches)
            for cb in self.callbacks:
                cb.on_epoch_start(self, epoch, n)
            losses = []
            t_epoch = time.monotonic()
            for i, batch in enumerate(self.loader):
                p = self.progress(epoch, i, n)
                if p >= 1.0 and self.max_seconds > 0:
                    self.stop = True
                    break
                self.set_lr(p)
                losses.append(self.step(batch, batch_generator(self.seed, epoch, i)))
                for cb in self.callbacks:
                    cb.on_batch_end(self, losses[-1])
            if self.stop and not losses:  # the budget ran out before this epoch's first step
                if self.history:
                    self.history[-1]["stopped"] = "time budget"
                break
            seconds = time.monotonic() - t_epoch  # the steps only, not validation
            logs = {"epoch": epoch + 1,
                    "loss": float(np.mean(losses)) if losses else float("nan"),
                    "images": len(losses) * batches.global_batch * self.task.inputs_per_sample,
                    "seconds": round(seconds, 3)}
            if self.stop:
                logs["stopped"] = "time budget"
            for cb in self.callbacks:
                cb.on_epoch_end(self, logs)
            self.history.append(logs)
            self.stop = from_main(self.stop, self.dist)  # e.g. early stopping on rank 0
            if self.stop:
                break
        for cb in self.callbacks:
            cb.on_train_end(self)
        self.task.model = self.task.module  # let go of the DDP / compiled wrapper
        return self.history
