"""`GraphModule`: an imported ONNX graph as a trainable nn.Module.

Built from the JSON spec of `onnx_reader.read_onnx` alone (the weights are zeros until a state
dict is loaded), so the same class rebuilds a run's encoder from its `encoder_graph.json`.
The forward pass runs the nodes in the file's order through `onnx_ops.OPS`; weights are
parameters (gradients flow into them), batch norm's running statistics buffers.

Freezing: `freeze_before(k)` stops gradients into the weights of the nodes before layer k
(a layer = a Conv, Gemm or MatMul with weights) and keeps their batch norm in inference mode.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .onnx_ops import OPS

LAYER_OPS = {"Conv", "Gemm", "MatMul"}


def _tensor(value: dict) -> torch.Tensor:
    t = value["__tensor__"]
    return torch.from_numpy(np.asarray(t["data"], dtype=t["dtype"]).reshape(t["shape"]))


def _plain(value):
    return _tensor(value) if isinstance(value, dict) and "__tensor__" in value else value


class GraphModule(nn.Module):
    def __init__(self, spec: dict) -> None:
        super().__init__()
        self.spec = spec
        self.weights = nn.ParameterDict()
        self._buffer_of: dict[str, str] = {}
        self._consts: dict[str, torch.Tensor] = {}
        for name, info in spec["tensors"].items():
            if info["kind"] == "const":
                self._consts[name] = _tensor(info)
                continue
            dtype = torch.float32 if info["dtype"].startswith("float") else torch.int64
            zeros = torch.zeros(info["shape"], dtype=dtype)
            if info["kind"] == "param":
                self.weights[info["key"]] = nn.Parameter(zeros)
            else:
                self.register_buffer(f"buf_{info['key']}", zeros)
                self._buffer_of[name] = f"buf_{info['key']}"
        self._param_of = {name: info["key"] for name, info in spec["tensors"].items()
                          if info["kind"] == "param"}
        self._attrs = [{k: _plain(v) for k, v in n["attrs"].items()} for n in spec["nodes"]]
        self._frozen_until = 0  # nodes before this index are frozen

    @property
    def layers(self) -> list[int]:
        """Indices of the nodes that are layers with weights, in order."""
        return [i for i, n in enumerate(self.spec["nodes"]) if n["op"] in LAYER_OPS
                and any(x in self._param_of for x in n["inputs"])]

    def freeze_before(self, node: int) -> None:
        """Weights read by nodes before `node` stop training (and their batch norm keeps its
        statistics); node = len(nodes) freezes everything, 0 nothing."""
        self._frozen_until = node
        trained = {x for n in self.spec["nodes"][node:] for x in n["inputs"]}
        for name, key in self._param_of.items():
            self.weights[key].requires_grad_(name in trained)

    def _value(self, name: str, env: dict) -> torch.Tensor | None:
        if not name:
            return None
        if name in env:
            return env[name]
        if name in self._param_of:
            return self.weights[self._param_of[name]]
        if name in self._buffer_of:
            return getattr(self, self._buffer_of[name])
        return self._consts[name]

    def forward(self, *xs: torch.Tensor) -> list[torch.Tensor]:
        """The graph's inputs (one, or as many as spec["inputs"], in order) -> the tensors it
        was cut at (spec["outputs"])."""
        names = self.spec.get("inputs", [self.spec["input"]])
        if len(xs) != len(names):
            raise ValueError(f"the graph takes {len(names)} inputs, {len(xs)} given")
        x = xs[0]
        env = dict(zip(names, xs, strict=True))
        for i, (node, attrs) in enumerate(zip(self.spec["nodes"], self._attrs, strict=True)):
            inputs = [self._value(n, env) for n in node["inputs"]]
            if node["op"] == "Constant" and torch.is_tensor(attrs["value"]):
                attrs = {"value": attrs["value"].to(x.device)}
            training = self.training and i >= self._frozen_until
            out = OPS[node["op"]](inputs, attrs, training)
            if not isinstance(out, tuple):
                out = (out,)
            env.update(zip(node["outputs"], out, strict=False))
        return [env[o] for o in self.spec["outputs"]]

    def _apply(self, fn, recurse=True):  # constants follow .to(device) like buffers
        self._consts = {k: fn(v) for k, v in self._consts.items()}
        return super()._apply(fn, recurse)
