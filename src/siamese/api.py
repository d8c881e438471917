"""The library's entry points: train(), load(), evaluate()."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from .artifact import read_card, read_json, write_card
from .atomic import atomic_write_json
from .config import Config, EvalConfig, config_from_dict
from .data.audio import Waveforms, add_noise, auto_crop_seconds, crop, speed_crop
from .data.channel import channel
from .data.datasets import load_dataset
from .data.labeled import LabeledData
from .data.lazy import ImageFiles
from .data.loader import IndexedSamples, RankBatches, make_loader
from .data.preprocessing import Preprocessing
from .data.roots import root_shares
from .data.sampling import ClassBalancedSampler, pairable, sample_pairs
from .data.splits import Split, make_split
from .data.transforms import add_transformed_classes, random_affine
from .errors import ConfigError, DataError, SiameseError
from .evaluation.plots import plot_history
from .evaluation.report import evaluate_embeddings, write_plots
from .evaluation.verification import best_threshold, verification_metrics
from .losses import create_loss, create_miner
from .model import Model
from .models.build import build_net
from .models.encoders import default_encoder
from .models.views import check_views
from .names import raw_bytes
from .training.crossfit import cross_fit, read_crossfit, write_crossfit
from .training.distributed import Dist, check_batch, first_on_each_machine, from_main
from .training.distributed import finish as dist_finish
from .training.distributed import from_env as dist_from_env
from .training.engine import cache_budget
from .training.engine import workers as engine_workers
from .training.run import device_of, fit_run, new_card, run_config, start_folder, start_run
from .training.task import MetricLearningTask


def data_fingerprint(data: LabeledData) -> str:
    h = hashlib.sha256()
    h.update(raw_bytes("\n".join(data.sources)))  # non-UTF-8 file names too
    h.update(data.y.tobytes())
    return h.hexdigest()[:16]


def _load(cfg: Config, pre: Preprocessing | None = None) -> LabeledData:
    size, channels = cfg.data.image_size, cfg.data.channels
    if pre is not None and pre.kind == "image":
        size, channels = pre.input_shape[1], pre.input_shape[0]
    return load_dataset(cfg.data.path, size, channels, cfg.data.label_column,
                        cfg.data.cache, cache_budget(cfg), cfg.data.cache_dir,
                        cfg.data.sample_rate, cfg.data.label_pattern, cfg.data.include,
                        cfg.data.exclude)


def _pieces(data: LabeledData, crop: int, most: int) -> LabeledData:
    """Audio: each utterance cut into as many pieces as it holds crops (at most `most`), each
    piece a sample of the utterance's class: one long recording of a speaker gives positive
    pairs, from different moments of it."""
    x, owner = data.x.segments(np.clip(data.x.length.numpy() // crop, 1, most))
    return LabeledData(x=x, y=data.y[owner], classes=data.classes,
                       sources=[data.sources[i] for i in owner], kind=data.kind,
                       groups=data.groups)


def _cache_kind(x) -> str:
    if not isinstance(x, ImageFiles):
        return "memory"
    return "disk" if x.decoded else "none"


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
    cfg = run_config(config, out, resume, epochs)
    d = dist_from_env(device_of(cfg.train.device))
    quiet = quiet or not d.main
    if cfg.train.task == "regression":
        from .training.regression import train_regression as run
    elif cfg.train.task == "tracking":
        from .training.tracking import train_tracking as run
    elif cfg.data.pairs:
        from .training.from_pairs import train_pairs as run
    else:
        run = _train
    fresh = not resume and not out.exists()
    try:
        model = run(cfg, out, d, resume, force, quiet)
    except SiameseError:  # bad input met mid-run (a corrupt frame): no half-written folder
        if fresh and d.main:
            shutil.rmtree(out, ignore_errors=True)
        raise
    dist_finish(d)
    return model


def _train(cfg: Config, out: Path, d: Dist, resume: bool, force: bool, quiet: bool) -> Model:
    device, amp = start_run(cfg, d)
    start = None
    if cfg.model.pretrained:  # read once; its input size, channels and statistics into cfg
        from .pretrained import setup as pretrained

        start = pretrained.prepare(cfg, quiet)
    with first_on_each_machine(d, when=cfg.data.cache == "disk"):  # one cache file a machine
        data = _load(cfg)
    check_views(cfg.model.views, data.kind)
    if cfg.model.encoder == "auto":  # the saved config names the encoder actually used
        cfg.model.encoder = default_encoder(data.kind)
    if cfg.data.class_reversals and data.kind != "audio":
        where = cfg.data.path or "the bundled digits"
        raise ConfigError(f"data.class_reversals plays recordings backwards; {where} holds "
                          f"{data.kind}s (for images: data.class_rotations)")
    if data.kind == "audio" and cfg.data.crop_seconds == 0:  # ... and the crop's length
        cfg.data.crop_seconds = auto_crop_seconds(data.x.length.numpy(), cfg.data.sample_rate)
    split = make_split(data, cfg.split, cfg.train.seed, can_crossfit=d.world == 1 and
                       cfg.train.max_minutes <= 0)
    if start is not None:  # (one network for the fold runs and the final one)
        start = pretrained.Imported(start, cfg, data, device, quiet, split.train)
    if cfg.train.keep == "auto":  # cross-fitted: the schedule's end (docs/small_data.md)
        cfg.train.keep = "last" if split.validation == "crossfit" else "best"
    crossfit = None
    if split.validation == "crossfit":  # the fold runs first; a resumed run read them back
        crossfit = (read_crossfit(out) if resume else
                    cross_fit(lambda k, where, record: _fit(
                        cfg, data, split.fold(k, data), where, d, False, True, quiet,
                        device, amp, record=record, start=start)[0],
                        split, cfg.train.epochs, cfg.train.keep, quiet))
    model, val_scores, val = _fit(cfg, data, split, out, d, resume, force, quiet, device, amp,
                                  crossfit=crossfit, start=start)
    if not d.main:
        return model
    card = model.card
    if crossfit is not None:  # the epoch and threshold from the fold runs
        card["threshold"] = crossfit["threshold"]
        card["threshold_calibrated_on"] = (
            f"classes never trained on: {len(split.folds)} cross-fitted class folds")
        card["metrics"]["val"] = crossfit["metrics"]
    elif val is not None:  # calibrate the threshold on validation pairs (never on test pairs)
        y, s = val_scores()
        card["threshold"] = best_threshold(y, s)
        card["threshold_calibrated_on"] = (
            "classes never trained on" if split.val_classes else
            "held-out images of the training classes (optimistic for unseen classes)")
        card["metrics"]["val"] = verification_metrics(y, s, card["threshold"])
    card["status"] = "trained"
    write_card(out, card)
    plot_history(card["history"], out / "training.png")
    model.card = read_card(out)
    # The test sets, where they can be scored (pairs need two samples of a class).
    if any(len(idx) and pairable(data.y[idx]) for idx in (split.test_unseen, split.test_seen)):
        evaluate(model, eval_config=cfg.eval, _data=data, _split=split)
    return model


def _fit(cfg: Config, data: LabeledData, split: Split, out: Path, d: Dist, resume: bool,
         force: bool, quiet: bool, device: str, amp, crossfit: dict | None = None,
         record: list | None = None, start=None):
    """Train on split.train, validating each epoch on split.val (where it can make pairs) ->
    (model, val_scores(views) -> (labels, scores), the validation set or None). record: a
    list that gets each epoch's (labels, scores) as the model embeds (a fold run's).
    crossfit: the fold runs' choice (the run stops after its epoch; kept in the run folder)."""
    train_set = data.subset(split.train)
    n_workers = engine_workers(cfg, train_set.x)
    # The same statistics on every rank: computed once, on rank 0.
    if data.kind == "audio":
        pre = Preprocessing.audio(cfg.data.sample_rate, cfg.data.crop_seconds)
    elif start is not None:  # the imported network's own statistics, not the data's
        pre = start.preprocessing(train_set.x)
    else:
        pre = from_main(Preprocessing.fit(train_set.x, data.kind, cfg.train.seed, n_workers)
                        if d.main else None, d)
    val_set = data.subset(split.val) if len(split.val) else None
    if data.kind == "audio":  # a long utterance: its pieces are samples (crops of each)
        train_set = _pieces(train_set, pre.input_shape[0], 8)
        val_set = _pieces(val_set, pre.input_shape[0], 4) if val_set is not None else None
    x_train, y_train = pre.normalize(train_set.x), train_set.y
    train_classes, train_groups = train_set.classes, train_set.groups
    if (cfg.data.class_rotations or cfg.data.class_flips) and data.kind == "image":
        x_train, y_train, train_classes, train_groups = add_transformed_classes(
            x_train, y_train, train_classes, train_groups, flips=cfg.data.class_flips)
    if cfg.data.class_reversals and data.kind == "audio":  # twice the words, same sounds
        x_train = Waveforms.concat([x_train, x_train.reversed()])
        y_train = np.concatenate([y_train, y_train + len(train_classes)])
        train_classes = [*train_classes, *(f"{c} (reversed)" for c in train_classes)]
        train_groups = [*train_groups, *train_groups] if train_groups else train_groups

    net = build_net(cfg, pre.input_shape, data.kind,
                    graph=start.spec if start is not None else None)
    if start is not None:
        start.load_into(net)
    net = net.to(device)
    if start is not None and start.features is not None:  # a frozen network's outputs
        x_train = start.features[split.train]
    loss_fn = create_loss(cfg.loss.name, margin=cfg.loss.margin, distance=cfg.loss.distance,
                          head=net.head, scale=cfg.loss.scale, normalize=cfg.model.normalize,
                          classes=len(train_classes), dim=net.dim,
                          subcenters=cfg.loss.subcenters).to(device)
    miner = create_miner(cfg.loss.miner, cfg.loss.margin, cfg.loss.distance)
    # The loss's own weights (arcface's class weights) train too; they are not the model's.
    own = [p for p in loss_fn.parameters() if not any(p is q for q in net.parameters())]
    groups = start.param_groups(net, own) if start is not None else [
        {"params": [*net.parameters(), *own]}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
    sampler = _sampler(cfg, y_train, train_groups)
    check_batch(sampler.p * sampler.k, d, sampler.p, sampler.k)

    # Everything that can fail on bad input has run: only now touch the run folder.
    start_folder(out, cfg, split.to_dict(), d, resume, force)
    card = new_card(cfg, d, n_workers, amp, preprocessing=pre.to_dict(),
                    classes=train_set.classes,
                    data={"kind": data.kind, "samples": len(data), "classes": len(data.classes),
                          "fingerprint": data_fingerprint(data), "cache": _cache_kind(data.x)},
                    split=split.summary())
    if start is not None:  # the graph beside the weights; the card says where they came from
        card["pretrained"] = start.record(out, d.main and not resume)
    if isinstance(cfg.data.path, list) and len(cfg.data.path) > 1:  # what each corpus weighs
        card["data"]["training_share_by_root"] = shares = root_shares(train_set)
        if not quiet:
            print("training samples by root: " + ", ".join(
                f"{k} {100 * v:.0f}%" for k, v in shares.items()), file=sys.stderr)
    if crossfit is not None and d.main:  # before the first epoch: a resume needs it
        card["crossfit"] = {k: v for k, v in crossfit.items() if k != "metrics"}
        if not resume:
            write_crossfit(out, crossfit)
    model = Model(net, pre, card, out, device)

    val_pairs = None
    if d.main and val_set is not None and pairable(val_set.y):
        x_val = pre.normalize(val_set.x)
        val_pairs = sample_pairs(val_set.y, cfg.train.val_pairs,
                                 np.random.default_rng(cfg.train.seed + 1))

    def val_scores(views: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        if start is not None and start.features is not None:  # computed once
            with torch.no_grad():
                emb = net.eval().embed_features(start.features[split.val].to(device)).cpu()
        else:
            emb = model.embed_tensor(x_val, workers=n_workers, views=views)
        i, j, y = val_pairs
        return y, model.score_embeddings(emb[i], emb[j])

    def val_auc() -> float:
        if record is not None:  # a fold run: scores as the kept model will embed
            record.append(val_scores())
            return verification_metrics(*record[-1])["roc_auc"]
        return verification_metrics(*val_scores(views=0))["roc_auc"]  # every epoch: one pass

    augment = None
    if cfg.augment.enabled and data.kind == "image":
        def augment(x: torch.Tensor, gen: torch.Generator, offset: int = 0,
                    total: int | None = None) -> torch.Tensor:
            return random_affine(x, cfg.augment, gen, offset, total)
    elif data.kind == "audio":  # random crops (SpecAugment runs in the front end)
        def augment(x: Waveforms, gen: torch.Generator, offset: int = 0,
                    total: int | None = None) -> torch.Tensor:
            a, n = cfg.augment, pre.input_shape[0]
            if not a.enabled:
                return crop(x, n, gen, offset, total)
            out = speed_crop(x, n, a.speed, gen, offset, total) if a.speed > 0 else \
                crop(x, n, gen, offset, total)
            if max(a.bandlimit, a.eq, a.reverb) > 0:
                out = channel(out, cfg.data.sample_rate, a.bandlimit, a.eq, a.reverb, gen,
                              offset, total)
            if a.noise_snr > 0:
                out = add_noise(out, a.noise_snr, gen, offset, total)
            if a.crop_min > 0:  # one length a batch
                m = min(n, int(a.crop_min * cfg.data.sample_rate))
                out = out[:, :m + int(torch.rand(1, generator=gen) * (n - m + 1))]
            return out

    loader = make_loader(IndexedSamples(x_train, y_train), RankBatches(sampler, d.rank, d.world),
                         n_workers, pin_memory=device.startswith("cuda"))
    cached = start is not None and start.features is not None
    task = MetricLearningTask(net, loss_fn, miner, None if cached else augment, device, d,
                              features=cached)
    fit_run(cfg, out, d, task, optimizer, loader, card,
            val_auc if val_pairs is not None else None, "val_auc", resume, quiet, amp,
            loss=loss_fn if own else None,
            stop_epoch=crossfit["epoch"] if crossfit is not None else None)
    return model, val_scores, val_pairs


def load(run: str | Path, device: str = "cpu", runtime: str = "torch"):
    """Load a trained run folder: a `Model` (embed, compare, identify), or for a tracking run
    a `TrackingModel` (track). runtime "onnxruntime": embed with its exported model.onnx (a
    tracking run: its exported tracker.backbone.onnx and tracker.head.onnx)."""
    from .tracking.model import TrackingModel, is_tracking_run

    if is_tracking_run(run):
        return TrackingModel.load(run, device, runtime)
    return Model.load(run, device, runtime)


def evaluate(model: Model | str | Path, data: str | Path | None = None,
             eval_config: EvalConfig | None = None, out: str | Path | None = None,
             _data: LabeledData | None = None,
             _split: Split | None = None, views: int | None = None,
             cohort: str | Path | None = None, cohort_top: int = 100,
             label_pattern: str | None = None) -> dict:
    """Evaluate a model; writes metrics.json and plots into `out` (default: the run folder).

    Without `data`: the run's own test sets, `unseen` (classes never seen in training) and `seen`
    (held-out images of the training classes). With `data`: that whole data set. views: the
    fixed distortions each embedding averages (Model.embed_tensor); None = eval.tta if set,
    else the model's own (model.views). cohort: a folder of other classes (e.g. the training
    speakers, never the test ones), or "training" for the run's own training data (all its
    roots and choices of files): pairs are also scored with AS-norm against its
    embeddings, the `cohort_top` closest of each side ("verification_as_norm").
    label_pattern: how `data` and `cohort` name their classes (a regex over file names; ""
    = class folders); None = as the run's training data did.
    """
    if not isinstance(model, Model):
        model = load(model)
    if model.regression:
        from .evaluation.regression import evaluate_regression_run

        return evaluate_regression_run(model, data, Path(out) if out is not None else None)
    if model.card.get("pairs") and data is None:
        raise DataError(f"{model.run} was trained from a pairs file and has no test split; "
                        "evaluate it with --pairs FILE (pairs it did not train on) or --data")
    run = model.run
    cfg = config_from_dict(model.card["config"])
    ecfg = eval_config or cfg.eval
    pre = model.preprocessing
    sets: dict[str, LabeledData] = {}
    if data is not None:
        cfg.data.path = str(data)
        cfg.data.include = cfg.data.exclude = ""  # they chose the training files, not these
        if label_pattern is not None:
            cfg.data.label_pattern = label_pattern
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
    views = views if views is not None else (ecfg.tta or None)
    cohort_emb = None
    if cohort is not None:
        if str(cohort) == "training":  # the run's own training data, as it was chosen
            c = _load(config_from_dict(model.card["config"]), pre)
        else:
            cfg.data.path, cfg.data.include, cfg.data.exclude = str(cohort), "", ""
            if label_pattern is not None:
                cfg.data.label_pattern = label_pattern
            c = _load(cfg, pre)
        cohort_emb = model.embed_tensor(pre.normalize(c.x), views=views,
                                        workers=engine_workers(cfg, c.x))
    for name, ds in sets.items():
        emb = model.embed_tensor(pre.normalize(ds.x), views=views,
                                 workers=engine_workers(cfg, ds.x))
        metrics[name], raws[name] = evaluate_embeddings(model, emb, ds.y, ecfg, threshold,
                                                        seed=cfg.train.seed, cohort=cohort_emb,
                                                        cohort_top=cohort_top)
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
