"""Normalised result of one solver run: termination, incumbent and dual bound kept apart."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Any

from .options import SolverOptions

__all__ = ["SolveOutcome", "Termination", "normalise_sense", "not_available_outcome", "relative_gap"]

# An OPTIMAL claim needs the final gap within these (the solver's own "optimal" may be looser).
OPTIMAL_REL_GAP = 1e-6
OPTIMAL_ABS_GAP = 1e-9


class Termination(enum.Enum):
    OPTIMAL = "optimal"
    TIME_LIMIT = "time_limit"
    GAP_LIMIT = "gap_limit"  # stopped at the requested (looser than OPTIMAL_REL_GAP) gap
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INTERRUPTED = "interrupted"
    LICENSE_LIMIT = "license_limit"  # size-limited licence hit
    NOT_AVAILABLE = "not_available"  # solver missing
    NUMERICAL_ERROR = "numerical_error"
    ERROR = "error"
    OTHER = "other"


def normalise_sense(sense: str) -> str:
    """"max" or "min" (also accepts maximize/maximise/minimize/minimise)."""
    s = str(sense).strip().lower()
    if s in ("max", "maximize", "maximise"):
        return "max"
    if s in ("min", "minimize", "minimise"):
        return "min"
    raise ValueError(f"sense must be 'max' or 'min', got {sense!r}")


def relative_gap(objective: float | None, bound: float | None) -> float | None:
    """|bound - objective| / max(|objective|, 1e-10); None if either side is missing."""
    if objective is None or bound is None:
        return None
    if math.isinf(bound) or math.isinf(objective):
        return math.inf
    diff = abs(bound - objective)
    if diff == 0.0:
        return 0.0
    return diff / max(abs(objective), 1e-10)


def gap_closed(objective: float | None, bound: float | None) -> bool:
    """True when incumbent and bound agree within the OPTIMAL tolerances."""
    if objective is None or bound is None or math.isinf(bound):
        return False
    gap = relative_gap(objective, bound)
    return abs(bound - objective) <= OPTIMAL_ABS_GAP or (gap is not None and gap <= OPTIMAL_REL_GAP)


@dataclass
class SolveOutcome:
    """What a solver run produced. ``bound`` is the best dual bound (for ``sense == "max"`` an upper
    bound on the optimum, for "min" a lower bound); ``objective`` the incumbent value (None without
    an incumbent). Times are in seconds; ``build_time`` is filled in by the caller."""

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

    @property
    def ok(self) -> bool:
        return self.has_incumbent and self.termination in (Termination.OPTIMAL, Termination.GAP_LIMIT)

    def to_dict(self) -> dict[str, Any]:
        return {
            "solver": self.solver,
            "solver_version": self.solver_version,
            "termination": self.termination.value,
            "raw_status": self.raw_status,
            "sense": self.sense,
            "objective": self.objective,
            "bound": self.bound,
            "gap": self.gap,
            "has_incumbent": self.has_incumbent,
            "ok": self.ok,
            "build_time": self.build_time,
            "solve_time": self.solve_time,
            "wall_time": self.wall_time,
            "message": self.message,
            "options": self.options.to_dict(),
        }


def not_available_outcome(name: str, sense: str, options: SolverOptions, message: str) -> SolveOutcome:
    return SolveOutcome(
        solver=name, solver_version=None, termination=Termination.NOT_AVAILABLE, raw_status="not_available",
        sense=sense, objective=None, bound=None, gap=None, has_incumbent=False, build_time=0.0,
        solve_time=0.0, wall_time=0.0, message=message, options=options,
    )
