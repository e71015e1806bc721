"""Shared code for the Pyomo backends (all use the ``pyomo.contrib.solver`` interface, API v2).

Imported only by the backend modules, never by ``import lipopt_solvers``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition
from pyomo.environ import Objective, maximize

from .options import SolverOptions
from .outcome import SolveOutcome, Termination, gap_closed, normalise_sense, relative_gap

__all__ = ["check_sense", "run_contrib_solver"]

_TC = TerminationCondition
_TERMINATION = {
    _TC.maxTimeLimit: Termination.TIME_LIMIT,
    _TC.provenInfeasible: Termination.INFEASIBLE,
    _TC.locallyInfeasible: Termination.INFEASIBLE,
    _TC.unbounded: Termination.UNBOUNDED,
    _TC.interrupted: Termination.INTERRUPTED,
    _TC.licensingProblems: Termination.LICENSE_LIMIT,
    _TC.error: Termination.ERROR,
    _TC.minStepLength: Termination.NUMERICAL_ERROR,
}


def check_sense(model: Any, sense: str) -> str:
    """Normalised ``sense``; ValueError unless the model has one active objective of that sense."""
    s = normalise_sense(sense)
    objs = list(model.component_data_objects(Objective, active=True, descend_into=True))
    if len(objs) != 1:
        raise ValueError(f"the model must have exactly one active objective, found {len(objs)}")
    actual = "max" if objs[0].sense == maximize else "min"
    if actual != s:
        raise ValueError(f"sense={s!r} was given but the model's objective is a {actual}imisation")
    return s


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def run_contrib_solver(
    opt: Any,
    model: Any,
    *,
    name: str,
    sense: str,
    options: SolverOptions,
    solver_options: dict[str, Any],
    raw_status: Callable[[], str],
    classify_error: Callable[[BaseException], Termination] = lambda exc: Termination.ERROR,
) -> SolveOutcome:
    """Solve ``model`` with a ``pyomo.contrib.solver`` instance and normalise the result.

    Never raises on a non-optimal termination or a solver error; loads the incumbent (if any) into
    the model's variables.
    """
    sense = check_sense(model, sense)
    try:
        version: str | None = ".".join(str(v) for v in opt.version())
    except Exception:
        version = None
    kwargs: dict[str, Any] = {
        "load_solutions": False,
        "raise_exception_on_nonoptimal_result": False,
        "tee": options.verbose,
        "time_limit": options.time_limit,
        "rel_gap": options.rel_gap,
        "abs_gap": options.abs_gap,
        "threads": options.threads,
        "solver_options": {**solver_options, **dict(options.extra)},
    }

    def outcome(
        term: Termination, raw: str, obj: float | None, bound: float | None, msg: str
    ) -> SolveOutcome:
        return SolveOutcome(
            solver=name, solver_version=version, termination=term, raw_status=raw, sense=sense,
            objective=obj, bound=bound, gap=relative_gap(obj, bound), has_incumbent=obj is not None,
            build_time=0.0, solve_time=solve_time, wall_time=time.perf_counter() - t0, message=msg,
            options=options,
        )

    t0 = time.perf_counter()
    try:
        results = opt.solve(model, **kwargs)
    except Exception as exc:  # a solver error is a status, not a traceback
        solve_time = time.perf_counter() - t0
        term = classify_error(exc)
        return outcome(term, f"exception:{type(exc).__name__}", None, None, f"{type(exc).__name__}: {exc}")
    solve_time = time.perf_counter() - t0

    try:
        raw = raw_status()
    except Exception:
        raw = results.termination_condition.name
    tc = results.termination_condition
    has_incumbent = results.solution_status in (SolutionStatus.feasible, SolutionStatus.optimal)
    objective = _finite(results.incumbent_objective) if has_incumbent else None
    bound = _finite(results.objective_bound)

    if tc == _TC.convergenceCriteriaSatisfied:
        if bound is None and objective is not None:
            bound = objective  # solver proved optimality but reports no separate bound
        term = Termination.OPTIMAL if gap_closed(objective, bound) else Termination.GAP_LIMIT
    else:
        term = _TERMINATION.get(tc, Termination.OTHER)
    if term == Termination.INFEASIBLE:
        objective, bound, has_incumbent = None, None, False
    if has_incumbent and objective is not None:
        results.solution_loader.load_vars()
    else:
        objective = None

    msg = f"{name}: {raw} ({tc.name}); incumbent={objective}, bound={bound}"
    return outcome(term, raw, objective, bound, msg)
