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

__all__ = ["solve_reporter"]


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
