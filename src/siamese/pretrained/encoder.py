"""A network trained elsewhere as an encoder: import it, say how its input is prepared, and
choose how much of it trains.

    start = open_start(cfg.model.pretrained, cfg.model.pretrained_output)   # read once
    encoder = ImportedEncoder(start.spec, (3, 224, 224), start.channel_order)
    encoder.load_state_dict(start.weights)
    set_trainable(encoder, "frozen" | "last:N" | "all")

ONNX files become a `GraphModule` (graph.py); the run keeps the graph spec as
`encoder_graph.json` and the weights in model.safetensors, so it loads without the file.
Safetensors and PyTorch state dicts are weights for an encoder the project defines
(`model.encoder`), loaded into it before training.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..errors import ConfigError
from .catalogue import Start, resolve
from .graph import GraphModule
from .modes import last_layers
from .onnx_reader import read_onnx

IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


@dataclass
class Opened:
    """A starting point read: its graph spec and weights (ONNX), or a state dict."""
    start: Start
    format: str  # "onnx" | "state_dict"
    spec: dict | None = None
    weights: dict[str, torch.Tensor] = field(default_factory=dict)
    output: str = ""

    @property
    def preprocessing(self) -> dict:
        """What the catalogue or the file's metadata say of the input: channel_order, mean,
        std (of pixel values in [0, 1]), size, size_multiple; {} where nothing is said."""
        if self.start.entry is not None:
            return dict(self.start.entry.get("preprocessing", {}))
        return metadata_preprocessing((self.spec or {}).get("metadata", {}))

    def card(self, given: str) -> dict:
        e = self.start.entry or {}
        return {"given": given, "name": self.start.name, "format": self.format,
                "sha256": self.start.sha256, "output": self.output,
                "license": e.get("license", "unknown (a file the user gave)"),
                "source": e.get("source", str(self.start.path))}


def metadata_preprocessing(meta: dict) -> dict:
    """Preprocessing from an ONNX file's metadata: keys mean / std (comma-separated or a JSON
    list, of [0, 1] pixel values or of 0-255 ones), channel_order, input_size; or a free text
    "preprocessing" such as "RGB, x / 127.5 - 1, ... (trained at 224)"."""
    out: dict = {}

    def numbers(text: str) -> list[float]:
        return [float(v) for v in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]

    if "mean" in meta and "std" in meta:
        mean, std = numbers(meta["mean"]), numbers(meta["std"])
        if len(mean) == len(std) == 3:
            scale = 255.0 if max(mean + std) > 2 else 1.0  # 0-255 units -> [0, 1]
            out["mean"] = [m / scale for m in mean]
            out["std"] = [s / scale for s in std]
    text = meta.get("preprocessing", "")
    m = re.search(r"x\s*/\s*([\d.]+)\s*-\s*([\d.]+)", text)
    if m and "mean" not in out:  # p / a - b of 0-255 pixels p = (x - b a / 255) / (a / 255)
        a, b = float(m.group(1)), float(m.group(2))
        out["mean"], out["std"] = [b * a / 255] * 3, [a / 255] * 3
    order = meta.get("channel_order") or next(
        (w for w in ("BGR", "RGB") if re.search(rf"\b{w}\b", text)), "")
    if order:
        out["channel_order"] = order.upper()
    size = meta.get("input_size") or (re.search(r"trained at (\d+)", text) or [None, None])[1]
    if size:
        out["size"] = int(size)
    m = re.search(r"multiples? of (\d+)", text)
    if m:
        out["size_multiple"] = int(m.group(1))
    return out


_OPENED: dict[tuple, Opened] = {}  # a process reads a file once (fold runs build it again)


def open_start(given: str, output: str = "", inputs: int = 1) -> Opened:
    """model.pretrained (a catalogue name or a path) -> the network read, cut at `output`
    (default: the catalogue's output, else the file's first). inputs > 1: a part that takes
    that many (a tracker's head), kept whole with all its outputs."""
    start = resolve(given)
    key = (str(start.path), start.sha256, output, inputs)
    if key in _OPENED:
        return _OPENED[key]
    fmt = (start.entry or {}).get("format") or _format_of(start.path)
    if fmt == "onnx":
        out = output or (start.entry or {}).get("output", "")
        spec, weights = read_onnx(start.path, [out] if out else None, inputs)
        opened = Opened(start, "onnx", spec, graph_state(spec, weights), spec["outputs"][0])
    else:
        if output:
            raise ConfigError(f"model.pretrained_output names a tensor of an ONNX graph; "
                              f"{start.path} holds weights for model.encoder: leave it out")
        opened = Opened(start, "state_dict", weights=read_state_dict(start.path))
    _OPENED[key] = opened
    return opened


def _format_of(path: Path) -> str:
    head = path.read_bytes()[:8] if path.stat().st_size else b""
    if path.suffix == ".safetensors" or path.suffix in (".pt", ".pth", ".bin") or \
            head[:2] == b"PK":
        return "state_dict"
    return "onnx"


def graph_state(spec: dict, weights: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """read_onnx's weights keyed as GraphModule's state dict names them."""
    kinds = {info["key"]: info["kind"] for info in spec["tensors"].values() if "key" in info}
    return {(f"weights.{k}" if kinds[k] == "param" else f"buf_{k}"): v
            for k, v in weights.items()}


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Safetensors, or a PyTorch file loaded with weights_only (no code runs); a run's
    model.safetensors gives its encoder's weights."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file
        raise ConfigError(f"{path} is not a readable safetensors or PyTorch state dict "
                          f"({type(e).__name__}: {str(e)[:60]}); give the file again") from None
    for key in ("state_dict", "model_state"):  # a training checkpoint's model part
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError(f"{path} holds no state dict of tensors; save model.state_dict()")
    if any(k.startswith("encoder.") for k in state):  # a siamese run: its encoder's part
        state = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
    return state


class ImportedEncoder(nn.Module):
    """An imported graph under the encoder contract: (B, *input_shape) -> (B, num_features).
    A feature map (B, C, H, W) is averaged over H and W; other shapes are flattened."""

    def __init__(self, spec: dict, input_shape: tuple[int, ...], channel_order: str = "RGB"):
        super().__init__()
        self.graph = GraphModule(spec)
        self.bgr = channel_order.upper() == "BGR"
        try:
            with torch.no_grad():
                out = self.graph(torch.zeros(2, *input_shape))[0]
        except Exception as e:
            raise ConfigError(f"the imported network cannot take inputs of shape "
                              f"{list(input_shape)} ({type(e).__name__}: {str(e)[:70]}); set "
                              "data.image_size to a size it takes") from None
        self.pool = out.ndim == 4
        self.num_features = int(out[0].numel() if not self.pool else out.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bgr:
            x = x.flip(1)
        y = self.graph(x)[0]
        return y.mean((2, 3)) if self.pool else y.flatten(1)


def set_trainable(encoder: nn.Module, mode: str) -> None:
    """frozen: no weight trains and batch norm keeps its statistics; last:N: the last N layers
    (Conv, Gemm, MatMul with weights, and what follows them) train; all: everything. An
    encoder of several graphs says itself (its own set_trainable)."""
    own = getattr(encoder, "set_trainable", None)
    if callable(own):
        own(mode)
        return
    graph = getattr(encoder, "graph", None)  # ImportedEncoder, a tracking ImportedBackbone
    graph = graph if isinstance(graph, GraphModule) else None
    n = last_layers(mode)
    if n == 0:
        if graph is not None:
            graph.freeze_before(0)
        encoder.requires_grad_(True)
        return
    if graph is not None:
        layers = graph.layers
        graph.freeze_before(len(graph.spec["nodes"]) if n is None else
                            layers[-min(n, len(layers))])
        return
    # an encoder the project defines: its child modules in order stand for layers
    parts = [m for m in encoder.modules()
             if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear | nn.LSTM | nn.GRU)]
    keep = set() if n is None else {id(m) for m in parts[-n:]}
    for m in parts:
        m.requires_grad_(id(m) in keep)
    for m in encoder.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and n is None:
            m.requires_grad_(False)
            m.eval()
            m.train = lambda mode=True, m=m: nn.Module.train(m, False)  # statistics kept
