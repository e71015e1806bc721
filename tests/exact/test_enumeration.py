"""Region enumeration (method "enumeration", EXACT): properties on seeded random tiny nets, max-pool,
domains, norm pairs, refusal and limits. Table values are in test_reference_nets.py."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lipopt.certify.witness import point_witness
from lipopt.exact.regions import EnumerationOptions
from lipopt.lower.batch import batch_jacobian_norms
from lipopt.methods import RunOptions, run_method
from lipopt.methods.enumeration import enumerate_regions, enumeration_value
from lipopt.network.network import Network
from lipopt.norms import jacobian_norm
from lipopt.result import BoundKind, Status
from lipopt.spec import Ball, Box, Global, Logit, Margin, Norm, Question
from tests import nets

SHAPES = [[2, 4, 3, 1], [3, 5, 1], [2, 3, 3, 2]]


def _exact(net: Network, q: Question, **extra) -> float:
    res = run_method("enumeration", net, q, RunOptions(extra=extra))
    assert res.status is Status.SOLVED and res.ok, (res.message, [str(c) for c in res.checks])
    return float(res.value)


@pytest.mark.parametrize("widths", SHAPES)
@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("domain", ["global", "box"])
def test_exact_is_max_over_certified_region_points(widths: list[int], seed: int, bias: bool,
                                                   domain: str) -> None:
    net = nets.random_mlp(widths, seed, bias)
    dom = Global() if domain == "global" else Box(-1.0, 1.0)
    q = Question(Norm.L2, Norm.L2, dom).bind(net)
    regions = enumerate_regions(net, q)
    for r in regions:  # every region's witness is a certified interior point with Jacobian J_s
        pw = point_witness(net, r.x, q)
        # certified, or a unit that is identically zero on the region (pre-activation exactly 0, same J)
        assert pw.in_domain and r.margin > 1e-9 and (pw.certified or pw.margin == 0.0)
        assert np.allclose(net.jacobian(r.x), r.jacobian, rtol=1e-9, atol=1e-12)
        assert pw.value == pytest.approx(r.value, rel=1e-12, abs=1e-12)
    value = _exact(net, q)
    assert value == pytest.approx(max(r.value for r in regions), rel=1e-12)
    # exact <= naive product of layer norms (computed here directly)
    naive = math.prod(np.linalg.norm(w, 2) for w, _ in net.affine_relu_weights())
    assert value <= naive * (1 + 1e-12)
    # exact >= every Jacobian norm at sampled points of the domain
    rng = np.random.default_rng(seed)
    pts = rng.uniform(-1, 1, size=(2000, widths[0])) * (1.0 if domain == "box" else 5.0)
    assert np.max(batch_jacobian_norms(net, pts, q)) <= value * (1 + 1e-12)
    # weak >= strict
    assert enumeration_value(net, q, strict=False) >= value * (1 - 1e-12)


@pytest.mark.parametrize("widths", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bias_free_global_equals_unit_box(widths: list[int], seed: int) -> None:
    """Fact C: for bias-free nets the global constant is attained on [-1, 1]^n."""
    net = nets.random_mlp(widths, seed, bias=False)
    for p in (Norm.L2, Norm.LINF):
        g = _exact(net, Question(p, p))
        b = _exact(net, Question(p, p, Box(-1.0, 1.0)))
        assert g == pytest.approx(b, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("c", [0.5, 3.0])
def test_scaling_weights_scales_by_c_to_the_depth(seed: int, c: float) -> None:
    net = nets.random_mlp([2, 4, 3, 1], seed, bias=False)
    ws = [w for w, _ in net.affine_relu_weights()]
    scaled = Network.from_weights([c * w for w in ws])
    q = Question(Norm.L2, Norm.L2)
    assert _exact(scaled, q) == pytest.approx(c ** len(ws) * _exact(net, q), rel=1e-10)


@pytest.mark.parametrize("seed", [0, 1])
def test_permuting_hidden_units_changes_nothing(seed: int) -> None:
    net = nets.random_mlp([2, 4, 3, 1], seed, bias=True)
    (w1, b1), (w2, b2), (w3, b3) = net.affine_relu_weights()
    rng = np.random.default_rng(seed + 10)
    p1, p2 = rng.permutation(4), rng.permutation(3)
    perm = Network.from_weights([w1[p1], w2[p2][:, p1], w3[:, p2]], [b1[p1], b2[p2], b3])
    for q in (Question(Norm.L2, Norm.L2), Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0))):
        assert _exact(perm, q) == pytest.approx(_exact(net, q), rel=1e-12)


def test_local_constant_grows_with_the_box() -> None:
    net = nets.random_mlp([2, 4, 3, 1], 3, bias=True)
    vals = [_exact(net, Question(Norm.L2, Norm.L2, Box(-r, r))) for r in (0.1, 0.5, 2.0)]
    vals.append(_exact(net, Question(Norm.L2, Norm.L2)))
    assert all(a <= b * (1 + 1e-12) for a, b in itertools.pairwise(vals))


def test_l2_and_linf_balls() -> None:
    """Balls: l2 (SOCP via Clarabel) <= l-inf ball of the same radius (a box); witnesses inside."""
    net = nets.random_mlp([2, 4, 3, 1], 1, bias=True)
    c = np.array([0.2, -0.1])
    r2 = run_method("enumeration", net, Question(Norm.L2, Norm.L2, Ball(c, 0.7, Norm.L2)))
    ri = run_method("enumeration", net, Question(Norm.L2, Norm.L2, Ball(c, 0.7, Norm.LINF)))
    rb = run_method("enumeration", net, Question(Norm.L2, Norm.L2, Box(c - 0.7, c + 0.7)))
    assert r2.ok and ri.ok and rb.ok
    assert "clarabel" in r2.solver and "highs" in ri.solver
    assert ri.value == pytest.approx(rb.value, rel=1e-12)
    assert r2.value <= ri.value * (1 + 1e-12)
    assert np.linalg.norm(np.array(r2.witness["x"]) - c) <= 0.7


def test_l2_ball_matches_dense_sampling() -> None:
    net = nets.random_mlp([2, 5, 1], 4, bias=True)
    c = np.array([0.1, 0.3])
    q = Question(Norm.L2, Norm.L2, Ball(c, 0.5, Norm.L2)).bind(net)
    rng = np.random.default_rng(0)
    d = rng.normal(size=(20000, 2))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    pts = c + 0.5 * d * np.sqrt(rng.uniform(size=(20000, 1)))
    sampled = np.max(batch_jacobian_norms(net, pts, q))
    value = _exact(net, q)
    assert sampled <= value * (1 + 1e-12)
    assert sampled >= value * (1 - 1e-9)  # 2-D, 5 units: dense sampling hits every region


@pytest.mark.parametrize("p,qn", [(Norm.LINF, Norm.L1), (Norm.LINF, Norm.L2), (Norm.L2, Norm.L1),
                                  (Norm.L1, Norm.L2), (Norm.L2, Norm.LINF)])
def test_norm_pairs_bound_sampled_jacobians(p: Norm, qn: Norm) -> None:
    net = nets.random_mlp([3, 4, 2], 5, bias=True)
    q = Question(p, qn, Box(-1.0, 1.0)).bind(net)
    value = _exact(net, q)
    regions = enumerate_regions(net, q)
    assert value == pytest.approx(max(jacobian_norm(r.jacobian, q) for r in regions), rel=1e-12)
    pts = np.random.default_rng(1).uniform(-1, 1, size=(3000, 3))
    assert np.max(batch_jacobian_norms(net, pts, q)) <= value * (1 + 1e-12)


@pytest.mark.parametrize("out", [Logit(1), Margin(0, 1)])
def test_scalar_outputs(out: Logit | Margin) -> None:
    net = nets.random_mlp([2, 4, 2], 6, bias=True)
    for p in (Norm.L2, Norm.LINF, Norm.L1):
        q = Question(p, Norm.L2, Box(-1.0, 1.0), out).bind(net)
        c = q.output_vector(2)
        value = _exact(net, q)
        regs = enumerate_regions(net, q)
        assert value == pytest.approx(max(np.linalg.norm(c @ r.jacobian, ord=p.dual.p) for r in regs))


@pytest.mark.parametrize("channels", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_conv_maxpool_net(channels: int) -> None:
    """1x4x4 input, conv k3, ReLU, max-pool 2, dense: exact >= dense-sampled Jacobians and >= sampling;
    the witness Jacobian (with the max-pool selection) matches. Two channels: 1089 regions (~20 s)."""
    net = nets.conv_pool_net(0, channels)
    q = Question(Norm.L2, Norm.L2, Box(-1.0, 1.0)).bind(net)
    res = run_method("enumeration", net, q)
    assert res.status is Status.SOLVED and res.ok, [str(c) for c in res.checks]
    assert len(res.witness["pattern"]) == 2  # one ReLU stage, one max-pool stage
    assert res.stats["maxpool_bits"] == 2.0 * channels
    pts = np.random.default_rng(0).uniform(-1, 1, size=(20000, 16))
    dense = np.max(batch_jacobian_norms(net, pts, q))
    assert dense <= res.value * (1 + 1e-12)
    assert dense >= 0.5 * res.value
    samp = run_method("sampling", net, q)
    assert samp.value <= res.value * (1 + 1e-12)
    regions = enumerate_regions(net, q)
    assert res.value == pytest.approx(max(r.value for r in regions))
    for r in regions[:20]:
        pw = point_witness(net, r.x, q)
        assert pw.in_domain and (pw.certified or pw.margin == 0.0)


def test_maxpool_without_relu_global() -> None:
    """conv -> max-pool -> dense (no ReLU), global: the constant is the max over window selections."""
    from lipopt.network.layers import Conv2d, Dense, Flatten, MaxPool2d

    rng = np.random.default_rng(3)
    net = Network([Conv2d(rng.normal(size=(1, 1, 2, 2)), None), MaxPool2d(2), Flatten(),
                   Dense(np.array([[1.5]]), None)], (1, 3, 3))
    q = Question(Norm.L2, Norm.L2)
    value = _exact(net, q)
    # every window entry is a 1-D linear function of x: the max over entries of its norm times 1.5
    conv = net.lower()[0].dense()
    win = net.lower()[1].windows[0]
    assert value == pytest.approx(1.5 * max(np.linalg.norm(conv[i]) for i in win if i >= 0), rel=1e-12)


def test_refuses_big_nets_with_clear_message() -> None:
    net = nets.random_mlp([1, 30, 1], 0, bias=True)
    res = run_method("enumeration", net, Question(Norm.L2, Norm.L2))
    assert res.status is Status.NOT_APPLICABLE
    assert "30 ambiguous ReLUs" in res.message and "limit of 20" in res.message
    res2 = run_method("enumeration", net, Question(Norm.L2, Norm.L2), RunOptions(extra={"max_relus": 30}))
    assert res2.status is Status.SOLVED and res2.ok


def test_stable_neurons_are_fixed_by_interval_bounds() -> None:
    """A big-bias hidden layer is stable on a small box: no refusal, and the value is the affine norm."""
    rng = np.random.default_rng(0)
    w1, w2 = rng.normal(size=(40, 2)), rng.normal(size=(1, 40))
    b1 = np.where(rng.uniform(size=40) < 0.5, 10.0, -10.0)
    net = Network.from_weights([w1, w2], [b1, None])
    res = run_method("enumeration", net, Question(Norm.L2, Norm.L2, Box(-0.1, 0.1)))
    assert res.ok and res.stats["ambiguous_relus"] == 0 and res.stats["regions"] == 1
    assert res.value == pytest.approx(np.linalg.norm(w2 @ (w1 * (b1 > 0)[:, None])), rel=1e-12)


def test_identically_zero_unit_keeps_one_branch() -> None:
    """A hidden unit with zero weights and bias: one region per pattern of the others; checks pass."""
    w1 = np.array([[1.0, 2.0], [0.0, 0.0], [2.0, 1.0]])
    net = Network.from_weights([w1, [[1.0, 5.0, -1.0]]])
    res = run_method("enumeration", net, Question(Norm.L2, Norm.L2))
    assert res.ok and res.value == pytest.approx(math.sqrt(5.0))
    assert all(not r.pattern[0][1] for r in enumerate_regions(net, Question(Norm.L2, Norm.L2)))


def test_time_and_region_limits_give_lower_bound() -> None:
    net = nets.random_mlp([3, 6, 4, 2], 0, bias=True)
    q = Question(Norm.L2, Norm.L2)
    exact = _exact(net, q)
    res = run_method("enumeration", net, q, RunOptions(extra={"max_regions": 5}))
    assert res.status is Status.TIME_LIMIT and res.kind is BoundKind.LOWER and res.value == res.lower
    assert res.upper is None and res.lower is not None and res.lower <= exact * (1 + 1e-12)
    with pytest.raises(Exception, match="region limit"):
        from lipopt.exact.regions import search

        search(net, q, EnumerationOptions(max_regions=3))


def test_result_record() -> None:
    res = run_method("enumeration", nets.t3(), Question(Norm.L2, Norm.L2))
    assert res.kind is BoundKind.EXACT and res.lower == res.upper == res.value
    assert res.stats["n_lp"] >= 1 and res.stats["regions"] == 4
    names = {c.name for c in res.checks}
    assert {"witness in domain", "network Jacobian at witness = J_s", "norm at witness = value"} <= names


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), n_in=st.integers(1, 3), h1=st.integers(1, 4), h2=st.integers(0, 3),
       bias=st.booleans(), box=st.booleans())
def test_hypothesis_random_nets(seed: int, n_in: int, h1: int, h2: int, bias: bool, box: bool) -> None:
    widths = [n_in, h1, h2, 1] if h2 else [n_in, h1, 1]
    net = nets.random_mlp(widths, seed, bias)
    q = Question(Norm.L2, Norm.L2, Box(-1.0, 1.0) if box else Global()).bind(net)
    value = _exact(net, q)
    naive = math.prod(np.linalg.norm(w, 2) for w, _ in net.affine_relu_weights())
    assert value <= naive * (1 + 1e-12)
    pts = np.random.default_rng(seed).uniform(-1, 1, size=(500, n_in)) * (1 if box else 4)
    assert np.max(batch_jacobian_norms(net, pts, q)) <= value * (1 + 1e-12) + 1e-15
    low = run_method("sampling", net, q, RunOptions(extra={"n_samples": 200}))
    assert low.value <= value * (1 + 1e-12) + 1e-15


def test_import_is_light() -> None:
    code = ("import sys, lipopt.methods.enumeration, lipopt.methods.sampling, lipopt.methods.grad_ascent;"
            "bad=[m for m in ('torch','cvxpy') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
