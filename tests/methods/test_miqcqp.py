"""The MIQCQP upper- and lower-bound problems (formulations.md section 1; tests of section 7)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lipopt.methods import RunOptions, run_method
from lipopt.result import BoundKind
from lipopt.spec import Ball, Box, Direction, Global, Logit, Norm, Question
from tests import nets

pytest.importorskip("pyscipopt")

from lipopt.methods.miqcqp import run_lb, run_ub

OPTS = RunOptions(time_limit=30)
# the LB problem alone, without the sampled warm start (which would certify the exact value by itself)
LB_ONLY = {"warm_start": False, "cutoff": False, "prior_bounds": False}
#: the models alone: no sampled warm start, no prior bounds of the cheap methods
MODELS_ONLY = {"warm_start": False, "prior_bounds": False}


def _close(a: float, b: float, rtol: float = 1e-6) -> bool:
    return abs(a - b) <= rtol * max(1.0, abs(b))


# ------------------------------------------------------------------------------ known values (T1-T9c)


@pytest.mark.parametrize("key", [
    "T1/l2/global", "T3/l2/global", "T3/linf/global", "T3/l1/global", "T3/linf/box", "T4/l2/global",
    "T5/l2/global", "T6/l2/global", "T7(0)/l2/global", "T7(0)/linf/global", "T7(0.1)/l2/global",
    "T7(0.1)/linf/global", "T8/l2/global", "T9c/l2/global", "T2deep/l2/global", "T2b/l2/global",
])
def test_known_exact_values(key: str) -> None:
    r = run_method("miqcqp", nets.network(key), nets.question(key), OPTS)
    assert r.ok, (r.message, [str(c) for c in r.checks])
    assert r.kind is BoundKind.EXACT
    tol = max(nets.tol(key), 1e-6)
    assert _close(r.value, nets.known(key), tol)
    assert r.lower <= nets.known(key) + tol and r.upper >= nets.known(key) - tol


@pytest.mark.parametrize("key,weak_key", [
    ("T4/l2/box/weak", "T4/l2/global"),
])
def test_ub_problem_on_a_box_gives_the_closed_region_value(key: str, weak_key: str) -> None:
    """P_UB on a box containing 0 is the closed-region (weak) maximum; P_LB the exact value."""
    net, q = nets.network(key), nets.question(key)
    r_ub = run_ub(net, q.bind(net), OPTS)
    assert _close(r_ub.stats["ub"]["bound"], nets.known(key))
    assert _close(r_ub.upper, nets.known(key))
    r_lb = run_lb(net, q.bind(net), RunOptions(time_limit=30, extra=LB_ONLY))
    assert _close(r_lb.lower, nets.known(weak_key))


@pytest.mark.parametrize("net_fn,norm,weak,exact", [
    (nets.t5, Norm.L2, 1.0, 0.0),
    (nets.t7, Norm.L2, math.sqrt(2.0), 1.0),
    (nets.t7, Norm.LINF, 2.0, 1.0),
])
def test_degenerate_nets_on_a_box(net_fn, norm: Norm, weak: float, exact: float) -> None:
    """T5 and T7 (beta = 0) on [-1, 1]^n: UB = weak value, LB = exact value, bracket [exact, weak]."""
    net = net_fn()
    q = Question(norm, norm, Box(-1.0, 1.0)).bind(net)
    r_ub = run_ub(net, q, OPTS)
    assert _close(r_ub.stats["ub"]["bound"], weak)
    r_lb = run_lb(net, q, RunOptions(time_limit=30, extra=LB_ONLY))
    assert _close(r_lb.stats["lb"]["objective"], exact) and _close(r_lb.lower, exact)
    r = run_method("miqcqp", net, q, OPTS)
    assert r.ok and r.kind is BoundKind.UPPER
    assert _close(r.lower, exact) and _close(r.upper, weak)
    assert any("general position" in n or "degenerate" in n for n in r.notes)


@pytest.mark.parametrize("net_fn,exact", [(nets.t4, 1.0), (nets.t5, 0.0), (nets.t7, 1.0)])
def test_global_compactification_excludes_the_origin(net_fn, exact: float) -> None:
    """On the global question the input set is the cube's surface (bias-free): P_UB is exact there."""
    net = net_fn()
    r = run_ub(net, Question(Norm.L2, Norm.L2).bind(net), OPTS)
    assert r.stats["input_set"] == "sphere"
    assert _close(r.stats["ub"]["bound"], exact) and r.kind is BoundKind.EXACT


@pytest.mark.parametrize("domain", [Global(), Box(-1.0, 1.0)])
@pytest.mark.parametrize("eps,expected", [(0.01, math.sqrt(2.0)), (1 / 30 - 1e-4, math.sqrt(2.0)),
                                          (1 / 30 + 1e-4, 1.0), (0.05, 1.0)])
def test_t7_epsilon_jump(domain, eps: float, expected: float) -> None:
    """T7 with beta = 0.1: LB_eps = sqrt 2 for eps <= 1/30, 1 for eps > 1/30 (formulations.md 1.2)."""
    net = nets.t7(0.1)
    q = Question(Norm.L2, Norm.L2, domain).bind(net)
    r = run_lb(net, q, RunOptions(time_limit=30, extra={**LB_ONLY, "epsilon": eps}))
    assert _close(r.stats["lb"]["objective"], expected, 1e-6)
    assert _close(r.lower, expected, 1e-9)  # certified by an interior point of the region
    assert r.stats["lb_model"]["epsilon_min_used"] == pytest.approx(eps)


# ------------------------------------------------------------------------------ random tiny nets


def _enum(net, q) -> float:
    from lipopt.methods.enumeration import enumeration_value

    return enumeration_value(net, q.bind(net))


QUESTIONS = {
    "global l2": Question(Norm.L2, Norm.L2),
    "global l2, logit 0": Question(Norm.L2, Norm.L2, output=Logit(0)),
    "box l2": Question(Norm.L2, Norm.L2, Box(-0.5, 1.0)),
    "l2 ball": Question(Norm.L2, Norm.L2, Ball([0.2, -0.3, 0.1], 0.8, Norm.L2)),
    "linf ball, linf": Question(Norm.LINF, Norm.LINF, Ball([0.2, -0.3, 0.1], 0.8, Norm.LINF)),
    "global linf->l2": Question(Norm.LINF, Norm.L2),
    "global l1, c": Question(Norm.L1, Norm.L1, output=Direction([1.0, -2.0])),
}


@pytest.mark.parametrize("qname", list(QUESTIONS))
@pytest.mark.parametrize("seed", [0, 1])
def test_random_nets_match_enumeration(qname: str, seed: int) -> None:
    net = nets.random_mlp([3, 4, 4, 2], seed)
    q = QUESTIONS[qname]
    exact = _enum(net, q)
    r = run_method("miqcqp", net, q, OPTS)
    assert r.ok, (r.message, [str(c) for c in r.checks])
    assert r.lower <= exact * (1 + 1e-9) + 1e-9
    assert r.upper >= exact * (1 - 1e-6) - 1e-9
    if r.kind is BoundKind.EXACT:
        assert _close(r.value, exact, 1e-6)


def test_brackets_contain_the_exact_value_without_warm_start() -> None:
    """P_UB then P_LB alone (no sampling) on random nets with biases, global l2."""
    for seed in range(3):
        net = nets.random_mlp([2, 5, 4, 1], seed + 10)
        q = Question(Norm.L2, Norm.L2)
        exact = _enum(net, q)
        r = run_method("miqcqp", net, q, RunOptions(time_limit=30, extra=MODELS_ONLY))
        assert r.ok
        assert r.lower <= exact * (1 + 1e-9) + 1e-9 <= r.upper * (1 + 1e-6) + 2e-9
        assert r.kind is BoundKind.EXACT and _close(r.value, exact)


@pytest.mark.parametrize("extra", [
    {"bounds": "interval"}, {"bounds": "crown"}, {"fix_stable": False}, {"symmetry": False},
    {"sign_split": False}, {"direction_bounds": "interval"}, {"global_radius": 5.0}, {"local_search": False},
])
def test_devices_do_not_change_the_value(extra: dict) -> None:
    net = nets.random_mlp([3, 5, 4, 2], 3)
    q = Question(Norm.L2, Norm.L2)
    exact = _enum(net, q)
    r = run_method("miqcqp", net, q, RunOptions(time_limit=30, extra=extra))
    assert r.ok and r.kind is BoundKind.EXACT and _close(r.value, exact)


def test_one_second_time_limit_gives_a_valid_bracket() -> None:
    net = nets.random_mlp([5, 14, 14, 3], 7, scale=0.7)
    q = Question(Norm.L2, Norm.L2)
    r = run_method("miqcqp", net, q, RunOptions(time_limit=1.0))
    assert r.ok and r.lower is not None and r.upper is not None
    assert r.wall_time < 10
    naive = run_method("naive", net, q)
    samp = run_method("sampling", net, q, RunOptions(time_limit=2))
    if naive.ok:
        assert r.lower <= naive.upper * (1 + 1e-9)
    if samp.ok:
        assert r.upper >= samp.lower * (1 - 1e-6)


def test_not_applicable_cases() -> None:
    net = nets.t3()
    two_out = nets.random_mlp([2, 3, 2], 0)
    assert run_method("miqcqp", two_out, Question(Norm.L1, Norm.L1)).status.value == "not_applicable"
    r = run_method("miqcqp", net, Question(Norm.L2, Norm.L2, Ball([0.0, 0.0], 1.0, Norm.L2), nominal=True))
    assert r.status.value == "not_applicable"
    # max-pool is encoded now (test_max_pool_nets_match_enumeration); what stays refused is refused for
    # max-pool nets too, with the reason
    pool = nets.overlapping_pool_net(0, relu_first=False, n_out=2)
    r = run_method("miqcqp", pool, Question(Norm.L1, Norm.L1))
    assert r.status.value == "not_applicable" and "absolute values of every output" in r.message
    r = run_method("miqcqp", pool, Question(Norm.L2, Norm.L2, Ball(np.zeros(12), 1.0, Norm.L2), nominal=True))
    assert r.status.value == "not_applicable" and "nominal" in r.message


def test_result_reports_epsilon_and_input_set() -> None:
    net = nets.t7()
    r = run_method("miqcqp", net, Question(Norm.L2, Norm.L2, Box(-1.0, 1.0)), OPTS)
    assert any("eps" in n for n in r.notes)
    assert any("input set" in n for n in r.notes)
    assert r.stats["lb_model"]["epsilon_min_used"] > 0
    assert np.isfinite(r.stats["ub_model"]["fallback_upper"])


# ------------------------------------------------------------------------------ max-pool (stage encoding)


POOL_QUESTIONS = {
    "global l2": Question(Norm.L2, Norm.L2),
    "box l2": Question(Norm.L2, Norm.L2, Box(-0.5, 1.0)),
    "linf ball, linf": Question(Norm.LINF, Norm.LINF, Ball(np.full(12, 0.3), 0.5, Norm.LINF)),
}


@pytest.mark.parametrize("qname", list(POOL_QUESTIONS))
@pytest.mark.parametrize("net_args", [(0, False, 2), (1, False, 2), (1, True, 1)],
                         ids=["pool-relu-2out-s0", "pool-relu-2out-s1", "relu-pool-1out-s1"])
def test_max_pool_nets_match_enumeration(net_args: tuple, qname: str) -> None:
    """conv -> max-pool (overlapping windows) -> ReLU and conv -> ReLU -> max-pool: miqcqp is EXACT and
    equals region enumeration; miqcqp-ub >= exact >= miqcqp-lb (no warm start: the models' own values)."""
    net = nets.overlapping_pool_net(*net_args)
    q = POOL_QUESTIONS[qname]
    exact = _enum(net, q)
    r = run_method("miqcqp", net, q, RunOptions(time_limit=30, extra=MODELS_ONLY))
    assert r.ok, (r.message, [str(c) for c in r.checks])
    assert r.kind is BoundKind.EXACT and _close(r.value, exact, 1e-6)
    assert r.stats["ub_model"]["pool_binaries"] > 0
    r_ub = run_method("miqcqp-ub", net, q, RunOptions(time_limit=30, extra=MODELS_ONLY))
    r_lb = run_method("miqcqp-lb", net, q, RunOptions(time_limit=30, extra=LB_ONLY))
    assert r_ub.ok and r_lb.ok
    assert r_ub.upper >= exact * (1 - 1e-6) - 1e-9
    assert r_lb.lower <= exact * (1 + 1e-9) + 1e-9
    assert r_lb.lower >= exact * (1 - 1e-6)  # P_LB,eps finds the maximising region (eps is tiny here)


@pytest.mark.slow
def test_two_channel_conv_pool_net_matches_enumeration() -> None:
    """1x4x4 input, conv 2 channels 3x3, ReLU, max-pool 2x2, dense -> 1, global l2 (enumeration ~12 s)."""
    net = nets.conv_pool_net(0, channels=2)
    q = Question(Norm.L2, Norm.L2)
    exact = _enum(net, q)
    r = run_method("miqcqp", net, q, RunOptions(time_limit=60, extra=MODELS_ONLY))
    assert r.ok and r.kind is BoundKind.EXACT and _close(r.value, exact, 1e-6)


def test_max_pool_tie_cuts_close_overlapping_windows() -> None:
    """Two overlapping windows choosing different shared entries is a tie (no interior): without the cuts
    P_UB reaches such a degenerate pattern on this net; with them its dual bound is the exact value."""
    from lipopt.formulations.miqcqp import MiqcqpConfig, build_model

    net = nets.overlapping_pool_net(1, relu_first=True, n_out=1)
    q = Question(Norm.L2, Norm.L2, Box(-0.5, 1.0)).bind(net)
    mm = build_model(net, q, MiqcqpConfig(problem="ub"))
    assert mm.stats["tie_cuts"] > 0 and mm.stats["encoding"] == "stages (max-pool)"
    r = run_ub(net, q, RunOptions(time_limit=30, extra=MODELS_ONLY))
    assert _close(r.stats["ub"]["bound"], _enum(net, q), 1e-6)


@pytest.mark.parametrize("sparse", [False, True])
def test_lifted_stages_are_the_homogenised_network(sparse: bool) -> None:
    """F(x, t) = t f(x / t) for t > 0, on dense and CSR affine stages (the lifted chain of the global
    question with biases), with the same max-pool winners as f at x / t."""
    import dataclasses

    import scipy.sparse as spm

    from lipopt.formulations.miqcqp_pool import lifted_stages
    from lipopt.network.network import stage_forward
    from lipopt.network.stages import AffineStage

    net = nets.overlapping_pool_net(1, relu_first=True, n_out=2)
    stages = net.lower()
    if sparse:
        stages = tuple(dataclasses.replace(s, weight=spm.csr_matrix(s.dense())) if isinstance(s, AffineStage)
                       else s for s in stages)
    lifted = lifted_stages(stages)
    rng = np.random.default_rng(0)
    x, t = rng.normal(size=(5, 12)) * 2.0, rng.uniform(0.1, 1.0, size=(5, 1))
    outs, states = stage_forward(lifted, np.hstack([x, t]))
    _, ref_states = stage_forward(net.lower(), x / t)
    np.testing.assert_allclose(outs[-1], t * net.forward(x / t), rtol=1e-12, atol=1e-12)
    for s, r in zip(states, ref_states, strict=True):
        if s is not None:
            np.testing.assert_array_equal(s[:, :-1], r)


def test_every_run_records_which_side_closed_it_and_why() -> None:
    """stats["closure"] (issue 13): a closed global run names the sides that met; an open one names
    P_UB's stop; the spurious closed-region optimum on the compactification's far-field face t = 0 is
    named as such (the diagnosis of ExLipBaB's wine net, which stays open)."""
    from lipopt.methods.miqcqp import closure

    net = nets.random_mlp([3, 6, 5, 1], 0)
    done = run_method("miqcqp", net, Question(Norm.L2, Norm.L2))
    assert done.kind is BoundKind.EXACT
    c = done.stats["closure"]
    assert c["closed"] and c["upper_from"] in ("P_UB dual bound", "bound propagation") and "met" in c["why"]
    assert c["lower_from"]
    open_run = done.__class__.from_bracket("miqcqp", BoundKind.EXACT, 1.74, 1.77)
    face = closure(open_run, {"ub": {"termination": "optimal", "objective": 1.77, "bound": 1.77,
                                     "incumbent_t": 0.0, "incumbent_degenerate": False}}, False)
    assert not face["closed"] and face["upper_from"] == "P_UB dual bound" and "face t = 0" in face["why"]
    limited = closure(open_run, {"ub": {"termination": "time_limit", "bound": 2.5}}, False)
    assert "stopped by time_limit" in limited["why"] and limited["upper_from"] == "bound propagation"
