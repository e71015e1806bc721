"""Solver-independent options (mapped to each solver's own names by its backend module)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SolverOptions"]


@dataclass(frozen=True)
class SolverOptions:
    """Options common to all solvers.

    ``rel_gap``/``abs_gap`` are MIP gap tolerances (ignored by the conic cvxpy backends, whose
    accuracy settings go through ``extra``). ``extra`` is passed through verbatim in the solver's
    own option names (e.g. ``{"presolve": "off"}`` for HiGHS, ``{"limits/nodes": 10}`` for SCIP)
    and overrides the mapped options.
    """

    time_limit: float | None = None
    rel_gap: float = 1e-6
    abs_gap: float = 1e-9
    threads: int | None = None
    seed: int = 0
    verbose: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"time_limit must be positive or None, got {self.time_limit}")
        if self.rel_gap < 0 or self.abs_gap < 0:
            raise ValueError("rel_gap and abs_gap must be non-negative")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {self.threads}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "time_limit": self.time_limit,
            "rel_gap": self.rel_gap,
            "abs_gap": self.abs_gap,
            "threads": self.threads,
            "seed": self.seed,
            "verbose": self.verbose,
            "extra": dict(self.extra),
        }
