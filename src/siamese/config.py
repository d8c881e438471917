"""Run configuration as dataclasses.

A config is read from TOML (sections = the fields of `Config`), overridden by CLI flags, resolved
(defaults that depend on other fields are filled in) and saved with every run. Unknown sections or
keys are errors that name the key and list the valid ones.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

from .config_model import ModelConfig

# the [track] section lives beside; imported from here as before
from .config_tracking import TRACKER_SETTINGS as TRACKER_SETTINGS
from .config_tracking import TrackConfig, resolve_tracking
from .errors import ConfigError, raise_first_failed
from .pretrained.modes import TRAIN_MODES, check_train_mode


@dataclass
class DataConfig:
    # "" = scikit-learn's bundled digits; else a folder, .zip, .csv or .npy; tracking: a
    # folder of videos. A list of folders or zips: read alike and joined, each class named
    # <root>/<class> and grouped by its root (data/roots.py)
    path: str | list[str] = ""
    label_column: str = "label"  # CSV: column name; NPY: column index (default: the last one)
    # images are resized to image_size x image_size; 0 = auto: 32, or the size a pretrained
    # network was trained at (model.pretrained)
    image_size: int = 0
    channels: int = 0  # 1 (grey) or 3 (RGB); 0 = 1 if every image is grey, else 3
    class_rotations: bool = False  # add each class rotated by 90/180/270 degrees as new classes
    class_flips: bool = False  # also add the mirror images of those (8x the classes in all)
    class_reversals: bool = False  # audio: add each class played backwards as a new class
    # Image folders: "memory" decodes every image once into RAM; "none" leaves them on disk,
    # decoded by the DataLoader workers batch by batch; "disk" decodes them once into a file
    # of uint8 pixels under cache_dir (default ~/.cache/siamese) and reads that; "auto":
    # memory when the decoded images fit cache_gb (0 = a quarter of the memory), else none.
    cache: str = "auto"
    cache_gb: float = 0.0
    cache_dir: str = ""
    # Training from a pairs file instead of classes: a CSV a,b,label (image paths relative to
    # it, or row numbers of the vectors in `path`) or an LFW pairs.txt; label 1/0 or a graded
    # score. `images`: the folder the pairs file's image names are relative to.
    pairs: str = ""
    images: str = ""
    # Audio (folders of WAV/FLAC/OGG): resampled to sample_rate mono; the class from the folder,
    # or from the file name by label_pattern (a regular expression: its group 'label', else its
    # first group, e.g. '^([0-9]+)_' for FSDD's digit). Training sees random crops of
    # crop_seconds (several per long utterance); evaluation whole utterances in windows of it.
    sample_rate: int = 16000
    label_pattern: str = ""
    # Folders and zips of images or audio: only the files whose path relative to `path`
    # the regular expression `include` finds ("" = all) and `exclude` does not, e.g. some
    # speakers' or words' files of a corpus without copying it.
    include: str = ""
    exclude: str = ""
    # 0 = auto: the median recording's length, between 0.5 and 2 s (1 s for one-second word
    # clips, 2 s for long speaker recordings); resolved in the saved config
    crop_seconds: float = 0.0
    n_mels: int = 64


@dataclass
class SplitConfig:
    mode: str = "classes"  # "classes": test classes never seen in training; "samples": within
    test_classes: list[str] = field(default_factory=list)  # explicit unseen classes
    test_class_fraction: float = 0.3  # else this share of classes, chosen by the seed
    # Validation (model selection and the verification threshold). With mode "classes" it is
    # class-disjoint like the unseen test: whole classes held out from training (val_classes,
    # else val_class_fraction of the rest, at least 2, where 8 or more remain to train on), so
    # that the threshold is calibrated on classes the model never saw. Otherwise (mode
    # "samples", or too few classes): val_fraction of each training class.
    # validation: "auto" = cross-fitting where the classes are few (9 to 99 left to train
    # on), else whole classes as above (samples below 9, or val_class_fraction = 0);
    # "crossfit": every class trains the kept model; the epoch and the threshold come from
    # `folds` class-disjoint fold runs first (data/splits.py); "classes"; "samples".
    validation: str = "auto"
    folds: int = 3
    val_classes: list[str] = field(default_factory=list)
    val_class_fraction: float = 0.15
    val_fraction: float = 0.15  # mode "samples": share of each class held out for validation
    test_fraction: float = 0.15  # share of each training class held out as "seen" test images


@dataclass
class AugmentConfig:
    enabled: bool = True  # random affine distortions of training images
    rotate: float = 10.0  # degrees, +-
    shear: float = 0.15  # radians, +-
    scale: float = 0.1  # +- relative
    translate: float = 0.1  # +- fraction of the image size
    freq_mask: int = 8  # audio (SpecAugment): mask up to this many mel bands of each crop
    time_mask: int = 20  # ... and up to this many 10 ms frames
    noise_snr: float = 0.0  # audio: white noise at SNR in [noise_snr, noise_snr + 20] dB, and
    # a +-6 dB gain, on each crop; 0 = off
    # audio: each crop played faster or slower by a factor in [1 - speed, 1 + speed] (tempo
    # and pitch, as Kaldi's speed perturbation: formants move as between speakers); for
    # words, not speakers (it changes the voice); 0 = off
    speed: float = 0.0
    # audio, the recording channel (data/channel.py): the probability that a crop is
    # band-limited (low-pass 3-4 kHz, as 8 kHz or telephone audio), equalised (smooth random
    # +-10 dB over frequency) and reverberated (a synthetic room, RT60 0.15-0.9 s); 0 = off
    bandlimit: float = 0.0
    eq: float = 0.0
    reverb: float = 0.0
    # audio: each batch's crops cut to a length drawn in [crop_min, data.crop_seconds] seconds
    # (short test clips embed like the training crops); 0 = every crop data.crop_seconds long
    crop_min: float = 0.0


@dataclass
class LossConfig:
    # pair | contrastive | triplet | proto | mse | arcface | cosface; auto = triplet for
    # classes, pair (the head with BCE) for a pairs file, mse (on label differences) for
    # train.task regression
    name: str = "auto"
    margin: float | None = None  # None = the loss's default (triplet 0.2, contrastive 1.0)
    distance: str = "euclidean"  # euclidean | cosine
    miner: str | None = None  # random | batch-all | batch-hard | semi-hard; None = per loss
    scale: float | None = None  # logits' scale: proto 10 (-scale x distance), arcface 30
    subcenters: int = 1  # arcface, cosface: weights per class (sub-centers: 3 for noisy data)


@dataclass
class TrainConfig:
    # similarity: learn how alike two inputs are (from classes or a pairs file); regression:
    # twin-network regression of a numeric label column (trained on label differences)
    task: str = "similarity"
    epochs: int = 30
    batch_size: int = 64  # P classes x K samples (from pairs: pairs; regression: rows)
    samples_per_class: int = 4  # K
    group_batches: bool = False  # draw each batch's classes from as few groups as possible
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"  # cpu | cuda
    patience: int = 0  # early stopping after this many epochs without a better val AUC; 0 = off
    max_minutes: float = 0.0  # stop after this wall-clock time; 0 = no limit
    val_pairs: int = 2000
    threads: int = 0  # torch CPU threads; 0 = torch's default
    # the weights a run keeps: best (by validation AUC) | last (the schedule's end) | auto:
    # last where split.validation cross-fits (docs/small_data.md), else best
    keep: str = "auto"
    workers: int = -1  # DataLoader worker processes; -1 = 0 for data in memory, else min(4, CPUs)
    amp: str = "auto"  # auto (bf16, else fp16, on CUDA; off on CPU) | off | bf16 | fp16
    compile: bool = False  # torch.compile the model (pays off on long runs)
    # Weight averaging: an exponential moving average of the weights and batch-norm statistics
    # with decay min(ema, (1 + n) / (10 + n)) after n steps, kept instead of the last; 0 = off
    ema: float = 0.0


@dataclass
class EvalConfig:
    ways: list[int] = field(default_factory=lambda: [5, 20])
    shots: list[int] = field(default_factory=lambda: [1])
    episodes: int = 1000
    queries_per_class: int = 5
    pairs: int = 10000
    # test-time augmentation when scoring: average each embedding over this many fixed
    # distortions instead of the model's own model.views; 0 = as the model embeds
    tta: int = 0


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    track: TrackConfig = field(default_factory=TrackConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


LOSS_DEFAULTS = {
    "triplet": {"margin": 0.2, "miner": "semi-hard"},
    "contrastive": {"margin": 1.0, "miner": "batch-all"},
    "pair": {"margin": 0.0, "miner": "random"},
    "proto": {"margin": 0.0, "miner": "none"},
    "mse": {"margin": 0.0, "miner": "random"},
    "arcface": {"margin": 0.2, "miner": "none", "scale": 30.0},
    "cosface": {"margin": 0.2, "miner": "none", "scale": 30.0},
}


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Check a TOML/JSON value against a dataclass field type (int accepted for float)."""
    text = str(typ)
    if value is None and "None" in text:
        return None
    if text == "str | list[str]":  # one path, or several
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            return list(value)
    if "list[str]" in text:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if isinstance(value, list):
            return [str(v) for v in value]
    elif "list[int]" in text or "list[float]" in text:
        number = float if "float" in text else int
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        try:
            return [number(v) for v in value]
        except (TypeError, ValueError):
            pass
    elif typ is bool or text.startswith("bool"):
        if isinstance(value, bool):
            return value
    elif typ is int or text.startswith("int"):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif typ is float or "float" in text:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif typ is str or "str" in text:
        if isinstance(value, str):
            return value
    raise ConfigError(f"{where}: expected {text.replace('typing.', '')}, got {value!r}")


def _update(obj: Any, values: dict[str, Any], where: str) -> None:
    hints = get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in values.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key '{key}'; valid keys: {', '.join(names)}")
        sub = getattr(obj, key)
        if dataclasses.is_dataclass(sub):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}: '{key}' must be a section [{key}]")
            _update(sub, value, f"{where} [{key}]")
        else:
            setattr(obj, key, _coerce(value, hints[key], f"{where}: {key}"))


def config_from_dict(values: dict[str, Any], where: str = "config") -> Config:
    cfg = Config()
    _update(cfg, values, where)
    return cfg


# Keys whose default changed: a run saved before the key existed trained with the old value.
FORMER_DEFAULTS: dict[str, dict[str, Any]] = {"track": {"jitter": 0.0}}


def saved_values(values: dict[str, Any]) -> dict[str, Any]:
    """A run's saved config as it trained: a key it lacks takes today's default, except where
    that default changed since (FORMER_DEFAULTS), where it takes the former one."""
    return {**values, **{section: {**former, **values.get(section, {})}
                         for section, former in FORMER_DEFAULTS.items()}}


def load_config(path: str | Path) -> Config:
    """Read a TOML config file; unknown sections or keys are a ConfigError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist; check the path given to --config")
    try:
        values = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid TOML ({e}); fix the syntax") from None
    return config_from_dict(values, str(path))


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """Apply dotted overrides such as {"train.epochs": 5}; None values are skipped."""
    sections = [f.name for f in dataclasses.fields(cfg)]
    for dotted, value in overrides.items():
        section, _, key = dotted.partition(".")
        if section not in sections or not key or "." in key:
            raise ConfigError(f"option {dotted}: write SECTION.KEY, a section being one of "
                              f"{', '.join(sections)}")
        if value is not None:
            _update(getattr(cfg, section), {key: value}, f"option {dotted}")
    return cfg


def parse_sets(items: list[str]) -> dict[str, Any]:
    """["train.epochs=5", "split.test_classes=a,b"] -> {"train.epochs": 5, ...}: each VALUE
    as in a TOML file (5, 0.5, true, "x", [1, 2]); one that is no TOML value is a string."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set {item}: write SECTION.KEY=VALUE, e.g. --set "
                              "split.val_class_fraction=0")
        try:
            out[key.strip()] = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            out[key.strip()] = value
    return out


def resolve(cfg: Config) -> Config:
    """Fill in defaults that depend on other fields and check ranges; returns the same object."""
    if cfg.train.task not in ("similarity", "regression", "tracking"):
        raise ConfigError(f"unknown train.task '{cfg.train.task}'; choose similarity, "
                          "regression or tracking")
    if cfg.data.image_size == 0 and not cfg.model.pretrained:
        cfg.data.image_size = 32  # (a pretrained network's size is read with it: api.py)
    if cfg.train.task == "tracking":
        return resolve_tracking(cfg)
    if isinstance(cfg.data.path, list) and (cfg.data.pairs or cfg.train.task == "regression"):
        raise ConfigError("data.path: several roots are joined for class folders (images or "
                          "audio) and tracking; a pairs file or a regression reads one table")
    if cfg.loss.name == "auto":
        cfg.loss.name = ("mse" if cfg.train.task == "regression" else
                         "pair" if cfg.data.pairs else "triplet")
    if cfg.train.task == "regression" and cfg.data.pairs:
        raise ConfigError("train.task regression reads a table with a numeric label column "
                          "(--data .csv/.npy), not a pairs file; leave out --pairs")
    if cfg.train.task == "regression" and cfg.loss.name != "mse":
        raise ConfigError(f"train.task regression trains with mse on label differences; leave "
                          f"out --loss {cfg.loss.name}")
    if cfg.train.keep == "auto" and (cfg.train.task != "similarity" or cfg.data.pairs):
        cfg.train.keep = "best"  # (runs on classes resolve it with their split)
    if cfg.loss.name not in LOSS_DEFAULTS:
        raise ConfigError(
            f"unknown loss '{cfg.loss.name}'; choose one of: {', '.join(sorted(LOSS_DEFAULTS))}"
        )
    defaults = LOSS_DEFAULTS[cfg.loss.name]
    if cfg.loss.margin is None:
        cfg.loss.margin = defaults["margin"]
    if cfg.loss.miner is None:
        cfg.loss.miner = defaults["miner"]
    if cfg.loss.scale is None:
        cfg.loss.scale = defaults.get("scale", 10.0)
    if cfg.loss.distance not in ("euclidean", "cosine"):
        raise ConfigError(f"unknown distance '{cfg.loss.distance}'; choose euclidean or cosine")
    if cfg.split.mode not in ("classes", "samples"):
        raise ConfigError(f"unknown split mode '{cfg.split.mode}'; choose classes or samples")
    if cfg.split.validation not in ("auto", "crossfit", "classes", "samples"):
        raise ConfigError(f"split.validation '{cfg.split.validation}': choose auto, crossfit, "
                          "classes or samples")
    if cfg.split.validation == "crossfit" and (cfg.train.max_minutes > 0 or cfg.data.pairs):
        raise ConfigError("split.validation crossfit counts epochs over class folds: leave out "
                          "train.max_minutes (and --pairs), or choose classes")
    t = cfg.train
    checks = [
        (t.epochs >= 1, "train.epochs must be >= 1"),
        (t.samples_per_class >= 2, "train.samples_per_class must be >= 2"),
        (t.batch_size >= 2 * t.samples_per_class, "train.batch_size must be >= 2 x K"),
        (t.lr > 0, "train.lr must be > 0"),
        (cfg.data.image_size == 0 or 8 <= cfg.data.image_size <= 1024,
         "data.image_size must be 0 (auto) or in [8, 1024]"),
        (check_train_mode(cfg.model.pretrained_train),
         f"model.pretrained_train '{cfg.model.pretrained_train}': choose {TRAIN_MODES}"),
        (0 < cfg.model.pretrained_lr <= 10, "model.pretrained_lr must be in (0, 10], e.g. 0.1"),
        (cfg.model.channel_order.upper() in ("", "RGB", "BGR"),
         "model.channel_order must be RGB or BGR"),
        (len(cfg.model.pretrained_mean) in (0, 1, 3) and
         len(cfg.model.pretrained_std) == len(cfg.model.pretrained_mean)
         and all(s > 0 for s in cfg.model.pretrained_std),
         "model.pretrained_mean and pretrained_std: 1 or 3 numbers each, std > 0"),
        (cfg.model.feature_cache in ("auto", "off"), "model.feature_cache: choose auto or off"),
        (cfg.model.projection in ("auto", "random", "identity"),
         "model.projection: choose auto, random or identity"),
        (1 <= cfg.model.width <= 1024, "model.width must be in [1, 1024]"),
        (0 <= cfg.model.embedding_dim <= 8192, "model.embedding_dim must be in [0, 8192]"),
        (1 <= cfg.model.head_hidden <= 8192, "model.head_hidden must be in [1, 8192]"),
        (0 <= cfg.model.views <= 64, "model.views must be in [0, 64] (0 = one pass)"),
        (cfg.data.channels in (0, 1, 3), "data.channels must be 0, 1 or 3"),
        (4000 <= cfg.data.sample_rate <= 48000, "data.sample_rate must be in [4000, 48000]"),
        (cfg.data.crop_seconds == 0 or 0.2 <= cfg.data.crop_seconds <= 30,
         "data.crop_seconds must be 0 (auto) or in [0.2, 30]"),
        (16 <= cfg.data.n_mels <= 128, "data.n_mels must be in [16, 128]"),
        (1 <= cfg.loss.subcenters <= 16, "loss.subcenters must be in [1, 16]"),
        (cfg.augment.freq_mask >= 0 and cfg.augment.time_mask >= 0,
         "augment.freq_mask and augment.time_mask must be >= 0"),
        (0 <= cfg.augment.speed < 0.5, "augment.speed must be in [0, 0.5), e.g. 0.1"),
        *((0 <= getattr(cfg.augment, k) <= 1, f"augment.{k} is a probability: 0 to 1, e.g. 0.3")
          for k in ("bandlimit", "eq", "reverb")),
        (cfg.augment.crop_min == 0 or (0.2 <= cfg.augment.crop_min and (
            cfg.data.crop_seconds == 0 or cfg.augment.crop_min <= cfg.data.crop_seconds)),
         "augment.crop_min must be 0 (off) or in [0.2 s, data.crop_seconds]"),
        (0 <= cfg.split.val_fraction < 1, "split.val_fraction must be in [0, 1)"),
        (2 <= cfg.split.folds <= 10, "split.folds must be in [2, 10]"),
        (0 <= cfg.split.val_class_fraction < 1, "split.val_class_fraction must be in [0, 1)"),
        (0 <= cfg.split.test_fraction < 1, "split.test_fraction must be in [0, 1)"),
        (0 <= cfg.split.test_class_fraction < 1, "split.test_class_fraction must be in [0, 1)"),
        (t.device in ("cpu", "cuda") or t.device.startswith("cuda:"), "train.device: cpu|cuda"),
        (t.keep in ("auto", "best", "last"), f"train.keep '{t.keep}': choose best or last"),
        (0 <= t.ema < 1, "train.ema must be in [0, 1) (a decay per step such as 0.999; 0 = off)"),
        (t.ema == 0 or t.keep == "last",
         "train.ema keeps the average of the last steps: set train.keep = \"last\""),
        (cfg.eval.tta >= 0, "eval.tta must be >= 0 (0 = as the model embeds, model.views)"),
        (cfg.data.cache in ("auto", "memory", "none", "disk"),
         f"data.cache '{cfg.data.cache}': choose auto, memory, none or disk"),
        (cfg.data.cache_gb >= 0, "data.cache_gb must be >= 0 (0 = a quarter of the memory)"),
        (-1 <= t.workers <= 64, "train.workers must be in [-1, 64] (-1 = automatic)"),
        (t.amp in ("auto", "off", "bf16", "fp16"),
         f"train.amp '{t.amp}': choose auto, off, bf16 or fp16"),
    ]
    raise_first_failed(checks)
    return cfg
