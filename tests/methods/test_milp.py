"""The MILP (method "milp") and its LP relaxation ("lp-relax"): formulations.md section 2."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt.exact.regions import enumeration_value
from lipopt.methods import RunOptions, applicable_methods, run_method
from lipopt.result import BoundKind
from lipopt.spec import AllOutputs, Box, Global, Logit, Margin, Norm, Question
from tests import nets

OPTS = RunOptions(threads=1)


def _close(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


# ------------------------------------------------------------------ section 7 networks

SECTION7 = [k for k in nets.exact_keys() if ("/linf/" in k or "/l1/" in k)]


@pytest.mark.parametrize("key", SECTION7)
def test_section7_exact(key: str) -> None:
    net, q = nets.network(key), nets.question(key)
    r = run_method("milp", net, q, OPTS)
    assert r.ok, (r.message, r.checks, r.notes)
    assert r.kind is BoundKind.EXACT
    assert _close(r.value, nets.known(key))


@pytest.mark.parametrize("domain", [Box(-1.0, 1.0), Box(np.array([0.2, -0.3]), np.array([0.6, 0.1]))])
def test_t3_linf_boxes(domain: Box) -> None:
    r = run_method("milp", nets.t3(), Question(Norm.LINF, Norm.LINF, domain), OPTS)
    assert r.kind is BoundKind.EXACT and _close(r.value, 3.0)


def test_t4_degenerate_bracket_without_cuts() -> None:
    """T4 = relu(x) - relu(2x): the closed-region MIP optimum is 2 (only at x = 0), the exact constant 1.
    Without the degenerate-pattern cuts the honest answer is the bracket [1, 2] (kind UPPER)."""
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0))
    r = run_method("milp", nets.t4(), q, RunOptions(extra={"degenerate_cuts": 0}))
    assert r.kind is BoundKind.UPPER
    assert _close(r.upper, 2.0) and _close(r.lower, 1.0)
    assert any("degenerate" in n for n in r.notes)
    assert r.ok


def test_t4_degenerate_cuts_give_exact() -> None:
    """With cuts, the degenerate incumbent patterns are excluded and the strict convention's value 1
    (the same as enumeration) is proved."""
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0))
    r = run_method("milp", nets.t4(), q, OPTS)
    assert r.kind is BoundKind.EXACT and _close(r.value, 1.0)
    assert _close(enumeration_value(nets.t4(), q.bind(nets.t4())), 1.0)


def test_t7_beta0_linf() -> None:
    """Not in general position: MIP (weak) 2, exact 1; never EXACT 2."""
    q = Question(Norm.LINF, Norm.LINF)
    r0 = run_method("milp", nets.t7(0.0), q, RunOptions(extra={"degenerate_cuts": 0}))
    assert not (r0.kind is BoundKind.EXACT and _close(r0.value, 2.0))
    assert r0.lower is not None and r0.lower <= 1.0 + 1e-9 <= r0.upper + 1e-9
    r = run_method("milp", nets.t7(0.0), q, OPTS)
    assert r.kind is BoundKind.EXACT and _close(r.value, 1.0)


def test_t6_local_and_global() -> None:
    q = Question(Norm.LINF, Norm.LINF, Box(0.0, 1.0))
    r = run_method("milp", nets.t6(), q, OPTS)
    assert r.kind is BoundKind.EXACT and _close(r.value, 0.0)
    r = run_method("milp", nets.t6(), Question(Norm.LINF, Norm.LINF), OPTS)
    assert r.kind is BoundKind.EXACT and _close(r.value, 1.0)


def test_global_with_bias_is_upper_or_proved() -> None:
    """T8 = relu(x) - relu(x + 1) has biases: the all-patterns relaxation gives an UPPER bound, and the
    result says so."""
    r = run_method("milp", nets.t8(), Question(Norm.LINF, Norm.LINF), OPTS)
    assert any("all-patterns" in n for n in r.notes)
    assert r.upper is not None and r.upper >= 1.0 - 1e-9
    assert r.lower is None or r.lower <= 1.0 + 1e-9
    assert r.kind in (BoundKind.UPPER, BoundKind.EXACT)
    if r.kind is BoundKind.EXACT:
        assert _close(r.value, 1.0)


# ------------------------------------------------------------------ random tiny nets vs enumeration

CASES = [
    ([2, 4, 3, 1], 0, True, Norm.LINF, Norm.LINF, "box"),
    ([2, 4, 3, 1], 1, True, Norm.L1, Norm.L1, "box"),
    ([3, 5, 4, 2], 2, True, Norm.LINF, Norm.LINF, "box"),
    ([3, 5, 4, 2], 3, True, Norm.L1, Norm.L1, "box"),
    ([3, 6, 2], 4, False, Norm.LINF, Norm.LINF, "global"),
    ([3, 6, 2], 5, False, Norm.L1, Norm.L1, "global"),
    ([2, 5, 4, 3], 6, True, Norm.LINF, Norm.L1, "box"),
    ([2, 5, 4, 3], 7, True, Norm.L1, Norm.LINF, "box"),
]


@pytest.mark.parametrize("case", CASES)
def test_random_vs_enumeration(case: tuple) -> None:
    widths, seed, bias, p, qn, dom = case
    net = nets.random_mlp(widths, seed, bias=bias)
    domain = Box(-1.0, 0.5) if dom == "box" else Global()
    for out in (AllOutputs(), Logit(0)):
        q = Question(p, qn, domain, out).bind(net)
        exact = enumeration_value(net, q)
        r = run_method("milp", net, q, OPTS)
        assert r.kind is BoundKind.EXACT, (r.notes, r.message)
        assert _close(r.value, exact), (r.value, exact)
        assert r.ok
        relax = run_method("lp-relax", net, q, OPTS)
        assert relax.upper >= exact * (1 - 1e-7) - 1e-9


def test_margin_output() -> None:
    net = nets.random_mlp([3, 6, 5, 3], 11)
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0), Margin(0, 2)).bind(net)
    r = run_method("milp", net, q, OPTS)
    assert r.kind is BoundKind.EXACT and _close(r.value, enumeration_value(net, q))


def test_selector_encoding_matches_split() -> None:
    net = nets.random_mlp([3, 5, 4, 3], 9)
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0))
    a = run_method("milp", net, q, OPTS)
    b = run_method("milp", net, q, RunOptions(threads=1, extra={"vector_encoding": "selector"}))
    assert a.kind is b.kind is BoundKind.EXACT and _close(a.value, b.value)


@pytest.mark.parametrize("bound_method", ["interval", "crown", "lp"])
def test_bound_methods_same_value(bound_method: str) -> None:
    net = nets.random_mlp([3, 8, 6, 1], 5, scale=0.6)
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0)).bind(net)
    r = run_method("milp", net, q, RunOptions(threads=1, extra={"bound_method": bound_method}))
    assert r.kind is BoundKind.EXACT and _close(r.value, enumeration_value(net, q))
    assert r.stats["bound_method"] == bound_method
    assert r.stats["ambiguous_neurons"] <= net.n_relus


def test_maxpool_net_vs_enumeration() -> None:
    net = nets.conv_pool_net(0)
    for p in (Norm.LINF, Norm.L1):
        q = Question(p, Norm.LINF, Box(-1.0, 1.0)).bind(net)
        r = run_method("milp", net, q, OPTS)
        assert r.kind is BoundKind.EXACT, r.notes
        assert _close(r.value, enumeration_value(net, q))


# ------------------------------------------------------------------ formulation fidelity


@pytest.mark.parametrize("which", ["mlp", "conv"])
def test_formulation_fidelity(which: str) -> None:
    """Fix x: the forward variables equal the network's stage outputs, the gradient variables equal
    torch autograd's gradient of c^T f."""
    import torch
    from lipopt_solvers import SolverOptions, solve_pyomo

    from lipopt.bounds import compute_bounds
    from lipopt.formulations.common import form_value
    from lipopt.formulations.milp import Piece, build_milp

    net = nets.random_mlp([3, 7, 5, 2], 4) if which == "mlp" else nets.conv_pool_net(2, channels=2)
    n, m = net.input_size, net.output_size
    rng = np.random.default_rng(1)
    fb = compute_bounds(net, -1.0, 1.0, "crown")
    c = rng.normal(size=m)
    for _ in range(3):
        x = rng.uniform(-0.9, 0.9, size=n)
        mm = build_milp(fb, Norm.LINF, Piece("const", c))
        mm.fix_input(x)
        out = solve_pyomo(mm.model, "highs", SolverOptions(), sense="max")
        assert out.has_incumbent
        h = x[None, :]
        from lipopt.network.network import AffineStage, ReLUStage

        for s, stage in enumerate(net.lower()[:-1]):
            if isinstance(stage, AffineStage):
                h = stage.apply(h)
            elif isinstance(stage, ReLUStage):
                h = np.maximum(h, 0)
            else:
                h = np.where(stage.windows >= 0, h[:, np.maximum(stage.windows, 0)], -np.inf).max(axis=2)
            if isinstance(stage, AffineStage):
                continue  # pre-activations are encoded only where read; the nonlinear outputs always
            got = np.array([form_value(f) for f in mm.forward.values[s]])
            assert np.allclose(got, h[0], atol=1e-6)
        xt = torch.tensor(x.reshape(net.input_shape), dtype=torch.float64, requires_grad=True)
        y = xt.reshape(1, -1)
        for stage in net.lower():
            if isinstance(stage, AffineStage):
                y = y @ torch.tensor(stage.dense().T) + torch.tensor(stage.bias)
            elif isinstance(stage, ReLUStage):
                y = torch.relu(y)
            else:
                win = torch.tensor(np.maximum(stage.windows, 0))
                y = y[0][win].max(dim=1).values.reshape(1, -1)
        (y[0] @ torch.tensor(c)).backward()
        grad = np.array([form_value(f) for f in mm.backward.grad_input])
        assert np.allclose(grad, xt.grad.numpy().reshape(-1), atol=1e-6)
        assert _close(out.objective, float(np.abs(grad).sum()), 1e-6)


# ------------------------------------------------------------------ anytime bracket, registry


def test_time_limit_bracket_valid() -> None:
    """One second on a hard instance: a bracket whose lower side is certified and whose upper side is
    above every sampled Jacobian norm (each a valid lower bound on the exact constant)."""
    from lipopt.certify.witness import point_witness

    net = nets.random_mlp([10, 40, 30, 1], 0, scale=0.4)
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0)).bind(net)
    r = run_method("milp", net, q, RunOptions(threads=1, time_limit=1.0))
    assert r.upper is not None and r.ok
    assert r.lower is None or r.lower <= r.upper
    if r.lower is not None:
        pw = point_witness(net, np.array(r.witness["x"]), q)
        assert pw.certified and _close(pw.value, r.lower, 1e-9)
    rng = np.random.default_rng(0)
    sampled = max(point_witness(net, x, q).value for x in rng.uniform(-1, 1, size=(300, 10)))
    assert sampled <= r.upper * (1 + 1e-9)
    assert r.wall_time < 15


def test_registry_and_compare() -> None:
    import lipopt

    net = nets.random_mlp([2, 4, 1], 0)
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0))
    names = applicable_methods(net, q)
    assert "milp" in names and "lp-relax" in names
    rs = lipopt.compare(net, ["milp", "lp-relax"], q)
    milp, relax = rs["milp"], rs["lp-relax"]
    assert milp.kind is BoundKind.EXACT and relax.upper >= milp.value * (1 - 1e-9)
    assert rs.consistency().passed


def test_not_applicable_l2() -> None:
    net = nets.random_mlp([2, 4, 1], 0)
    r = run_method("milp", net, Question(Norm.L2, Norm.L2, Box(-1.0, 1.0)))
    assert r.value is None and "l2" in r.message


# ------------------------------------------------------------------ direction splitting


SPLIT_CASES = [
    ([3, 6, 5, 1], 0, Norm.LINF, Logit(0)),
    ([3, 6, 5, 1], 1, Norm.L1, Logit(0)),
    ([2, 5, 4, 3], 2, Norm.LINF, AllOutputs()),
    ([4, 8, 1], 3, Norm.LINF, Logit(0)),
]


@pytest.mark.parametrize("case", SPLIT_CASES)
def test_direction_split_matches_enumeration(case: tuple) -> None:
    widths, seed, p, out = case
    net = nets.random_mlp(widths, seed)
    q = Question(p, Norm.LINF, Box(-1.0, 0.5), out).bind(net)
    exact = enumeration_value(net, q)
    r = run_method("milp", net, q, RunOptions(threads=1, extra={"direction_split": True}))
    plain = run_method("milp", net, q, OPTS)
    assert r.stats["direction_split"] is True
    assert r.kind is BoundKind.EXACT and r.ok, (r.notes, r.checks)
    assert _close(r.value, exact) and _close(r.value, plain.value)


def test_direction_split_maxpool() -> None:
    net = nets.conv_pool_net(0)
    q = Question(Norm.L1, Norm.LINF, Box(-1.0, 1.0)).bind(net)  # l1 input: 2n directions +-e_j
    r = run_method("milp", net, q, RunOptions(threads=1, extra={"direction_split": True}))
    assert r.kind is BoundKind.EXACT and _close(r.value, enumeration_value(net, q))


def test_direction_bounds_sound() -> None:
    """U(s) >= c^T J(x) s at sampled points, for every direction s (the pruning bound)."""
    from lipopt.bounds import compute_bounds
    from lipopt.mip.milp_directions import direction_bounds, direction_set

    net = nets.random_mlp([4, 7, 6, 2], 8)
    fb = compute_bounds(net, -1.0, 1.0, "crown")
    c = np.array([0.7, -1.3])
    for p in (Norm.LINF, Norm.L1):
        dirs = direction_set(4, p)
        ub = direction_bounds(fb, c, dirs)
        rng = np.random.default_rng(0)
        for x in rng.uniform(-1, 1, size=(200, 4)):
            val = dirs @ (net.jacobian(x).T @ c)
            assert np.all(val <= ub + 1e-9)


def test_direction_split_time_limit_bracket() -> None:
    from lipopt.certify.witness import point_witness

    net = nets.random_mlp([8, 24, 1], 0, scale=0.4)
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0)).bind(net)
    r = run_method("milp", net, q, RunOptions(threads=1, time_limit=2.0, extra={"direction_split": True}))
    assert r.upper is not None and r.ok and r.lower is not None and r.lower <= r.upper
    rng = np.random.default_rng(0)
    sampled = max(point_witness(net, x, q).value for x in rng.uniform(-1, 1, size=(300, 8)))
    assert sampled <= r.upper * (1 + 1e-9)


# ------------------------------------------------------------------ the bulk affine rows


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("repeated", [False, True])
def test_bulk_affine_rows_evaluate_to_the_matrix_product(sparse: bool, repeated: bool) -> None:
    """FormVector.rows builds the rows W[idx] @ f + b in bulk: at random variable values each row (as an
    expression, and as the definition row of a fresh variable) equals the numpy product of W with the
    forms' values, zero coefficients dropped, a repeated variable merged (the row-by-row path)."""
    import pyomo.environ as pyo
    import scipy.sparse as sp

    from lipopt.formulations.forms import ZERO, FormVector, const_form, form_value, var_form

    rng = np.random.default_rng(3)
    m = pyo.ConcreteModel()
    m.v = pyo.Var(range(4))
    m.y = pyo.Var()
    for j in range(4):
        m.v[j].value = float(rng.standard_normal())
    forms = [var_form(m.v[0], 2.0), ZERO, const_form(1.5), var_form(m.v[1]), var_form(m.v[2], -0.5),
             var_form(m.v[0], 3.0) if repeated else var_form(m.v[3])]
    w = rng.standard_normal((5, 6))
    w[1, 3] = 0.0
    w[2] = 0.0
    b = rng.standard_normal(5)
    idx = np.array([0, 1, 2, 4])
    rows = FormVector(forms).rows(sp.csr_array(w) if sparse else w, idx, b[idx])
    values = np.array([form_value(f) for f in forms])
    expected = w[idx] @ values + b[idx]
    for k in range(idx.size):
        assert pyo.value(rows.expr(k)) == pytest.approx(expected[k], rel=1e-12, abs=1e-12)
        m.y.value = 0.25
        assert pyo.value(rows.definition(k, m.y).args[0]) == pytest.approx(expected[k] - 0.25, abs=1e-12)
        f = rows.form(k)
        assert len({id(v) for v in f[1]}) == len(f[1]) and all(a != 0 for a in f[2])
    assert rows.counts[2] == 0 and rows.form(2)[0] == pytest.approx(b[2])  # a zero row: its bias only
    n_vars = 3 if repeated else 4  # distinct variables among the forms
    assert rows.counts[0] == n_vars and rows.counts[1] == n_vars - 1  # row 1: W[1, 3] = 0 drops v1
