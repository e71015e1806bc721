"""Entry points that run a solver: :func:`solve_pyomo`, :func:`solve_arrays`, :func:`solve_lp`,
:func:`solve_cvxpy`. None of them raises on a non-optimal termination or a solver failure.

Every array solve re-checks its own output: the incumbent's largest constraint violation
(``SolveOutcome.violation``) and its objective re-evaluated from the arrays in float64.
"""

from __future__ import annotations

import time
import traceback
from typing import Any

import numpy as np

from .arrays import ArrayModel
from .base import Capability, Progress
from .catalog import get_solver, not_available_message
from .options import SolverOptions
from .outcome import SolveOutcome, Termination, failed_outcome, normalise_sense, not_available_outcome

__all__ = ["solve_arrays", "solve_cvxpy", "solve_lp", "solve_pyomo"]

#: an incumbent may violate a row by this much, relative to the row's scale, before it is reported
FEASIBILITY_TOL = 1e-6


def _check(out: SolveOutcome, arrays: ArrayModel) -> SolveOutcome:
    if out.x is None or out.x.shape != (arrays.n_cols,):
        return out
    viol = arrays.max_violation(out.x)
    out.violation = viol
    value = arrays.objective_value(out.x)
    scale = max(1.0, float(np.max(np.abs(out.x), initial=0.0)))
    if viol > FEASIBILITY_TOL * scale:
        out.message += f"; the incumbent violates the model by {viol:.3g}"
    said = out.objective
    if said is not None and abs(value - said) > 1e-6 * max(abs(value), abs(said)):
        out.message += f"; incumbent objective re-evaluated as {value:.12g} (solver said {said:.12g})"
    return out


def solve_arrays(arrays: ArrayModel, solver: str, options: SolverOptions | None = None,
                 progress: Progress | None = None) -> SolveOutcome:
    """Solve an :class:`ArrayModel` with an array backend (in a child process if ``options.isolate``)."""
    options = options or SolverOptions()
    info = get_solver(solver)
    if info.interface != "arrays":
        raise ValueError(f"solver {info.name!r} is reached through {info.interface}, not from arrays; "
                         f"array solvers: highs, scip, gurobi")
    if not info.is_installed():
        return not_available_outcome(info.name, arrays.sense, options, not_available_message(info))
    if arrays.is_quadratic and not info.supports(Capability.MIQCQP):
        return failed_outcome(info.name, info.version(), arrays.sense, options, Termination.ERROR,
                              "unsupported_model", f"{info.name} cannot solve quadratic constraints or "
                              "objectives; use scip (or gurobi)")
    t0 = time.perf_counter()
    written = _write(arrays, options.write_dir) if options.write_dir else []
    try:
        if options.isolate:
            from .isolate import solve_isolated

            out = solve_isolated(info.name, arrays, options, info.version(), progress)
        else:
            out = info.solve_arrays(arrays, options, progress)
    except Exception as exc:  # a solver failure is a status, not a traceback
        return failed_outcome(info.name, info.version(), arrays.sense, options, Termination.ERROR,
                              f"exception:{type(exc).__name__}", f"{info.name}: {type(exc).__name__}: {exc}; "
                              + traceback.format_exc(limit=3).replace("\n", " "),
                              wall_time=time.perf_counter() - t0)
    if written:
        out.message += "; model written to " + ", ".join(str(p) for p in written)
    return _check(out, arrays)


_written_count = 0


def _write(arrays: ArrayModel, folder: str) -> list[Any]:
    """Write the model as ``lipopt-NNNN.lp`` and ``.mps`` into ``folder`` (numbered per process)."""
    from pathlib import Path

    from .files import write_model

    global _written_count
    _written_count += 1
    stem = Path(folder) / f"lipopt-{_written_count:04d}"
    return [write_model(arrays, stem.with_suffix(ext)) for ext in (".lp", ".mps")]


def solve_pyomo(model: Any, solver: str, options: SolverOptions | None = None, *, sense: str,
                progress: Progress | None = None) -> SolveOutcome:
    """Solve a Pyomo model: compiled to arrays and handed to the backend (no Pyomo solver interface,
    no output capture). ``sense`` ("max"/"min") must match the model's single active objective
    (ValueError otherwise). The incumbent, if any, is loaded into the model's variables."""
    options = options or SolverOptions()
    info = get_solver(solver)
    sense = normalise_sense(sense)
    if info.interface == "cvxpy":
        raise ValueError(f"solver {info.name!r} is reached through cvxpy, not Pyomo; use solve_cvxpy() or "
                         f"one of: highs, scip, gurobi")
    if not info.is_installed():
        return not_available_outcome(info.name, sense, options, not_available_message(info))
    if info.interface == "pyomo":  # the optional Pyomo-contrib backends
        return info.solve_pyomo(model, options, sense)
    from .compile import compile_pyomo, load_solution

    t0 = time.perf_counter()
    try:
        compiled = compile_pyomo(model, sense)
    except ValueError:
        raise
    except Exception as exc:  # an infeasible constant row, an expression of degree > 2, ...
        return failed_outcome(info.name, info.version(), sense, options, Termination.ERROR,
                              f"translation_error:{type(exc).__name__}",
                              f"{info.name}: the model could not be translated to arrays: {exc}",
                              wall_time=time.perf_counter() - t0)
    out = solve_arrays(compiled.arrays, info.name, options, progress)
    if out.x is not None and out.x.shape == (len(compiled.columns),):
        load_solution(compiled, out.x)
    out.wall_time = time.perf_counter() - t0
    return out


def solve_lp(c: Any, *, A_ub: Any = None, b_ub: Any = None, A_eq: Any = None, b_eq: Any = None,
             bounds: Any = None, solver: str | None = None, options: SolverOptions | None = None
             ) -> SolveOutcome:
    """``min c @ x`` in scipy ``linprog`` conventions (negate c to maximise), solved through the layer
    (default: the preferred LP solver). The optimal point is ``outcome.x``."""
    from .catalog import default_solver

    arrays = ArrayModel.from_lp(c, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=bounds, sense="min")
    name = solver or default_solver(Capability.LP)
    if get_solver(name).interface != "arrays":
        name = "highs"
    return solve_arrays(arrays, name, options)


def solve_cvxpy(problem: Any, solver: str, options: SolverOptions | None = None) -> SolveOutcome:
    """Solve a cvxpy problem with a conic backend."""
    options = options or SolverOptions()
    info = get_solver(solver)
    if info.interface != "cvxpy":
        raise ValueError(f"solver {info.name!r} is not reached through cvxpy; use solve_pyomo() or one of "
                         f"the cvxpy solvers: clarabel, scs, mosek")
    if not info.is_installed():
        sense = "max" if type(problem.objective).__name__ == "Maximize" else "min"
        return not_available_outcome(info.name, sense, options, not_available_message(info))
    return info.solve_cvxpy(problem, options)
