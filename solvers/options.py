"""Solver-independent options (mapped to each solver's own names by its backend class)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SolverOptions", "parse_solver_option"]


@dataclass(frozen=True)
class SolverOptions:
    """Options common to all solvers.

    ``rel_gap`` / ``abs_gap`` are MIP gap tolerances (the conic cvxpy backends ignore them; their
    accuracy settings go through ``extra``). ``abs_gap`` defaults to 0: an absolute floor is not scale
    invariant (a MIP whose optimum is 3e-8 would otherwise stop at once with a bound of 0).
    ``extra`` passes through verbatim in the solver's own option names (``{"presolve": "off"}`` for
    HiGHS, ``{"limits/nodes": 10}`` for SCIP, ``{"MIPFocus": 1}`` for Gurobi) and overrides the
    mapped options. ``log_file``: where the solver writes its log (the layer never captures file
    descriptors; a verbose solve without ``log_file`` logs to the console). ``isolate``: solve in a
    child process that is killed at the hard deadline (``time_limit + grace``).
    """

    time_limit: float | None = None
    rel_gap: float = 1e-6
    abs_gap: float = 0.0
    threads: int | None = None
    seed: int = 0
    verbose: bool = False
    log_file: str | None = None
    isolate: bool = False
    grace: float | None = None  # seconds past time_limit before a solve is stopped by force
    feasibility_tol: float | None = None  # primal (and dual) feasibility tolerance; None: solver default
    write_dir: str | None = None  # write each model solved as .lp and .mps into this folder first
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tl = self.time_limit
        if tl is not None and (not isinstance(tl, int | float) or math.isnan(tl) or tl <= 0):
            raise ValueError(f"time_limit must be a positive number of seconds or None, got {tl!r}")
        for name in ("rel_gap", "abs_gap"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or math.isnan(v) or v < 0:
                raise ValueError(f"{name} must be a non-negative number, got {v!r}")
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ValueError(f"threads must be an integer >= 1 or None, got {self.threads!r}")
        if self.grace is not None and not self.grace >= 0:
            raise ValueError(f"grace must be >= 0 seconds, got {self.grace!r}")

    @property
    def hard_deadline(self) -> float | None:
        """Seconds after the start at which a solve is stopped by force (None: no deadline)."""
        if self.time_limit is None or math.isinf(self.time_limit):
            return None
        grace = self.grace if self.grace is not None else max(2.0, 0.25 * self.time_limit)
        return self.time_limit + grace

    def to_dict(self) -> dict[str, Any]:
        return {
            "time_limit": self.time_limit,
            "rel_gap": self.rel_gap,
            "abs_gap": self.abs_gap,
            "threads": self.threads,
            "seed": self.seed,
            "verbose": self.verbose,
            "log_file": self.log_file,
            "isolate": self.isolate,
            "grace": self.grace,
            "feasibility_tol": self.feasibility_tol,
            "write_dir": self.write_dir,
            "extra": dict(self.extra),
        }


def parse_solver_option(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` -> (key, value) with VALUE read as bool, int, float or string, in that order."""
    if "=" not in text:
        raise ValueError(f"solver option {text!r} is not of the form KEY=VALUE")
    key, raw = (s.strip() for s in text.split("=", 1))
    if not key:
        raise ValueError(f"solver option {text!r} has an empty key")
    low = raw.lower()
    if low in ("true", "false"):
        return key, low == "true"
    for conv in (int, float):
        try:
            return key, conv(raw)
        except ValueError:
            pass
    return key, raw
