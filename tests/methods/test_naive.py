"""The naive product of layer operator norms (a global UPPER bound)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lipopt.analytic.linops import AvgPoolOp, ConvOp
from lipopt.methods import run_method
from lipopt.network.layers import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, ReLU
from lipopt.network.network import Network
from lipopt.norms import jacobian_norm
from lipopt.result import BoundKind, Status
from lipopt.spec import Ball, Box, Logit, Norm, Question


@pytest.fixture(autouse=True)
def _one_thread():
    from lipopt.analytic._threads import limit_threads

    with limit_threads(1):
        yield


def fw(ws: list[list[list[float]]]) -> Network:
    return Network.from_weights([np.array(w, dtype=float) for w in ws])


@pytest.mark.parametrize(("ws", "expected"), [
    ([[[1.0], [-1.0]], [[1.0, 1.0]]], 2.0),  # T1
    ([[[1.0, 2.0], [2.0, 1.0]], [[1.0, -1.0]]], 3 * math.sqrt(2)),  # T3
    ([[[1.0], [2.0]], [[1.0, -1.0]]], math.sqrt(10)),  # T4
    ([[[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]], [[1.0, -1.0, -1.0]]], 3.0),  # T7, beta = 0
])
def test_table_values_l2(ws: list, expected: float) -> None:
    res = run_method("naive", fw(ws), Question())
    assert res.kind is BoundKind.UPPER and res.status is Status.SOLVED
    assert res.value == pytest.approx(expected, rel=1e-8)
    assert res.value >= expected


def test_t3_other_norms() -> None:
    net = fw([[[1.0, 2.0], [2.0, 1.0]], [[1.0, -1.0]]])
    assert run_method("naive", net, Question("inf", "inf")).value == pytest.approx(6.0)
    assert run_method("naive", net, Question("1", "1")).value == pytest.approx(3.0)


def test_global_note_on_local_questions() -> None:
    net = fw([[[1.0, 2.0], [2.0, 1.0]], [[1.0, -1.0]]])
    for q in (Question(domain=Box(-1, 1)), Question(domain=Ball([0.0, 0.0], 0.5, Norm.L2), nominal=True)):
        res = run_method("naive", net, q)
        assert res.status is Status.SOLVED and any("global" in n for n in res.notes)


def conv_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return Network([
        Conv2d(rng.normal(size=(3, 2, 3, 3)), rng.normal(size=3), stride=1, padding=1),
        ReLU(), MaxPool2d(3, 1),
        Conv2d(rng.normal(size=(4, 3, 2, 2)), rng.normal(size=4), stride=2, dilation=1),
        ReLU(), AvgPool2d(2, 1), Flatten(),
        Dense(rng.normal(size=(5, 4)), rng.normal(size=5)), ReLU(),
        Dense(rng.normal(size=(3, 5)), rng.normal(size=3)),
    ], (2, 7, 7))


@pytest.mark.parametrize("norm", ["2", "inf", "1"])
def test_conv_factors_are_exact_operator_norms(norm: str) -> None:
    net = conv_net(0)
    res = run_method("naive", net, Question(norm, norm))
    facs = {f["layer"]: f["value"] for f in res.stats["factors"]}
    p = Norm.parse(norm)
    for i, la in enumerate(net.layers):
        if isinstance(la, Conv2d | AvgPool2d):
            op = (ConvOp if isinstance(la, Conv2d) else AvgPoolOp)(la, net.shapes[i], torch.device("cpu"))
            m = op.to_matrix()
            m = m.toarray() if hasattr(m, "toarray") else m
            exact = {"2": np.linalg.norm(m, 2), "inf": np.abs(m).sum(1).max(),
                     "1": np.abs(m).sum(0).max()}[norm]
            assert facs[i] == pytest.approx(exact, rel=1e-8) and facs[i] >= exact
        if isinstance(la, MaxPool2d):  # 7x7, k3 s1: an interior element is in 9 windows
            assert facs[i] == pytest.approx({Norm.L2: 3.0, Norm.LINF: 1.0, Norm.L1: 9.0}[p])


@pytest.mark.parametrize(("p", "q"), [("2", "2"), ("inf", "inf"), ("1", "1"), ("2", "inf"), ("1", "2")])
def test_bounds_jacobian_norms(p: str, q: str) -> None:
    net = conv_net(1)
    quest = Question(p, q)
    val = run_method("naive", net, quest).value
    rng = np.random.default_rng(2)
    for _ in range(20):
        x = rng.normal(size=net.input_size) * 2
        assert val >= jacobian_norm(net.jacobian(x), quest)
    scal = Question(p, q, output=Logit(1))
    sval = run_method("naive", net, scal).value
    assert sval <= val * (1 + 1e-12) or p != q
    for _ in range(20):
        x = rng.normal(size=net.input_size) * 2
        assert sval >= jacobian_norm(net.jacobian(x), scal)


def test_scalar_output_after_relu() -> None:
    # the net ends with a ReLU: c cannot be folded, a final factor ||c||_dual is used
    net = Network([Dense(np.array([[1.0, 2.0], [2.0, 1.0]]), None), ReLU()], (2,))
    res = run_method("naive", net, Question(output=Logit(0)))
    assert res.value == pytest.approx(3.0, rel=1e-8)
