"""The importer's operators, each against ONNX Runtime on a one-node graph (issue 40: a small
converter, each operator tested). A case per entry of onnx_ops.OPS: an operator added there
without a case here fails `test_every_operator_has_a_case`."""

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import torch  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from siamese.pretrained.encoder import graph_state  # noqa: E402
from siamese.pretrained.graph import GraphModule  # noqa: E402
from siamese.pretrained.onnx_ops import OPS  # noqa: E402
from siamese.pretrained.onnx_reader import read_onnx  # noqa: E402

R = np.random.default_rng(0)


def f(*shape, low=-2.0, high=2.0):
    return R.uniform(low, high, shape).astype(np.float32)


def i64(*values):
    return np.asarray(values, dtype=np.int64)


X4 = f(2, 3, 7, 6)
# op -> (input x, initializers in input order after x, attributes[, opset])
CASES = {
    "Conv": (X4, [f(4, 3, 3, 3), f(4)], {"strides": [2, 1], "pads": [1, 0, 0, 1]}),
    "MaxPool": (X4, [], {"kernel_shape": [3, 2], "strides": [2, 2], "pads": [1, 0, 1, 1]}),
    "AveragePool": (X4, [], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "strides": [2, 2]}),
    "GlobalAveragePool": (X4, [], {}),
    "GlobalMaxPool": (X4, [], {}),
    "BatchNormalization": (X4, [f(3), f(3), f(3), f(3, low=0.5)], {"epsilon": 1e-3}),
    "Gemm": (f(4, 5), [f(3, 5), f(3)], {"transB": 1, "alpha": 0.5, "beta": 2.0}),
    "MatMul": (f(2, 4, 5), [f(5, 3)], {}),
    "Add": (X4, [f(1, 3, 1, 1)], {}),
    "Sub": (X4, [f(6)], {}),
    "Mul": (X4, [f(3, 1, 1)], {}),
    "Div": (X4, [f(6, low=0.5)], {}),
    "Pow": (f(3, 4, low=0.1), [np.asarray(2.0, np.float32)], {}),
    "Relu": (X4, [], {}),
    "Sigmoid": (X4, [], {}),
    "Tanh": (X4, [], {}),
    "Exp": (X4, [], {}),
    "Log": (f(3, 4, low=0.1), [], {}),
    "Sqrt": (f(3, 4, low=0.1), [], {}),
    "Neg": (X4, [], {}),
    "Abs": (X4, [], {}),
    "Erf": (X4, [], {}),
    "Reciprocal": (f(3, 4, low=0.5), [], {}),
    "Floor": (X4, [], {}),
    "Ceil": (X4, [], {}),
    "Softplus": (X4, [], {}),
    "HardSwish": (X4 * 3, [], {}),
    "Identity": (X4, [], {}),
    "Dropout": (X4, [], {}),
    "LeakyRelu": (X4, [], {"alpha": 0.2}),
    "Elu": (X4, [], {"alpha": 0.7}),
    "HardSigmoid": (X4 * 3, [], {"alpha": 0.25, "beta": 0.4}),
    "Clip": (X4, [np.asarray(-0.5, np.float32), np.asarray(0.7, np.float32)], {}),
    "Max": (X4, [f(7, 6)], {}),
    "Min": (X4, [f(7, 6)], {}),
    "Sum": (X4, [f(7, 6)], {}),
    "Mean": (X4, [f(7, 6)], {}),
    "Softmax": (X4, [], {"axis": 1}),
    "LogSoftmax": (X4, [], {"axis": -1}),
    "ReduceMean": (X4, [i64(2, 3)], {"keepdims": 0}, 18),
    "ReduceSum": (X4, [i64(1)], {"keepdims": 1}),
    "ReduceMax": (X4, [i64(-1)], {"keepdims": 1}, 18),
    "ReduceMin": (X4, [i64(0, 2)], {"keepdims": 0}, 18),
    "Reshape": (X4, [i64(0, -1, 6)], {}),
    "Flatten": (X4, [], {"axis": 2}),
    "Transpose": (X4, [], {"perm": [0, 2, 3, 1]}),
    "Unsqueeze": (f(3, 4), [i64(0, -1)], {}),
    "Squeeze": (f(3, 1, 4, 1), [i64(1, -1)], {}),
    "Concat": (X4, [f(2, 2, 7, 6)], {"axis": 1}),
    "Pad": (X4, [i64(0, 0, 1, 2, 0, 0, 3, 0)], {"mode": "constant"}),
    "Cast": (X4 * 3, [], {"to": TensorProto.INT64}),
    "Constant": (None, [], {"value": numpy_helper.from_array(f(2, 3), "c")}),
    "Shape": (X4, [], {"start": 1}),
    "Gather": (X4, [i64(2, 0, -1)], {"axis": 1}),
    "Slice": (X4, [i64(1, 0), i64(100, -1), i64(2, 3), i64(2, 1)], {}),
    "Split": (X4, [i64(2, 4)], {"axis": 3}),
}


def one_node(op: str):
    case = CASES[op]
    x, inits, attrs = case[:3]
    opset = case[3] if len(case) > 3 else 17
    names = [f"w{k}" for k in range(len(inits))]
    n_out = 2 if op == "Split" else 1
    outs = [f"y{k}" for k in range(n_out)]
    inputs = [] if x is None else ["x"]
    node = helper.make_node(op, inputs + names, outs, name=f"the_{op}", **attrs)
    graph_in = [] if x is None else [helper.make_tensor_value_info(
        "x", TensorProto.FLOAT, list(x.shape))]
    if x is None:  # a graph needs one input: the constant is added to it
        node2 = helper.make_node("Add", ["x", "y0"], ["z"])
        graph_in = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
        outs, nodes, x = ["z"], [node, node2], f(2, 3)
    else:
        nodes = [node]
    g = helper.make_graph(nodes, op, graph_in,
                          [helper.make_tensor_value_info(
                              o, TensorProto.INT64 if op in ("Shape", "Cast") else
                              TensorProto.FLOAT, None) for o in outs],
                          [numpy_helper.from_array(a, n) for a, n in zip(inits, names,
                                                                          strict=True)])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model, x, outs


def test_every_operator_has_a_case():
    assert sorted(set(OPS) - set(CASES)) == []


@pytest.mark.parametrize("op", sorted(CASES))
def test_operator_matches_onnx_runtime(op, tmp_path):
    model, x, outs = one_node(op)
    path = tmp_path / f"{op}.onnx"
    onnx.save(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = sess.run(outs, {"x": x})
    spec, weights = read_onnx(path, outs)
    g = GraphModule(spec)
    g.load_state_dict(graph_state(spec, weights))
    g.eval()
    with torch.no_grad():
        got = [t.numpy() for t in g(torch.from_numpy(x))]
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape, op
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5, err_msg=op)
