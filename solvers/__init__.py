"""lipopt_solvers: the only part of lipopt that names a solver.

Catalog (capabilities, availability, versions, licences), solver-independent options, a normalised
outcome, and :func:`solve_pyomo` / :func:`solve_cvxpy`. Importing this package imports no solver,
no Pyomo and no cvxpy; they are imported when a solve is requested.
"""

from __future__ import annotations

from .api import solve_cvxpy, solve_pyomo
from .catalog import (
    SOLVERS,
    Capability,
    SolverInfo,
    SolverNotAvailableError,
    available_solvers,
    default_solver,
    get_solver,
    probe_all,
    require_solver,
)
from .options import SolverOptions
from .outcome import SolveOutcome, Termination

__all__ = [
    "SOLVERS",
    "Capability",
    "SolveOutcome",
    "SolverInfo",
    "SolverNotAvailableError",
    "SolverOptions",
    "Termination",
    "available_solvers",
    "default_solver",
    "get_solver",
    "probe_all",
    "require_solver",
    "solve_cvxpy",
    "solve_pyomo",
]
