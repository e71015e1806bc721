"""lipopt_solvers: the only part of lipopt that names a solver.

One backend class per solver (:mod:`.highs`, :mod:`.scip`, :mod:`.gurobi`, :mod:`.cvxpy_backends`,
and the optional Pyomo-contrib ones in :mod:`.pyomo_contrib`), a catalog of them, solver-independent
options, a normalised outcome, and the entry points :func:`solve_pyomo` (a Pyomo model compiled to
arrays), :func:`solve_arrays`, :func:`solve_lp` and :func:`solve_cvxpy`. Importing this package imports
no solver, no Pyomo and no cvxpy; they are imported when a solve is requested.
"""

from __future__ import annotations

from . import interrupts
from .api import solve_arrays, solve_cvxpy, solve_lp, solve_pyomo
from .arrays import ArrayModel, QuadTerms
from .base import Backend, Capability, SolverNotAvailableError
from .catalog import (
    SOLVERS,
    SolverInfo,
    available_solvers,
    default_solver,
    get_solver,
    probe_all,
    require_solver,
)
from .options import SolverOptions, parse_solver_option
from .outcome import SolutionStatus, SolveOutcome, Termination

__all__ = [
    "SOLVERS",
    "ArrayModel",
    "Backend",
    "Capability",
    "QuadTerms",
    "SolutionStatus",
    "SolveOutcome",
    "SolverInfo",
    "SolverNotAvailableError",
    "SolverOptions",
    "Termination",
    "available_solvers",
    "default_solver",
    "get_solver",
    "interrupts",
    "parse_solver_option",
    "probe_all",
    "require_solver",
    "solve_arrays",
    "solve_cvxpy",
    "solve_lp",
    "solve_pyomo",
]
