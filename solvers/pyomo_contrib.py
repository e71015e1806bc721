"""The optional Pyomo-contrib backends (``pyomo.contrib.solver``, API v2): ``pyomo-highs``, ``pyomo-scip``.

Never the default path: Pyomo's output capture (``capture_output`` / ``TeeStream``) around HiGHS and
SCIP is a known source of deadlocks (Pyomo issues #3456, #3520, #3908). They stay for comparison (the
translation benchmark) and for users who want Pyomo's own interfaces. Imported only on use.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from .base import Backend, Capability
from .options import SolverOptions
from .outcome import SolveOutcome, Termination, gap_closed, normalise_sense, relative_gap

__all__ = ["PyomoHighsBackend", "PyomoScipBackend", "check_sense", "run_contrib_solver"]



def _termination_map() -> dict[Any, Termination]:
    from pyomo.contrib.solver.common.results import TerminationCondition as Tc

    return {
        Tc.maxTimeLimit: Termination.TIME_LIMIT,
        Tc.provenInfeasible: Termination.INFEASIBLE,
        Tc.locallyInfeasible: Termination.INFEASIBLE,
        Tc.unbounded: Termination.UNBOUNDED,
        Tc.interrupted: Termination.INTERRUPTED,
        Tc.licensingProblems: Termination.LICENSE_LIMIT,
        Tc.error: Termination.ERROR,
        Tc.minStepLength: Termination.NUMERICAL_ERROR,
    }


def check_sense(model: Any, sense: str) -> str:
    """Normalised ``sense``; ValueError unless the model has one active objective of that sense."""
    from pyomo.environ import Objective, maximize

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
    from pyomo.contrib.solver.common.results import SolutionStatus, TerminationCondition

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

    if tc == TerminationCondition.convergenceCriteriaSatisfied:
        if bound is None and objective is not None:
            bound = objective  # solver proved optimality but reports no separate bound
        term = Termination.OPTIMAL if gap_closed(objective, bound) else Termination.GAP_LIMIT
    else:
        term = _termination_map().get(tc, Termination.OTHER)
    if term == Termination.INFEASIBLE:
        objective, bound, has_incumbent = None, None, False
    if has_incumbent and objective is not None:
        results.solution_loader.load_vars()
    else:
        objective = None

    msg = f"{name}: {raw} ({tc.name}); incumbent={objective}, bound={bound}"
    return outcome(term, raw, objective, bound, msg)


class PyomoHighsBackend(Backend):
    name = "pyomo-highs"
    interface = "pyomo"
    model_kinds = frozenset({"pyomo"})
    capabilities = frozenset({Capability.LP, Capability.MILP})
    package = "highspy"
    modules = ("pyomo", "highspy")
    description = "HiGHS through Pyomo's contrib `highs` interface (optional; not the default path)"
    default = False

    def solve_pyomo(self, model: Any, options: SolverOptions, sense: str) -> SolveOutcome:
        from pyomo.contrib.solver.solvers.highs import Highs

        opt = Highs()

        def raw_status() -> str:
            h = opt._solver_model
            return str(h.modelStatusToString(h.getModelStatus()))

        return run_contrib_solver(opt, model, name=self.name, sense=sense, options=options,
                                  solver_options={"random_seed": int(options.seed)}, raw_status=raw_status)


class PyomoScipBackend(Backend):
    name = "pyomo-scip"
    interface = "pyomo"
    model_kinds = frozenset({"pyomo"})
    capabilities = frozenset({Capability.LP, Capability.MILP, Capability.MIQCQP})
    package = "pyscipopt"
    modules = ("pyomo", "pyscipopt")
    description = "SCIP through Pyomo's contrib `scip_direct` interface (optional; not the default path)"
    default = False

    def solve_pyomo(self, model: Any, options: SolverOptions, sense: str) -> SolveOutcome:
        from pyomo.contrib.solver.solvers.scip.scip_direct import ScipDirect

        opt = ScipDirect()
        solver_options: dict[str, Any] = {"randomization/randomseedshift": int(options.seed)}
        if not options.verbose:
            solver_options["display/verblevel"] = 0  # a full capture pipe freezes the process
        return run_contrib_solver(opt, model, name=self.name, sense=sense, options=options,
                                  solver_options=solver_options,
                                  raw_status=lambda: str(opt._solver_model.getStatus()))
