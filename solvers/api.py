"""Entry points that run a solver: :func:`solve_pyomo` and :func:`solve_cvxpy`.

The backend module (and with it Pyomo/cvxpy and the solver) is imported only here, on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .catalog import SolverInfo, _not_available_message, get_solver
from .options import SolverOptions
from .outcome import SolveOutcome, normalise_sense, not_available_outcome

__all__ = ["solve_cvxpy", "solve_pyomo"]


def _resolve(solver: str, interface: str) -> SolverInfo:
    info = get_solver(solver)
    if info.interface != interface:
        raise ValueError(
            f"solver {info.name!r} is reached through {info.interface}, not {interface}; "
            f"use solve_{info.interface}() or one of the {interface} solvers"
        )
    return info


def solve_pyomo(
    model: Any, solver: str, options: SolverOptions | None = None, *, sense: str
) -> SolveOutcome:
    """Solve a Pyomo model; never raises on a non-optimal termination or a solver failure.

    ``sense`` ("max"/"min") must match the model's single active objective. The incumbent (if any)
    is loaded into the model's variables. A missing solver gives ``Termination.NOT_AVAILABLE``.
    """
    options = options or SolverOptions()
    info = _resolve(solver, "pyomo")
    if not info.is_installed():
        return not_available_outcome(info.name, normalise_sense(sense), options, _not_available_message(info))
    backend = importlib.import_module(info.backend)
    return backend.solve(model, options, sense)


def solve_cvxpy(problem: Any, solver: str, options: SolverOptions | None = None) -> SolveOutcome:
    """Solve a cvxpy problem; never raises on a non-optimal termination or a solver failure."""
    options = options or SolverOptions()
    info = _resolve(solver, "cvxpy")
    if not info.is_installed():
        sense = "max" if type(problem.objective).__name__ == "Maximize" else "min"
        return not_available_outcome(info.name, sense, options, _not_available_message(info))
    backend = importlib.import_module(info.backend)
    return backend.solve(problem, info.name, options)
