"""LipSDP (lipsdp-neuron / lipsdp-layer / lipsdp-local): formulations.md 3.4 values, soundness against
region enumeration, the float64 eigen-check and its repair, and the unsound Network form (negative test)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lipopt.methods import REGISTRY, RunOptions, run_method
from lipopt.network.layers import Conv2d, Dense, Flatten, MaxPool2d, ReLU
from lipopt.network.network import Network
from lipopt.result import BoundKind, Verdict
from lipopt.spec import Ball, Box, Direction, Logit, Margin, Norm, Question
from tests import nets
from tests.paths import EXTERNAL

L2 = Question(Norm.L2, Norm.L2)
CHECK = "LMI eigenvalue check (float64)"

# formulations.md 3.4 / section 7 (analytic LipSDP-Neuron values; T3 = 9/4 from rho(t) at t = 9/8)
NEURON_VALUES = {
    "T1": (nets.t1, 1.0),
    "T2": (nets.t2, 2.0),
    "T2deep": (nets.t2_deep, 4.0),
    "T2b": (nets.t2b, 1.0),
    "T3": (nets.t3, 9.0 / 4.0),
    "T4": (nets.t4, 2.0),
    "T7(0)": (nets.t7, math.sqrt(2.0)),
    "T8": (nets.t8, 1.0),
}
LAYER_VALUES = {"T1": (nets.t1, 1.0), "T3": (nets.t3, 9.0 / 4.0), "T8": (nets.t8, 1.0)}


def _certified(res) -> None:
    assert res.verdict is Verdict.OK and res.kind is BoundKind.UPPER and res.value is not None, res.summary()
    eig = [c for c in res.checks if c.name.startswith(CHECK)]  # one per piece of a split network
    assert eig and all(c.passed for c in eig)


@pytest.mark.parametrize("key", list(NEURON_VALUES))
def test_neuron_values_of_formulations_3_4(key: str) -> None:
    make, value = NEURON_VALUES[key]
    res = run_method("lipsdp-neuron", make(), L2)
    _certified(res)
    # a certified point of the SDP is feasible: never below the SDP optimum; Clarabel is accurate to 1e-5
    assert value * (1 - 1e-9) <= res.value <= value * (1 + 1e-5)


@pytest.mark.parametrize("key", list(LAYER_VALUES))
def test_layer_values(key: str) -> None:
    make, value = LAYER_VALUES[key]
    res = run_method("lipsdp-layer", make(), L2)
    _certified(res)
    assert value * (1 - 1e-9) <= res.value <= value * (1 + 1e-5)


def test_t3_closed_form_matches_the_analytic_rho_of_t() -> None:
    """formulations.md 3.4: with T = t I, rho(t) = max(4.5 t, t/2 + t/(2t - 2)); minimum 81/16 at 9/8."""
    from lipopt.sdp.lipsdp import build_chain, closed_form_rho

    chain = build_chain(nets.t3(), normalise=False)
    for t in (1.05, 1.125, 1.5, 3.0):
        rho, _ = closed_form_rho(chain, np.array([t, t]))
        assert rho == pytest.approx(max(4.5 * t, t / 2 + t / (2 * t - 2)), rel=1e-12)
    assert closed_form_rho(chain, np.array([1.125, 1.125]))[0] == pytest.approx(81 / 16, rel=1e-12)


def test_network_form_is_below_the_true_constant_on_t8() -> None:
    """The negative test that justifies refusing the Network form as a bound (formulations.md 3.1)."""
    from lipopt.sdp.lipsdp import network_form_estimate

    net = nets.t8()
    exact = run_method("enumeration", net, L2)
    assert exact.kind is BoundKind.EXACT and exact.value == pytest.approx(nets.known("T8/l2/global"))
    est = network_form_estimate(net, L2)
    assert est < 0.5 * exact.value  # about 0 (Clarabel 5e-6): below L = 1, so not an upper bound
    neuron = run_method("lipsdp-neuron", net, L2)
    assert neuron.value >= exact.value * (1 - 1e-9)
    assert not any("network" in name for name in REGISTRY if name.startswith("lipsdp"))


def _random_cases() -> list[tuple[list[int], int, object]]:
    return [([2, 5, 4, 2], 0, None), ([2, 5, 4, 2], 1, Margin(0, 1)), ([3, 6, 1], 2, None),
            ([2, 4, 4, 3], 3, Logit(2)), ([2, 6, 3], 4, Direction(np.array([0.5, -2.0, 1.0])))]


@pytest.mark.parametrize("widths,seed,output", _random_cases())
def test_global_bounds_against_enumeration(widths: list[int], seed: int, output) -> None:
    net = nets.random_mlp(widths, seed)
    q = L2 if output is None else Question(Norm.L2, Norm.L2, output=output)
    exact = run_method("enumeration", net, q)
    assert exact.kind is BoundKind.EXACT
    neuron = run_method("lipsdp-neuron", net, q)
    layer = run_method("lipsdp-layer", net, q)
    _certified(neuron)
    _certified(layer)
    assert neuron.value >= exact.value * (1 - 1e-9)
    assert layer.value >= neuron.value * (1 - 1e-6)
    naive = run_method("naive", net, q)
    assert neuron.value <= naive.value * (1 + 1e-6)  # LipSDP-Neuron never exceeds the norm product


@pytest.mark.parametrize("widths,seed,domain", [
    ([2, 5, 4, 2], 0, Box(-0.3, 0.3)),
    ([2, 5, 4, 2], 1, Box(-0.5, 1.0)),
    ([3, 6, 1], 2, Box(-0.2, 0.4)),
    ([2, 6, 3], 3, Ball(np.array([0.2, -0.1]), 0.4, Norm.L2)),
])
def test_local_between_exact_local_and_global(widths: list[int], seed: int, domain) -> None:
    net = nets.random_mlp(widths, seed)
    q = Question(Norm.L2, Norm.L2, domain)
    glob = run_method("lipsdp-neuron", net, L2)
    loc = run_method("lipsdp-local", net, q)
    _certified(loc)
    assert loc.value <= glob.value * (1 + 1e-5)
    if isinstance(domain, Box):
        exact = run_method("enumeration", net, q)
    else:  # the exact l2 constant on the ball
        exact = run_method("miqcqp", net, q)
    assert exact.ok and exact.lower is not None  # a certified (attained) lower bound of the local constant
    assert loc.value >= exact.lower * (1 - 1e-7)
    assert loc.stats["stable_on"] + loc.stats["stable_off"] + loc.stats["unstable"] == net.n_relus


def test_local_with_every_neuron_stable_is_the_local_jacobian_norm() -> None:
    """A box inside one linear region: the slopes are fixed and lipsdp-local is the exact ||J||_2."""
    net = nets.random_mlp([2, 5, 3], 5)
    x0 = np.array([0.3, -0.2])
    q = Question(Norm.L2, Norm.L2, Box(x0 - 1e-4, x0 + 1e-4))
    loc = run_method("lipsdp-local", net, q)
    _certified(loc)
    assert loc.stats["unstable"] == 0
    jac = np.linalg.norm(net.jacobian(x0), 2)
    assert jac * (1 - 1e-9) <= loc.value <= jac * (1 + 1e-5)


def test_affine_net_is_the_spectral_norm() -> None:
    w = np.random.default_rng(7).normal(size=(3, 4))
    res = run_method("lipsdp-neuron", Network.from_weights([w]), L2)
    _certified(res)
    s = np.linalg.svd(w, compute_uv=False)[0]
    assert s * (1 - 1e-12) <= res.value <= s * (1 + 1e-5)


def test_conv_net_as_matrices() -> None:
    rng = np.random.default_rng(4)
    layers = [Conv2d(rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2)), ReLU(), Flatten(),
              Dense(rng.normal(size=(1, 8)), rng.normal(size=1))]
    net = Network(layers, (1, 3, 3), name="conv")
    exact = run_method("miqcqp", net, L2)  # exact l2 constant (certified lower bound = attained value)
    res = run_method("lipsdp-neuron", net, L2)
    _certified(res)
    assert exact.ok and exact.lower is not None and res.value >= exact.lower * (1 - 1e-9)
    assert res.value <= run_method("naive", net, L2).value * (1 + 1e-6)


def test_refusals_are_clear() -> None:
    box = Question(Norm.L2, Norm.L2, domain=Box(np.zeros(16), np.ones(16)))
    pool = run_method("lipsdp-local", nets.conv_pool_net(), box)
    assert pool.verdict is Verdict.NOT_APPLICABLE and "max-pool" in pool.message
    linf = run_method("lipsdp-neuron", nets.t3(), Question(Norm.LINF, Norm.LINF))
    assert linf.verdict is Verdict.NOT_APPLICABLE and "l2" in linf.message
    outs = run_method("lipsdp-neuron", nets.t3(), Question(Norm.L2, Norm.LINF))
    assert outs.verdict is Verdict.NOT_APPLICABLE
    glob = run_method("lipsdp-local", nets.t3(), L2)
    assert glob.verdict is Verdict.NOT_APPLICABLE and "box or ball" in glob.message


def test_perturbed_multipliers_are_caught_and_repaired() -> None:
    from lipopt_solvers import SolverOptions

    from lipopt.sdp.lipsdp import build_chain, certify, eigen_check, solve_lmi

    net = nets.random_mlp([2, 5, 4, 1], 6)
    exact = run_method("enumeration", net, L2).value
    chain = build_chain(net)
    sol = solve_lmi(chain, "neuron", "clarabel", SolverOptions())
    assert sol.rho is not None and sol.lam is not None
    bad = sol.lam * np.random.default_rng(0).uniform(1.2, 1.6, size=sol.lam.size)
    before = eigen_check(chain, sol.rho, bad)
    assert not before.passed and before.lam_max > 0  # the LMI at the solver's rho is violated
    cert = certify(chain, sol.rho, bad)
    assert cert.ok and cert.action == "repaired" and cert.rho > sol.rho
    after = eigen_check(chain, cert.rho, bad)
    assert after.passed and after.lam_max <= -after.margin
    assert chain.value(cert.rho) >= exact * (1 - 1e-9)  # the repaired value is still a bound
    # just below the repaired rho the check fails: the repair is not arbitrarily loose
    assert not eigen_check(chain, cert.rho * (1 - 1e-3), bad).passed


def test_unrepairable_multipliers_give_no_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zero multipliers: the hidden block is last^T last >= 0, no rho certifies; the record is an error."""
    import lipopt.sdp.lipsdp as lipsdp
    from lipopt.sdp.lipsdp import build_chain, certify

    net = nets.t3()
    cert = certify(build_chain(net), 1.0, np.zeros(2))
    assert not cert.ok and cert.rho is None
    real = lipsdp.solve_lmi

    def zero_multipliers(*args, **kw):
        sol = real(*args, **kw)
        sol.lam = np.zeros_like(sol.lam)
        return sol

    monkeypatch.setattr(lipsdp, "solve_lmi", zero_multipliers)
    res = run_method("lipsdp-neuron", net, L2)
    assert res.verdict is Verdict.ERROR and res.value is None and res.upper is None
    assert any(c.name == CHECK and not c.passed for c in res.checks)
    assert res.unverified_value is not None


def test_scs_values_are_certified() -> None:
    """SCS returns slightly infeasible points: the reported value is the certified (repaired) one."""
    net = nets.random_mlp([2, 5, 4, 2], 0)
    exact = run_method("enumeration", net, L2).value
    res = run_method("lipsdp-neuron", net, L2, RunOptions(solver="scs"))
    _certified(res)
    assert res.solver == "scs" and res.value >= exact * (1 - 1e-9)
    ref = run_method("lipsdp-neuron", net, L2)
    assert res.value >= ref.value * (1 - 1e-6)  # a certified SCS point is feasible: not below the optimum


def test_large_lmi_goes_to_scs_without_a_chosen_solver() -> None:
    net = nets.t3()
    opts = RunOptions(extra={"lipsdp-neuron": {"sdp_clarabel_max_size": 3}})
    res = run_method("lipsdp-neuron", net, L2, opts)
    _certified(res)
    assert res.solver == "scs" and any("sdp_clarabel_max_size" in n for n in res.notes)
    assert 9 / 4 * (1 - 1e-9) <= res.value <= 9 / 4 * (1 + 1e-3)
    chosen = run_method("lipsdp-neuron", net, L2, RunOptions(solver="clarabel", extra=opts.extra))
    assert chosen.solver == "clarabel"  # a solver the user chose is kept


def test_split_is_the_product_of_the_pieces() -> None:
    net = nets.random_mlp([2, 5, 4, 3, 2], 0)
    full = run_method("lipsdp-neuron", net, L2)
    split = run_method("lipsdp-neuron", net, L2, RunOptions(extra={"sdp_max_size": 9, "sdp_chordal": "off",
                                                                   "sdp_algorithm": "solver"}))
    _certified(split)
    assert any("split into 2 pieces" in n for n in split.notes)
    assert sum(c.passed for c in split.checks if c.name.startswith(CHECK)) == 2
    ws = [w for w, _ in net.affine_relu_weights()]
    p1 = run_method("lipsdp-neuron", Network.from_weights(ws[:2]), L2).value
    p2 = run_method("lipsdp-neuron", Network.from_weights(ws[2:]), L2).value
    assert split.value == pytest.approx(p1 * p2, rel=1e-6)
    assert split.value >= full.value * (1 - 1e-6)
    exact = run_method("enumeration", net, L2).value
    assert full.value >= exact * (1 - 1e-9)
    tiny = run_method("lipsdp-neuron", net, L2, RunOptions(extra={"sdp_max_size": 1, "sdp_chordal": "off",
                                                                  "sdp_algorithm": "solver"}))
    assert tiny.verdict is Verdict.NOT_APPLICABLE and "sdp_max_size" in tiny.message


LIPSDP_NETS = EXTERNAL / "lipsdp"


@pytest.mark.skipif(not (LIPSDP_NETS / "random_weights.mat").exists(), reason="no LipSDP example net")
def test_lipsdp_readme_values_on_random_weights() -> None:
    """LipSDP's README (formulations.md 3.3): Layer 39.839, Neuron 36.482, 2-layer pieces (Neuron) 37.668."""
    import lipopt

    net = lipopt.load(str(LIPSDP_NETS / "random_weights.mat"))
    neuron = run_method("lipsdp-neuron", net, L2)
    layer = run_method("lipsdp-layer", net, L2)
    split = RunOptions(extra={"sdp_max_size": 41, "sdp_chordal": "off", "sdp_algorithm": "solver"})
    pieces = run_method("lipsdp-neuron", net, L2, split)
    for res, ref in ((neuron, 36.482), (layer, 39.839), (pieces, 37.668)):
        _certified(res)
        assert res.value == pytest.approx(ref, abs=6e-4)  # the README prints 3 decimals
    assert any("split into 2 pieces (affine stages 0-1, 2-3)" in n for n in pieces.notes)


@pytest.mark.skipif(not (LIPSDP_NETS / "random_weights.mat").exists(), reason="no LipSDP example net")
@pytest.mark.parametrize("solver,limit", [("clarabel", 0.3), ("clarabel", 1.0), ("scs", 0.05)])
def test_time_limited_solves_are_certified_or_carry_no_bound(solver: str, limit: float) -> None:
    """A solver stopped early returns an iterate: its value is reported only when it certifies."""
    import lipopt

    net = lipopt.load(str(LIPSDP_NETS / "random_weights.mat"))
    res = run_method("lipsdp-neuron", net, L2, RunOptions(solver=solver, time_limit=limit))
    if res.value is None:
        assert res.upper is None and res.stop.value == "time_limit"
        failed = [c for c in res.checks if c.name.startswith(CHECK) and not c.passed]
        assert failed or "multipliers" in res.message  # it says why there is no bound
    else:
        _certified(res)
        assert res.value >= 36.482 * (1 - 1e-5)  # never below the LipSDP optimum (README 36.482)


@pytest.mark.parametrize("form", ["neuron", "layer"])
def test_chordal_form_equals_the_dense_form(form: str) -> None:
    """Block tri-diagonal M: the clique decomposition is exact, so both forms give the same optimum."""
    from lipopt_solvers import SolverOptions

    from lipopt.sdp.lipsdp import build_chain, certify, chordal_size, is_block_tridiagonal, solve_lmi

    net = nets.random_mlp([3, 10, 10, 10, 10, 1], 1)
    chain = build_chain(net)
    assert is_block_tridiagonal(chain) and chordal_size(chain) == 20 and chain.size == 43
    vals = []
    for chordal in (False, True):
        sol = solve_lmi(chain, form, "clarabel", SolverOptions(), chordal=chordal)
        cert = certify(chain, sol.rho, sol.lam)
        assert cert.ok
        vals.append(chain.value(cert.rho))
    assert vals[1] == pytest.approx(vals[0], rel=1e-6)
    method = f"lipsdp-{form}"
    on = run_method(method, net, L2, RunOptions(extra={"sdp_chordal": "on"}))
    _certified(on)
    assert on.stats["chordal"] and on.stats["cones"] == 4 and on.value == pytest.approx(vals[0], rel=1e-6)
    assert on.value <= run_method("naive", net, L2).value * (1 + 1e-6)


def test_chordal_split_plan_counts_cliques() -> None:
    from lipopt.sdp.lipsdp import LipSDPOptions, plan_pieces

    shapes = [(64, 10)] + [(64, 64)] * 7 + [(1, 64)]  # 10-64x8-1: dense LMI 522, cliques of 128
    dense = plan_pieces(shapes, LipSDPOptions(sdp_max_size=400), chordal=False)
    assert isinstance(dense, list) and len(dense) == 2
    assert plan_pieces(shapes, LipSDPOptions(sdp_max_size=400), chordal=True) == [(0, 8)]


def test_indefinite_hidden_block_is_re_solved_with_a_margin(monkeypatch: pytest.MonkeyPatch) -> None:
    """Multipliers that leave the hidden block indefinite (no rho repairs them) trigger a re-solve asking
    for a strictly negative hidden block; the new multipliers are certified against the original LMI."""
    import lipopt.sdp.lipsdp as lipsdp

    real = lipsdp.solve_lmi
    margins = []

    def first_call_broken(*args, **kw):
        sol = real(*args, **kw)
        margins.append(kw.get("hidden_margin", 0.0))
        if len(margins) == 1:
            sol.lam = 0.85 * sol.lam  # T3: -2 lam I + W2^T W2 has eigenvalue 2 - 1.7 lam* > 0
        return sol

    monkeypatch.setattr(lipsdp, "solve_lmi", first_call_broken)
    res = run_method("lipsdp-neuron", nets.t3(), L2)
    _certified(res)
    assert len(margins) == 2 and margins[0] == 0.0 and margins[1] > 0 and res.stats["hidden_margin"] > 0
    assert any("re-solved" in n for n in res.notes)
    assert 9 / 4 * (1 - 1e-9) <= res.value <= 3 * math.sqrt(2)  # sound, and below the naive product


def test_rebalanced_chain_is_a_congruence() -> None:
    """M'(rho s^2, lam s^2 d^2) = s^2 D M(rho, lam) D: the rebalanced LMI is feasible exactly when the
    original is, and its solution maps back."""
    from lipopt.sdp.lipsdp import balanced, build_chain, lmi_matrix

    chain = build_chain(nets.random_mlp([3, 6, 5, 4, 2], 8))
    rng = np.random.default_rng(1)
    rho, lam = 3e-5, rng.uniform(1e-6, 1e-2, size=chain.n_hidden)
    bch, s2, d2 = balanced(chain, rho, lam)
    dmat = np.diag(np.r_[np.ones(chain.n0), np.sqrt(d2)])
    lhs = lmi_matrix(bch, rho * s2, lam * s2 * d2)
    rhs = s2 * dmat @ lmi_matrix(chain, rho, lam) @ dmat
    assert np.allclose(lhs, rhs, rtol=1e-12, atol=1e-12 * np.abs(rhs).max())
    assert 0.25 <= rho * s2 <= 4.0  # rho about 1 after rebalancing


def _pool_net_parts(seed: int = 3) -> tuple[list, list]:
    """conv 1->2 k2, relu, conv 2->2 k2, relu | max-pool k2 stride 1 | flatten, dense 8->3, relu, dense 3->1
    on 1x5x5: the pool's windows overlap, the middle input of each 3x3 map lies in 4 of them."""
    rng = np.random.default_rng(seed)
    first = [Conv2d(rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2)), ReLU(),
             Conv2d(rng.normal(size=(2, 2, 2, 2)), rng.normal(size=2)), ReLU()]
    second = [Flatten(), Dense(rng.normal(size=(3, 8)), rng.normal(size=3)), ReLU(),
              Dense(rng.normal(size=(1, 3)), rng.normal(size=1))]
    return first, second


@pytest.mark.parametrize("method", ["lipsdp-neuron", "lipsdp-fast"])
def test_maxpool_net_is_the_product_of_its_segments(method: str) -> None:
    """Avant & Morgansen's treatment: LipSDP per affine-ReLU block times the pool's exact l2 constant
    (here 2 = sqrt(4 windows)), computed here from the two blocks run as networks of their own."""
    first, second = _pool_net_parts()
    net = Network([*first, MaxPool2d(2, 1), *second], (1, 5, 5), name="conv-pool-overlap")
    res = run_method(method, net, L2)
    _certified(res)
    assert res.stats["pool_constants"] == [2.0]
    assert any("Avant & Morgansen" in n for n in res.notes)
    a = run_method(method, Network([*first[:-1], Flatten()], (1, 5, 5)), L2).value
    b = run_method(method, Network(second, (2, 2, 2)), L2).value
    assert res.value == pytest.approx(a * 2.0 * b, rel=1e-6)
    assert res.value <= run_method("naive", net, L2).value * (1 + 1e-9)
    low = run_method("sampling", net, L2, RunOptions(seed=0))
    assert low.value is not None and low.value <= res.value


def test_maxpool_bound_is_above_the_exact_constant() -> None:
    net = nets.conv_pool_net(seed=2, channels=2)
    exact = run_method("enumeration", net, L2)
    res = run_method("lipsdp-neuron", net, L2)
    _certified(res)
    assert exact.kind is BoundKind.EXACT and exact.value <= res.value * (1 + 1e-9)
