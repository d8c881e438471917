"""What every kind of run shares around the `Trainer`: the run folder (made only once the
input has been checked, refused when it holds a run), the resolved config, the card, and the
fit itself: validation, checkpoints (best and last), early stopping, the progress bar, resume.

A kind of training (classes, pairs, twin regression) loads its data, builds its task and
calls `fit_run`; nothing here knows which one it is.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from ..artifact import (
    load_checkpoint,
    load_tensors,
    read_json,
    save_checkpoint,
    save_tensors,
    write_card,
)
from ..atomic import atomic_write_json
from ..config import Config, config_from_dict, resolve, saved_values
from ..data.loader import stop_workers
from ..errors import ArtifactError, ConfigError
from .callbacks import (
    Checkpoint,
    EarlyStopping,
    ProgressBar,
    StopAfter,
    Validation,
    WeightAverage,
)
from .distributed import Dist, from_main, rank_device
from .engine import amp_dtype
from .memory import heap_allocations
from .task import Task
from .trainer import Trainer


def device_of(name: str) -> str:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use cpu")
    return name


def start_run(cfg: Config, d: Dist) -> tuple[str, torch.dtype | None]:
    """Threads and the seed as the config says -> (this rank's device, autocast dtype)."""
    device = rank_device(cfg.train.device, d)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    return device, amp_dtype(cfg.train.amp, device)


def run_config(config: Config | dict | None, out: Path, resume: bool,
               epochs: int | None) -> Config:
    """The resolved config of a run: the given one, or on resume the one saved in `out`."""
    if resume:
        meta_path = out / "checkpoints" / "last.json"
        if not meta_path.exists():
            raise ArtifactError(f"{out} has no checkpoint to resume from ({meta_path} is "
                                "missing); start a new run without --resume")
        saved = read_json(out / "config.json", "the run's config")
        cfg = config_from_dict(saved_values(saved), str(out / "config.json"))
    else:
        cfg = config if isinstance(config, Config) else config_from_dict(config or {})
    if epochs is not None:
        cfg.train.epochs = epochs
    return resolve(cfg)


def prepare_out(out: Path, force: bool) -> None:
    if (out / "card.json").exists() or (out / "checkpoints").exists():
        if not force:
            raise ConfigError(f"run folder {out} already holds a run; choose another --out, "
                              "pass --resume to continue it, or --force to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def start_folder(out: Path, cfg: Config, split: dict, d: Dist, resume: bool,
                 force: bool) -> None:
    """Call once everything that can fail on bad input has run: only then is `out` touched.
    A new run writes its config and split; a resumed one checks that its split is the same."""
    if not d.main:
        return
    if not resume:
        prepare_out(out, force)
        atomic_write_json(out / "config.json", cfg.to_dict())
        atomic_write_json(out / "split.json", split)
    elif read_json(out / "split.json", "the split") != json.loads(json.dumps(split)):
        raise ArtifactError(f"the data behind {out} changed since the run started; "
                            "start a new run")


def new_card(cfg: Config, d: Dist, workers: int, amp: torch.dtype | None, **fields) -> dict:
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": cfg.train.task,
        "config": cfg.to_dict(),
        **fields,
        "engine": {"ranks": d.world, "workers": workers, "device": cfg.train.device,
                   "amp": str(amp).replace("torch.", "") if amp else "off",
                   "compile": cfg.train.compile},
        "threshold": None,
        "metrics": {},
        "status": "training",
    }


class _Resumable:
    """What a resume needs beyond the optimizer: the model's weights and, under their prefixes,
    other modules' (e.g. arcface's class weights, which the saved model leaves out, as 'loss:';
    the weight average as 'ema:')."""

    def __init__(self, net: torch.nn.Module, **extra: torch.nn.Module | None) -> None:
        self.net = net
        self.extra = {k: m for k, m in extra.items() if m is not None}

    def state_dict(self) -> dict:
        state = dict(self.net.state_dict())
        for prefix, module in self.extra.items():
            state.update({f"{prefix}:{k}": v for k, v in module.state_dict().items()})
        return state

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict({k: v for k, v in state.items() if ":" not in k})
        for prefix, module in self.extra.items():
            n = len(prefix) + 1
            module.load_state_dict({k[n:]: v for k, v in state.items()
                                    if k.startswith(f"{prefix}:")})


def _restore(out: Path, net: _Resumable, optimizer: torch.optim.Optimizer,
             d: Dist) -> tuple[int, float, list[dict]]:
    """Load the last checkpoint into net and optimizer: (next epoch, best score, history).
    Rank 0 reads it and hands it to the other ranks (the run folder may be on its machine
    only)."""
    model_state, opt_state, meta = from_main(load_checkpoint(out) if d.main else None, d)
    net.load_state_dict(model_state)
    optimizer.load_state_dict(opt_state)
    history = [{k: v for k, v in h.items() if k != "best_score"} for h in meta["history"]]
    return int(meta["epoch"]), float(meta["best_score"]), history


def fit_run(cfg: Config, out: Path, d: Dist, task: Task, optimizer: torch.optim.Optimizer,
            loader: DataLoader, card: dict, validate: Callable[[], float] | None,
            score_name: str, resume: bool, quiet: bool, amp: torch.dtype | None,
            loss: torch.nn.Module | None = None, stop_epoch: int | None = None) -> Trainer:
    """Train `task` to the end of its schedule and keep the weights the config asks for (the
    best by `validate`, higher is better, logged as `score_name`, or the last) in
    out/model.safetensors. Rank 0 validates, checkpoints and prints. `loss`: a loss with
    weights of its own, kept in the resume checkpoint only. stop_epoch: stop after that epoch
    of the schedule (which still spans train.epochs)."""
    net = task.module
    # the weight average: on rank 0 only, which alone saves the model and the checkpoint
    average = WeightAverage(net, cfg.train.ema) if cfg.train.ema > 0 and d.main else None
    resumable = _Resumable(
        net, loss=loss if loss is not None and any(True for _ in loss.parameters()) else None,
        ema=average.average if average is not None else None)

    def on_best(trainer: Trainer, logs: dict) -> None:
        save_tensors(out / "model.safetensors", net.state_dict())
        write_card(out, {**card, "history": trainer.history + [logs]})

    def save_last(trainer: Trainer, meta: dict) -> None:
        save_checkpoint(out, resumable, optimizer,
                        {"epoch": meta["epoch"], "best_score": meta["best_score"],
                         "history": trainer.history + [meta]})

    start_epoch, best = 0, -np.inf
    history: list[dict] = []
    if resume:
        start_epoch, best, history = _restore(out, resumable, optimizer, d)
        if not quiet:
            print(f"resuming {out} from epoch {start_epoch}", file=sys.stderr)
    callbacks = [average] if average is not None else []
    if d.main:  # validation, checkpoints and the progress bar: once, on rank 0
        callbacks += [Validation(validate, score_name)] if validate is not None else []
        callbacks += [Checkpoint(save_last, on_best, best, score_name),
                      EarlyStopping(cfg.train.patience, score_name), ProgressBar(not quiet)]
    if stop_epoch is not None:
        callbacks.append(StopAfter(stop_epoch))
    trainer = Trainer(task, optimizer, loader, cfg.train.epochs, cfg.train.seed, callbacks,
                      max_seconds=cfg.train.max_minutes * 60, dist=d, amp=amp,
                      compile=cfg.train.compile)
    trainer.history = history
    t0 = time.monotonic()
    if start_epoch < min(cfg.train.epochs, stop_epoch or cfg.train.epochs):
        try:
            with heap_allocations():  # no page faults on every step's big tensors (memory.py)
                trainer.fit(start_epoch)
        except BaseException:
            stop_workers(loader)
            raise
    card["train_seconds"] = round(time.monotonic() - t0, 2)
    card["history"] = trainer.history
    if d.main:
        # The kept weights: the best by validation, or the last ones (the end of the
        # schedule, e.g. where the validation classes are not the test classes and its AUC
        # saturates early).
        if average is not None:  # the weight average instead of the last weights
            net.load_state_dict(average.average.module.state_dict())
        if cfg.train.keep == "last":
            save_tensors(out / "model.safetensors", net.state_dict())
        else:
            net.load_state_dict(load_tensors(out / "model.safetensors"))
    return trainer
