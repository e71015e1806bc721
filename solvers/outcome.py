"""Normalised result of one solver run (modelled on Pyomo's ``pyomo.contrib.solver.common.results``).

Why the solver stopped (``Termination``) is kept apart from what it holds (``SolutionStatus``), and the
incumbent objective apart from the dual bound. Times: ``translate_time`` (model to solver arrays and
into the solver), ``solve_time`` (the solver's optimisation), ``wall_time`` (everything in the layer);
``build_time`` is the caller's (formulation) time, filled in by the caller.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .options import SolverOptions

__all__ = [
    "SolutionStatus",
    "SolveOutcome",
    "Termination",
    "gap_closed",
    "normalise_sense",
    "not_available_outcome",
    "relative_gap",
]

# An OPTIMAL claim needs the final gap within this (the solver's own "optimal" may be looser).
OPTIMAL_REL_GAP = 1e-6


class Termination(enum.Enum):
    """Why the solver stopped."""

    OPTIMAL = "optimal"  # proved optimal within OPTIMAL_REL_GAP
    TIME_LIMIT = "time_limit"
    GAP_LIMIT = "gap_limit"  # stopped at the requested gap (looser than OPTIMAL_REL_GAP)
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"  # unbounded, or infeasible-or-unbounded
    INTERRUPTED = "interrupted"  # Ctrl-C
    LICENSE_LIMIT = "license_limit"  # size-limited licence hit
    NOT_AVAILABLE = "not_available"  # solver missing
    NUMERICAL_ERROR = "numerical_error"
    ERROR = "error"  # the solver failed (or its process died)
    OTHER = "other"  # node, iteration, memory or solution limits and unmapped statuses


class SolutionStatus(enum.Enum):
    """What the solver holds at the end."""

    NONE = "none"
    FEASIBLE = "feasible"
    OPTIMAL = "optimal"


def normalise_sense(sense: str) -> str:
    """"max" or "min" (also accepts maximize/maximise/minimize/minimise)."""
    s = str(sense).strip().lower()
    if s in ("max", "maximize", "maximise"):
        return "max"
    if s in ("min", "minimize", "minimise"):
        return "min"
    raise ValueError(f"sense must be 'max' or 'min', got {sense!r}")


def relative_gap(objective: float | None, bound: float | None) -> float | None:
    """|bound - objective| / max(|objective|, |bound|); None if either side is missing (scale-free)."""
    if objective is None or bound is None:
        return None
    if math.isinf(bound) or math.isinf(objective):
        return math.inf
    diff = abs(bound - objective)
    if diff == 0.0:
        return 0.0
    return diff / max(abs(objective), abs(bound))


def gap_closed(objective: float | None, bound: float | None, rel: float = OPTIMAL_REL_GAP) -> bool:
    """True when incumbent and bound agree within ``rel`` (relative, no absolute floor)."""
    gap = relative_gap(objective, bound)
    return gap is not None and gap <= rel


def settle(term: Termination, objective: float | None, bound: float | None, rel_gap: float
           ) -> tuple[Termination, float | None, SolutionStatus]:
    """The final (termination, bound, solution status) of an array backend's solve.

    A solver's "optimal" becomes OPTIMAL only when incumbent and bound agree within
    ``min(rel_gap, OPTIMAL_REL_GAP)`` (GAP_LIMIT when the requested gap was looser; ERROR without an
    incumbent); an unbounded or failed solve claims no bound."""
    if term is Termination.OPTIMAL:
        tol = min(rel_gap, OPTIMAL_REL_GAP) * 1.01 + 1e-12  # both relative: the solver's own rounding
        if objective is None:
            term = Termination.ERROR
        elif not gap_closed(objective, bound, tol):
            term = Termination.GAP_LIMIT
    if term in (Termination.UNBOUNDED, Termination.ERROR, Termination.NUMERICAL_ERROR):
        bound = None
    status = (SolutionStatus.OPTIMAL if term is Termination.OPTIMAL else
              SolutionStatus.FEASIBLE if objective is not None else SolutionStatus.NONE)
    return term, bound, status


def _finite(v: Any) -> float | None:
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


@dataclass
class SolveOutcome:
    """What a solver run produced. ``bound`` is the best dual bound (for ``sense == "max"`` an upper
    bound on the optimum, for "min" a lower bound); ``objective`` the incumbent value (None without
    an incumbent); ``x`` the incumbent in the column order of the arrays (when solved from arrays)."""

    solver: str
    solver_version: str | None
    termination: Termination
    raw_status: str
    sense: str
    objective: float | None
    bound: float | None
    gap: float | None
    has_incumbent: bool
    build_time: float
    solve_time: float
    wall_time: float
    message: str
    options: SolverOptions
    solution_status: SolutionStatus = SolutionStatus.NONE
    translate_time: float = 0.0
    nodes: int | None = None
    log: str | None = None
    isolated: bool = False
    violation: float | None = None  # largest constraint violation of the incumbent (array solves)
    x: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.objective = _finite(self.objective)
        self.bound = _finite(self.bound)
        if self.objective is None:
            self.has_incumbent = False
            self.x = None
            self.solution_status = SolutionStatus.NONE
        elif self.solution_status is SolutionStatus.NONE:
            self.solution_status = SolutionStatus.FEASIBLE
        if self.termination is Termination.INFEASIBLE:
            self.objective, self.bound, self.has_incumbent, self.x = None, None, False, None
            self.solution_status = SolutionStatus.NONE
        self.gap = relative_gap(self.objective, self.bound)

    @property
    def ok(self) -> bool:
        return self.has_incumbent and self.termination in (Termination.OPTIMAL, Termination.GAP_LIMIT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "solver": self.solver,
            "solver_version": self.solver_version,
            "termination": self.termination.value,
            "solution_status": self.solution_status.value,
            "raw_status": self.raw_status,
            "sense": self.sense,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "has_incumbent": self.has_incumbent,
            "ok": self.ok,
            "build_time": self.build_time,
            "translate_time": self.translate_time,
            "solve_time": self.solve_time,
            "wall_time": self.wall_time,
            "nodes": self.nodes,
            "isolated": self.isolated,
            "violation": self.violation,
            "message": self.message,
            "options": self.options.to_dict(),
        }


def failed_outcome(name: str, version: str | None, sense: str, options: SolverOptions, term: Termination,
                   raw: str, message: str, **times: float) -> SolveOutcome:
    """An outcome without incumbent or bound (a missing solver, a failure before the solve)."""
    return SolveOutcome(
        solver=name, solver_version=version, termination=term, raw_status=raw, sense=sense, objective=None,
        bound=None, gap=None, has_incumbent=False, build_time=0.0, solve_time=times.get("solve_time", 0.0),
        wall_time=times.get("wall_time", 0.0), message=message, options=options,
        translate_time=times.get("translate_time", 0.0),
    )


def not_available_outcome(name: str, sense: str, options: SolverOptions, message: str) -> SolveOutcome:
    return failed_outcome(name, None, sense, options, Termination.NOT_AVAILABLE, "not_available", message)
