"""Conic solvers (Clarabel, SCS, MOSEK) through cvxpy.

``bound`` is set to the objective when the solver reports OPTIMAL: it holds only up to the solver's
tolerances (SCS is a first-order method and returns slightly infeasible points), so SDP-based
upper bounds must be checked/repaired by the caller. ``optimal_inaccurate`` becomes
NUMERICAL_ERROR (the value is kept, ``ok`` is False). MIP gap options do not apply; accuracy
settings go through ``SolverOptions.extra`` in the solver's own names (e.g. ``eps_abs`` for SCS).
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from typing import Any

from .options import SolverOptions
from .outcome import SolveOutcome, Termination, relative_gap

_PACKAGES = {"clarabel": "clarabel", "scs": "scs", "mosek": "Mosek"}


def _solver_kwargs(name: str, options: SolverOptions) -> dict[str, Any]:
    kw: dict[str, Any] = {}
    if name == "clarabel":
        if options.time_limit is not None:
            kw["time_limit"] = float(options.time_limit)
    elif name == "scs":
        if options.time_limit is not None:
            kw["time_limit_secs"] = float(options.time_limit)
    elif name == "mosek":
        params: dict[str, Any] = {}
        if options.time_limit is not None:
            params["MSK_DPAR_OPTIMIZER_MAX_TIME"] = float(options.time_limit)
        if options.threads is not None:
            params["MSK_IPAR_NUM_THREADS"] = int(options.threads)
        if params:
            kw["mosek_params"] = params
    kw.update(dict(options.extra))
    return kw


def _termination(status: str, options: SolverOptions) -> Termination:
    import cvxpy as cp

    return {
        cp.OPTIMAL: Termination.OPTIMAL,
        cp.OPTIMAL_INACCURATE: Termination.NUMERICAL_ERROR,
        cp.INFEASIBLE: Termination.INFEASIBLE,
        cp.UNBOUNDED: Termination.UNBOUNDED,
        cp.INFEASIBLE_INACCURATE: Termination.NUMERICAL_ERROR,
        cp.UNBOUNDED_INACCURATE: Termination.NUMERICAL_ERROR,
        cp.USER_LIMIT: Termination.TIME_LIMIT if options.time_limit is not None else Termination.OTHER,
        cp.SOLVER_ERROR: Termination.NUMERICAL_ERROR,
    }.get(status, Termination.OTHER)


def solve(problem: Any, name: str, options: SolverOptions) -> SolveOutcome:
    import cvxpy as cp

    sense = "max" if isinstance(problem.objective, cp.Maximize) else "min"
    try:
        version: str | None = importlib.metadata.version(_PACKAGES[name])
    except importlib.metadata.PackageNotFoundError:
        version = None
    t0 = time.perf_counter()
    objective: float | None = None
    bound: float | None = None
    try:
        problem.solve(solver=name.upper(), verbose=options.verbose, **_solver_kwargs(name, options))
        status = str(problem.status)
        term = _termination(status, options)
        message = f"{name} via cvxpy: {status}"
    except cp.error.SolverError as exc:
        status = "solver_error"
        text = str(exc)
        term = Termination.LICENSE_LIMIT if "licen" in text.lower() else Termination.NUMERICAL_ERROR
        message = f"{name} via cvxpy: SolverError: {text}"
    except Exception as exc:  # a solver failure is a status, not a traceback
        status = f"exception:{type(exc).__name__}"
        term = Termination.ERROR
        message = f"{name} via cvxpy: {type(exc).__name__}: {exc}"
    solve_time = time.perf_counter() - t0
    if status in cp.settings.SOLUTION_PRESENT and problem.value is not None:
        value = float(problem.value)
        objective = value if math.isfinite(value) else None
        if term == Termination.OPTIMAL:
            bound = objective
    stats = getattr(problem, "solver_stats", None)
    if stats is not None and getattr(stats, "solve_time", None):
        solve_time = float(stats.solve_time)
    return SolveOutcome(
        solver=name, solver_version=version, termination=term, raw_status=status, sense=sense,
        objective=objective, bound=bound, gap=relative_gap(objective, bound),
        has_incumbent=objective is not None, build_time=0.0, solve_time=solve_time,
        wall_time=time.perf_counter() - t0, message=message, options=options,
    )
