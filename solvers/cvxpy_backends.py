"""Conic solvers (Clarabel, SCS, MOSEK) through cvxpy, one backend class each.

``bound`` is set to the objective when the solver reports OPTIMAL: it holds only up to the solver's
tolerances (SCS is a first-order method and returns slightly infeasible points), so SDP-based
upper bounds must be checked or repaired by the caller. ``optimal_inaccurate`` becomes
NUMERICAL_ERROR (the value is kept, ``ok`` is False). MIP gap options do not apply; accuracy
settings go through ``SolverOptions.extra`` in the solver's own names (e.g. ``eps_abs`` for SCS).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from .base import NO_LICENCE, Backend, Capability
from .outcome import SolutionStatus, SolveOutcome, Termination

_CONIC = frozenset({Capability.LP, Capability.SOCP, Capability.SDP})


class CvxpyBackend(Backend):
    interface = "cvxpy"
    model_kinds = frozenset({"cvxpy"})
    capabilities = _CONIC
    cvxpy_name: ClassVar[str] = ""

    def solver_kwargs(self, options: Any) -> dict[str, Any]:
        return {}

    def solve_cvxpy(self, problem: Any, options: Any) -> SolveOutcome:
        import cvxpy as cp

        status_map = {
            cp.OPTIMAL: Termination.OPTIMAL,
            cp.OPTIMAL_INACCURATE: Termination.NUMERICAL_ERROR,
            cp.INFEASIBLE: Termination.INFEASIBLE,
            cp.UNBOUNDED: Termination.UNBOUNDED,
            cp.INFEASIBLE_INACCURATE: Termination.NUMERICAL_ERROR,
            cp.UNBOUNDED_INACCURATE: Termination.NUMERICAL_ERROR,
            cp.USER_LIMIT: Termination.TIME_LIMIT if options.time_limit is not None else Termination.OTHER,
            cp.SOLVER_ERROR: Termination.NUMERICAL_ERROR,
        }
        sense = "max" if isinstance(problem.objective, cp.Maximize) else "min"
        t0 = time.perf_counter()
        objective = bound = None
        kwargs = {**self.solver_kwargs(options), **dict(options.extra)}
        try:
            problem.solve(solver=self.cvxpy_name, verbose=options.verbose, **kwargs)
            status = str(problem.status)
            term = status_map.get(status, Termination.OTHER)
            message = f"{self.name} via cvxpy: {status}"
        except cp.error.SolverError as exc:
            status, text = "solver_error", str(exc)
            term = Termination.LICENSE_LIMIT if "licen" in text.lower() else Termination.NUMERICAL_ERROR
            message = f"{self.name} via cvxpy: SolverError: {text}"
        except KeyboardInterrupt:
            from . import interrupts

            interrupts.request()
            status, term, message = "interrupted", Termination.INTERRUPTED, f"{self.name}: interrupted"
        except Exception as exc:  # a solver failure is a status, not a traceback
            status = f"exception:{type(exc).__name__}"
            # MOSEK without a licence file raises its own mosek.Error through cvxpy
            term = Termination.LICENSE_LIMIT if "licen" in str(exc).lower() else Termination.ERROR
            message = f"{self.name} via cvxpy: {type(exc).__name__}: {exc}"
        solve_time = time.perf_counter() - t0
        if status in cp.settings.SOLUTION_PRESENT and problem.value is not None:
            objective = float(problem.value)
            if term is Termination.OPTIMAL:
                bound = objective
        stats = getattr(problem, "solver_stats", None)
        if stats is not None and getattr(stats, "solve_time", None):
            solve_time = float(stats.solve_time)
        return SolveOutcome(
            solver=self.name, solver_version=self.version(), termination=term, raw_status=status, sense=sense,
            objective=objective, bound=bound, gap=None, has_incumbent=objective is not None, build_time=0.0,
            solve_time=solve_time, wall_time=time.perf_counter() - t0, message=message, options=options,
            solution_status=SolutionStatus.OPTIMAL if term is Termination.OPTIMAL else SolutionStatus.NONE,
        )


class ClarabelBackend(CvxpyBackend):
    name = "clarabel"
    cvxpy_name = "CLARABEL"
    package = "clarabel"
    modules = ("cvxpy", "clarabel")
    description = "Clarabel interior-point conic solver via cvxpy"

    def solver_kwargs(self, options: Any) -> dict[str, Any]:
        return {} if options.time_limit is None else {"time_limit": float(options.time_limit)}


class ScsBackend(CvxpyBackend):
    name = "scs"
    cvxpy_name = "SCS"
    package = "scs"
    modules = ("cvxpy", "scs")
    description = "SCS first-order conic solver via cvxpy (low accuracy: certificates need a repair/check)"

    def solver_kwargs(self, options: Any) -> dict[str, Any]:
        return {} if options.time_limit is None else {"time_limit_secs": float(options.time_limit)}


class MosekBackend(CvxpyBackend):
    name = "mosek"
    cvxpy_name = "MOSEK"
    package = "Mosek"
    modules = ("cvxpy", "mosek")
    description = "MOSEK interior-point conic solver via cvxpy (needs a licence file)"
    commercial = True

    def probe_licence(self) -> str:
        """"full" when a licence token can be checked out, else "no valid licence (...)" with MOSEK's
        reason (a missing licence file is the usual one)."""
        import mosek

        try:
            with mosek.Env() as env:
                env.checkoutlicense(mosek.feature.pts)
        except mosek.Error as exc:
            return (f"{NO_LICENCE} ({exc}; MOSEK reads $MOSEKLM_LICENSE_FILE, else ~/mosek/mosek.lic: "
                    f"https://www.mosek.com/products/academic-licenses/)")
        return "full"

    def solver_kwargs(self, options: Any) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if options.time_limit is not None:
            params["MSK_DPAR_OPTIMIZER_MAX_TIME"] = float(options.time_limit)
        if options.threads is not None:
            params["MSK_IPAR_NUM_THREADS"] = int(options.threads)
        return {"mosek_params": params} if params else {}
