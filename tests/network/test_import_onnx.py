"""ONNX importer: torch round trips, hand-built graphs, external data, and the list of unsupported nodes."""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import lipopt  # noqa: E402
from lipopt.errors import InvalidNetworkError, UnsupportedLayerError  # noqa: E402
from lipopt.network.importers.onnx_model import import_onnx  # noqa: E402

nn = torch.nn


def _export(module, x, path, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, **kw)


def _torch_eval(module, net, x):
    ref = copy.deepcopy(module).double().eval()

    def f(z):
        return ref(z.reshape(1, *net.input_shape)).reshape(-1)

    xt = torch.tensor(x).reshape(-1)
    return f(xt).detach().numpy(), torch.autograd.functional.jacobian(f, xt).numpy()


class _ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 5, 3, stride=2)
        self.pool = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(5, 6)
        self.bn2 = nn.BatchNorm1d(6)
        self.fc2 = nn.Linear(6, 3)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(x, 2)
        x = self.pool(torch.relu(self.conv2(x)))
        x = x.view(x.size(0), -1)  # exported as Shape/Gather/Unsqueeze/Concat/Reshape
        return self.fc2(torch.relu(self.bn2(self.fc1(x))))


@pytest.fixture(scope="module")
def convnet():
    torch.manual_seed(0)
    m = _ConvNet()
    for bn in (m.bn1, m.bn2):
        with torch.no_grad():
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.weight.uniform_(-2, 2)
            bn.bias.uniform_(-1, 1)
    return m.eval()


@pytest.mark.parametrize("folding", [False, True])
def test_torch_round_trip_conv_pool_bn_linear(convnet, tmp_path, folding):
    path = tmp_path / "convnet.onnx"
    _export(convnet, torch.randn(1, 2, 12, 12), path, do_constant_folding=folding)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"Conv", "MaxPool", "AveragePool", "Reshape", "Gemm"} <= ops
    if not folding:
        assert "BatchNormalization" in ops
    net = lipopt.load(path)  # includes the check against the numpy ONNX interpreter
    assert net.input_shape == (2, 12, 12) and net.output_size == 3
    assert [type(la).__name__ for la in net.layers].count("Conv2d") == 2
    # the exporter stores float32 weights (and, with folding, folds BN in float32): compare loosely
    tol = 1e-9 if not folding else 1e-5
    rng = np.random.default_rng(0)
    for _ in range(3):
        x = rng.standard_normal(net.input_shape)
        y_t, j_t = _torch_eval(convnet, net, x)
        assert np.max(np.abs(net.forward(x) - y_t)) <= tol * max(1.0, np.abs(y_t).max())
        assert np.max(np.abs(net.jacobian(x) - j_t)) <= tol * max(1.0, np.abs(j_t).max())


def _model(nodes, inits, in_shape, out_shape, name="g"):
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("x", TensorProto.DOUBLE, ["N", *in_shape])],
        [helper.make_tensor_value_info("y", TensorProto.DOUBLE, ["N", *out_shape])],
        initializer=[numpy_helper.from_array(np.asarray(v, dtype=np.float64), k) for k, v in inits.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_handbuilt_gemm_and_matmul_add_match_numpy():
    rng = np.random.default_rng(1)
    w1, b1 = rng.standard_normal((5, 4)), rng.standard_normal(5)  # Gemm B without transB: (in, out)
    w2, b2 = rng.standard_normal((5, 3)), rng.standard_normal(3)  # MatMul W: (in, out)
    nodes = [
        helper.make_node("Gemm", ["x", "w1", "b1"], ["h1"], alpha=2.0, beta=0.5, transB=0, name="gemm"),
        helper.make_node("Relu", ["h1"], ["r1"], name="relu"),
        helper.make_node("Identity", ["r1"], ["i1"]),
        helper.make_node("MatMul", ["i1", "w2"], ["m2"], name="mm"),
        helper.make_node("Add", ["m2", "b2"], ["y"], name="add"),
    ]
    model = _model(nodes, {"w1": w1.T, "b1": b1, "w2": w2, "b2": b2}, [4], [3])
    net = lipopt.load(model)
    x = rng.standard_normal(4)
    h = np.maximum(2.0 * w1 @ x + 0.5 * b1, 0)
    assert np.allclose(net.forward(x), h @ w2 + b2, rtol=1e-13, atol=1e-13)
    assert [type(la).__name__ for la in net.layers] == ["Dense", "ReLU", "Dense"]


def test_external_data_next_to_the_file(tmp_path):
    rng = np.random.default_rng(2)
    nodes = [helper.make_node("Conv", ["x", "k", "kb"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Flatten", ["r"], ["f"], axis=1),
             helper.make_node("Gemm", ["f", "w", "b"], ["y"], transB=1)]
    inits = {"k": rng.standard_normal((3, 1, 3, 3)), "kb": rng.standard_normal(3),
             "w": rng.standard_normal((2, 3 * 4 * 4)), "b": rng.standard_normal(2)}
    model = _model(nodes, inits, [1, 4, 4], [2])
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.onnx.data", size_threshold=0)
    assert (tmp_path / "ext.onnx.data").exists()
    net = lipopt.load(path)
    assert [type(la).__name__ for la in net.layers] == ["Conv2d", "ReLU", "Flatten", "Dense"]
    (tmp_path / "ext.onnx.data").unlink()
    with pytest.raises(InvalidNetworkError, match=r"ext\.onnx"):
        lipopt.load(path)


def test_unsupported_nodes_listed_at_once():
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1, name="fc"),
             helper.make_node("Tanh", ["h"], ["hs"], name="tanh"),
             helper.make_node("Softplus", ["hs"], ["l"], name="softplus"),
             helper.make_node("Sigmoid", ["l"], ["y"], name="sig")]
    model = _model(nodes, {"w": rng.standard_normal((3, 3)), "b": np.zeros(3), "s": np.array(2.0)}, [3], [3])
    with pytest.raises(UnsupportedLayerError) as info:
        lipopt.load(model)
    expected = ["Tanh (node 'tanh')", "Softplus (node 'softplus')", "Sigmoid (node 'sig')"]
    assert info.value.unsupported == expected
    assert "Supported:" in str(info.value) and "Gemm" in str(info.value)


def test_asymmetric_padding_is_refused():
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"], pads=[0, 0, 1, 1], name="conv"),
             helper.make_node("Flatten", ["c"], ["y"])]
    model = _model(nodes, {"k": np.ones((1, 1, 2, 2))}, [1, 3, 3], [9])
    with pytest.raises(UnsupportedLayerError, match="asymmetric pads"):
        import_onnx(model)
