"""Progress of long solves: the incumbent and the dual bound of a MIP as they move.

:func:`solve_reporter` returns a callback for :func:`lipopt_solvers.solve_pyomo` (``progress=``) that
prints a plain line to stderr at most every ``every`` seconds (and at the first incumbent), in the
Lipschitz units of the original network (``to_units``). A tqdm bar would hide the numbers that matter
here; these lines are readable in a terminal, a log file and a notebook alike. ``-q`` on the command line
(``RunOptions.progress=False``) silences them.

:class:`Steps` is the progress of a run made of a known number of steps (certify's eps rows and inputs):
a tqdm bar when stderr is a terminal, one plain line per finished step otherwise
(``certify: eps 0.1 (2/3): local bound 12.3 (UPPER) in 4.1s``), nothing when disabled (``-q``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["History", "Steps", "anytime", "chain", "iterate", "solve_reporter"]


def solve_reporter(label: str, to_units: Callable[[float], float] = float, every: float = 5.0,
                   bound_kind: str = "UPPER", incumbent_kind: str = "ESTIMATE"
                   ) -> Callable[[float | None, float | None, Any], None]:
    """A progress callback printing ``label: incumbent ~ v (ESTIMATE) ... bound <= u (UPPER) ...`` lines.

    The incumbent is the solver's objective, not yet certified (the method certifies it by a float64
    witness afterwards), so it is an ESTIMATE; the dual bound is an UPPER bound on the constant when the
    model is a relaxation of the exact problem (``bound_kind``; for the MIQCQP's P_LB it bounds only
    P_LB, which the caller says). A search whose incumbent is already certified (bab's float64
    witnesses) passes ``incumbent_kind="LOWER"``."""
    t0 = time.perf_counter()
    state = {"last": -float("inf"), "printed": 0}

    def report(objective: float | None, bound: float | None, _x: Any = None) -> None:
        now = time.perf_counter()
        if state["printed"] and now - state["last"] < every:
            return
        sign = "~" if incumbent_kind == "ESTIMATE" else ">="
        if objective is None and bound is None:  # a liveness call (SCIP reads its numbers at the end)
            print(f"      {label}: solving, no incumbent or bound reported yet ({now - t0:.0f}s)",
                  file=sys.stderr, flush=True)
            state["last"], state["printed"] = now, state["printed"] + 1
            return
        inc = "-" if objective is None else f"{sign} {to_units(objective):.6g} ({incumbent_kind})"
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
        if objective is None and bound is None:  # a liveness call: nothing to record
            return
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


class Steps:
    """Progress over ``total`` steps of a run named ``label``: a tqdm bar on a terminal (``leave=False``
    for an inner bar, e.g. the eps rows of one input of many), one plain line per :meth:`done` step
    otherwise, nothing when ``enabled`` is false. :meth:`note` reports a phase outside the count (a line,
    or the bar's postfix on a terminal)."""

    def __init__(self, label: str, total: int, enabled: bool = True, unit: str = "step",
                 leave: bool = True, every: float = 0.0) -> None:
        self.label, self.total, self.enabled, self.n = label, int(total), bool(enabled), 0
        self.t0 = time.perf_counter()
        self.every, self.last = float(every), -float("inf")  # plain lines at most every `every` s
        self.bar = None
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, desc=label, unit=unit, file=sys.stderr, leave=leave)

    def done(self, what: str, detail: str = "") -> None:
        """One step (``what``, e.g. "eps 0.1") finished with ``detail`` (its numbers and time)."""
        self.n += 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(f"{what}: {detail}" if detail else what, refresh=False)
            self.bar.update(1)
            return
        now = time.perf_counter()
        if self.n < self.total and now - self.last < self.every:
            return
        self.last = now
        tail = f": {detail}" if detail else ""
        print(f"{self.label}: {what} ({self.n}/{self.total}){tail}", file=sys.stderr, flush=True)

    def note(self, text: str) -> None:
        """A phase beside the counted steps finished (e.g. the certified radius)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(text, refresh=True)
            return
        print(f"{self.label}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Steps:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iterate(n: int, label: str, enabled: bool = True, every: float = 5.0) -> Iterator[int]:
    """``range(n)`` with progress (:class:`Steps`): an inner tqdm bar on a terminal, otherwise a plain line
    ``label: step k (k/n) after t s`` at most every ``every`` seconds (and at the last step); nothing
    when ``enabled`` is false. A loop that breaks early closes the bar."""
    if not enabled:
        yield from range(n)
        return
    with Steps(label, n, enabled=True, leave=False, every=every) as steps:
        for k in range(n):
            yield k
            steps.done(f"step {k + 1}", f"{time.perf_counter() - steps.t0:.1f}s")
