"""Tests of the solver layer (lipopt_solvers): catalog, options, outcome, and every installed backend
against a small library of problems with known optimal values."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any, ClassVar

import lipopt_solvers as ls
import pytest
from lipopt_solvers import Capability, SolverOptions, Termination

HEAVY = ("pyomo", "cvxpy", "highspy", "pyscipopt", "gurobipy", "torch")


def _solvers(capability: Capability, interface: str | tuple[str, ...]) -> list[Any]:
    """Every catalog solver with ``capability`` through ``interface``; missing ones are skipped."""
    interfaces = (interface,) if isinstance(interface, str) else interface
    params = []
    for name, info in ls.SOLVERS.items():
        if info.interface not in interfaces or not info.supports(capability):
            continue
        reason = f"{name} ({info.package}) not installed"
        if info.is_installed() and not info.licensed():
            reason = f"{name}: {info.licence()}"
        marks = [] if info.licensed() else [pytest.mark.skip(reason=reason)]
        params.append(pytest.param(name, marks=marks, id=name))
    return params


# ----------------------------------------------------------------------------- problem library
def lp_model() -> Any:  # max x + y, x + 2y <= 3, x - y <= 1, x, y >= 0 -> 7/3 at (5/3, 2/3)
    pe = pytest.importorskip("pyomo.environ")
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(0, None))
    m.y = pe.Var(bounds=(0, None))
    m.c1 = pe.Constraint(expr=m.x + 2 * m.y <= 3)
    m.c2 = pe.Constraint(expr=m.x - m.y <= 1)
    m.obj = pe.Objective(expr=m.x + m.y, sense=pe.maximize)
    return m


def knapsack_model() -> Any:  # 0/1 knapsack, optimum 30 (brute force)
    pe = pytest.importorskip("pyomo.environ")
    v, w = [10, 13, 7, 8, 9], [3, 4, 2, 3, 3]
    m = pe.ConcreteModel()
    m.x = pe.Var(range(5), domain=pe.Binary)
    m.cap = pe.Constraint(expr=sum(w[i] * m.x[i] for i in range(5)) <= 9)
    m.obj = pe.Objective(expr=sum(v[i] * m.x[i] for i in range(5)), sense=pe.maximize)
    return m


def miqcqp_model() -> Any:
    """max x^2 + y^2 (nonconvex maximisation) with a bilinear binary*continuous equality.

    b = 0: z = 0, y <= 1, box -> 2^2 + 1^2 = 5;  b = 1: z = y, x + y <= 2 -> (-1, 3) gives 10.
    """
    pe = pytest.importorskip("pyomo.environ")
    m = pe.ConcreteModel()
    m.x = pe.Var(bounds=(-1, 2))
    m.y = pe.Var(bounds=(-1, 3))
    m.z = pe.Var(bounds=(-1, 3))
    m.b = pe.Var(domain=pe.Binary)
    m.bil = pe.Constraint(expr=m.z == m.b * m.y)
    m.c1 = pe.Constraint(expr=m.x + m.z <= 2)
    m.c2 = pe.Constraint(expr=m.y <= 1 + 2 * m.b)
    m.obj = pe.Objective(expr=m.x**2 + m.y**2, sense=pe.maximize)
    return m


def hard_knapsack_model(n: int = 120, m_rows: int = 8, seed: int = 1) -> Any:
    """Multi-dimensional knapsack that HiGHS/SCIP do not close in a few hundredths of a second."""
    pe = pytest.importorskip("pyomo.environ")
    np = pytest.importorskip("numpy")
    rng = np.random.default_rng(seed)
    w = rng.integers(20, 100, size=(m_rows, n))
    v = rng.integers(20, 100, size=n)
    m = pe.ConcreteModel()
    m.x = pe.Var(range(n), domain=pe.Binary)
    m.rows = pe.ConstraintList()
    for k in range(m_rows):
        m.rows.add(sum(int(w[k, i]) * m.x[i] for i in range(n)) <= int(w[k].sum() // 2))
    m.obj = pe.Objective(expr=sum(int(v[i]) * m.x[i] for i in range(n)), sense=pe.maximize)
    return m


def infeasible_model() -> Any:
    pe = pytest.importorskip("pyomo.environ")
    m = pe.ConcreteModel()
    m.x = pe.Var(domain=pe.Binary)
    m.y = pe.Var(bounds=(0, 1))
    m.c = pe.Constraint(expr=m.x + m.y >= 3)
    m.obj = pe.Objective(expr=m.x + m.y, sense=pe.maximize)
    return m


def sdp_problem() -> Any:  # min t s.t. [[t, 1], [1, t]] >> 0 -> 1
    cp = pytest.importorskip("cvxpy")
    t = cp.Variable()
    X = cp.Variable((2, 2), symmetric=True)
    return cp.Problem(cp.Minimize(t), [X == cp.bmat([[t, 1], [1, t]]), X >> 0])


def socp_problem() -> Any:  # distance from (3, 4) to {x1 + x2 <= 0} -> 7 / sqrt(2)
    cp = pytest.importorskip("cvxpy")
    x = cp.Variable(2)
    return cp.Problem(cp.Minimize(cp.norm(x - [3.0, 4.0], 2)), [x[0] + x[1] <= 0])


def lp_cvxpy_problem() -> Any:  # the LP above, as a cvxpy problem -> 7/3
    cp = pytest.importorskip("cvxpy")
    x = cp.Variable(2, nonneg=True)
    return cp.Problem(cp.Maximize(x[0] + x[1]), [x[0] + 2 * x[1] <= 3, x[0] - x[1] <= 1])


PYOMO_LIBRARY: list[tuple[str, Capability, Callable[[], Any], float]] = [
    ("lp", Capability.LP, lp_model, 7 / 3),
    ("knapsack", Capability.MILP, knapsack_model, 30.0),
    ("miqcqp", Capability.MIQCQP, miqcqp_model, 10.0),
]
CVXPY_LIBRARY: list[tuple[str, Capability, Callable[[], Any], float]] = [
    ("lp", Capability.LP, lp_cvxpy_problem, 7 / 3),
    ("socp", Capability.SOCP, socp_problem, 7 / math.sqrt(2)),
    ("sdp", Capability.SDP, sdp_problem, 1.0),
]


def _cases(library: list, interface: str | tuple[str, ...]) -> list[Any]:
    cases = []
    for pname, cap, build, value in library:
        for p in _solvers(cap, interface):
            cases.append(pytest.param(p.values[0], build, value, marks=p.marks, id=f"{pname}-{p.id}"))
    return cases


MODEL_SOLVERS = ("arrays", "pyomo")  # direct backends and the optional Pyomo-contrib ones


def hard_knapsack_arrays(n: int = 400, m_rows: int = 12, seed: int = 1) -> ls.ArrayModel:
    """A multi-dimensional knapsack neither HiGHS nor SCIP closes in several seconds (as arrays)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    w = rng.integers(20, 100, size=(m_rows, n)).astype(float)
    v = rng.integers(20, 100, size=n).astype(float)
    return ls.ArrayModel.from_lp(v, A_ub=w, b_ub=w.sum(axis=1) // 2, bounds=(0, 1), integrality=[1] * n,
                                 sense="max")


# ----------------------------------------------------------------------------- import and catalog
def test_import_is_light() -> None:
    code = (
        "import lipopt_solvers, sys; "
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r}]; "
        "assert not heavy, heavy; "
        "lipopt_solvers.available_solvers(); lipopt_solvers.probe_all(licences=False); "
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {set(HEAVY)!r}]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_catalog_keys_and_probe() -> None:
    assert set(ls.SOLVERS) == {"highs", "scip", "gurobi", "clarabel", "scs", "mosek", "pyomo-highs",
                               "pyomo-scip"}
    assert all(isinstance(b, ls.Backend) for b in ls.SOLVERS.values())
    rows = ls.probe_all(licences=False)
    assert [r["name"] for r in rows] == list(ls.SOLVERS)
    for r in rows:
        assert set(r) >= {"name", "installed", "version", "licence", "capabilities", "default"}
        if not r["installed"]:
            assert r["licence"] == "not installed"
    for name in ("highs", "scip", "clarabel", "scs"):
        info = ls.get_solver(name)
        if info.is_installed():
            assert info.version() and info.licence() == "open source"
    # the Pyomo-contrib interfaces are optional, never picked by default
    for cap in Capability:
        assert not any(n.startswith("pyomo-") for n in ls.catalog._DEFAULTS[cap])


def test_unknown_solver_name() -> None:
    with pytest.raises(ValueError, match=r"unknown solver 'cplexx'.*highs.*scip.*gurobi"):
        ls.get_solver("cplexx")
    with pytest.raises(ValueError, match="known solvers"):
        ls.solve_pyomo(object(), "nope", SolverOptions(), sense="max")


def test_wrong_interface_and_capability() -> None:
    with pytest.raises(ValueError, match="cvxpy"):
        ls.solve_pyomo(object(), "clarabel", SolverOptions(), sense="min")
    with pytest.raises(ValueError, match=r"'highs' cannot solve MIQCQP.*scip"):
        ls.require_solver("highs", Capability.MIQCQP)
    with pytest.raises(ValueError, match=r"'clarabel' cannot solve MILP.*highs"):
        ls.require_solver("clarabel", Capability.MILP)


def test_default_solver_and_available() -> None:
    prefs = {Capability.LP: "highs", Capability.MILP: "highs", Capability.MIQCQP: "scip",
             Capability.SDP: "clarabel", Capability.SOCP: "clarabel"}
    for cap, name in prefs.items():
        if ls.get_solver(name).is_installed():
            assert ls.default_solver(cap) == name
            assert ls.available_solvers(cap)[0] == name
    assert "highs" not in ls.available_solvers(Capability.SDP)
    assert all(ls.get_solver(n).interface == "cvxpy" for n in ls.available_solvers(interface="cvxpy"))


@pytest.mark.parametrize("bad", [{"time_limit": 0}, {"time_limit": -5}, {"time_limit": float("nan")},
                                 {"threads": 0}, {"threads": -1}, {"rel_gap": -1e-3},
                                 {"abs_gap": float("nan")}, {"grace": -1.0}])
def test_options_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        SolverOptions(**bad)


def test_options_defaults_and_deadline() -> None:
    o = SolverOptions(extra={"a": 1})
    assert o.to_dict()["extra"] == {"a": 1} and o.abs_gap == 0.0 and o.hard_deadline is None
    assert SolverOptions(time_limit=1.0).hard_deadline == pytest.approx(3.0)  # 1 s + max(2 s, 25 %)
    assert SolverOptions(time_limit=100.0).hard_deadline == pytest.approx(125.0)
    assert SolverOptions(time_limit=10.0, grace=0.5).hard_deadline == pytest.approx(10.5)
    assert SolverOptions(time_limit=math.inf).hard_deadline is None


def test_parse_solver_option() -> None:
    assert ls.parse_solver_option("presolve=off") == ("presolve", "off")
    assert ls.parse_solver_option("limits/nodes = 10") == ("limits/nodes", 10)
    assert ls.parse_solver_option("mip_rel_gap=1e-3") == ("mip_rel_gap", 1e-3)
    assert ls.parse_solver_option("NonConvex=True") == ("NonConvex", True)
    for bad in ("presolve", "=3"):
        with pytest.raises(ValueError, match=r"KEY=VALUE|empty key"):
            ls.parse_solver_option(bad)


# ----------------------------------------------------------------------------- gurobi missing / licence
@pytest.fixture
def no_gurobi(monkeypatch: pytest.MonkeyPatch) -> None:
    from lipopt_solvers import base

    real = base._installed
    monkeypatch.setattr(base, "_installed", lambda m: False if m == "gurobipy" else real(m))


def test_gurobi_missing_is_not_available(no_gurobi: None) -> None:
    info = ls.get_solver("gurobi")
    assert not info.is_installed() and info.version() is None and info.licence() == "not installed"
    assert "gurobi" not in ls.available_solvers(Capability.MIQCQP)
    with pytest.raises(ls.SolverNotAvailableError, match=r"gurobi.*pip install gurobipy"):
        ls.require_solver("gurobi")
    out = ls.solve_pyomo(object(), "gurobi", SolverOptions(), sense="max")
    assert out.termination == Termination.NOT_AVAILABLE
    assert not out.ok and out.objective is None and out.bound is None
    assert "pip install gurobipy" in out.message
    assert out.to_dict()["termination"] == "not_available"


def test_gurobi_size_limit_becomes_licence_status() -> None:
    from lipopt_solvers.gurobi import classify_error

    class GurobiError(Exception):
        errno = 10010

    exc = GurobiError("Model too large for size-limited license; visit https://gurobi.com/unrestricted")
    assert classify_error(exc) == Termination.LICENSE_LIMIT
    plain = RuntimeError("Model too large for size-limited license")
    assert classify_error(plain) == Termination.LICENSE_LIMIT
    assert classify_error(RuntimeError("out of memory")) == Termination.ERROR


def test_a_conic_solver_without_a_licence_is_a_status_not_a_traceback() -> None:
    """MOSEK without a licence file raises mosek.Error from inside cvxpy's solve: the backend turns it
    into LICENSE_LIMIT with MOSEK's reason, and a solve error of another kind stays ERROR."""
    cp = pytest.importorskip("cvxpy")

    class Raising(cp.Problem):
        def __init__(self, text: str) -> None:
            x = cp.Variable()
            super().__init__(cp.Minimize(x), [x >= 1])
            self.text = text

        def solve(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError(self.text)

    info = ls.get_solver("mosek")
    out = info.solve_cvxpy(Raising("rescode.err_missing_license_file(1008): License cannot be located"),
                           SolverOptions())
    assert out.termination is Termination.LICENSE_LIMIT and "License cannot be located" in out.message
    assert not out.ok and out.objective is None and out.bound is None
    other = info.solve_cvxpy(Raising("out of memory"), SolverOptions())
    assert other.termination is Termination.ERROR


def test_mosek_installed_without_a_licence_says_so_everywhere() -> None:
    """Where MOSEK is installed but has no licence: doctor's licence column, the solve's status and
    lipsdp-neuron's record (no value, stop licence_limit) all say why."""
    info = ls.get_solver("mosek")
    if not info.is_installed() or info.licensed():
        pytest.skip("needs MOSEK installed without a licence")
    assert info.licence().startswith(ls.base.NO_LICENCE) and "mosek.lic" in info.licence()
    from lipopt.methods import RunOptions, run_method
    from lipopt.result import StopReason, Verdict
    from lipopt.spec import Norm, Question
    from tests import nets

    res = run_method("lipsdp-neuron", nets.t1(), Question(Norm.L2, Norm.L2), RunOptions(solver="mosek"))
    assert res.value is None and res.verdict is Verdict.ERROR and res.stop is StopReason.LICENCE_LIMIT
    assert "licen" in res.message.lower()


def test_contrib_solver_exception_is_status_not_traceback() -> None:
    pytest.importorskip("pyomo.environ")
    from lipopt_solvers.gurobi import classify_error
    from lipopt_solvers.pyomo_contrib import run_contrib_solver

    class FakeOpt:
        def version(self) -> tuple[int, int, int]:
            return (12, 0, 1)

        def solve(self, model: Any, **kwargs: Any) -> Any:
            raise RuntimeError("Model too large for size-limited license")

    out = run_contrib_solver(
        FakeOpt(), lp_model(), name="gurobi", sense="max", options=SolverOptions(), solver_options={},
        raw_status=lambda: "?", classify_error=classify_error,
    )
    assert out.termination == Termination.LICENSE_LIMIT
    assert out.solver_version == "12.0.1" and not out.has_incumbent and "size-limited" in out.message


# ----------------------------------------------------------------------------- status maps and outcomes
def test_status_maps_cover_the_solvers_statuses() -> None:
    """Every raw status each solver documents maps to a termination; errors never read as optimal."""
    from lipopt_solvers.highs import HighsBackend
    from lipopt_solvers.scip import ScipBackend

    highspy = pytest.importorskip("highspy")
    for name in highspy.HighsModelStatus.__members__:
        assert name in HighsBackend.status_map, name
    errors = {"kNotset", "kLoadError", "kModelError", "kPresolveError", "kSolveError", "kPostsolveError"}
    assert all(HighsBackend.status_map[s] is Termination.ERROR for s in errors)
    scip = ScipBackend()
    assert scip.termination("inforunbd") is Termination.UNBOUNDED
    assert scip.termination("userinterrupt") is Termination.INTERRUPTED
    assert scip.termination("something new") is Termination.OTHER


class FakeBackend(ls.Backend):
    """Returns whatever termination / incumbent / bound it is told to."""

    name = "fake"
    interface = "arrays"
    capabilities = frozenset({Capability.LP, Capability.MILP, Capability.MIQCQP})
    modules = ("numpy",)
    package = "numpy"
    plan: ClassVar[tuple[Termination, float | None, float | None]] = (Termination.OPTIMAL, 1.0, 1.0)

    def solve_arrays(self, model: Any, options: Any, progress: Any = None) -> Any:
        import numpy as np

        term, obj, bound = self.plan
        x = np.zeros(model.n_cols) if obj is not None else None
        return ls.SolveOutcome("fake", "0", term, f"raw-{term.value}", model.sense, obj, bound, None,
                               obj is not None, 0.0, 0.0, 0.0, "fake", options, x=x)


@pytest.mark.parametrize("term", list(Termination))
@pytest.mark.parametrize(("obj", "bound"), [(None, None), (1.0, None), (None, 2.0), (1.0, 2.0),
                                            (float("nan"), float("inf"))])
def test_fake_backend_outcome_invariants(monkeypatch: pytest.MonkeyPatch, term: Termination,
                                         obj: float | None, bound: float | None) -> None:
    monkeypatch.setitem(ls.SOLVERS, "fake", FakeBackend())
    monkeypatch.setattr(FakeBackend, "plan", (term, obj, bound))
    arrays = ls.ArrayModel.from_lp([1.0], bounds=(0, 1), sense="max")
    out = ls.solve_arrays(arrays, "fake")
    assert out.termination is term
    finite_obj = obj is not None and math.isfinite(obj)
    if term is Termination.INFEASIBLE:  # nothing survives an infeasibility proof
        assert out.objective is None and out.bound is None and not out.has_incumbent
    else:
        assert out.has_incumbent == finite_obj and (out.objective is None) == (not finite_obj)
        assert out.bound == (bound if bound is not None and math.isfinite(bound) else None)
    assert out.ok == (finite_obj and term in (Termination.OPTIMAL, Termination.GAP_LIMIT))
    assert (out.solution_status is ls.SolutionStatus.NONE) == (out.objective is None)
    d = out.to_dict()
    assert d["termination"] == term.value and d["ok"] == out.ok


def test_relative_gap_has_no_absolute_floor() -> None:
    from lipopt_solvers.outcome import gap_closed, relative_gap

    assert relative_gap(3.0e-8, 3.6e-8) == pytest.approx(0.6e-8 / 3.6e-8)
    assert not gap_closed(3.0e-8, 3.6e-8)
    assert gap_closed(1e12, 1e12 * (1 + 1e-7))
    assert relative_gap(None, 1.0) is None and relative_gap(1.0, math.inf) == math.inf


# ----------------------------------------------------------------------------- compiling Pyomo models
def test_compile_fixed_ranged_and_quadratic() -> None:
    """Fixed variables become constants, ranged rows keep both sides, quadratic parts are read apart."""
    pe = pytest.importorskip("pyomo.environ")
    import numpy as np
    from lipopt_solvers.compile import compile_pyomo

    m = pe.ConcreteModel()
    m.s = pe.Var(range(2), domain=pe.Binary)
    m.op = pe.Var(range(2), bounds=(0, 5))
    m.z = pe.Var(bounds=(-1, 1))
    m.c0 = pe.Constraint(expr=m.op[0] <= 2 * m.s[0])
    m.c1 = pe.Constraint(expr=m.op[1] <= 3 * m.s[1])
    m.r = pe.Constraint(expr=(1, m.op[1] - m.s[1], 2))
    m.q = pe.Constraint(expr=m.z * m.z + m.op[0] >= 0.5)
    m.s[0].fix(1)
    m.o = pe.Objective(expr=m.op[0] + m.op[1] + 1, sense=pe.maximize)
    cm = compile_pyomo(m, "max")
    a = cm.arrays
    names = [v.name for v in cm.columns]
    assert "s[0]" not in names and len(names) == len(set(names)) == 4
    col = {n: k for k, n in enumerate(names)}
    dense = a.A.toarray()
    # op[0] <= 2 (s[0] fixed at 1): one row with a single coefficient on op[0]
    rows_op0 = [i for i in range(a.n_rows)
                if dense[i, col["op[0]"]] != 0 and np.count_nonzero(dense[i]) == 1]
    assert rows_op0 and a.row_upper[rows_op0[0]] == pytest.approx(2.0)
    assert a.offset == pytest.approx(1.0) and a.c[col["op[0]"]] == 1 and a.c[col["z"]] == 0
    assert len(a.quad_rows) == 1 and a.quad_lower[0] == pytest.approx(0.5) and a.quad_upper[0] == math.inf
    assert a.integrality[col["s[1]"]] and not a.integrality[col["op[1]"]]
    if ls.get_solver("scip").is_installed():  # op0 = 2, op1 = 3 (s1 = 1, op1 - s1 = 2 <= 2), + 1
        out = ls.solve_pyomo(m, "scip", SolverOptions(), sense="max")
        assert out.termination is Termination.OPTIMAL and out.objective == pytest.approx(2 + 3 + 1)
        assert pe.value(m.op[0]) == pytest.approx(2.0) and out.violation is not None and out.violation < 1e-6


def test_sense_mismatch_is_an_error() -> None:
    if not ls.get_solver("highs").is_installed():
        pytest.skip("highs not installed")
    with pytest.raises(ValueError, match="sense"):
        ls.solve_pyomo(lp_model(), "highs", SolverOptions(), sense="min")


def test_unsupported_model_is_error_status() -> None:
    if not ls.get_solver("highs").is_installed():
        pytest.skip("highs not installed")
    out = ls.solve_pyomo(miqcqp_model(), "highs", SolverOptions(), sense="max")  # quadratic constraints
    assert out.termination == Termination.ERROR and not out.has_incumbent and "quadratic" in out.message


def test_rejected_option_is_error_status() -> None:
    for solver, key in (("highs", "no_such_option"), ("scip", "no/such/param")):
        if not ls.get_solver(solver).is_installed():
            continue
        out = ls.solve_pyomo(lp_model(), solver, SolverOptions(extra={key: 1}), sense="max")
        assert out.termination is Termination.ERROR and key in out.message and out.bound is None


# ----------------------------------------------------------------------------- known optimal values
@pytest.mark.parametrize(("solver", "build", "value"), _cases(PYOMO_LIBRARY, MODEL_SOLVERS))
def test_pyomo_library(solver: str, build: Callable[[], Any], value: float) -> None:
    pe = pytest.importorskip("pyomo.environ")
    model = build()
    out = ls.solve_pyomo(model, solver, SolverOptions(), sense="max")
    assert out.termination == Termination.OPTIMAL, out.message
    assert out.ok and out.has_incumbent and out.solver_version
    assert out.objective == pytest.approx(value, rel=1e-6, abs=1e-6)
    assert out.bound == pytest.approx(value, rel=1e-6, abs=1e-6)
    assert out.bound >= out.objective - 1e-9
    assert pe.value(model.obj) == pytest.approx(out.objective, rel=1e-6, abs=1e-6)  # witness loaded
    assert out.sense == "max" and out.gap is not None and out.gap <= 1e-6


@pytest.mark.parametrize("solver", _solvers(Capability.LP, "arrays"))
def test_solve_lp_linprog_conventions(solver: str) -> None:
    """min -x - y over x + 2y <= 3, x - y <= 1, x, y >= 0 (linprog's default bounds) -> -7/3."""
    out = ls.solve_lp([-1.0, -1.0], A_ub=[[1, 2], [1, -1]], b_ub=[3, 1], solver=solver)
    assert out.termination is Termination.OPTIMAL and out.objective == pytest.approx(-7 / 3)
    assert out.x == pytest.approx([5 / 3, 2 / 3]) and out.violation < 1e-9
    eq = ls.solve_lp([1.0, 1.0], A_eq=[[1, 1]], b_eq=[2], bounds=[(None, None), (0.5, 4)], solver=solver)
    assert eq.objective == pytest.approx(2.0)
    import numpy as np

    two = ls.solve_lp([1.0, 1.0], bounds=np.array([[0.5, 1.0], [-2.0, 3.0]]), solver=solver)  # per column
    assert two.objective == pytest.approx(-1.5) and two.x == pytest.approx([0.5, -2.0])
    unb = ls.solve_lp([-1.0], bounds=(None, None), solver=solver)
    assert unb.termination is Termination.UNBOUNDED and unb.bound is None and not unb.ok


@pytest.mark.parametrize(("solver", "build", "value"), _cases(CVXPY_LIBRARY, "cvxpy"))
def test_cvxpy_library(solver: str, build: Callable[[], Any], value: float) -> None:
    out = ls.solve_cvxpy(build(), solver, SolverOptions())
    assert out.termination == Termination.OPTIMAL, out.message
    assert out.ok and out.solver_version
    tol = 1e-3 if solver == "scs" else 1e-6
    assert out.objective == pytest.approx(value, rel=tol, abs=tol)


@pytest.mark.parametrize("solver", _solvers(Capability.MILP, MODEL_SOLVERS))
def test_infeasible(solver: str) -> None:
    out = ls.solve_pyomo(infeasible_model(), solver, SolverOptions(), sense="max")
    assert out.termination == Termination.INFEASIBLE, out.message
    assert out.objective is None and not out.has_incumbent and not out.ok


@pytest.mark.parametrize("solver", _solvers(Capability.MILP, MODEL_SOLVERS))
def test_time_limit_returns_both_sides(solver: str) -> None:
    pe = pytest.importorskip("pyomo.environ")
    model = hard_knapsack_model()
    out = ls.solve_pyomo(model, solver, SolverOptions(time_limit=0.05), sense="max")
    assert out.termination in (Termination.TIME_LIMIT, Termination.OPTIMAL), out.message
    assert out.bound is not None, out.message
    if out.termination == Termination.TIME_LIMIT:
        assert not out.ok
    if out.has_incumbent:
        assert out.bound >= out.objective - 1e-6
        assert pe.value(model.obj) == pytest.approx(out.objective, rel=1e-9)  # witness loaded
        assert out.gap is not None and out.gap >= 0


@pytest.mark.parametrize("solver", _solvers(Capability.MILP, MODEL_SOLVERS))
def test_gap_limit(solver: str) -> None:
    options = SolverOptions(rel_gap=0.05, time_limit=5)
    out = ls.solve_pyomo(hard_knapsack_model(), solver, options, sense="max")
    assert out.termination in (Termination.GAP_LIMIT, Termination.OPTIMAL), out.message
    assert out.ok and out.gap is not None and out.gap <= 0.05 + 1e-9
    assert out.bound >= out.objective - 1e-6


@pytest.mark.parametrize("solver", _solvers(Capability.LP, "arrays"))
def test_minimisation_and_quiet(solver: str, capfd: pytest.CaptureFixture[str]) -> None:
    pe = pytest.importorskip("pyomo.environ")
    model = lp_model()
    model.obj.sense = pe.minimize  # min x + y over the polytope -> 0 at the origin
    out = ls.solve_pyomo(model, solver, SolverOptions(seed=3, threads=1), sense="min")
    assert out.termination == Termination.OPTIMAL and out.objective == pytest.approx(0.0, abs=1e-9)
    assert out.bound <= out.objective + 1e-9
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_verbose_log_goes_to_the_file(tmp_path: Any) -> None:
    for solver in ("highs", "scip"):
        if not ls.get_solver(solver).is_installed():
            continue
        log = tmp_path / f"{solver}.log"
        out = ls.solve_pyomo(knapsack_model(), solver, SolverOptions(verbose=True, log_file=str(log)),
                             sense="max")
        assert out.termination is Termination.OPTIMAL and out.objective == pytest.approx(30.0)
        assert log.exists() and log.stat().st_size > 100


def test_changing_thread_counts_in_one_process() -> None:
    """HiGHS' scheduler is process-global: a solve with another thread count used to fail with
    model status kNotset before solving (the first release's "Not Set")."""
    if not ls.get_solver("highs").is_installed():
        pytest.skip("highs not installed")
    for threads in (None, 1, 2, None, 1):
        out = ls.solve_pyomo(knapsack_model(), "highs", SolverOptions(threads=threads), sense="max")
        assert out.termination is Termination.OPTIMAL, (threads, out.message)
        assert out.objective == pytest.approx(30.0)


# ----------------------------------------------------------------------------- deadlines and interrupts
@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
@pytest.mark.parametrize("solver", _solvers(Capability.MILP, "arrays"))
def test_one_second_limit_on_a_hard_instance(solver: str, isolate: bool) -> None:
    import time

    arrays = hard_knapsack_arrays()
    t0 = time.perf_counter()
    out = ls.solve_arrays(arrays, solver, SolverOptions(time_limit=1.0, isolate=isolate))
    wall = time.perf_counter() - t0
    assert out.termination is Termination.TIME_LIMIT, out.message
    assert out.isolated == isolate and wall <= SolverOptions(time_limit=1.0).hard_deadline + 5.0
    assert out.has_incumbent and out.bound is not None and out.bound >= out.objective
    assert arrays.max_violation(out.x) <= 1e-6
    assert arrays.objective_value(out.x) == pytest.approx(out.objective)


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_hard_deadline_stops_a_solver_that_ignores_its_limit(isolate: bool) -> None:
    """The solver's own limit is overridden (extra wins) so only the hard deadline can stop it."""
    import time

    if not ls.get_solver("highs").is_installed():
        pytest.skip("highs not installed")
    arrays = hard_knapsack_arrays()
    options = SolverOptions(time_limit=1.0, grace=0.5, isolate=isolate, extra={"time_limit": 1e6})
    t0 = time.perf_counter()
    out = ls.solve_arrays(arrays, "highs", options)
    wall = time.perf_counter() - t0
    assert out.termination is Termination.TIME_LIMIT, out.message
    assert wall <= 1.5 + 5.0
    if out.has_incumbent:  # the best bracket reported before the stop
        assert arrays.max_violation(out.x) <= 1e-6
        if out.bound is not None:
            assert out.bound >= out.objective


def test_isolated_solve_reports_a_solver_error() -> None:
    if not ls.get_solver("highs").is_installed():
        pytest.skip("highs not installed")
    out = ls.solve_arrays(hard_knapsack_arrays(), "highs", SolverOptions(isolate=True, extra={"nope": 1}))
    assert out.isolated and out.termination is Termination.ERROR and "nope" in out.message


@pytest.mark.parametrize("solver", _solvers(Capability.MILP, "arrays"))
def test_ctrl_c_stops_the_solver_and_keeps_the_bracket(solver: str) -> None:
    """SIGINT during a solve: HiGHS is cancelled through its interrupt callback, SCIP catches it itself;
    both stop with incumbent and dual bound, and the interrupt is recorded for the run to stop."""
    import os
    import signal
    import threading

    ls.interrupts.clear()
    timer = threading.Timer(0.7, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        out = ls.solve_arrays(hard_knapsack_arrays(), solver, SolverOptions(time_limit=30))
    finally:
        timer.cancel()
    assert out.termination is Termination.INTERRUPTED, out.message
    assert ls.interrupts.requested()
    ls.interrupts.clear()
    assert out.has_incumbent and out.bound is not None and out.bound >= out.objective


# ----------------------------------------------------------------------------- many solves, captured
def _mixed_solves(n: int) -> list[tuple[str, Callable[[], Any], float]]:
    jobs = []
    for k in range(n):
        name, _cap, build, value = PYOMO_LIBRARY[k % len(PYOMO_LIBRARY)]
        solver = "scip" if name == "miqcqp" or k % 5 == 0 else "highs"
        jobs.append((solver, build, value))
    return jobs


def test_two_hundred_solves_under_fd_capture(capfd: pytest.CaptureFixture[str]) -> None:
    """200 LP / MILP / MIQCQP solves in one process with stdout and stderr captured at the file
    descriptor level: none hangs, none comes back "Not Set", every value is right, nothing is printed."""
    for name in ("highs", "scip"):
        if not ls.get_solver(name).is_installed():
            pytest.skip(f"{name} not installed")
    for k, (solver, build, value) in enumerate(_mixed_solves(200)):
        threads = (None, 1, 2)[k % 3]
        out = ls.solve_pyomo(build(), solver, SolverOptions(threads=threads, time_limit=20), sense="max")
        assert out.termination is Termination.OPTIMAL, (k, solver, out.message)
        assert out.objective == pytest.approx(value, rel=1e-6)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_solves_inside_a_jupyter_kernel() -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    code = (
        "import lipopt_solvers as ls, pyomo.environ as pe\n"
        "vals = []\n"
        "for k in range(60):\n"
        "    m = pe.ConcreteModel(); m.x = pe.Var(range(5), domain=pe.Binary)\n"
        "    v, w = [10, 13, 7, 8, 9], [3, 4, 2, 3, 3]\n"
        "    m.c = pe.Constraint(expr=sum(w[i] * m.x[i] for i in range(5)) <= 9)\n"
        "    m.obj = pe.Objective(expr=sum(v[i] * m.x[i] for i in range(5)), sense=pe.maximize)\n"
        "    s = 'scip' if k % 3 == 0 else 'highs'\n"
        "    o = ls.SolverOptions(threads=(None, 1)[k % 2], verbose=k == 7)\n"
        "    out = ls.solve_pyomo(m, s, o, sense='max')\n"
        "    vals.append((out.termination.value, out.objective))\n"
        "assert all(t == 'optimal' and abs(o - 30) < 1e-9 for t, o in vals), vals\n"
        "print('solved', len(vals))\n"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    nbclient.NotebookClient(nb, timeout=240, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    assert any("solved 60" in o.get("text", "") for o in outputs), outputs


def test_each_backend_maps_the_options_in_one_table() -> None:
    """SolverOptions fields reach each solver under its own names; extra passes through and wins."""
    from lipopt_solvers.gurobi import GurobiBackend
    from lipopt_solvers.highs import HighsBackend
    from lipopt_solvers.scip import ScipBackend

    o = SolverOptions(time_limit=2, seed=3, threads=1, rel_gap=1e-4, feasibility_tol=1e-8,
                      extra={"presolve": "off", "mip_rel_gap": 0.5})
    h = HighsBackend().native_options(o)
    assert h == {"random_seed": 3, "time_limit": 2.0, "mip_rel_gap": 0.5, "mip_abs_gap": 0.0, "threads": 1,
                 "primal_feasibility_tolerance": 1e-8, "dual_feasibility_tolerance": 1e-8, "presolve": "off"}
    assert isinstance(h["time_limit"], float) and isinstance(h["threads"], int)
    s = ScipBackend().native_options(SolverOptions(seed=2, extra={"limits/nodes": 5}))
    assert s == {"randomization/randomseedshift": 2, "limits/gap": 1e-6, "limits/absgap": 0.0,
                 "limits/nodes": 5}
    g = GurobiBackend().native_options(SolverOptions(time_limit=1.5, threads=2))
    assert g["TimeLimit"] == 1.5 and g["Threads"] == 2 and g["MIPGapAbs"] == 0.0


def test_scip_heartbeat_shows_a_long_solve_is_alive(capsys: pytest.CaptureFixture[str]) -> None:
    """SCIP's incumbent and bound can be read only after its solve, so a MIQCQP of minutes printed nothing:
    a heartbeat thread calls the progress callback with no numbers until the solve ends; the progress
    printer says so, and the anytime history records nothing for it."""
    import time

    from lipopt_solvers.scip import _heartbeat

    from lipopt.progress import History, solve_reporter

    calls: list[tuple] = []
    done = _heartbeat(lambda *a: calls.append(a), every=0.02)
    time.sleep(0.2)
    done.set()
    time.sleep(0.05)
    n = len(calls)
    time.sleep(0.1)
    assert n >= 2 and len(calls) == n and set(calls) == {(None, None, None)}
    solve_reporter("miqcqp", every=0.0)(None, None, None)
    assert "miqcqp: solving, no incumbent or bound reported yet" in capsys.readouterr().err
    hist = History()
    hist(None, None, None)
    assert hist.rows == []
