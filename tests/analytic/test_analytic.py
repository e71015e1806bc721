"""Local affine-ReLU bound (Avant & Morgansen) and max-pool constants against formulations.md section 7."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lipopt.analytic.local_bound import LocalBoundComputer, LocalOptions, local_bound
from lipopt.analytic.maxpool import formula_count, max_count, maxpool_constant
from lipopt.analytic.spectral import SpectralOptions
from lipopt.methods import RunOptions, run_method
from lipopt.network.layers import Dense, Flatten, MaxPool2d, ReLU
from lipopt.network.network import Network
from lipopt.result import BoundKind, Status
from lipopt.spec import Ball, Box, Direction, Norm, Question

REL = 1e-7


@pytest.fixture(autouse=True)
def _one_thread():
    from lipopt.analytic._threads import limit_threads

    with limit_threads(1):
        yield


def t1() -> Network:
    return Network.from_weights([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])], name="T1")


def t3() -> Network:
    return Network.from_weights([np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([[1.0, -1.0]])], name="T3")


def t9c() -> Network:
    a = np.array([[3.0, -1, 2], [-2, 7, 1], [5, -3, -1]])
    return Network.from_weights([a, np.eye(3)], [np.array([3.0, 4, 2]), None], name="T9c")


@pytest.mark.parametrize(("x0", "eps", "expected"), [
    (0.5, 0.1, 1.0), (0.5, 1.0, math.sqrt(5 / 2)), (0.0, 0.1, 2.0),
])
def test_t1_abs_net(x0: float, eps: float, expected: float) -> None:
    assert local_bound(t1(), [x0], eps).value == pytest.approx(expected, rel=REL)


@pytest.mark.parametrize(("eps", "expected"), [(0.1, math.sqrt(5)), (1.0, 3.485736)])
def test_t3(eps: float, expected: float) -> None:
    assert local_bound(t3(), [1.0, -1.0], eps).value == pytest.approx(expected, rel=1e-6)


def test_t3_first_layer_slopes_at_small_eps() -> None:
    # eps = 0.1 at x0 = (1,-1): y0 = (-1, 1), ybar = (-0.7764, 1.2236): neuron 1 stays off
    lb = local_bound(t3(), [1.0, -1.0], 0.1)
    first = lb.blocks[0]
    assert first.n_active == 1 and first.n_unstable == 0


@pytest.mark.parametrize(("eps", "expected"), [(0.5, 1.0), (2.0, math.sqrt(2))])
def test_t9(eps: float, expected: float) -> None:
    net = Network.from_weights([np.eye(2), np.array([[1.0, 1.0]])])
    assert local_bound(net, [1.0, -1.0], eps).value == pytest.approx(expected, rel=REL)


def test_t9b_scalar_relu() -> None:
    net = Network([Dense(np.array([[1.0]]), None), ReLU()], (1,))
    assert local_bound(net, [-1.0], 2.0).value == pytest.approx(0.5, rel=REL)


def test_t9c_tiny_net() -> None:
    comp = LocalBoundComputer(t9c(), np.array([-0.5, 2.5, 2.5]))
    for eps in (0.5, 1.0, 1.7):
        assert comp.bound(eps).value == pytest.approx(7.538264, rel=1e-6)
    assert comp.bound(3.0).value == pytest.approx(7.78243, rel=1e-6)
    assert comp.global_bound() == pytest.approx(9.101114, rel=1e-6)
    b3 = comp.bound(3.0).blocks[0]
    assert b3.n_unstable == 1


def test_lanczos_cholesky_tier_gives_same_values() -> None:
    so = SpectralOptions(exact_limit=0)
    comp = LocalBoundComputer(t9c(), np.array([-0.5, 2.5, 2.5]), options=LocalOptions(spectral=so))
    assert comp.bound(3.0).value == pytest.approx(7.78243, rel=1e-6)


# ------------------------------------------------------------------------------------------ T10
@pytest.mark.parametrize(("shape", "k", "s", "expected", "formula"), [
    ((1, 3, 3), 2, 1, 2.0, 2.0),
    ((1, 5, 5), 3, 2, 2.0, 2.0),
    ((1, 4, 4), 3, 1, 2.0, 3.0),
    ((1, 2, 2), 2, 1, 1.0, 2.0),
    ((1, 6, 6), 2, 2, 1.0, 1.0),
    ((1, 9, 9), 3, 3, 1.0, 1.0),
])
def test_t10_maxpool_counts(shape: tuple[int, ...], k: int, s: int, expected: float, formula: float) -> None:
    la = MaxPool2d(k, s)
    assert maxpool_constant(la, shape) == pytest.approx(expected)
    assert math.sqrt(formula_count(la)) == pytest.approx(formula)
    assert maxpool_constant(la, shape, Norm.LINF) == 1.0
    assert maxpool_constant(la, shape, Norm.L1) == pytest.approx(expected ** 2)


def test_t10_one_dimensional_and_padding_dilation() -> None:
    assert maxpool_constant(MaxPool2d((1, 2), (1, 1)), (1, 1, 3)) == pytest.approx(math.sqrt(2))
    # brute-force count over the window index lists for padding / dilation
    for la, shp in [(MaxPool2d(3, 1, padding=1), (2, 5, 5)), (MaxPool2d(2, 1, dilation=2), (1, 6, 7)),
                    (MaxPool2d((3, 2), (2, 1), padding=(1, 0)), (1, 7, 4))]:
        win = la.windows(shp)
        counts = np.bincount(win[win >= 0], minlength=int(np.prod(shp)))
        assert max_count(la, shp) == counts.max()


def test_restricted_maxpool_count_never_larger() -> None:
    la = MaxPool2d(3, 1)
    mask = np.zeros((1, 4, 4))
    mask[0, 0, 0] = 1  # a corner: in one window only
    assert max_count(la, (1, 4, 4), mask) == 1
    assert max_count(la, (1, 4, 4)) == 4


def test_maxpool_network_local_bound() -> None:
    # identity conv-free net: maxpool 2x2 stride 1 on 3x3 then flatten: global sqrt(4) = 2
    net = Network([MaxPool2d(2, 1), Flatten()], (1, 3, 3))
    x0 = np.arange(9.0)
    lb = local_bound(net, x0, 0.1)
    assert lb.value == pytest.approx(2.0, rel=REL)
    assert lb.global_bound == pytest.approx(2.0, rel=REL)


# ------------------------------------------------------------------------------------- the method
def test_method_record_and_applicability() -> None:
    net = t3()
    q = Question(domain=Ball([1.0, -1.0], 1.0, Norm.L2), nominal=True)
    res = run_method("local-affine", net, q)
    assert res.kind is BoundKind.UPPER and res.status is Status.SOLVED
    assert res.value == pytest.approx(3.485736, rel=1e-6)
    assert res.stats["global_bound"] == pytest.approx(3 * math.sqrt(2), rel=1e-7)
    assert any("nominal-point" in n for n in res.notes)
    assert res.lower is not None and res.lower <= res.value
    assert all(c.passed for c in res.checks)
    for bad in (Question(domain=Ball([1.0, -1.0], 1.0, Norm.L2)),  # pairwise
                Question(domain=Box(-1, 1)),
                Question(domain=Ball([1.0, -1.0], 1.0, Norm.LINF), nominal=True),
                Question("inf", "inf", domain=Ball([1.0, -1.0], 1.0, Norm.L2), nominal=True)):
        r = run_method("local-affine", net, bad)
        assert r.status is Status.NOT_APPLICABLE and r.message


def test_scalar_output_folded() -> None:
    net = t9c()
    x0 = np.array([-0.5, 2.5, 2.5])
    c = np.array([1.0, -2.0, 0.5])
    # neuron 3 stays off: bound = ||R A|| * ||c^T D||, D = diag(1, 1, 0); >= the exact |c^T J|
    lb = local_bound(net, x0, 0.5, c=c)
    assert lb.value == pytest.approx(7.538264 * math.sqrt(5), rel=1e-6)
    assert lb.value >= float(np.linalg.norm(c @ net.jacobian(x0)))
    q = Question(domain=Ball(x0, 0.5, Norm.L2), nominal=True, output=Direction(c))
    assert run_method("local-affine", net, q).value == pytest.approx(lb.value, rel=1e-9)


def test_cuda_request_without_cuda_warns() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    q = Question(domain=Ball([1.0, -1.0], 0.1, Norm.L2), nominal=True)
    res = run_method("local-affine", t3(), q, RunOptions(device="cuda"))
    assert res.status is Status.SOLVED
    assert any("CUDA is not available" in n for n in res.notes)
