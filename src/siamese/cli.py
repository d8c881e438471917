"""The `siamese` command: parse, call the library, print. User errors -> one line, exit 2."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import SiameseError

# CLI flag -> config field. Flags left unset keep the config file's (or the default) value.
TRAIN_FLAGS = {
    "data": "data.path", "label_column": "data.label_column", "image_size": "data.image_size",
    "channels": "data.channels", "encoder": "model.encoder", "embedding_dim":
    "model.embedding_dim", "loss": "loss.name", "margin": "loss.margin", "distance":
    "loss.distance", "miner": "loss.miner", "epochs": "train.epochs", "batch_size":
    "train.batch_size", "samples_per_class": "train.samples_per_class", "lr": "train.lr",
    "seed": "train.seed", "device": "train.device", "patience": "train.patience",
    "max_minutes": "train.max_minutes", "split": "split.mode", "test_classes":
    "split.test_classes", "workers": "train.workers", "cache": "data.cache",
    "amp": "train.amp", "cache_dir": "data.cache_dir", "pairs": "data.pairs",
    "images": "data.images", "task": "train.task", "label_pattern": "data.label_pattern",
    "include": "data.include", "exclude": "data.exclude",
    "sample_rate": "data.sample_rate", "crop_seconds": "data.crop_seconds", "width":
    "model.width", "views": "model.views", "pretrained": "model.pretrained",
    "pretrained_output": "model.pretrained_output", "pretrained_train": "model.pretrained_train",
}


def _train(args: argparse.Namespace) -> int:
    from .api import train
    from .config import Config, apply_overrides, load_config, parse_sets
    from .evaluation.report import format_table

    cfg = load_config(args.config) if args.config else Config()
    if args.data is not None and len(args.data) == 1:
        args.data = args.data[0]
    apply_overrides(cfg, {field: getattr(args, flag) for flag, field in TRAIN_FLAGS.items()})
    apply_overrides(cfg, parse_sets(args.set))  # --set after the flags: the last word
    if args.no_augment:
        cfg.augment.enabled = False
    model = train(None if args.resume else cfg, args.out, resume=args.resume, force=args.force,
                  quiet=args.quiet, epochs=args.epochs if args.resume else None)
    if os.environ.get("RANK", "0") != "0":  # torchrun: rank 0 reports the run
        return 0
    card = model.card
    print(f"run saved to {args.out} (threshold {card['threshold']:.3f})"
          if card.get("threshold") is not None else f"run saved to {args.out}")
    tests = {k: v for k, v in card["metrics"].items() if k in ("unseen", "seen")}
    if tests:
        print(format_table(tests))
    for name, m in card["metrics"].items():
        if "rmse" in m:  # twin regression: validation and test rows
            print(_regression_line(f"{name} rows", m))
        elif "spearman" in m:  # graded pairs
            print(f"{name} pairs ({m['pairs']}): Pearson {m['pearson']:.4f}  Spearman "
                  f"{m['spearman']:.4f}  MAE {m['mae']:.4f}")
        elif name == "val" and card.get("pairs"):
            print(f"held-out pairs ({m['pairs']}): ROC AUC {m['roc_auc']:.4f}  accuracy "
                  f"{100 * m['accuracy']:.2f}% at the threshold")
    return 0


def eval_settings(config: dict, sets: list[str]):
    """A run's [eval] section with `--set eval.KEY=VALUE` changes; other sections are the
    trained model's and stay as they are."""
    from .config import apply_overrides, config_from_dict, parse_sets
    from .errors import ConfigError

    values = parse_sets(sets)
    fixed = [k for k in values if not k.startswith("eval.")]
    if fixed:
        raise ConfigError(f"--set {fixed[0]}: a trained model's {fixed[0].split('.')[0]} "
                          "settings are fixed; evaluate takes --set eval.KEY=VALUE")
    return apply_overrides(config_from_dict(config), values).eval


def _regression_line(what: str, m: dict) -> str:
    return (f"{what} ({m['rows']}): RMSE {m['rmse']:.4g}  MAE {m['mae']:.4g}  R^2 "
            f"{m['r2']:.4f}  mean uncertainty {m.get('mean_uncertainty', float('nan')):.4g}")


def _evaluate(args: argparse.Namespace) -> int:
    from .api import evaluate
    from .cli_track import evaluate_otb_command, is_tracking
    from .errors import ConfigError
    from .evaluation.report import format_table
    from .model import Model

    if args.otb or is_tracking(args.run):
        return evaluate_otb_command(args)
    if args.tta is not None and args.tta < 0:
        raise ConfigError(f"--tta {args.tta}: the number of distortions must be 0 or more")
    model = Model.load(args.run, device=args.device, runtime=args.runtime)
    ecfg = eval_settings(model.card["config"], args.set)
    # --tta N: N fixed distortions (0: one pass); else eval.tta, or the model's own views
    views = args.tta if args.tta is not None else (ecfg.tta or None)
    if args.omniglot_runs:
        return _omniglot(model, args, views)
    if args.pairs:
        return _pairs(model, args, views)
    if args.cohort_top < 1:
        raise ConfigError(f"--cohort-top {args.cohort_top}: give 1 or more")
    metrics = evaluate(model, data=args.data, eval_config=ecfg, out=args.out, views=views,
                       cohort=args.cohort, cohort_top=args.cohort_top,
                       label_pattern=args.label_pattern)
    if model.regression:
        for name, m in metrics.items():
            print(_regression_line(f"{name} rows", m))
    else:
        print(format_table(metrics))
    where = Path(args.out) if args.out else Path(args.run)
    print(f"metrics written to {where / 'metrics.json'}")
    return 0


def _pairs(model, args: argparse.Namespace, views: int | None) -> int:
    from .atomic import atomic_write_json
    from .data.pairs import read_pairs
    from .data.table import rows_for_model
    from .errors import ConfigError
    from .evaluation.pairs import evaluate_pairs, plot_graded
    from .evaluation.plots import plot_roc

    rows = None
    if model.preprocessing.kind == "vector":  # pairs of row numbers of the --data table
        if not args.data:
            raise ConfigError(f"{args.run} compares vectors: give --data, the table whose rows "
                              f"{args.pairs} numbers")
        rows = rows_for_model(args.data, model.card["config"]["data"]["label_column"],
                              model.preprocessing.input_shape[0]).x
    pairs = read_pairs(args.pairs, args.images, rows=None if rows is None else len(rows))
    metrics, scores = evaluate_pairs(model, pairs, args.folds, views, rows=rows)
    where = Path(args.out) if args.out else Path(args.run)
    atomic_write_json(where / "pairs_metrics.json", {"pairs_file": str(args.pairs), **metrics})
    if "graded" in metrics:
        g = metrics["graded"]
        plot_graded(pairs.label, scores, g, where / "pairs_scatter.png", "graded pairs")
        print(f"{g['pairs']} graded pairs: Pearson {g['pearson']:.4f}  Spearman "
              f"{g['spearman']:.4f}  MAE {g['mae']:.4f} (scores {g['score_range'][0]:g}.."
              f"{g['score_range'][1]:g} mapped to 0..1)")
    else:
        p, v = metrics["protocol"], metrics["verification"]
        plot_roc({"pairs": (pairs.label, scores, v["roc_auc"])}, where / "pairs_roc.png")
        print(f"{v['pairs']} pairs, {p['folds']}-fold accuracy {100 * p['accuracy']:.2f}% "
              f"+- {100 * p['accuracy_std']:.2f}  ROC AUC {v['roc_auc']:.4f}  EER "
              f"{100 * v['eer']:.2f}%  TAR@FAR=1e-3 {100 * v['tar@far=1e-3']:.1f}%")
    print(f"metrics written to {where / 'pairs_metrics.json'}")
    return 0


def _omniglot(model, args: argparse.Namespace, views: int | None) -> int:
    from .evaluation.omniglot import evaluate_official_runs

    where = Path(args.out) if args.out else Path(args.run)
    r = evaluate_official_runs(model, args.omniglot_runs, where, views=views)
    print("| run | accuracy |\n|---|---|")
    for name, acc in r["per_run"].items():
        print(f"| {name} | {100 * acc:.1f}% |")
    k = r["views"]
    tta = (f", each embedding averaged over {k} fixed distortions" + (
        " (the model's own)" if k == model.views else " (test-time augmentation)")) if k else ""
    print(f"| **all {r['trials']} trials{tta}** | **{100 * r['accuracy']:.2f}%** |")
    print(f"{len(r['wrong'])} items answered wrongly; scored in {r['seconds']:.2f} s; "
          f"details in {where / 'omniglot.json'}, trials in {where / 'omniglot_trials.png'}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .model import Model

    model = Model.load(args.run, device=args.device, runtime=args.runtime)
    pairs = model.card.get("pairs") or {}
    if pairs.get("graded"):  # a score of how alike, on the scale the pairs file used
        sim = model.similarity(args.a, args.b)
        lo, hi = pairs["score_range"]
        print(f"predicted score {lo + sim * (hi - lo):.3f} (on the {lo:g}..{hi:g} scale of "
              f"{Path(pairs['file']).name}; similarity {sim:.3f})")
        return 0
    sim, same = model.verify(args.a, args.b)
    verdict = "same" if same else "different"
    print(f"similarity {sim:.3f} -> {verdict} (threshold {model.threshold:.3f})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .model import Model
    from .predict import predict_table

    model = Model.load(args.run, device=args.device)
    n, metrics = predict_table(model, args.table, args.out)
    if args.out:
        print(f"{n} predictions written to {args.out}")
    if metrics:
        print(_regression_line("against the table's labels", metrics), file=sys.stderr)
    return 0


def _embed(args: argparse.Namespace) -> int:
    from .embed import embed_path

    n, dim = embed_path(args.run, args.inputs, args.out, device=args.device,
                        runtime=args.runtime)
    print(f"{n} embeddings of dimension {dim} written to {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from .model import Model
    from .runtime.export import export_onnx
    from .tracking.model import is_tracking_run

    if is_tracking_run(args.run):
        from .cli_track import export_tracking_command

        return export_tracking_command(args)

    model = Model.load(args.run)
    path = export_onnx(model, args.out)
    head = model.card.get("onnx", {}).get("head") if args.out is None else None
    shape = ", ".join(str(v) for v in model.preprocessing.input_shape)
    print(f"exported {path}{f' and {path.parent / head}' if head else ''}: input 'input' "
          f"(batch, {shape}) float32, normalised as (x - mean) / std (mean and std in the "
          f"file's metadata and the card) -> 'embedding' (batch, {model.net.dim})")
    return 0


def _set_option(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help=f"change a config field, VALUE as in a TOML file (repeatable): {what}")


def _runtime_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runtime", default="torch", choices=["torch", "onnxruntime"],
                   help="compute embeddings with PyTorch, or with ONNX Runtime from the run's "
                        "model.onnx (siamese export RUN; a tracking run: its exported "
                        "tracker.*.onnx)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="siamese", description=__doc__.splitlines()[0])
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a Siamese network on labeled data")
    t.add_argument("--config", help="TOML config file (flags override it)")
    t.add_argument("--data", nargs="+", help="class folders, .zip, .csv or .npy; default: "
                   "bundled digits (--task regression: scikit-learn's diabetes table); several "
                   "folders: read alike and joined, classes named <folder>/<class>")
    t.add_argument("--pairs", help="train from a pairs file instead of classes: a CSV a,b,label "
                   "(image paths, or row numbers of the --data table) or an LFW pairs.txt; "
                   "label 1/0 or a graded score")
    t.add_argument("--images", help="--pairs: the folder its image names are relative to")
    t.add_argument("--task", choices=["similarity", "regression", "tracking"],
                   help="regression: twin-network regression of the numeric --label-column "
                   "of a table; tracking: SiamFC on --data, a folder of OTB-layout sequences")
    t.add_argument("--out", default="runs/latest", help="run folder to write")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--force", action="store_true", help="replace an existing run in --out")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--no-augment", action="store_true", help="no random affine augmentation")
    t.add_argument("--label-column")
    t.add_argument("--label-pattern", help="audio: the class from the file name by this "
                   "regular expression (its group 'label' or first group), e.g. '^([0-9]+)_'")
    t.add_argument("--include", help="only the files whose path (relative to --data) this "
                   "regular expression finds, e.g. '/[89a-f][0-9a-f]*_nohash_'")
    t.add_argument("--exclude", help="leave out the files whose relative path this regular "
                   "expression finds, e.g. '^(zero|one|two)/'")
    t.add_argument("--sample-rate", type=int, help="audio: resample to this rate (16000)")
    t.add_argument("--crop-seconds", type=float, help="audio: training crop length "
                   "(default: the median recording's, 0.5 to 2 s)")
    t.add_argument("--image-size", type=int)
    t.add_argument("--channels", type=int, choices=[0, 1, 3])
    t.add_argument("--encoder", help="conv4 | conv4_pool_first | koch | resnet | mlp | "
                                      "audio_resnet | ecapa")
    t.add_argument("--pretrained", metavar="NAME|FILE", help="start from a network trained "
                   "elsewhere: a catalogue name (siamese pretrained list), an ONNX file, or "
                   "weights for --encoder (safetensors, PyTorch state dict, a run folder)")
    t.add_argument("--pretrained-output", metavar="TENSOR", help="ONNX: the tensor to cut "
                   "the network at (default: the catalogue's, else the file's first output)")
    t.add_argument("--pretrained-train", metavar="MODE", help="frozen (default) | last:N | "
                   "all: how much of the pretrained network trains")
    t.add_argument("--embedding-dim", type=int)
    t.add_argument("--views", type=int, help="images: the embedding averages the input and N "
                   "fixed distortions of it (N + 1 passes; 0 = one pass, the default)")
    t.add_argument("--width", type=int, help="the encoder's base width (channels)")
    t.add_argument("--loss", help="pair | contrastive | triplet | proto | mse (default: "
                   "triplet for classes, pair for a pairs file)")
    t.add_argument("--margin", type=float)
    t.add_argument("--distance", help="euclidean | cosine")
    t.add_argument("--miner", help="random | batch-all | batch-hard | semi-hard")
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--samples-per-class", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="cpu | cuda")
    t.add_argument("--patience", type=int, help="early stopping patience in epochs")
    t.add_argument("--max-minutes", type=float, help="wall-clock training budget")
    t.add_argument("--workers", type=int, help="DataLoader worker processes (default: 0 for "
                   "data in memory, else min(4, CPUs))")
    t.add_argument("--cache", choices=["auto", "memory", "none", "disk"], help="image folders: "
                   "decode into memory, leave on disk and decode per batch (none), or decode "
                   "once into a uint8 file under data.cache_dir (disk); default auto")
    t.add_argument("--cache-dir", help="where --cache disk keeps decoded images "
                   "(default ~/.cache/siamese)")
    t.add_argument("--amp", choices=["auto", "off", "bf16", "fp16"],
                   help="mixed precision (default auto: on CUDA only)")
    t.add_argument("--split", help="classes (test classes unseen) | samples")
    t.add_argument("--test-classes", help="comma-separated class names held out as unseen")
    _set_option(t, "any field of the config, e.g. --set split.val_class_fraction=0 (applied "
                "after --config and the flags above)")
    t.set_defaults(func=_train)

    e = sub.add_parser("evaluate", help="verification, few-shot and retrieval metrics")
    e.add_argument("run")
    e.add_argument("--data", help="evaluate on this data instead of the run's test split")
    e.add_argument("--out", help="folder for metrics.json and plots (default: the run)")
    e.add_argument("--omniglot-runs", help="score Lake's 20 official one-shot runs "
                   "(all_runs.zip or its folder) instead")
    e.add_argument("--pairs", help="the verification protocol on a pairs file: a CSV a,b,label "
                   "or an LFW pairs.txt (k-fold accuracy, ROC AUC, EER, TAR@FAR)")
    e.add_argument("--images", help="--pairs: folder the image names are relative to "
                   "(default: the pairs file's folder)")
    e.add_argument("--folds", type=int, default=10, help="--pairs without folds of their own: "
                   "this many (default 10)")
    e.add_argument("--tta", type=int, metavar="N", help="test-time augmentation: average "
                   "each image's embedding over N fixed distortions; 0 = one pass (default: "
                   "the run's eval.tta, else as the model embeds: model.views)")
    e.add_argument("--otb", help="a tracking run: the OTB one-pass evaluation on this folder "
                   "of sequences (success and precision plots, beside results/ found there)")
    e.add_argument("--sequences", nargs="+", help="--otb: only these sequences or targets")
    e.add_argument("--cohort", help="a folder of other classes (e.g. the training speakers), "
                   "or 'training' for the run's own training data: also report AS-norm "
                   "scores against them (EER, minDCF)")
    e.add_argument("--cohort-top", type=int, default=100, help="--cohort: the closest cohort "
                   "scores each side's statistics use (default 100)")
    e.add_argument("--label-pattern", help="--data / --cohort: the class from each file name by "
                   "this regular expression; '' = class folders (default: as the run's "
                   "training data)")
    e.add_argument("--device", default="cpu")
    _set_option(e, "evaluation settings, e.g. --set eval.episodes=500 (a tracking run: its "
                "tracker's, e.g. --set track.scale_penalty=0.97)")
    _runtime_option(e)
    e.set_defaults(func=_evaluate)

    c = sub.add_parser("compare", help="similarity of two inputs and the verdict")
    c.add_argument("run")
    c.add_argument("a")
    c.add_argument("b")
    c.add_argument("--device", default="cpu")
    _runtime_option(c)
    c.set_defaults(func=_compare)

    m = sub.add_parser("embed", help="write embeddings of images or vectors to .npy")
    m.add_argument("run")
    m.add_argument("inputs", help="an image, a folder of images, or a .csv/.npy of vectors")
    m.add_argument("--out", required=True, help="output .npy (an index .csv is written beside)")
    m.add_argument("--device", default="cpu")
    _runtime_option(m)
    m.set_defaults(func=_embed)

    r = sub.add_parser("predict", help="twin regression: predict the label of each row of a "
                       "table, with its uncertainty")
    r.add_argument("run")
    r.add_argument("table", help=".csv (header row; the label column may be left out) or .npy")
    r.add_argument("--out", help="CSV to write (row, source, prediction, uncertainty[, label]); "
                   "default: standard output")
    r.add_argument("--device", default="cpu")
    r.set_defaults(func=_predict)

    x = sub.add_parser("export", help="export the encoder (and pair head) to ONNX; a tracking "
                       "run: its backbone and head")
    x.add_argument("run")
    x.add_argument("--out", help="the .onnx file to write (default: RUN/model.onnx, recorded "
                   "in the card and used by --runtime onnxruntime)")
    x.set_defaults(func=_export)

    from .cli_gallery import add_commands
    from .cli_pretrained import add_pretrained_command
    from .cli_spot import add_spot_command
    from .cli_track import add_track_command

    add_commands(sub, _runtime_option)
    add_track_command(sub, _set_option)
    add_spot_command(sub)
    add_pretrained_command(sub)
    return p


def _speaks() -> bool:
    """Under torchrun every rank runs the same command: rank 0 prints, and the first rank of
    each other machine (whose data or disk may differ); the rest would only repeat them."""
    rank = os.environ.get("RANK", "0")
    return rank == "0" or os.environ.get("LOCAL_RANK", "0") == "0"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # e.g. `siamese gallery list RUN | head -1`: the reader left
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # no second error when Python flushes at exit
        return 141  # as a process killed by SIGPIPE
    except SiameseError as e:
        if args.debug:
            raise
        if _speaks():
            print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last checkpoint is kept (resume with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
