"""The training loop: P x K batches -> shared encoder -> miner -> loss -> step. Callbacks do the
rest (progress, validation, checkpoints, early stopping, time limit)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..data.sampling import ClassBalancedSampler
from ..losses.base import TupleLoss
from ..losses.miners import Miner
from ..models.siamese import SiameseNet


class Callback:
    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_epoch_start(self, trainer: Trainer, epoch: int, n_batches: int) -> None: ...
    def on_batch_end(self, trainer: Trainer, loss: float) -> None: ...
    def on_epoch_end(self, trainer: Trainer, logs: dict) -> None: ...
    def on_train_end(self, trainer: Trainer) -> None: ...


class Trainer:
    def __init__(
        self, net: SiameseNet, loss_fn: TupleLoss, miner: Miner,
        optimizer: torch.optim.Optimizer, x: torch.Tensor, y: np.ndarray,
        sampler: ClassBalancedSampler, epochs: int, seed: int = 0,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        callbacks: Sequence[Callback] = (), device: str = "cpu", max_seconds: float = 0.0,
    ) -> None:
        self.net, self.loss_fn, self.miner, self.optimizer = net, loss_fn, miner, optimizer
        self.x, self.y = x, torch.as_tensor(y)
        self.sampler, self.epochs, self.seed = sampler, epochs, seed
        self.augment, self.callbacks, self.device = augment, list(callbacks), device
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.history: list[dict] = []
        self.epoch = 0
        self.stop = False
        # A wall-clock budget: the schedule follows time instead of epochs, and training stops
        # mid-epoch when the budget is spent (validation and checkpoint still run).
        self.max_seconds = max_seconds
        self.started = 0.0

    def progress(self, epoch: int, i: int, n: int) -> float:
        by_epoch = (epoch + i / n) / self.epochs
        if self.max_seconds <= 0:
            return by_epoch
        return max(by_epoch, (time.monotonic() - self.started) / self.max_seconds)

    def set_lr(self, progress: float) -> None:
        """Cosine decay from the base rate to 1% of it; a pure function of progress in [0, 1],
        so that a resumed run follows the same schedule."""
        f = 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        for g, lr in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = lr * f

    def step(self, batch: np.ndarray, gen: torch.Generator) -> float:
        xb = self.x[torch.from_numpy(batch)]
        yb = self.y[torch.from_numpy(batch)].to(self.device)
        if self.augment is not None:
            xb = self.augment(xb, gen)
        emb = self.net.embed(xb.to(self.device, non_blocking=True))
        tuples = self.miner(emb, yb, self.loss_fn.tuple_kind)
        loss = self.loss_fn(emb, yb, tuples)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def fit(self, start_epoch: int = 0) -> list[dict]:
        self.started = time.monotonic()
        for cb in self.callbacks:
            cb.on_train_start(self)
        for epoch in range(start_epoch, self.epochs):
            self.epoch = epoch
            self.net.train()
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            self.miner.generator = gen
            batches = self.sampler.epoch(epoch)
            for cb in self.callbacks:
                cb.on_epoch_start(self, epoch, len(batches))
            losses = []
            for i, batch in enumerate(batches):
                p = self.progress(epoch, i, len(batches))
                if p >= 1.0 and self.max_seconds > 0:
                    self.stop = True
                    break
                self.set_lr(p)
                losses.append(self.step(batch, gen))
                for cb in self.callbacks:
                    cb.on_batch_end(self, losses[-1])
            logs = {"epoch": epoch + 1,
                    "loss": float(np.mean(losses)) if losses else float("nan"),
                    "images": int(sum(len(b) for b in batches[:len(losses)]))}
            if self.stop:
                logs["stopped"] = "time budget"
            for cb in self.callbacks:
                cb.on_epoch_end(self, logs)
            self.history.append(logs)
            if self.stop:
                break
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history
