"""Method "bab" (branch and bound over activation patterns): against region enumeration on seeded random
tiny nets, against the known exact values of formulations.md section 7, and its anytime bracket."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from lipopt.certify.witness import point_witness
from lipopt.errors import InvalidOptionsError, UnsupportedLayerError
from lipopt.exact.bab import BabSettings, bab_layers, nonneg_norm, run_bab
from lipopt.methods import RunOptions, run_method
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, LeakyReLUStage, MaxPoolStage, ReLUStage
from lipopt.norms import operator_norm
from lipopt.result import BoundKind, StopReason
from lipopt.spec import AllOutputs, Ball, Box, Global, Logit, Margin, Norm, Question
from tests import nets

L1, L2, LINF = Norm.L1, Norm.L2, Norm.LINF

CASES = [  # widths, seed, bias, domain, input norm, output norm, output
    ([2, 6, 5, 1], 0, True, "box", L2, L2, AllOutputs()),
    ([2, 6, 5, 1], 1, True, "global", LINF, LINF, AllOutputs()),
    ([2, 6, 5, 1], 2, False, "global", L1, L1, AllOutputs()),
    ([2, 6, 5, 1], 3, True, "ball", L2, L2, AllOutputs()),
    ([3, 5, 4, 2], 0, True, "box", LINF, LINF, AllOutputs()),
    ([3, 5, 4, 2], 1, True, "global", L2, L2, AllOutputs()),
    ([3, 5, 4, 2], 2, False, "box", L1, L1, AllOutputs()),
    ([3, 5, 4, 2], 3, False, "global", L2, L2, Logit(1)),
    ([3, 5, 4, 2], 4, True, "box", LINF, LINF, Margin(0, 1)),
    ([3, 5, 4, 2], 5, True, "box", LINF, L1, AllOutputs()),
    ([3, 5, 4, 2], 6, True, "linf-ball", L2, LINF, AllOutputs()),
    ([3, 8, 2], 7, True, "global", L1, L2, AllOutputs()),
]


def _domain(kind: str, n: int):
    if kind == "box":
        return Box(-1.0, 1.0)
    if kind == "ball":
        return Ball(np.full(n, 0.2), 1.5, Norm.L2)
    if kind == "linf-ball":
        return Ball(np.full(n, -0.1), 0.8, Norm.LINF)
    return Global()


@pytest.mark.parametrize("widths,seed,bias,dom,p,q,out", CASES)
def test_agrees_with_enumeration(widths, seed, bias, dom, p, q, out) -> None:
    net = nets.random_mlp(widths, seed, bias=bias)
    question = Question(p, q, _domain(dom, widths[0]), out)
    ref = run_method("enumeration", net, question)
    assert ref.ok and ref.kind is BoundKind.EXACT, ref.message
    r = run_method("bab", net, question)
    assert r.ok and r.kind is BoundKind.EXACT, (r.message, r.lower, r.upper, r.checks)
    assert math.isclose(r.value, ref.value, rel_tol=1e-6, abs_tol=1e-12), (r.value, ref.value)
    assert r.stop is StopReason.COMPLETED and all(c.passed for c in r.checks)
    # the witness is a point of the domain where the float64 Jacobian norm is the value
    pw = point_witness(net, np.asarray(r.witness["x"]), question.bind(net) if dom != "global" or bias
                       else question.with_(domain=Box(-1.0, 1.0)).bind(net))
    assert pw.certified and math.isclose(pw.value, r.lower, rel_tol=1e-12, abs_tol=1e-15)


def test_the_known_exact_values_of_section_7() -> None:
    for key in nets.exact_keys():
        r = run_method("bab", nets.network(key), nets.question(key))
        assert r.ok and r.kind is BoundKind.EXACT, (key, r.message)
        assert abs(r.value - nets.known(key)) <= max(nets.tol(key), 1e-9) * max(1.0, nets.known(key)), \
            (key, r.value, nets.known(key))


def test_t3_by_hand() -> None:
    t3 = Network.from_weights([[[1.0, 2.0], [2.0, 1.0]], [[1.0, -1.0]]])
    for norm, value in ((L2, math.sqrt(5.0)), (LINF, 3.0), (L1, 2.0)):
        r = run_method("bab", t3, Question(norm, norm, Box(-1.0, 1.0)))
        assert r.kind is BoundKind.EXACT and math.isclose(r.value, value, rel_tol=1e-9)


def test_a_time_limit_returns_a_certified_bracket_with_a_witness() -> None:
    net = nets.random_mlp([10, 40, 1], seed=3, bias=True, scale=0.5)
    q = Question(LINF, LINF, Box(-1.0, 1.0), Logit(0))
    r = run_method("bab", net, q, RunOptions(time_limit=0.3))
    assert r.ok and r.stop is StopReason.TIME_LIMIT, (r.message, r.stop)
    assert r.lower is not None and r.upper is not None and r.lower <= r.upper
    pw = point_witness(net, np.asarray(r.witness["x"]), q.bind(net))
    assert pw.certified and pw.in_domain and math.isclose(pw.value, r.lower, rel_tol=1e-12)
    hist = r.stats["history"]
    assert hist and all(len(h) == 3 for h in hist)
    ups = [h[2] for h in hist if h[2] is not None]
    lows = [h[1] for h in hist if h[1] is not None]
    assert ups == sorted(ups, reverse=True) and lows == sorted(lows)
    assert hist[-1][1] == r.lower and math.isclose(hist[-1][2], r.upper)
    # the upper side is sound: at least the largest Jacobian norm found by dense sampling
    xs = np.random.default_rng(0).uniform(-1, 1, size=(3000, 10))
    sampled = max(point_witness(net, x, q.bind(net)).value for x in xs[:300])
    assert r.upper >= sampled * (1 - 1e-12)


def test_a_node_limit_keeps_both_sides_sound() -> None:
    net = nets.random_mlp([3, 5, 4, 2], seed=0, bias=True)
    q = Question(L2, L2, Box(-1.0, 1.0))
    exact = run_method("enumeration", net, q).value
    r = run_method("bab", net, q, RunOptions(extra={"bab": {"max_nodes": 2}}))
    assert r.ok and r.lower <= exact * (1 + 1e-12) and r.upper >= exact * (1 - 1e-12)


def test_interrupt_flag_stops_with_the_bracket() -> None:
    from lipopt_solvers import interrupts

    net = nets.random_mlp([3, 5, 4, 2], seed=0, bias=True)
    interrupts.request()
    try:
        out = run_bab(net, Question(L2, L2, Box(-1.0, 1.0)).bind(net), BabSettings())
    finally:
        interrupts.clear()
    assert out.stop == "interrupted" and out.upper is not None


def test_bad_options_are_refused() -> None:
    net, q = nets.t3(), Question(L2, L2, Box(-1.0, 1.0))
    with pytest.raises(InvalidOptionsError, match="branching"):
        run_method("bab", net, q, RunOptions(extra={"bab": {"branching": "random"}}))
    with pytest.raises(InvalidOptionsError, match="max_nodes"):
        run_method("bab", net, q, RunOptions(extra={"bab": {"max_nodes": 0}}))
    with pytest.raises(InvalidOptionsError, match=r"'max_node'.*max_nodes"):
        run_method("bab", net, q, RunOptions(extra={"bab": {"max_node": 3}}))
    for bad in (-1, 2.5, True):
        with pytest.raises(InvalidOptionsError, match="climb_starts must be an integer >= 0"):
            run_method("bab", net, q, RunOptions(extra={"bab": {"climb_starts": bad}}))


def test_not_applicable_cases() -> None:
    r = run_method("bab", nets.conv_pool_net(), Question(L2, L2, Box(-1.0, 1.0)))
    assert r.kind is BoundKind.EXACT and r.value is None and "max-pooling" in r.message
    r = run_method("bab", nets.t9(), Question(L2, L2, Ball(nets.T9_X0, 0.5, L2), nominal=True))
    assert r.value is None and "nominal" in r.message


def test_affine_network_is_exact() -> None:
    net = Network.from_weights([[[1.0, -2.0], [0.5, 3.0]]])
    r = run_method("bab", net, Question(L2, L2))
    assert r.kind is BoundKind.EXACT and math.isclose(r.value, np.linalg.norm([[1.0, -2.0], [0.5, 3.0]], 2))


def test_stage_table_shares_relu_and_leaky_relu_and_refuses_max_pool() -> None:
    w1, w2 = np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([[1.0, -1.0]])
    stages = (AffineStage(w1, np.zeros(2)), LeakyReLUStage(2, 0.1), AffineStage(w2, np.zeros(1)))
    lay = bab_layers(SimpleNamespace(lower=lambda: stages, input_size=2))
    assert lay.alpha == [0.1] and np.array_equal(lay.w[0], w1) and np.array_equal(lay.w_out, w2)
    lay = bab_layers(SimpleNamespace(lower=lambda: (stages[0], ReLUStage(2), stages[2]), input_size=2))
    assert lay.alpha == [0.0]
    pool = MaxPoolStage(np.array([[0, 1]]), 2)
    with pytest.raises(UnsupportedLayerError, match="LeakyReLUStage"):
        bab_layers(SimpleNamespace(lower=lambda: (stages[0], ReLUStage(2), pool, AffineStage(
            np.ones((1, 1)), np.zeros(1))), input_size=2))


@pytest.mark.parametrize("p,q", [(L2, L2), (LINF, L1), (LINF, L2), (L2, L1), (L1, L2), (LINF, LINF)])
def test_nonneg_norm_bounds_every_matrix_below_it(p, q) -> None:
    rng = np.random.default_rng(1)
    m = np.abs(rng.normal(size=(3, 4)))
    bound = nonneg_norm(m, Question(p, q))
    assert math.isclose(bound, operator_norm(m, p, q), rel_tol=1e-12)  # exact on M >= 0
    for _ in range(20):
        j = m * rng.uniform(-1, 1, size=m.shape)
        assert operator_norm(j, p, q) <= bound * (1 + 1e-12)


@pytest.mark.parametrize("widths,seed", [([4, 12, 1], 0), ([3, 8, 8, 1], 1)])
def test_agrees_with_milp_beyond_enumeration_sizes(widths, seed) -> None:
    rng = np.random.default_rng(seed)  # the benchmark's nets: N(0, 1/fan_in) weights, small biases
    ws = [rng.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i]) for i in range(len(widths) - 1)]
    bs = [rng.normal(size=widths[i + 1]) * 0.1 for i in range(len(widths) - 1)]
    net = Network.from_weights(ws, bs)
    q = Question(LINF, LINF, Box(-1.0, 1.0), Logit(0))
    m = run_method("milp", net, q, RunOptions(time_limit=60))
    r = run_method("bab", net, q, RunOptions(time_limit=60))
    assert m.kind is BoundKind.EXACT and r.kind is BoundKind.EXACT and r.ok
    assert math.isclose(r.value, m.value, rel_tol=1e-6)


def test_one_search_per_output_row_agrees_with_enumeration() -> None:
    net = nets.random_mlp([3, 5, 4, 3], seed=8, bias=True)
    q = Question(LINF, LINF, Box(-1.0, 1.0)).bind(net)
    ref = run_method("enumeration", net, q).value
    out = run_bab(net, q, BabSettings(split_rows=True))
    assert out.stop == "completed" and len(out.stats["rows"]) == 3
    assert math.isclose(out.lower, ref, rel_tol=1e-9) and math.isclose(out.upper, ref, rel_tol=1e-6)
    pw = point_witness(net, np.asarray(out.witness["x"]), q)
    assert pw.certified and math.isclose(pw.value, out.lower, rel_tol=1e-12)
    ups = [h[2] for h in out.history if h[2] is not None]
    assert ups == sorted(ups, reverse=True)


@pytest.mark.parametrize("p,dom", [(LINF, "box"), (L2, "global")])
def test_leaky_relu_network_agrees_with_enumeration(p, dom) -> None:
    from lipopt.network import Dense, LeakyReLU

    rng = np.random.default_rng(4)
    net = Network([Dense(rng.normal(size=(5, 3)), rng.normal(size=5) * 0.5), LeakyReLU(0.2),
                   Dense(rng.normal(size=(4, 5)), rng.normal(size=4) * 0.5), LeakyReLU(0.2),
                   Dense(rng.normal(size=(2, 4)), None)], (3,))
    q = Question(p, p, _domain(dom, 3))
    ref = run_method("enumeration", net, q)
    r = run_method("bab", net, q)
    assert ref.kind is BoundKind.EXACT and r.ok and r.kind is BoundKind.EXACT
    assert math.isclose(r.value, ref.value, rel_tol=1e-6)


@pytest.mark.parametrize("seed", [4, 7, 10])
def test_multi_start_climbing_reaches_the_exact_value(seed) -> None:
    """The lower side before the search: climbing from the best samples of 32 distinct regions reaches
    the exact constant of these 5-10-10-1 nets in l-inf, where climbing from the best sample alone
    stops in a worse local maximum; every value is a certified witness, never above the constant (the
    MILP's exact value: enumeration gives the same, in 19 s a net)."""
    from lipopt.exact.bab import _Bab

    net = nets.random_mlp([5, 10, 10, 1], seed, bias=True)
    q = Question(LINF, LINF, Box(-1.0, 1.0))
    exact = run_method("milp", net, q, RunOptions(threads=1))
    assert exact.kind is BoundKind.EXACT
    got = {}
    for starts in (0, 32):
        b = _Bab(net, q, BabSettings(n_samples=200, climb_starts=starts))
        b._samples()
        n_starts = len(b.climb_from)
        assert n_starts == starts  # 200 samples hold 32 distinct regions
        assert b._climbs(60.0) and not b.climb_from
        # the witness's region first, then each start in another region
        assert b.stats["climbs"] == b.stats["climb_starts"] in (n_starts, n_starts + 1)
        pw = point_witness(net, np.asarray(b.witness["x"]), q.bind(net))
        assert pw.certified and pw.value == pytest.approx(b.lower, rel=1e-12)
        got[starts] = b.lower
    assert got[0] < exact.value * (1 - 1e-3)  # one start: a local maximum below the constant
    assert got[32] == pytest.approx(exact.value, rel=1e-9)
    assert got[32] <= exact.value * (1 + 1e-9)
