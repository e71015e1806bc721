"""Progress of long solves: the incumbent and the dual bound of a MIP as they move.

:func:`solve_reporter` returns a callback for :func:`lipopt_solvers.solve_pyomo` (``progress=``) that
prints a plain line to stderr at most every ``every`` seconds (and at the first incumbent), in the
Lipschitz units of the original network (``to_units``). A tqdm bar would hide the numbers that matter
here; these lines are readable in a terminal, a log file and a notebook alike. ``-q`` on the command line
(``RunOptions.progress=False``) silences them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["History", "anytime", "chain", "solve_reporter"]


def solve_reporter(label: str, to_units: Callable[[float], float] = float, every: float = 5.0,
                   bound_kind: str = "UPPER") -> Callable[[float | None, float | None, Any], None]:
    """A progress callback printing ``label: incumbent ~ v (ESTIMATE) ... bound <= u (UPPER) ...`` lines.

    The incumbent is the solver's objective, not yet certified (the method certifies it by a float64
    witness afterwards), so it is an ESTIMATE; the dual bound is an UPPER bound on the constant when the
    model is a relaxation of the exact problem (``bound_kind``; for the MIQCQP's P_LB it bounds only
    P_LB, which the caller says)."""
    t0 = time.perf_counter()
    state = {"last": -float("inf"), "printed": 0}

    def report(objective: float | None, bound: float | None, _x: Any = None) -> None:
        now = time.perf_counter()
        if state["printed"] and now - state["last"] < every:
            return
        inc = "-" if objective is None else f"~ {to_units(objective):.6g} (ESTIMATE)"
        bnd = "-" if bound is None else f"{to_units(bound):.6g} ({bound_kind})"
        gap = ""
        if objective is not None and bound is not None and bound != 0:
            gap = f", gap {abs(bound - objective) / max(abs(bound), abs(objective)):.2%}"
        print(f"      {label}: incumbent {inc}, bound {bnd}{gap} ({now - t0:.0f}s)", file=sys.stderr,
              flush=True)
        state["last"], state["printed"] = now, state["printed"] + 1

    return report


class History:
    """The anytime record of one solve: ``rows`` of [seconds since ``t0``, incumbent, dual bound] in the
    Lipschitz units of the original network (``to_units``), at most one row every ``every`` seconds
    (and every change of the bound). The incumbent is the solver's, not yet certified: an ESTIMATE; the
    bound is an UPPER bound when the model relaxes the exact problem (the caller says which)."""

    def __init__(self, to_units: Callable[[float], float] = float, t0: float | None = None,
                 every: float = 0.2) -> None:
        self.to_units = to_units
        self.t0 = time.perf_counter() if t0 is None else t0
        self.every = every
        self.rows: list[list[float | None]] = []

    def __call__(self, objective: float | None, bound: float | None, _x: Any = None) -> None:
        t = time.perf_counter() - self.t0
        row = [t, None if objective is None else float(self.to_units(objective)),
               None if bound is None else float(self.to_units(bound))]
        if self.rows and row[1:] == self.rows[-1][1:]:
            return
        if self.rows and t - self.rows[-1][0] < self.every and row[2] == self.rows[-1][2]:
            self.rows[-1] = row  # a newer incumbent at the same bound within the spacing
            return
        self.rows.append(row)


def chain(*callbacks: Callable[..., None] | None) -> Callable[..., None] | None:
    """One progress callback calling each of ``callbacks`` (None entries skipped; None if all are)."""
    cbs = [c for c in callbacks if c is not None]
    if not cbs:
        return None

    def call(objective: float | None, bound: float | None, x: Any = None) -> None:
        for c in cbs:
            c(objective, bound, x)

    return call


def anytime(solver_rows: list[list[float | None]], result: Any, fallback: float | None = None
            ) -> list[list[float | None]]:
    """The certified anytime bracket of a run as [seconds, lower, upper] rows: the solver's dual bounds
    (``solver_rows`` from :class:`History`, valid UPPER bounds of the constant; ``fallback`` a sound
    bound they are intersected with), no lower bound while the incumbents are uncertified, and the
    record's final certified bracket at its wall time."""
    rows: list[list[float | None]] = []
    for t, _inc, bound in solver_rows:
        if bound is None:
            continue
        up = bound if fallback is None else min(bound, fallback)
        rows.append([t, None, up])
    rows.append([result.wall_time, result.lower, result.upper])
    return rows
