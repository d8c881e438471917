"""The ONNX operators the importer converts, each as a function of torch tensors.

    OPS["Conv"](inputs, attrs, training) -> output tensor(s)

`inputs` are the node's input tensors in ONNX order (None where the graph leaves an optional
input out), `attrs` its attributes as plain values (tensors as torch tensors). Every function
is differentiable where ONNX's operator is, so an imported network trains like any other.
This table is what `tests/test_pretrained_import.py` checks against ONNX Runtime, one case per
operator: an operator added here without a case fails that test.

Chosen over onnx2torch (1.5.15 imports torchvision, which does not import beside this CPU
torch): the backbones people export (MobileNet, ResNet, EfficientNet, VGGish-style audio nets,
the speech embedding) use a few dozen operators, and a small table we test is easier to keep
than a dependency we cannot import.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

Op = Callable[[list, dict, bool], torch.Tensor | tuple[torch.Tensor, ...]]
OPS: dict[str, Op] = {}

ONNX_DTYPES = {1: torch.float32, 2: torch.uint8, 3: torch.int8, 5: torch.int16,
               6: torch.int32, 7: torch.int64, 9: torch.bool, 10: torch.float16,
               11: torch.float64, 16: torch.bfloat16}


def op(*names: str):
    def register(fn: Op) -> Op:
        for name in names:
            OPS[name] = fn
        return fn
    return register


def _ints(t) -> list[int]:
    return [int(v) for v in (t.tolist() if torch.is_tensor(t) else t)]


def _pads(pads: list[int], dims: int) -> list[int] | None:
    """ONNX pads (begin_0, begin_1, ..., end_0, end_1, ...) -> F.pad's order (last axis first,
    begin then end); None where there is nothing to pad."""
    if not pads or not any(pads):
        return None
    out = []
    for k in reversed(range(dims)):
        out += [pads[k], pads[k + dims]]
    return out


def _same_pads(x: torch.Tensor, kernel: list[int], strides: list[int], dilations: list[int],
               upper: bool) -> list[int]:
    """auto_pad SAME_UPPER / SAME_LOWER: the pads that make the output ceil(input / stride)."""
    begin, end = [], []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True):
        total = max((-(-size // s) - 1) * s + (k - 1) * d + 1 - size, 0)
        small, big = total // 2, total - total // 2
        begin.append(small if upper else big)
        end.append(big if upper else small)
    return begin + end


def _window_pads(x, attrs, kernel, strides, dilations) -> list[int] | None:
    auto = attrs.get("auto_pad", "NOTSET")
    dims = len(kernel)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        return _pads(_same_pads(x, kernel, strides, dilations, auto == "SAME_UPPER"), dims)
    if auto == "VALID":
        return None
    return _pads(_ints(attrs.get("pads", [0] * 2 * dims)), dims)


@op("Conv")
def conv(inputs, attrs, training):
    x, w = inputs[0], inputs[1]
    b = inputs[2] if len(inputs) > 2 else None
    dims = w.ndim - 2
    kernel = _ints(attrs.get("kernel_shape", w.shape[2:]))
    strides = _ints(attrs.get("strides", [1] * dims))
    dilations = _ints(attrs.get("dilations", [1] * dims))
    pads = _window_pads(x, attrs, kernel, strides, dilations)
    padding: list[int] | int = 0
    if pads is not None and all(pads[2 * i] == pads[2 * i + 1] for i in range(dims)):
        padding = pads[::2][::-1]  # the same on both sides: the convolution pads (no copy)
    elif pads is not None:
        x = F.pad(x, pads)
    fn = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[dims]
    return fn(x, w, b, strides, padding, dilations, int(attrs.get("group", 1)))


def _pool(inputs, attrs, kind: str):
    x = inputs[0]
    kernel = _ints(attrs["kernel_shape"])
    dims = len(kernel)
    strides = _ints(attrs.get("strides", [1] * dims))
    dilations = _ints(attrs.get("dilations", [1] * dims))
    ceil = bool(attrs.get("ceil_mode", 0))
    pads = _window_pads(x, attrs, kernel, strides, dilations)
    if kind == "max":
        if pads is not None:
            x = F.pad(x, pads, value=float("-inf"))
        fn = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[dims]
        return fn(x, kernel, strides, 0, dilations, ceil_mode=ceil)
    include = bool(attrs.get("count_include_pad", 0))
    if pads is not None and not include:  # the mean over the window's real values only
        ones = F.pad(torch.ones_like(x[:1, :1]), pads)
        x = F.pad(x, pads)
        fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[dims]
        return fn(x, kernel, strides, 0, ceil) / fn(ones, kernel, strides, 0, ceil)
    if pads is not None:
        x = F.pad(x, pads)
    fn = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[dims]
    return fn(x, kernel, strides, 0, ceil)


@op("MaxPool")
def max_pool(inputs, attrs, training):
    return _pool(inputs, attrs, "max")


@op("AveragePool")
def average_pool(inputs, attrs, training):
    return _pool(inputs, attrs, "avg")


@op("GlobalAveragePool")
def global_average_pool(inputs, attrs, training):
    x = inputs[0]
    return x.mean(dim=tuple(range(2, x.ndim)), keepdim=True)


@op("GlobalMaxPool")
def global_max_pool(inputs, attrs, training):
    x = inputs[0]
    return x.amax(dim=tuple(range(2, x.ndim)), keepdim=True)


@op("BatchNormalization")
def batch_norm(inputs, attrs, training):
    """Training mode (a trainable, unfrozen layer) normalises by the batch and updates the
    running statistics in place, as nn.BatchNorm does (ONNX's momentum m keeps m of the old)."""
    x, scale, bias, mean, var = inputs[:5]
    return F.batch_norm(x, mean, var, scale, bias, training,
                        1.0 - float(attrs.get("momentum", 0.9)), float(attrs.get("epsilon", 1e-5)))


@op("Gemm")
def gemm(inputs, attrs, training):
    a, b = inputs[0], inputs[1]
    if attrs.get("transA", 0):
        a = a.T
    if attrs.get("transB", 0):
        b = b.T
    y = float(attrs.get("alpha", 1.0)) * (a @ b)
    if len(inputs) > 2 and inputs[2] is not None:
        y = y + float(attrs.get("beta", 1.0)) * inputs[2]
    return y


@op("MatMul")
def matmul(inputs, attrs, training):
    return inputs[0] @ inputs[1]


def _binary(fn):
    return lambda inputs, attrs, training: fn(inputs[0], inputs[1])


OPS.update({name: _binary(fn) for name, fn in (
    ("Add", torch.add), ("Sub", torch.sub), ("Mul", torch.mul), ("Pow", torch.pow))})


@op("Div")
def div(inputs, attrs, training):
    a, b = inputs
    if not a.is_floating_point() and not b.is_floating_point():
        return torch.div(a, b, rounding_mode="trunc")
    return a / b


def _unary(fn):
    return lambda inputs, attrs, training: fn(inputs[0])


for _name, _fn in {"Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh,
                   "Exp": torch.exp, "Log": torch.log, "Sqrt": torch.sqrt, "Neg": torch.neg,
                   "Abs": torch.abs, "Erf": torch.erf, "Reciprocal": torch.reciprocal,
                   "Floor": torch.floor, "Ceil": torch.ceil, "Softplus": F.softplus,
                   "HardSwish": F.hardswish, "Identity": lambda x: x}.items():
    OPS[_name] = _unary(_fn)


@op("Dropout")
def dropout(inputs, attrs, training):
    return inputs[0]  # an imported network's dropout is off: it is an inference graph


@op("LeakyRelu")
def leaky_relu(inputs, attrs, training):
    return F.leaky_relu(inputs[0], float(attrs.get("alpha", 0.01)))


@op("Elu")
def elu(inputs, attrs, training):
    return F.elu(inputs[0], float(attrs.get("alpha", 1.0)))


@op("HardSigmoid")
def hard_sigmoid(inputs, attrs, training):
    a, b = float(attrs.get("alpha", 0.2)), float(attrs.get("beta", 0.5))
    return (a * inputs[0] + b).clamp(0, 1)


@op("Clip")
def clip(inputs, attrs, training):
    x = inputs[0]
    lo = inputs[1] if len(inputs) > 1 and inputs[1] is not None else attrs.get("min")
    hi = inputs[2] if len(inputs) > 2 and inputs[2] is not None else attrs.get("max")
    lo = float(lo) if lo is not None else None
    hi = float(hi) if hi is not None else None
    return x.clamp(lo, hi)


def _fold(fn, mean: bool = False):
    def run(inputs, attrs, training):
        out = inputs[0]
        for x in inputs[1:]:
            out = fn(out, x)
        return out / len(inputs) if mean else out
    return run


OPS["Max"] = _fold(torch.maximum)
OPS["Min"] = _fold(torch.minimum)
OPS["Sum"] = _fold(torch.add)
OPS["Mean"] = _fold(torch.add, mean=True)


OPS["Softmax"] = lambda i, a, t: torch.softmax(i[0], int(a.get("axis", -1)))
OPS["LogSoftmax"] = lambda i, a, t: torch.log_softmax(i[0], int(a.get("axis", -1)))


def _axes(inputs, attrs) -> list[int] | None:
    """Axes from the attribute (opset < 13/18) or the second input (newer opsets)."""
    if len(inputs) > 1 and inputs[1] is not None:
        return _ints(inputs[1])
    return _ints(attrs["axes"]) if "axes" in attrs else None


def _reduce(fn):
    def run(inputs, attrs, training):
        x = inputs[0]
        axes = _axes(inputs, attrs)
        keep = bool(attrs.get("keepdims", 1))
        if axes is None or not axes:
            if attrs.get("noop_with_empty_axes", 0):
                return x
            axes = list(range(x.ndim))
        return fn(x, dim=tuple(axes), keepdim=keep)
    return run


OPS.update({name: _reduce(fn) for name, fn in (
    ("ReduceMean", torch.mean), ("ReduceSum", torch.sum), ("ReduceMax", torch.amax),
    ("ReduceMin", torch.amin))})


@op("Reshape")
def reshape(inputs, attrs, training):
    x, shape = inputs[0], _ints(inputs[1])
    if not attrs.get("allowzero", 0):  # 0 copies the input's size on that axis
        shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


@op("Flatten")
def flatten(inputs, attrs, training):
    x = inputs[0]
    axis = int(attrs.get("axis", 1)) % max(x.ndim, 1)
    return x.reshape(int(torch.tensor(x.shape[:axis]).prod()), -1)


@op("Transpose")
def transpose(inputs, attrs, training):
    x = inputs[0]
    perm = _ints(attrs["perm"]) if "perm" in attrs else list(reversed(range(x.ndim)))
    return x.permute(perm)


@op("Unsqueeze")
def unsqueeze(inputs, attrs, training):
    x = inputs[0]
    axes = sorted(a % (x.ndim + len(_axes(inputs, attrs))) for a in _axes(inputs, attrs))
    for a in axes:
        x = x.unsqueeze(a)
    return x


@op("Squeeze")
def squeeze(inputs, attrs, training):
    x = inputs[0]
    axes = _axes(inputs, attrs)
    if axes is None:
        return x.squeeze()
    for a in sorted((a % x.ndim for a in axes), reverse=True):
        x = x.squeeze(a)
    return x


@op("Concat")
def concat(inputs, attrs, training):
    return torch.cat(inputs, int(attrs["axis"]))


@op("Pad")
def pad(inputs, attrs, training):
    x = inputs[0]
    pads = _ints(inputs[1]) if len(inputs) > 1 else _ints(attrs["pads"])
    value = float(inputs[2]) if len(inputs) > 2 and inputs[2] is not None else \
        float(attrs.get("value", 0.0))
    mode = attrs.get("mode", "constant")
    order = _pads(pads, x.ndim)
    if order is None:
        return x
    if mode == "constant":
        return F.pad(x, order, value=value)
    # reflect / edge pad the spatial axes only (torch's rule); leading zeros dropped
    while len(order) > 2 and order[-2:] == [0, 0]:
        order = order[:-2]
    return F.pad(x, order, mode={"reflect": "reflect", "edge": "replicate"}[mode])


@op("Cast")
def cast(inputs, attrs, training):
    return inputs[0].to(ONNX_DTYPES[int(attrs["to"])])


@op("Constant")
def constant(inputs, attrs, training):
    return attrs["value"]


@op("Shape")
def shape(inputs, attrs, training):
    dims = list(inputs[0].shape)
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    return torch.tensor(dims[start:None if end is None else int(end)], dtype=torch.int64)


@op("Gather")
def gather(inputs, attrs, training):
    x, index = inputs
    axis = int(attrs.get("axis", 0)) % x.ndim
    index = torch.where(index < 0, index + x.shape[axis], index)
    return x.index_select(axis, index.reshape(-1)).reshape(
        *x.shape[:axis], *index.shape, *x.shape[axis + 1:])


@op("Slice")
def slice_(inputs, attrs, training):
    x = inputs[0]
    starts, ends = _ints(inputs[1]), _ints(inputs[2])
    axes = _ints(inputs[3]) if len(inputs) > 3 and inputs[3] is not None else \
        list(range(len(starts)))
    steps = _ints(inputs[4]) if len(inputs) > 4 and inputs[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        if st <= 0:
            raise NotImplementedError("Slice with a negative step")
        size = x.shape[a]
        index[a] = slice(max(min(s, size), -size), max(min(e, size), -size - 1), st)
    return x[tuple(index)]


@op("Split")
def split(inputs, attrs, training):
    x = inputs[0]
    axis = int(attrs.get("axis", 0))
    sizes = _ints(inputs[1]) if len(inputs) > 1 and inputs[1] is not None else \
        _ints(attrs["split"]) if "split" in attrs else None
    if sizes is None:
        n = int(attrs["num_outputs"])
        sizes = [-(-x.shape[axis] // n)] * n
        sizes[-1] = x.shape[axis] - sum(sizes[:-1])
    return tuple(torch.split(x, sizes, axis))
