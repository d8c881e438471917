"""An ONNX file -> a graph spec (plain JSON: nodes, attributes, tensor names and shapes) and its
weights (torch tensors), cut at the outputs asked for.

The spec is what a run folder keeps (`encoder_graph.json`) beside its weights in
model.safetensors, so a run trained from an imported network loads, serves and exports without
the ONNX file, and without the `onnx` package. Reading the file needs `onnx` (the `onnx` extra).

Which initializers train: float ones are parameters, except the running mean and variance of
batch norm, which are buffers (updated where batch norm trains); integer ones (shapes, axes) and
Constant nodes' values are constants.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from ..errors import ConfigError
from .onnx_ops import OPS

SPEC_FORMAT = "siamese-onnx-graph"
INLINE = 4096  # constants up to this many values are kept in the JSON, larger ones as buffers


def _onnx():
    try:
        import onnx
    except ImportError:
        raise ConfigError("importing an ONNX network needs the onnx package: "
                          "pip install 'siamese[onnx]'") from None
    return onnx


def _key(name: str, taken: set[str]) -> str:
    key = re.sub(r"[^0-9A-Za-z_]", "_", name)[-60:] or "t"
    base, n = key, 1
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    taken.add(key)
    return key


def _tensor_json(a: np.ndarray) -> dict:
    return {"__tensor__": {"dtype": str(a.dtype), "shape": list(a.shape),
                           "data": a.reshape(-1).tolist()}}


def _attribute(onnx, attr, where: str):
    from onnx import helper, numpy_helper

    value = helper.get_attribute_value(attr)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list) and value and isinstance(value[0], bytes):
        return [v.decode("utf-8", "replace") for v in value]
    if isinstance(value, int | float | list):
        return value
    raise ConfigError(f"{where}: attribute '{attr.name}' holds a subgraph or sparse tensor, which "
                      "the importer does not convert")


def _constant_value(attrs: dict) -> np.ndarray:
    for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        if key in attrs:
            v = attrs.pop(key)
            dtype = np.float32 if "float" in key else np.int64
            return v if isinstance(v, np.ndarray) else np.asarray(v, dtype=dtype)
    raise ConfigError("a Constant node without a value")


def _free_batch(nodes: list[dict], tensors_spec: dict) -> None:
    """A graph exported for a batch of 1 often reshapes to a constant (1, C) (squeeze and
    excitation blocks); that leading 1 becomes -1, so that a batch of any size goes through
    (each sample as it went alone: tests/test_pretrained_import.py checks it). Where the shape
    has a -1 already (a tracker head's (1, C, -1) before its correlation), the 1 becomes 0:
    ONNX's "the input's size on that axis", the batch."""
    for node in nodes:
        if node["op"] != "Reshape" or node["inputs"][1] not in tensors_spec:
            continue
        info = tensors_spec[node["inputs"][1]]
        data = info.get("__tensor__", {}).get("data")
        if not data or data[0] != 1 or 0 in data:
            continue
        if -1 not in data:
            info["__tensor__"]["data"] = [-1, *data[1:]]
        elif not node["attrs"].get("allowzero", 0):
            info["__tensor__"]["data"] = [0, *data[1:]]


def load_model(path: Path):
    """The ONNX ModelProto of `path`, or a one-line ConfigError."""
    onnx = _onnx()
    if not path.is_file():
        raise ConfigError(f"model.pretrained: {path} does not exist; give an ONNX file, a "
                          "safetensors or PyTorch state dict, or a catalogue name "
                          "(siamese pretrained list)")
    try:
        model = onnx.load(str(path))
    except Exception as e:  # protobuf's DecodeError, a missing external data file, ...
        raise ConfigError(f"{path} is not a readable ONNX file ({type(e).__name__}: "
                          f"{str(e)[:80]}); export the network again, or check that the file "
                          "is complete") from None
    if not model.graph.node:
        raise ConfigError(f"{path} is not an ONNX network (it holds no graph nodes); export the "
                          "network again, or check that the file is complete")
    return model


def graph_outputs(model) -> list[str]:
    return [o.name for o in model.graph.output]


def read_onnx(path: str | Path, outputs: list[str] | None = None,
              inputs: int = 1) -> tuple[dict, dict]:
    """-> (spec, tensors): the graph cut at `outputs` (default: the graph's first output; all
    of them where it takes several inputs), and its initializers as torch tensors keyed by
    their spec keys. `inputs`: how many inputs the graph must take (an encoder one; a
    tracker's head two: the exemplar's and the search crop's features); the spec lists them
    in the file's order."""
    from onnx import numpy_helper

    onnx = _onnx()
    path = Path(path)
    model = load_model(path)
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    produced = {o for n in g.node for o in n.output}
    every = graph_outputs(model)
    outputs = list(outputs or (every[:1] if inputs == 1 else every))
    for name in outputs:
        if name not in produced and name not in {i.name for i in g.input}:
            raise ConfigError(f"{path} has no tensor '{name}' (model.pretrained_output); its "
                              f"outputs are: {', '.join(every)} (or name any node's output)")
    # keep the nodes the outputs depend on, in the file's (topological) order
    by_output = {o: i for i, n in enumerate(g.node) for o in n.output}
    need, todo = set(), list(outputs)
    while todo:
        t = todo.pop()
        i = by_output.get(t)
        if i is not None and i not in need:
            need.add(i)
            todo += [x for x in g.node[i].input if x]
    nodes = [g.node[i] for i in sorted(need)]
    bn_stats = {n.input[k] for n in nodes if n.op_type == "BatchNormalization"
                for k in (3, 4) if len(n.input) > k}
    keys: set[str] = set()
    tensors_spec: dict[str, dict] = {}
    tensors: dict[str, torch.Tensor] = {}
    # a Clip's bounds (ReLU6's 0 and 6) are numbers, not weights: attributes, never trained
    bounds = {n.output[0]: {k: float(numpy_helper.to_array(inits[x]))
                            for k, x in zip(("min", "max"), n.input[1:3], strict=False)
                            if x in inits}
              for n in nodes if n.op_type == "Clip"}
    kept = {x for n in nodes for i, x in enumerate(n.input)
            if x and not (n.op_type == "Clip" and i > 0 and x in inits)}
    used = {x for n in nodes for x in n.input if x} & kept
    for name in sorted(used & set(inits)):
        a = numpy_helper.to_array(inits[name])
        floating = a.dtype.kind == "f"
        if not floating and a.size <= INLINE:
            tensors_spec[name] = {"kind": "const", **_tensor_json(a)}
            continue
        key = _key(name, keys)
        kind = "param" if floating and name not in bn_stats else "buffer"
        tensors_spec[name] = {"kind": kind, "key": key, "shape": list(a.shape),
                              "dtype": str(a.dtype)}
        tensors[key] = torch.from_numpy(a.astype(np.float32) if floating else a.copy())
    spec_nodes = []
    for n in nodes:
        where = f"{path}: node '{n.name or n.output[0]}'"
        if n.domain not in ("", "ai.onnx") or n.op_type not in OPS:
            raise ConfigError(f"{path}: operator '{n.op_type}'"
                              f"{' of domain ' + n.domain if n.domain else ''} (node "
                              f"'{n.name or n.output[0]}') is not one the importer converts; "
                              f"export the network up to an earlier output, or without it")
        attrs = {a.name: _attribute(onnx, a, where) for a in n.attribute}
        if n.op_type == "Constant":
            a = _constant_value(attrs)
            if a.size > INLINE:  # a big constant: a buffer, not JSON
                key = _key(n.output[0], keys)
                tensors_spec[n.output[0]] = {"kind": "buffer", "key": key,
                                             "shape": list(a.shape), "dtype": str(a.dtype)}
                tensors[key] = torch.from_numpy(a.astype(np.float32) if a.dtype.kind == "f"
                                                else a.copy())
                continue
            attrs = {"value": a}
        attrs = {k: _tensor_json(v) if isinstance(v, np.ndarray) else v
                 for k, v in attrs.items()}
        node_inputs = list(n.input)
        if n.op_type == "Clip":
            attrs |= bounds[n.output[0]]
            node_inputs = [x if i == 0 or x not in inits else "" for i, x in
                           enumerate(node_inputs)]
        spec_nodes.append({"op": n.op_type, "name": n.name, "inputs": node_inputs,
                           "outputs": list(n.output), "attrs": attrs})
    graph_inputs = [i for i in g.input if i.name not in inits]
    if len(graph_inputs) != inputs:
        what = "an encoder takes one" if inputs == 1 else f"this part takes {inputs}"
        raise ConfigError(f"{path} takes {len(graph_inputs)} inputs; {what} (export the "
                          "network with that many)")
    dims = [d.dim_value if d.HasField("dim_value") else None
            for d in graph_inputs[0].type.tensor_type.shape.dim]
    if dims and dims[0] == 1:
        _free_batch(spec_nodes, tensors_spec)
    spec = {"format": SPEC_FORMAT, "version": 1, "input": graph_inputs[0].name,
            "inputs": [i.name for i in graph_inputs],
            "input_dims": dims, "outputs": outputs, "nodes": spec_nodes,
            "tensors": tensors_spec,
            "metadata": {p.key: p.value for p in model.metadata_props}}
    return spec, tensors
