"""Callbacks: progress bar, validation, checkpoints, early stopping."""

from __future__ import annotations

import sys
from collections.abc import Callable

import numpy as np
import torch
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from .trainer import Callback, Trainer


class ProgressBar(Callback):
    """A bar per epoch with loss, batches/s and ETA; a one-line summary after each epoch."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None

    def on_epoch_start(self, trainer, epoch, n_batches):
        if self.enabled:
            # disable=None: no bar when stderr is not a terminal (CI logs get the epoch lines).
            self.bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{trainer.epochs}",
                            unit="batch", leave=False, file=sys.stderr, dynamic_ncols=True,
                            disable=None)

    def on_batch_end(self, trainer, loss):
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}")

    def on_epoch_end(self, trainer, logs):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.enabled:
            extra = "".join(f"  {k} {v:.4f}" for k, v in logs.items()
                            if k not in ("epoch", "loss", "seconds") and isinstance(v, float))
            if logs.get("seconds"):
                extra += f"  {logs['images'] / logs['seconds']:.0f} images/s"
            print(f"epoch {logs['epoch']}/{trainer.epochs}  loss {logs['loss']:.4f}{extra}",
                  file=sys.stderr)


class Validation(Callback):
    """Scores the validation set each epoch (higher is better): logs it as `name`."""

    def __init__(self, evaluate: Callable[[], float], name: str = "val_auc") -> None:
        self.evaluate, self.name = evaluate, name

    def on_epoch_end(self, trainer, logs):
        trainer.net.eval()
        with torch.no_grad():
            logs[self.name] = float(self.evaluate())
        trainer.net.train()


class Checkpoint(Callback):
    """After every epoch: the resume checkpoint; and `on_best` when the validation score `key`
    improves (or every epoch when there is no validation)."""

    def __init__(self, save_last: Callable[[Trainer, dict], None],
                 on_best: Callable[[Trainer, dict], None], best: float = -np.inf,
                 key: str = "val_auc") -> None:
        self.save_last, self.on_best, self.best, self.key = save_last, on_best, best, key

    def on_epoch_end(self, trainer, logs):
        score = logs.get(self.key, logs["epoch"])  # no validation: the latest is the best
        if score > self.best:
            self.best = score
            logs["best"] = True
            self.on_best(trainer, logs)
        self.save_last(trainer, {**logs, "best_score": self.best})


class EarlyStopping(Callback):
    def __init__(self, patience: int, key: str = "val_auc") -> None:
        self.patience, self.key = patience, key
        self.best, self.bad = -np.inf, 0

    def on_epoch_end(self, trainer, logs):
        score = logs.get(self.key)
        if score is None or self.patience <= 0:
            return
        if score > self.best:
            self.best, self.bad = score, 0
        else:
            self.bad += 1
            if self.bad >= self.patience:
                logs["stopped"] = "early stopping"
                trainer.stop = True


class StopAfter(Callback):
    """Stops after `epoch` epochs (counted from 1) of a longer schedule: cross-fitting's
    chosen epoch, on the schedule its fold runs followed."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, trainer, logs):
        if logs["epoch"] >= self.epoch:
            logs["stopped"] = f"cross-fitted epoch {self.epoch}"
            trainer.stop = True


def warmed_decay(decay: float, n: int) -> float:
    """The average's decay after n updates: min(decay, (1 + n) / (10 + n)), as TensorFlow's
    ExponentialMovingAverage with num_updates. Early on the average follows the weights, so
    a short run's average does not hold on to its first steps (without it, 0.998 over a
    1,170-step run keeps 9.6% of the first step's weights)."""
    return min(decay, (1 + n) / (10 + n))


def warmed_ema(decay: float) -> Callable:
    """AveragedModel's multi_avg_fn: each tensor moved towards the model's by 1 - d, d =
    warmed_decay(decay, n) (integer buffers such as batch norm's step count likewise,
    truncated to integers, as torch's own EMA function does)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor],
               n: torch.Tensor) -> None:
        d = warmed_decay(decay, int(n))
        if torch.is_floating_point(averaged[0]):
            torch._foreach_lerp_(averaged, current, 1 - d)
        else:
            for a, c in zip(averaged, current, strict=True):
                a.copy_(a * d + c * (1 - d))

    return update


class WeightAverage(Callback):
    """An exponential moving average of the weights and batch-norm statistics, updated after
    every step (torch's AveragedModel) with a warmed-up decay (`warmed_decay`); `average` is
    the module that holds it."""

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        self.average = AveragedModel(net, multi_avg_fn=warmed_ema(decay), use_buffers=True)

    def on_batch_end(self, trainer, loss):
        self.average.update_parameters(trainer.net)
