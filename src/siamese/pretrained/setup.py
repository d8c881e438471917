"""What a training run does with model.pretrained: read the network once, settle its input
(size, channels, channel order, mean and std) into the run's config, load its weights into a
freshly built net, and compute a frozen network's outputs once (the feature cache).

The resolved values go into the saved config, so that `siamese.load`, `compare`, `embed`,
the service and `export` prepare inputs as training did, without the file.
"""

from __future__ import annotations

import atexit
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..config import Config
from ..errors import ConfigError
from ..models.siamese import SiameseNet
from .encoder import IMAGENET, Opened, open_start, set_trainable
from .modes import last_layers

GRAPH_FILE = "encoder_graph.json"


def prepare(cfg: Config, quiet: bool = False) -> Opened:
    """Read model.pretrained and resolve the input it wants into cfg (in place)."""
    m = cfg.model
    opened = open_start(m.pretrained, m.pretrained_output)
    pre = opened.preprocessing
    if (opened.start.entry or {}).get("kind") == "frames":  # a speech embedding's frames
        return _prepare_frames(cfg, opened)
    if opened.format == "state_dict":
        if m.encoder == "auto" and (opened.start.entry or {}).get("encoder"):
            m.encoder = opened.start.entry["encoder"]  # the architecture the catalogue names
        if m.encoder == "auto":
            raise ConfigError(f"model.pretrained {m.pretrained} holds weights, not a network: "
                              "name the encoder they belong to with --encoder (e.g. conv4)")
        if cfg.data.image_size == 0:
            cfg.data.image_size = 32
        return opened
    if m.encoder not in ("auto", "imported"):
        raise ConfigError(f"model.pretrained {m.pretrained} is a whole network (ONNX); leave "
                          f"out --encoder {m.encoder}")
    m.encoder = "imported"
    m.pretrained_output = opened.output
    if cfg.data.image_size == 0:
        cfg.data.image_size = int(pre.get("size", 224))
    multiple = int(pre.get("size_multiple", 1))
    if cfg.data.image_size % multiple:
        who = opened.start.name or "the network"
        raise ConfigError(f"data.image_size {cfg.data.image_size}: {who} takes sizes that are "
                          f"multiples of {multiple}, e.g. {pre.get('size', 224)}")
    if cfg.data.channels == 0:
        cfg.data.channels = 3
    if not m.pretrained_mean:  # the catalogue's or the file's, else ImageNet's
        said = "mean" in pre
        m.pretrained_mean = list(pre.get("mean", IMAGENET["mean"]))
        m.pretrained_std = list(pre.get("std", IMAGENET["std"]))
        if not said and not quiet:
            print(f"note: {m.pretrained} does not say how its input is normalised; using "
                  "ImageNet's mean and std (set model.pretrained_mean and pretrained_std)",
                  file=sys.stderr)
    m.channel_order = (m.channel_order or pre.get("channel_order", "RGB")).upper()
    return opened


def _prepare_frames(cfg: Config, opened: Opened) -> Opened:
    """A network over log-mel frames (the speech embedding) with the front end its catalogue
    entry names: both read, one spec {"frontend", "embedding"} (pretrained/speech.py)."""
    m = cfg.model
    if m.encoder not in ("auto", "speech_embedding"):
        raise ConfigError(f"model.pretrained {m.pretrained} is a whole network; leave out "
                          f"--encoder {m.encoder}")
    front = open_start(opened.start.entry["frontend"])
    m.encoder = "speech_embedding"
    m.pretrained_output = opened.output
    weights = {**{f"frontend.{k}": v for k, v in front.weights.items()},
               **{f"embedding.{k}": v for k, v in opened.weights.items()}}
    return Opened(opened.start, "onnx", {"frontend": front.spec, "embedding": opened.spec},
                  weights, opened.output)


def input_stats(cfg: Config, channels: int) -> tuple[list[float], list[float]]:
    """The imported network's mean and std for `channels` input channels."""
    mean, std = cfg.model.pretrained_mean or [0.0], cfg.model.pretrained_std or [1.0]
    if len(mean) == 1:
        return mean * channels, std * channels
    if len(mean) != channels:
        raise ConfigError(f"model.pretrained_mean has {len(mean)} values; the input has "
                          f"{channels} channels")
    return mean, std


def load_weights(encoder: torch.nn.Module, opened: Opened, cfg: Config) -> None:
    """The starting weights into `encoder` (an imported graph's holder: ImportedEncoder, a
    tracking ImportedBackbone; or an encoder the project defines); then what trains of it is
    chosen."""
    target = encoder.graph if opened.format == "onnx" else encoder
    weights = opened.weights
    own = set(target.state_dict())
    if opened.format == "state_dict" and own <= set(weights):  # a checkpoint's extras
        weights = {k: v for k, v in weights.items() if k in own}  # (GE2E's similarity scale)
    try:
        target.load_state_dict(weights)
    except RuntimeError as e:
        raise ConfigError(f"{opened.start.path} does not fit encoder '{cfg.model.encoder}' "
                          f"({str(e).splitlines()[0][:90]}); name the encoder it was saved "
                          "from") from None
    set_trainable(encoder, cfg.model.pretrained_train)


def optimizer_groups(params, imported: set[int], cfg: Config, extra=()) -> list[dict]:
    """The optimizer's groups: parameters whose id is in `imported` at pretrained_lr x lr,
    the rest (and `extra`) at lr; frozen ones left out."""
    params = [p for p in params if p.requires_grad]
    groups = [{"params": [p for p in params if id(p) not in imported] + list(extra)}]
    trained = [p for p in params if id(p) in imported]
    if trained:
        groups.append({"params": trained, "lr": cfg.train.lr * cfg.model.pretrained_lr})
    return groups


def param_groups(net: SiameseNet, cfg: Config, extra: list) -> list[dict]:
    """The imported part at pretrained_lr x lr, and so the projection where it starts as the
    identity; the rest at lr (optimizer_groups)."""
    imported = {id(p) for p in net.encoder.parameters()} if cfg.model.pretrained else set()
    if cfg.model.pretrained and cfg.model.projection == "identity":
        imported |= {id(p) for p in net.proj.parameters()}
    return optimizer_groups(net.parameters(), imported, cfg, extra)


def cacheable(cfg: Config, kind: str) -> bool:
    """Whether the encoder's outputs are computed once: it is wholly frozen, its inputs are
    images or vectors (audio is cropped at random), and no class is made by turning images.
    Image augmentation is then left out (the card and a note say so): on CPU the cache is
    what makes a pretrained start cost minutes (model.feature_cache = off augments through
    the frozen network instead, at its cost every epoch)."""
    return (bool(cfg.model.pretrained) and cfg.model.feature_cache == "auto"
            and last_layers(cfg.model.pretrained_train) is None and kind in ("image", "vector")
            and cfg.model.views == 0
            and not cfg.data.class_rotations and not cfg.data.class_flips)


def feature_store(n: int, width: int, budget: int, folder: Path) -> np.ndarray:
    """Where the cached features live: in memory when n x width floats fit `budget` bytes,
    else in a file under `folder` (memory-mapped; removed when the process ends)."""
    if n * width * 4 <= budget:
        return np.zeros((n, width), np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="features-", suffix=".f32", dir=folder)
    os.close(fd)
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    return np.lib.format.open_memmap(name, mode="w+", dtype=np.float32, shape=(n, width))


@torch.no_grad()
def encode_all(encoder: torch.nn.Module, x, workers: int, device: str, quiet: bool,
               store: np.ndarray, batch: int = 64) -> torch.Tensor:
    """Normalised inputs (N, ...) -> the encoder's outputs written into `store` (N, F), with
    a bar; returned as a tensor over it (no copy)."""
    from ..data.loader import read_chunks

    encoder.eval()
    bar = tqdm(total=len(x), desc="pretrained features (once)", unit="input", leave=False,
               file=sys.stderr, disable=True if quiet else None)
    at = 0
    for xb in read_chunks(x, np.arange(len(x)), workers, batch):
        if xb.ndim == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        store[at:at + len(xb)] = encoder(xb.to(device)).float().cpu().numpy()
        at += len(xb)
        bar.update(len(xb))
    bar.close()
    return torch.from_numpy(store)


_POOLED: dict[str, np.ndarray] = {}


def _recordings_key(x, network: str, rate: int, n: int) -> str:
    """What the speech embedding's pooled vectors depend on: the samples, the network, the
    rate and the crop ("" for recordings over 1 GiB: not kept)."""
    import hashlib

    if x.data.numel() > 2**28:
        return ""
    h = hashlib.sha256(f"{network}|{rate}|{n}".encode())
    for t in (x.data, x.start, x.length):
        h.update(t.numpy().tobytes())
    return h.hexdigest()


class Imported:
    """The network of one training run, read once and shared by its fold runs and its final
    run: preprocessing, weights, the optimizer's groups, the feature cache, the card."""

    def __init__(self, opened: Opened, cfg: Config, data, device: str, quiet: bool,
                 train: np.ndarray | None = None) -> None:
        from ..data.preprocessing import Preprocessing

        self.opened, self.cfg, self.kind = opened, cfg, data.kind
        self.spec = opened.spec
        self.features: torch.Tensor | None = None
        self.features_in = ""
        self.center: torch.Tensor | None = None
        if cfg.model.encoder == "speech_embedding":
            self.pre = None
            self._speech(data, device, quiet, train)
        elif data.kind == "image" and opened.format == "onnx":
            c = int(data.x.shape[1])
            mean, std = input_stats(cfg, c)
            self.pre = Preprocessing("image", list(data.x.shape[1:]), mean, std)
        elif data.kind == "vector" and opened.format == "onnx":
            mean, std = input_stats(cfg, 1)
            d = int(data.x.shape[1])
            self.pre = Preprocessing("vector", [d], mean * d, std * d)
        else:
            self.pre = None  # the data's own statistics (fitted as without a start)
        if self.pre is not None and cacheable(cfg, data.kind):
            from ..models.build import build_net
            from ..training.engine import cache_budget, workers

            net = build_net(cfg, self.pre.input_shape, data.kind, graph=self.spec)
            self.load_into(net)
            x = self.pre.normalize(data.x)
            folder = Path(cfg.data.cache_dir or Path.home() / ".cache" / "siamese") / "features"
            store = feature_store(len(x), net.encoder.num_features, cache_budget(cfg), folder)
            self.features = encode_all(net.encoder.to(device), x, workers(cfg, data.x),
                                       device, quiet, store)
            self.features_in = "memory" if type(store) is np.ndarray else "disk"
            if cfg.augment.enabled and data.kind == "image" and not quiet:
                print("note: the frozen network's features are computed once, so images are "
                      "not augmented (model.feature_cache=off augments them, at the "
                      "network's cost every epoch)", file=sys.stderr)

    def _speech(self, data, device: str, quiet: bool, train: np.ndarray | None) -> None:
        """The speech embedding's pooled frames of every recording, computed once: their
        training mean becomes the encoder's `center`; kept as the feature cache when nothing
        the training does would change them (frozen, no recording longer than the crop, no
        reversed classes)."""
        from ..data.audio import crop, pad_batch
        from ..models.build import build_net

        cfg = self.cfg
        if data.kind != "audio":
            raise ConfigError(f"model.pretrained {cfg.model.pretrained} embeds speech; "
                              f"{cfg.data.path or 'the data'} holds {data.kind}s")
        n = int(round(cfg.data.crop_seconds * cfg.data.sample_rate))
        net = build_net(cfg, [n], "audio", graph=self.spec)
        load_weights(net.encoder, self.opened, cfg)
        encoder = net.encoder.to(device).eval()
        lengths = data.x.length.numpy()
        whole = int(lengths.max()) <= n
        key = _recordings_key(data.x, self.opened.start.sha256, cfg.data.sample_rate, n)
        pooled = _POOLED.get(key) if key else None  # a process's next run on them (seeds)
        if pooled is None:
            order = np.argsort(lengths, kind="stable")
            pooled = np.zeros((len(data.x), encoder.num_features), np.float32)
            bar = tqdm(total=len(order), desc="speech embedding (once)", unit="clip",
                       leave=False, file=sys.stderr, disable=True if quiet else None)
            with torch.no_grad():
                for s in range(0, len(order), 32):
                    part = order[s:s + 32]
                    if whole:
                        xb = pad_batch([data.x.get(int(i)) for i in part])
                    else:  # the middle crop of each
                        xb = crop(data.x.take(part), n, None)
                    pooled[part] = encoder.pooled(xb.to(device)).cpu().numpy()
                    bar.update(len(part))
            bar.close()
            _POOLED.clear()  # one set of recordings kept
            if key:
                _POOLED[key] = pooled
        rows = np.arange(len(pooled)) if train is None else train
        self.center = torch.from_numpy(pooled[rows].mean(0))
        if (whole and cfg.model.feature_cache == "auto" and cfg.model.views == 0
                and last_layers(cfg.model.pretrained_train) is None
                and not cfg.data.class_reversals):
            self.features = torch.from_numpy(pooled) - self.center
            self.features_in = "memory"
            if cfg.augment.enabled and not quiet:
                print("note: the speech embedding's frames are computed once, so recordings "
                      "are not augmented (model.feature_cache=off augments them, at the "
                      "network's cost every epoch)", file=sys.stderr)

    def preprocessing(self, x_train):
        from ..data.preprocessing import Preprocessing

        if self.pre is not None:
            return self.pre
        return Preprocessing.fit(x_train, self.kind, self.cfg.train.seed)

    def load_into(self, net: SiameseNet) -> None:
        load_weights(net.encoder, self.opened, self.cfg)
        if self.center is not None:
            net.encoder.center.copy_(self.center)

    def param_groups(self, net: SiameseNet, extra: list) -> list[dict]:
        return param_groups(net, self.cfg, extra)

    def record(self, out, write: bool) -> dict:
        """The card's "pretrained" entry; the graph spec written beside the weights."""
        from ..atomic import atomic_write_json

        if write and self.spec is not None:
            atomic_write_json(out / GRAPH_FILE, self.spec)
        return {**self.opened.card(self.cfg.model.pretrained),
                "train": self.cfg.model.pretrained_train,
                "feature_cache": self.features_in or False,
                "augmented": self.features is None and self.cfg.augment.enabled,
                "graph": GRAPH_FILE if self.spec is not None else None}
