"""Tests of the solver layer (lipopt_solvers): catalog, options, outcome, and every installed backend
against a small library of problems with known optimal values."""

from __future__ import annotations

import math
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import lipopt_solvers as ls
import pytest
from lipopt_solvers import Capability, SolverOptions, Termination

HEAVY = ("pyomo", "cvxpy", "highspy", "pyscipopt", "gurobipy", "torch")


def _solvers(capability: Capability, interface: str) -> list[Any]:
    """Every catalog solver with ``capability`` through ``interface``; missing ones are skipped."""
    params = []
    for name, info in ls.SOLVERS.items():
        if info.interface != interface or not info.supports(capability):
            continue
        reason = f"{name} ({info.package}) not installed"
        marks = [] if info.is_installed() else [pytest.mark.skip(reason=reason)]
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


def _cases(library: list, interface: str) -> list[Any]:
    cases = []
    for pname, cap, build, value in library:
        for p in _solvers(cap, interface):
            cases.append(pytest.param(p.values[0], build, value, marks=p.marks, id=f"{pname}-{p.id}"))
    return cases


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
    assert set(ls.SOLVERS) == {"highs", "scip", "gurobi", "clarabel", "scs", "mosek"}
    rows = ls.probe_all(licences=False)
    assert [r["name"] for r in rows] == list(ls.SOLVERS)
    for r in rows:
        assert set(r) >= {"name", "installed", "version", "licence", "capabilities"}
        if not r["installed"]:
            assert r["licence"] == "not installed"
    for name in ("highs", "scip", "clarabel", "scs"):
        info = ls.get_solver(name)
        if info.is_installed():
            assert info.version() and info.licence() == "open source"


def test_unknown_solver_name() -> None:
    with pytest.raises(ValueError, match=r"unknown solver 'cplexx'.*highs.*scip.*gurobi"):
        ls.get_solver("cplexx")
    with pytest.raises(ValueError, match="known solvers"):
        ls.solve_pyomo(object(), "nope", SolverOptions(), sense="max")


def test_wrong_interface() -> None:
    with pytest.raises(ValueError, match="cvxpy"):
        ls.solve_pyomo(object(), "clarabel", SolverOptions(), sense="min")


def test_default_solver_and_available() -> None:
    prefs = {Capability.LP: "highs", Capability.MILP: "highs", Capability.MIQCQP: "scip",
             Capability.SDP: "clarabel", Capability.SOCP: "clarabel"}
    for cap, name in prefs.items():
        if ls.get_solver(name).is_installed():
            assert ls.default_solver(cap) == name
            assert ls.available_solvers(cap)[0] == name
    assert "highs" not in ls.available_solvers(Capability.SDP)
    assert all(ls.get_solver(n).interface == "cvxpy" for n in ls.available_solvers(interface="cvxpy"))
    with pytest.raises(ls.SolverNotAvailableError, match="INDICATOR"):
        ls.default_solver(Capability.INDICATOR)


def test_options_validation() -> None:
    with pytest.raises(ValueError):
        SolverOptions(time_limit=0)
    with pytest.raises(ValueError):
        SolverOptions(threads=0)
    assert SolverOptions(extra={"a": 1}).to_dict()["extra"] == {"a": 1}


# ----------------------------------------------------------------------------- gurobi missing / licence
@pytest.fixture
def no_gurobi(monkeypatch: pytest.MonkeyPatch) -> None:
    from lipopt_solvers import catalog

    real = catalog._installed
    monkeypatch.setattr(catalog, "_installed", lambda m: False if m == "gurobipy" else real(m))


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


def test_solver_exception_is_status_not_traceback() -> None:
    pytest.importorskip("pyomo.environ")
    from lipopt_solvers.gurobi import classify_error
    from lipopt_solvers.pyomo_common import run_contrib_solver

    class FakeOpt:
        def version(self) -> tuple[int, ...]:
            return (12, 0, 1)

        def solve(self, model: Any, **kwargs: Any) -> Any:
            raise RuntimeError("Model too large for size-limited license")

    out = run_contrib_solver(
        FakeOpt(), lp_model(), name="gurobi", sense="max", options=SolverOptions(), solver_options={},
        raw_status=lambda: "?", classify_error=classify_error,
    )
    assert out.termination == Termination.LICENSE_LIMIT
    assert out.solver_version == "12.0.1" and not out.has_incumbent and "size-limited" in out.message


# ----------------------------------------------------------------------------- known optimal values
@pytest.mark.parametrize(("solver", "build", "value"), _cases(PYOMO_LIBRARY, "pyomo"))
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


@pytest.mark.parametrize(("solver", "build", "value"), _cases(CVXPY_LIBRARY, "cvxpy"))
def test_cvxpy_library(solver: str, build: Callable[[], Any], value: float) -> None:
    out = ls.solve_cvxpy(build(), solver, SolverOptions())
    assert out.termination == Termination.OPTIMAL, out.message
    assert out.ok and out.solver_version
    tol = 1e-3 if solver == "scs" else 1e-6
    assert out.objective == pytest.approx(value, rel=tol, abs=tol)


@pytest.mark.parametrize("solver", _solvers(Capability.MILP, "pyomo"))
def test_infeasible(solver: str) -> None:
    out = ls.solve_pyomo(infeasible_model(), solver, SolverOptions(), sense="max")
    assert out.termination == Termination.INFEASIBLE, out.message
    assert out.objective is None and not out.has_incumbent and not out.ok


@pytest.mark.parametrize("solver", _solvers(Capability.MILP, "pyomo"))
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


@pytest.mark.parametrize("solver", _solvers(Capability.MILP, "pyomo"))
def test_gap_limit(solver: str) -> None:
    options = SolverOptions(rel_gap=0.05, time_limit=5)
    out = ls.solve_pyomo(hard_knapsack_model(), solver, options, sense="max")
    assert out.termination in (Termination.GAP_LIMIT, Termination.OPTIMAL), out.message
    assert out.ok and out.gap is not None and out.gap <= 0.05 + 1e-9
    assert out.bound >= out.objective - 1e-6


@pytest.mark.parametrize("solver", _solvers(Capability.LP, "pyomo"))
def test_minimisation_and_quiet(solver: str, capfd: pytest.CaptureFixture[str]) -> None:
    pe = pytest.importorskip("pyomo.environ")
    model = lp_model()
    model.obj.sense = pe.minimize  # min x + y over the polytope -> 0 at the origin
    out = ls.solve_pyomo(model, solver, SolverOptions(seed=3, threads=1), sense="min")
    assert out.termination == Termination.OPTIMAL and out.objective == pytest.approx(0.0, abs=1e-9)
    assert out.bound <= out.objective + 1e-9
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_sense_mismatch_is_an_error() -> None:
    if not ls.get_solver("highs").is_installed():
        pytest.skip("highs not installed")
    with pytest.raises(ValueError, match="sense"):
        ls.solve_pyomo(lp_model(), "highs", SolverOptions(), sense="min")


def test_unsupported_model_is_error_status() -> None:
    if not ls.get_solver("highs").is_installed():
        pytest.skip("highs not installed")
    out = ls.solve_pyomo(miqcqp_model(), "highs", SolverOptions(), sense="max")  # quadratic constraints
    assert out.termination == Termination.ERROR and not out.has_incumbent and out.message


def test_cvxpy_missing_solver_is_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    from lipopt_solvers import catalog

    real = catalog._installed
    monkeypatch.setattr(catalog, "_installed", lambda m: False if m == "mosek" else real(m))
    out = ls.solve_cvxpy(sdp_problem(), "mosek", SolverOptions())
    assert out.termination == Termination.NOT_AVAILABLE and "pip install Mosek" in out.message
