"""LipSDP without a cone solver (lipopt.sdp.first_order; methods lipsdp-fast and lipsdp-neuron / -layer with
sdp_algorithm "first-order"): the recursion against the dense Schur complement, ECLipsE-Fast's published
value, the descent against the interior-point optimum, and every value against exact enumeration."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lipopt.methods import RunOptions, run_method
from lipopt.result import BoundKind, StopReason, Verdict
from lipopt.spec import Box, Logit, Margin, Norm, Question
from tests import nets
from tests.paths import EXTERNAL

L2 = Question(Norm.L2, Norm.L2)
CHECK = "LMI eigenvalue check (float64)"
FO = RunOptions(extra={"sdp_algorithm": "first-order"})
SOLVER = RunOptions(solver="clarabel", extra={"sdp_algorithm": "solver"})
LIPSDP_NETS = EXTERNAL / "lipsdp"


def _certified(res) -> None:
    assert res.verdict is Verdict.OK and res.kind is BoundKind.UPPER and res.value is not None, res.summary()
    eig = [c for c in res.checks if c.name.startswith(CHECK)]
    assert eig and all(c.passed for c in eig)


def test_recursion_equals_the_dense_schur_complement() -> None:
    """rho*(lam) by the backward recursion (torch) equals the float64 dense Schur complement of the
    certification module at the same multipliers (ECLipsE-Fast's, then perturbed ones that stay feasible)."""
    import torch

    from lipopt.sdp.certification import closed_form_rho
    from lipopt.sdp.first_order import _rho_tridiagonal, eclipse_fast, tridiagonal
    from lipopt.sdp.lipsdp import build_chain

    chain = build_chain(nets.random_mlp([4, 6, 5, 7, 3], 2))
    tri = tridiagonal(chain)
    assert tri is not None and tri.widths == [6, 5, 7]
    rho, lam = eclipse_fast(tri)
    rng = np.random.default_rng(0)
    for scale in (np.ones(lam.size), rng.uniform(1.0, 1.5, lam.size)):
        mult = lam * scale
        dense, _ = closed_form_rho(chain, mult)
        parts = np.split(torch.tensor(mult), np.cumsum(tri.widths)[:-1])
        rec = _rho_tridiagonal(torch, [torch.tensor(w) for w in tri.ws], torch.tensor(tri.out), list(parts))
        assert rec is not None and float(rec) == pytest.approx(dense, rel=1e-10)
    assert closed_form_rho(chain, lam)[0] == pytest.approx(rho, rel=1e-10)


def test_recursion_reports_leaving_the_domain() -> None:
    import torch

    from lipopt.sdp.first_order import _rho_tridiagonal, tridiagonal
    from lipopt.sdp.lipsdp import build_chain

    tri = tridiagonal(build_chain(nets.random_mlp([3, 4, 2], 1)))
    tiny = [torch.full((4,), 1e-9, dtype=torch.float64)]  # 2 D - O^T O is indefinite
    assert _rho_tridiagonal(torch, [torch.tensor(w) for w in tri.ws], torch.tensor(tri.out), tiny) is None


@pytest.mark.skipif(not (LIPSDP_NETS / "mnist_weights.mat").exists(), reason="no LipSDP example net")
def test_fast_reproduces_eclipse_fast_on_the_mnist_net() -> None:
    """Issue 11 quotes ECLipsE-Fast's 26.81 on LipSDP's 784-50-10 net (run with the ECLipsE package)."""
    import lipopt

    net = lipopt.load(str(LIPSDP_NETS / "mnist_weights.mat"))
    res = run_method("lipsdp-fast", net, L2)
    _certified(res)
    assert res.value == pytest.approx(26.81, abs=6e-3)
    assert res.value < run_method("naive", net, L2).value  # 31.50


@pytest.mark.skipif(not (LIPSDP_NETS / "random_weights.mat").exists(), reason="no LipSDP example net")
def test_first_order_reproduces_the_lipsdp_readme_values() -> None:
    """LipSDP's README: Neuron 36.482, Layer 39.839 (the interior-point test reproduces them too)."""
    import lipopt

    net = lipopt.load(str(LIPSDP_NETS / "random_weights.mat"))
    neuron = run_method("lipsdp-neuron", net, L2, FO)
    layer = run_method("lipsdp-layer", net, L2, FO)
    fast = run_method("lipsdp-fast", net, L2)
    for res, ref in ((neuron, 36.482), (layer, 39.839)):
        _certified(res)
        assert res.value == pytest.approx(ref, abs=6e-4)
        assert res.stats["algorithm"] == "first-order" and res.solver == "first-order (torch)"
    _certified(fast)
    assert fast.value >= layer.value * (1 - 1e-9) >= neuron.value * (1 - 1e-9)


def _questions(n_out: int) -> list[Question]:
    return [L2, Question(Norm.L2, Norm.L2, output=Logit(0)),
            Question(Norm.L2, Norm.L2, output=Margin(0, n_out - 1))]


@pytest.mark.parametrize("widths,seed", [([2, 4, 3], 0), ([2, 3, 4, 2], 1), ([3, 4, 3, 3, 2], 3)])
def test_every_first_order_value_bounds_the_exact_constant(widths: list[int], seed: int) -> None:
    """exact (enumeration) <= interior-point Neuron ~ first-order Neuron <= first-order Layer <= fast."""
    net = nets.random_mlp(widths, seed)
    for q in _questions(widths[-1]):
        exact = run_method("enumeration", net, q).value
        ipm = run_method("lipsdp-neuron", net, q, SOLVER)
        neuron = run_method("lipsdp-neuron", net, q, FO)
        layer = run_method("lipsdp-layer", net, q, FO)
        fast = run_method("lipsdp-fast", net, q)
        for res in (ipm, neuron, layer, fast):
            _certified(res)
        assert exact <= neuron.value * (1 + 1e-9)
        # the same LMI optimum from both sides: the descent cannot go below the certified optimum
        assert neuron.value >= ipm.value * (1 - 1e-6)
        assert neuron.value <= ipm.value * (1 + 1e-4)
        assert neuron.value <= layer.value * (1 + 1e-9) and layer.value <= fast.value * (1 + 1e-9)


def test_auto_uses_the_descent_on_a_large_lmi_and_the_solver_on_a_small_one() -> None:
    small = run_method("lipsdp-neuron", nets.random_mlp([2, 5, 4, 2], 0), L2)
    assert small.stats.get("algorithm") is None and small.solver == "clarabel"
    big = nets.random_mlp([6, 20, 20, 20, 2], 4)  # LMI 66 > sdp_first_order_min_size 64
    res = run_method("lipsdp-neuron", big, L2)
    _certified(res)
    assert res.stats["algorithm"] == "first-order" and res.stats["iterations"] > 0
    assert res.value <= run_method("lipsdp-fast", big, L2).value * (1 + 1e-9)
    assert res.value <= run_method("naive", big, L2).value
    low = run_method("sampling", big, L2, RunOptions(seed=0))
    assert low.value <= res.value
    chosen = run_method("lipsdp-neuron", big, L2, RunOptions(solver="clarabel"))
    assert chosen.solver == "clarabel"  # a solver the user chose is kept
    assert chosen.value == pytest.approx(res.value, rel=1e-4)


def test_a_deep_net_needs_no_pieces() -> None:
    """Depth 12: the descent takes the whole chain (the interior-point plan would split it)."""
    net = nets.random_mlp([6] + [10] * 12 + [1], 5, scale=0.6)
    res = run_method("lipsdp-neuron", net, L2, RunOptions(extra={"sdp_max_size": 30}))
    _certified(res)
    assert "pieces" not in res.stats and not any("split into" in n for n in res.notes)
    split = run_method("lipsdp-neuron", net, L2, RunOptions(extra={"sdp_max_size": 30, "sdp_chordal": "off",
                                                                   "sdp_algorithm": "solver"}))
    _certified(split)
    assert any("split into" in n for n in split.notes)
    assert res.value <= split.value * (1 + 1e-9)


def test_time_limit_keeps_a_certified_value() -> None:
    net = nets.random_mlp([8, 24, 24, 24, 2], 4)
    opts = RunOptions(time_limit=1e-6, extra={"sdp_algorithm": "first-order"})
    res = run_method("lipsdp-neuron", net, L2, opts)
    _certified(res)
    assert res.stop is StopReason.TIME_LIMIT
    fast = run_method("lipsdp-fast", net, L2)
    assert res.value <= fast.value * (1 + 1e-9)  # at worst the closed-form start


def test_local_question_with_stable_on_neurons_is_refused_by_the_descent_with_a_reason() -> None:
    net = nets.random_mlp([2, 5, 3], 5)
    q = Question(Norm.L2, Norm.L2, domain=Box(np.full(2, 0.4), np.full(2, 0.5)))
    res = run_method("lipsdp-local", net, q, FO)
    assert res.value is None and "tri-diagonal" in res.message
    assert run_method("lipsdp-local", net, q).value is not None  # the solver path (auto) answers


def test_cuda_asked_without_a_device_is_a_clear_error() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    res = run_method("lipsdp-neuron", nets.random_mlp([2, 4, 2], 0), L2,
                     RunOptions(extra={"sdp_algorithm": "first-order", "sdp_device": "cuda"}))
    assert res.value is None and res.verdict is Verdict.ERROR and "no CUDA device" in res.message


def test_unknown_algorithm_is_refused() -> None:
    res = run_method("lipsdp-neuron", nets.t1(), L2, RunOptions(extra={"sdp_algorithm": "newton"}))
    assert res.value is None and "sdp_algorithm" in res.message and "first-order" in res.message


def test_against_the_eclipse_package_when_installed() -> None:
    """ECLipsE's own implementation (PyPI eclipse-nn), where installed: the same closed form."""
    eclipse = pytest.importorskip("eclipse_nn")
    import torch

    net = nets.random_mlp([5, 8, 6, 7, 3], 9, bias=False)
    ws = [torch.tensor(w) for w, _ in net.affine_relu_weights()]
    theirs = float(eclipse.ECLipsE_Fast(ws, [0.0] * (len(ws) - 1), [1.0] * (len(ws) - 1)))
    ours = run_method("lipsdp-fast", net, L2)
    _certified(ours)
    assert ours.value == pytest.approx(theirs, rel=1e-7)
    assert math.isfinite(theirs)


def test_lbfgs_two_loop_is_the_inverse_hessian_on_a_quadratic() -> None:
    """With n A-conjugate steps s and y = A s of a quadratic (here A's eigenvectors), the L-BFGS two-loop
    recursion returns exactly -A^{-1} g (BFGS's hereditary secant property on conjugate directions)."""
    import torch

    from lipopt.sdp.first_order import _two_loop

    rng = np.random.default_rng(0)
    b = rng.normal(size=(5, 5))
    a = b @ b.T + 5 * np.eye(5)
    s = [torch.tensor(v) for v in np.linalg.eigh(a)[1].T]
    pairs = [(sk, torch.tensor(a) @ sk) for sk in s]
    g = torch.tensor(rng.normal(size=5))
    np.testing.assert_allclose(_two_loop(g, pairs).numpy(), -np.linalg.solve(a, g.numpy()), rtol=1e-8)


def test_lbfgs_and_adam_reach_the_interior_point_optimum_and_lbfgs_passes_adam_on_a_deep_net() -> None:
    """Both optimisers of the descent bound the certified interior-point optimum from above; on a deep
    chain (where Adam's smoothing and fixed steps stop short) L-BFGS with the same step budget gets
    closer to it."""
    net = nets.random_mlp([6] + [12] * 6 + [2], 2)
    ipm = run_method("lipsdp-neuron", net, L2, SOLVER)
    _certified(ipm)
    got = {}
    for opt in ("lbfgs", "adam"):
        res = run_method("lipsdp-neuron", net, L2, RunOptions(extra={
            "sdp_algorithm": "first-order", "sdp_fo_optimizer": opt, "sdp_fo_iterations": 400}))
        _certified(res)
        assert res.stats["optimizer"] == opt and opt in " ".join(res.notes)
        assert res.value >= ipm.value * (1 - 1e-6)
        got[opt] = res.value
    assert got["lbfgs"] <= ipm.value * (1 + 1e-3), got
    assert got["lbfgs"] <= got["adam"] * (1 + 1e-9), got


def test_unknown_descent_optimizer_is_refused_with_the_supported_list() -> None:
    res = run_method("lipsdp-neuron", nets.t1(), L2, RunOptions(extra={"sdp_fo_optimizer": "newton"}))
    assert res.value is None and "sdp_fo_optimizer" in res.message and "'lbfgs'" in res.message
    from lipopt.sdp.first_order import DescentOptions

    with pytest.raises(ValueError, match="lbfgs, adam"):
        DescentOptions(optimizer="sgd")
