"""The library's entry points: train(), load(), evaluate()."""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .artifact import (
    load_checkpoint,
    load_tensors,
    read_card,
    read_json,
    save_checkpoint,
    save_tensors,
    write_card,
)
from .atomic import atomic_write_json
from .config import Config, EvalConfig, config_from_dict, resolve
from .data.datasets import load_dataset
from .data.labeled import LabeledData
from .data.lazy import ImageFiles
from .data.loader import RankBatches, make_loader
from .data.preprocessing import Preprocessing
from .data.sampling import ClassBalancedSampler, pairable, sample_pairs
from .data.splits import Split, make_split
from .data.transforms import add_transformed_classes, random_affine
from .errors import ArtifactError, ConfigError, DataError
from .evaluation.plots import plot_history
from .evaluation.report import evaluate_embeddings, write_plots
from .evaluation.verification import best_threshold, verification_metrics
from .losses import create_loss, create_miner
from .model import Model
from .models.build import build_net
from .models.encoders import default_encoder
from .names import raw_bytes
from .training.callbacks import Checkpoint, EarlyStopping, ProgressBar, Validation
from .training.distributed import (
    Dist,
    check_batch,
    first_on_each_machine,
    from_main,
    rank_device,
)
from .training.distributed import finish as dist_finish
from .training.distributed import from_env as dist_from_env
from .training.engine import amp_dtype, cache_budget
from .training.engine import workers as engine_workers
from .training.task import MetricLearningTask
from .training.trainer import Trainer


def data_fingerprint(data: LabeledData) -> str:
    h = hashlib.sha256()
    h.update(raw_bytes("\n".join(data.sources)))  # non-UTF-8 file names too
    h.update(data.y.tobytes())
    return h.hexdigest()[:16]


def _device(name: str) -> str:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for but no CUDA GPU is available; use cpu")
    return name


def _load(cfg: Config, pre: Preprocessing | None = None) -> LabeledData:
    size, channels = cfg.data.image_size, cfg.data.channels
    if pre is not None and pre.kind == "image":
        size, channels = pre.input_shape[1], pre.input_shape[0]
    return load_dataset(cfg.data.path, size, channels, cfg.data.label_column,
                        cfg.data.cache, cache_budget(cfg), cfg.data.cache_dir)


def _cache_kind(x) -> str:
    if not isinstance(x, ImageFiles):
        return "memory"
    return "disk" if x.decoded else "none"


def _prepare_out(out: Path, force: bool) -> None:
    if (out / "card.json").exists() or (out / "checkpoints").exists():
        if not force:
            raise ConfigError(f"run folder {out} already holds a run; choose another --out, "
                              "pass --resume to continue it, or --force to replace it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _run_config(config: Config | dict | None, out: Path, resume: bool,
                epochs: int | None) -> Config:
    """The resolved config of a run: the given one, or on resume the one saved in `out`."""
    if resume:
        meta_path = out / "checkpoints" / "last.json"
        if not meta_path.exists():
            raise ArtifactError(f"{out} has no checkpoint to resume from ({meta_path} is "
                                "missing); start a new run without --resume")
        saved = read_json(out / "config.json", "the run's config")
        cfg = config_from_dict(saved, str(out / "config.json"))
    else:
        cfg = config if isinstance(config, Config) else config_from_dict(config or {})
    if epochs is not None:
        cfg.train.epochs = epochs
    return resolve(cfg)


def _sampler(cfg: Config, y_train: np.ndarray,
             train_groups: np.ndarray | None) -> ClassBalancedSampler:
    k = cfg.train.samples_per_class
    group_ids = None
    if cfg.train.group_batches:
        if train_groups is None:
            raise ConfigError("train.group_batches needs grouped classes "
                              "(<group>/<class>/<image> folders)")
        group_ids = np.unique(train_groups, return_inverse=True)[1]
    return ClassBalancedSampler(y_train, cfg.train.batch_size // k, k, cfg.train.seed,
                                groups=group_ids)


def _restore(out: Path, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
             d: Dist) -> tuple[int, float, list[dict]]:
    """Load the last checkpoint into net and optimizer: (next epoch, best score, history).
    Rank 0 reads it and hands it to the other ranks (the run folder may be on its machine
    only)."""
    model_state, opt_state, meta = from_main(load_checkpoint(out) if d.main else None, d)
    net.load_state_dict(model_state)
    optimizer.load_state_dict(opt_state)
    history = [{k: v for k, v in h.items() if k != "best_score"} for h in meta["history"]]
    return int(meta["epoch"]), float(meta["best_score"]), history


def train(config: Config | dict | None = None, out: str | Path = "runs/latest", *,
          resume: bool = False, force: bool = False, quiet: bool = False,
          epochs: int | None = None) -> Model:
    """Train a Siamese network and write the run folder `out`; returns the trained Model.

    config: a Config, or a dict of sections as in the TOML file ({"data": {"path": ...}}).
    resume: continue the run in `out` from its last checkpoint (its saved config is used;
    `config` is ignored then). epochs: overrides the number of epochs (e.g. more on resume).
    Launched by torchrun, each process trains its share of every batch (see
    training/distributed.py); rank 0 writes the run folder.
    """
    out = Path(out)
    cfg = _run_config(config, out, resume, epochs)
    d = dist_from_env(_device(cfg.train.device))
    model = _train(cfg, out, d, resume, force, quiet or not d.main)
    dist_finish(d)
    return model


def _train(cfg: Config, out: Path, d: Dist, resume: bool, force: bool, quiet: bool) -> Model:
    device = rank_device(cfg.train.device, d)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    amp = amp_dtype(cfg.train.amp, device)

    with first_on_each_machine(d, when=cfg.data.cache == "disk"):  # one cache file a machine
        data = _load(cfg)
    if cfg.model.encoder == "auto":  # the saved config names the encoder actually used
        cfg.model.encoder = default_encoder(data.kind)
    split = make_split(data, cfg.split, cfg.train.seed)

    train_set = data.subset(split.train)
    n_workers = engine_workers(cfg, train_set.x)
    # The same statistics on every rank: computed once, on rank 0.
    pre = from_main(Preprocessing.fit(train_set.x, data.kind, cfg.train.seed, n_workers)
                    if d.main else None, d)
    x_train, y_train = pre.normalize(train_set.x), train_set.y
    train_classes, train_groups = train_set.classes, train_set.groups
    if (cfg.data.class_rotations or cfg.data.class_flips) and data.kind == "image":
        x_train, y_train, train_classes, train_groups = add_transformed_classes(
            x_train, y_train, train_classes, train_groups, flips=cfg.data.class_flips)
    val_set = data.subset(split.val) if len(split.val) else None

    net = build_net(cfg, pre.input_shape, data.kind).to(device)
    loss_fn = create_loss(cfg.loss.name, margin=cfg.loss.margin, distance=cfg.loss.distance,
                          head=net.head, scale=cfg.loss.scale)
    miner = create_miner(cfg.loss.miner, cfg.loss.margin, cfg.loss.distance)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.train.lr,
                                  weight_decay=cfg.train.weight_decay)
    sampler = _sampler(cfg, y_train, train_groups)
    check_batch(sampler.p * sampler.k, d, sampler.p, sampler.k)

    # Everything that can fail on bad input has run: only now touch the run folder.
    if d.main and not resume:
        _prepare_out(out, force)
        atomic_write_json(out / "config.json", cfg.to_dict())
        atomic_write_json(out / "split.json", split.to_dict())
    elif d.main and Split.from_dict(read_json(out / "split.json", "the split")).train.tolist() \
            != split.train.tolist():
        raise ArtifactError(f"the data behind {out} changed since the run started; "
                            "start a new run")

    card = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": cfg.to_dict(),
        "preprocessing": pre.to_dict(),
        "classes": train_set.classes,
        "data": {"kind": data.kind, "samples": len(data), "classes": len(data.classes),
                 "fingerprint": data_fingerprint(data),
                 "cache": _cache_kind(data.x)},
        "split": split.summary(),
        "engine": {"ranks": d.world, "workers": n_workers, "device": cfg.train.device,
                   "amp": str(amp).replace("torch.", "") if amp else "off",
                   "compile": cfg.train.compile},
        "threshold": None,
        "metrics": {},
        "status": "training",
    }
    model = Model(net, pre, card, out, device)

    val_pairs = None
    if d.main and val_set is not None and pairable(val_set.y):
        x_val = pre.normalize(val_set.x)
        val_pairs = sample_pairs(val_set.y, cfg.train.val_pairs,
                                 np.random.default_rng(cfg.train.seed + 1))

    def val_scores() -> tuple[np.ndarray, np.ndarray]:
        emb = model.embed_tensor(x_val, workers=n_workers)
        i, j, y = val_pairs
        return y, model.score_embeddings(emb[i], emb[j])

    def val_auc() -> float:
        return verification_metrics(*val_scores())["roc_auc"]

    def on_best(trainer: Trainer, logs: dict) -> None:
        save_tensors(out / "model.safetensors", net.state_dict())
        write_card(out, {**card, "history": trainer.history + [logs]})

    def save_last(trainer: Trainer, meta: dict) -> None:
        save_checkpoint(out, net, optimizer,
                        {"epoch": meta["epoch"], "best_score": meta["best_score"],
                         "history": trainer.history + [meta]})

    start_epoch, best = 0, -np.inf
    history: list[dict] = []
    if resume:
        start_epoch, best, history = _restore(out, net, optimizer, d)
        if not quiet:
            print(f"resuming {out} from epoch {start_epoch}", file=sys.stderr)

    callbacks = []
    if d.main:  # validation, checkpoints and the progress bar: once, on rank 0
        callbacks = [Validation(val_auc)] if val_pairs is not None else []
        callbacks += [Checkpoint(save_last, on_best, best), EarlyStopping(cfg.train.patience),
                      ProgressBar(not quiet)]
    augment = None
    if cfg.augment.enabled and data.kind == "image":
        def augment(x: torch.Tensor, gen: torch.Generator, offset: int = 0,
                    total: int | None = None) -> torch.Tensor:
            return random_affine(x, cfg.augment, gen, offset, total)

    loader = make_loader(x_train, y_train, RankBatches(sampler, d.rank, d.world), n_workers,
                         pin_memory=device.startswith("cuda"))
    task = MetricLearningTask(net, loss_fn, miner, augment, device, d)
    trainer = Trainer(task, optimizer, loader, cfg.train.epochs, cfg.train.seed, callbacks,
                      max_seconds=cfg.train.max_minutes * 60, dist=d, amp=amp,
                      compile=cfg.train.compile)
    trainer.history = history
    t0 = time.monotonic()
    if start_epoch < cfg.train.epochs:
        trainer.fit(start_epoch)
    if not d.main:
        return model
    card["train_seconds"] = round(time.monotonic() - t0, 2)
    card["history"] = trainer.history

    # The kept weights: the best by validation, or the last ones (the end of the schedule, e.g.
    # where the validation classes are not the test classes and its AUC saturates early).
    # Then calibrate the threshold on validation pairs (never on test pairs).
    if cfg.train.keep == "last":
        save_tensors(out / "model.safetensors", net.state_dict())
    else:
        net.load_state_dict(load_tensors(out / "model.safetensors"))
    if val_pairs is not None:
        y, s = val_scores()
        card["threshold"] = best_threshold(y, s)
        card["threshold_calibrated_on"] = (
            "classes never trained on" if split.val_classes else
            "held-out images of the training classes (optimistic for unseen classes)")
        card["metrics"]["val"] = verification_metrics(y, s, card["threshold"])
    card["status"] = "trained"
    write_card(out, card)
    plot_history(trainer.history, out / "training.png")
    model.card = read_card(out)
    if len(split.test_unseen) or len(split.test_seen):
        evaluate(model, eval_config=cfg.eval, _data=data, _split=split)
    return model


def load(run: str | Path, device: str = "cpu", runtime: str = "torch") -> Model:
    """Load a trained run folder. runtime "onnxruntime": embed with its exported model.onnx."""
    return Model.load(run, device, runtime)


def evaluate(model: Model | str | Path, data: str | Path | None = None,
             eval_config: EvalConfig | None = None, out: str | Path | None = None,
             _data: LabeledData | None = None,
             _split: Split | None = None) -> dict:
    """Evaluate a model; writes metrics.json and plots into `out` (default: the run folder).

    Without `data`: the run's own test sets, `unseen` (classes never seen in training) and `seen`
    (held-out images of the training classes). With `data`: that whole data set.
    """
    if not isinstance(model, Model):
        model = load(model)
    run = model.run
    cfg = config_from_dict(model.card["config"])
    ecfg = eval_config or cfg.eval
    pre = model.preprocessing
    sets: dict[str, LabeledData] = {}
    if data is not None:
        cfg.data.path = str(data)
        sets["data"] = _load(cfg, pre)
    else:
        full = _data if _data is not None else _load(cfg, pre)
        if _split is None:
            if data_fingerprint(full) != model.card["data"]["fingerprint"]:
                raise DataError(f"the training data {cfg.data.path or 'digits'} changed since "
                                f"{run} was trained; pass --data to evaluate on new data")
            _split = Split.from_dict(read_json(run / "split.json", "the split"))
        for name, idx in (("unseen", _split.test_unseen), ("seen", _split.test_seen)):
            if len(idx) and pairable(full.y[idx]):
                sets[name] = full.subset(idx)
    if not sets:
        raise DataError("nothing to evaluate: the run has no test split; pass --data")
    threshold = model.card.get("threshold")
    metrics, raws = {}, {}
    for name, ds in sets.items():
        emb = model.embed_tensor(pre.normalize(ds.x), views=ecfg.tta,
                                 workers=engine_workers(cfg, ds.x))
        metrics[name], raws[name] = evaluate_embeddings(model, emb, ds.y, ecfg, threshold,
                                                        seed=cfg.train.seed)
    out_dir = Path(out) if out is not None else run
    if out_dir is not None:
        atomic_write_json(out_dir / "metrics.json", metrics)
        write_plots(out_dir, raws, metrics, threshold)
        if out is None and data is None:  # the run's own figures belong in its card
            card = read_card(run)
            card["metrics"].update(metrics)
            write_card(run, card)
            model.card = read_card(run)
    return metrics
