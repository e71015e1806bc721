"""One time budget per method run: ``Deadline.start(time_limit)`` at the top of ``run`` and every phase asks
it what is left (``remaining``), whether the time is up (``expired``), or takes a share of what is left
(``share(f)``: a deadline at now + f x remaining, for a phase that must leave time to later ones).

No limit (``time_limit`` None) gives a deadline that never expires, so a method runs exactly as without one.
A phase that stops at its deadline keeps what it has computed so far; the method then records
``StopReason.TIME_LIMIT`` (:attr:`Deadline.hit` says whether any phase was cut short).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Deadline:
    """An absolute ``time.perf_counter()`` instant (``at`` None: no limit)."""

    at: float | None = None
    #: set by :meth:`stopped` when a phase was cut short; shared with the deadlines made by :meth:`share`
    _hits: list[str] = field(default_factory=list)

    @classmethod
    def start(cls, time_limit: float | None, t0: float | None = None) -> Deadline:
        if time_limit is None or not math.isfinite(float(time_limit)):
            return cls(None)
        t0 = time.perf_counter() if t0 is None else t0
        return cls(t0 + float(time_limit))

    @property
    def limited(self) -> bool:
        return self.at is not None

    def remaining(self) -> float:
        """Seconds left (+inf without a limit; negative once past)."""
        return math.inf if self.at is None else self.at - time.perf_counter()

    def expired(self) -> bool:
        return self.at is not None and time.perf_counter() >= self.at

    def share(self, fraction: float) -> Deadline:
        """A deadline at now + ``fraction`` x what is left (never past this one); cut-short phases are
        recorded on both."""
        if self.at is None:
            return Deadline(None, self._hits)
        now = time.perf_counter()
        return Deadline(min(self.at, now + max(0.0, fraction) * max(0.0, self.at - now)), self._hits)

    def stopped(self, phase: str) -> None:
        """Record that ``phase`` stopped at the deadline (before it had done all its work)."""
        if phase not in self._hits:
            self._hits.append(phase)

    @property
    def hit(self) -> bool:
        return bool(self._hits)

    @property
    def phases_cut(self) -> list[str]:
        return list(self._hits)

    def note(self) -> str:
        return ("time limit reached: stopped early in " + ", ".join(self._hits)
                + " (the bound is what was certified by then, of the same kind)")

    def mark(self, res: Any) -> Any:
        """When a phase was cut short: ``res`` (a LipschitzResult) stops with ``StopReason.TIME_LIMIT`` and
        says where, in its notes. Returns ``res``."""
        if self.hit:
            from lipopt.result import StopReason

            res.stop = StopReason.TIME_LIMIT
            if self.note() not in res.notes:
                res.notes.append(self.note())
            res.finalise()
        return res
