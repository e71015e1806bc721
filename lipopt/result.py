"""Results: one record per method run (:class:`LipschitzResult`); sets of them rendered as tables
(:class:`ResultSet`) are in :mod:`lipopt.resultset`, re-exported here.

Every number carries its kind: EXACT (proved within a stated relative tolerance), UPPER (certified upper
bound), LOWER (certified lower bound, attained by a real point or pair), or ESTIMATE (heuristic,
never a bound). Each record lists the self-checks it ran (witness re-evaluation, eigenvalue check,
lower <= upper) and whether they passed.

A record says separately

* its **verdict** (:class:`Verdict`): may the numbers be used (ok), or did a self-check fail, the method
  raise or report an error, the method not apply, the solver not exist;
* why the computation **stopped** (:class:`StopReason`): completed, time limit, gap limit, licence
  limit, infeasible, interrupted, solver failure (plus ``not_run`` and ``aborted``);
* the solvers' own statuses (``raw_status``).

The kind and the value are *derived*, in one place (:meth:`LipschitzResult.finalise`), from the verdict
and the certified bracket ``[lower, upper]``; the invariants hold for every record:

* a record whose verdict is not ok shows no number: its value and bracket are moved aside to
  ``unverified_value`` / ``unverified_lower`` / ``unverified_upper`` (tables print it as failed);
* ``lower <= upper`` (a lower bound above the upper bound beyond the relative tolerance, or an upper bound
  below 0, fails the record);
* EXACT only when ``upper - lower <= max(rel_tol * |upper|, abs_tol)`` (``abs_tol`` is 0 unless a caller
  asks for one); otherwise a bracket is an UPPER bound with ``lower`` filled in.

Build a record with the usual constructor (``LipschitzResult(method, kind, value, lower=..., upper=...,
verdict=..., stop=...)``: the value is read as a bound of the given kind), or from a bracket with
:meth:`LipschitzResult.from_bracket`. The old ``Status`` enum is still accepted as the fourth argument
and readable as ``record.status`` (derived), for backward compatibility.

The mathematics as implemented: ``docs/methods.md#results``.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import InitVar, asdict, dataclass, field
from typing import Any

import numpy as np

from lipopt.provenance import schema_id


class BoundKind(enum.StrEnum):
    EXACT = "EXACT"
    UPPER = "UPPER"
    LOWER = "LOWER"
    ESTIMATE = "ESTIMATE"


class Verdict(enum.StrEnum):
    """May the record's numbers be used?"""

    OK = "ok"
    CHECK_FAILED = "check_failed"  # a self-check failed: nothing the record computed may be trusted
    ERROR = "error"  # the method or its solver failed
    NOT_APPLICABLE = "not_applicable"
    SOLVER_MISSING = "solver_missing"


class StopReason(enum.StrEnum):
    """Why the computation stopped (independent of whether its numbers can be used)."""

    COMPLETED = "completed"  # ran to the end (optimal, or a closed-form bound computed)
    TIME_LIMIT = "time_limit"  # the bracket reached by then is still valid
    GAP_LIMIT = "gap_limit"  # stopped at the requested gap
    LICENCE_LIMIT = "licence_limit"  # the solver's licence is too small for the model
    INFEASIBLE = "infeasible"  # a solver reported its problem infeasible
    INTERRUPTED = "interrupted"  # Ctrl-C / a signal; the bracket reached by then is still valid
    SOLVER_FAILED = "solver_failed"  # the solver gave up (numerical trouble, error, unknown status)
    ABORTED = "aborted"  # the method raised before it finished
    NOT_RUN = "not_run"  # nothing was started (not applicable, solver missing)


#: verdicts whose record computed something that went wrong (the ones that make `lipopt compute` fail)
FAILED_VERDICTS = frozenset({Verdict.CHECK_FAILED, Verdict.ERROR})

SCHEMA = schema_id("result")  # "lipopt.result/2"; the versions of every kind: lipopt.provenance.SCHEMAS
SET_SCHEMA = schema_id("resultset")

#: exit codes of `lipopt compute` (2 is bad input, from the command line itself)
EXIT_INCONSISTENT = 3
EXIT_FAILED = 4
EXIT_INTERRUPTED = 130


class Status(enum.StrEnum):
    """Legacy: verdict and stop reason in one (kept readable as ``LipschitzResult.status``)."""

    SOLVED = "solved"
    TIME_LIMIT = "time_limit"
    GAP_LIMIT = "gap_limit"
    LICENSE_LIMIT = "license_limit"
    INFEASIBLE = "infeasible"
    NOT_APPLICABLE = "not_applicable"
    SOLVER_MISSING = "solver_missing"
    CHECK_FAILED = "check_failed"
    ERROR = "error"


_FROM_STATUS: dict[Status, tuple[Verdict, StopReason]] = {
    Status.SOLVED: (Verdict.OK, StopReason.COMPLETED),
    Status.TIME_LIMIT: (Verdict.OK, StopReason.TIME_LIMIT),
    Status.GAP_LIMIT: (Verdict.OK, StopReason.GAP_LIMIT),
    Status.LICENSE_LIMIT: (Verdict.OK, StopReason.LICENCE_LIMIT),
    Status.INFEASIBLE: (Verdict.ERROR, StopReason.INFEASIBLE),
    Status.NOT_APPLICABLE: (Verdict.NOT_APPLICABLE, StopReason.NOT_RUN),
    Status.SOLVER_MISSING: (Verdict.SOLVER_MISSING, StopReason.NOT_RUN),
    Status.CHECK_FAILED: (Verdict.CHECK_FAILED, StopReason.COMPLETED),
    Status.ERROR: (Verdict.ERROR, StopReason.ABORTED),
}
_OK_STOP_STATUS = {
    StopReason.COMPLETED: Status.SOLVED, StopReason.TIME_LIMIT: Status.TIME_LIMIT,
    StopReason.INTERRUPTED: Status.TIME_LIMIT, StopReason.GAP_LIMIT: Status.GAP_LIMIT,
    StopReason.LICENCE_LIMIT: Status.LICENSE_LIMIT, StopReason.INFEASIBLE: Status.INFEASIBLE,
}


def _default_stop(verdict: Verdict) -> StopReason:
    if verdict in (Verdict.NOT_APPLICABLE, Verdict.SOLVER_MISSING):
        return StopReason.NOT_RUN
    if verdict is Verdict.ERROR:
        return StopReason.ABORTED
    return StopReason.COMPLETED


def legacy_status(verdict: Verdict, stop: StopReason) -> Status:
    """The old single ``Status`` of a (verdict, stop reason) pair."""
    if verdict is Verdict.OK:
        return _OK_STOP_STATUS.get(stop, Status.SOLVED)
    if verdict is Verdict.ERROR and stop is StopReason.INFEASIBLE:
        return Status.INFEASIBLE
    return Status(verdict.value)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.name}: {'ok' if self.passed else 'FAILED'}{detail}"


def _clean(v: Any) -> Any:
    """JSON-friendly copy (numpy arrays and scalars to lists/floats; inf as a string)."""
    if isinstance(v, np.ndarray):
        return [_clean(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return _clean(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    return v


def _unclean_float(v: Any) -> float | None:
    if v is None:
        return None
    return float(v)


def _fnum(v: float | None) -> float | None:
    return None if v is None else float(v)


@dataclass
class LipschitzResult:
    """The answer of one method to one question.

    ``kind`` / ``value`` are derived from ``verdict`` and the bracket ``[lower, upper]`` by
    :meth:`finalise` (run on construction, after every check and again by ``run_method``); the value
    passed to the constructor is read as a bound of the given kind. ``declared_kind`` is the kind the
    method promises (what ``kind`` is when there is no value). ``status`` (4th argument, legacy
    :class:`Status`) sets verdict and stop reason when those are not given."""

    method: str
    kind: BoundKind
    value: float | None
    status: InitVar[Status | str | None] = None
    lower: float | None = None
    upper: float | None = None
    raw_status: str = ""
    solver: str | None = None
    solver_version: str | None = None
    question: dict[str, Any] = field(default_factory=dict)
    network: str = ""
    build_time: float = 0.0
    solve_time: float = 0.0
    wall_time: float = 0.0
    witness: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    verdict: Verdict | None = None
    stop: StopReason | None = None
    rel_tol: float = 1e-6
    abs_tol: float = 0.0
    declared_kind: BoundKind | None = None
    unverified_value: float | None = None
    unverified_lower: float | None = None
    unverified_upper: float | None = None

    def __post_init__(self, status: Status | str | None) -> None:
        self.kind = BoundKind(self.kind)
        self.declared_kind = BoundKind(self.declared_kind) if self.declared_kind is not None else self.kind
        legacy = _FROM_STATUS[Status(status)] if status is not None else None
        if self.verdict is None:
            self.verdict = legacy[0] if legacy else Verdict.OK
        self.verdict = Verdict(self.verdict)
        if self.stop is None:
            self.stop = legacy[1] if legacy and legacy[0] is self.verdict else _default_stop(self.verdict)
        self.stop = StopReason(self.stop)
        self.value, self.lower, self.upper = _fnum(self.value), _fnum(self.lower), _fnum(self.upper)
        self.rel_tol, self.abs_tol = float(self.rel_tol), float(self.abs_tol)
        if self.rel_tol < 0 or self.abs_tol < 0 or not (math.isfinite(self.rel_tol) and
                                                         math.isfinite(self.abs_tol)):
            raise ValueError(f"tolerances must be finite and >= 0 (rel_tol {self.rel_tol}, "
                             f"abs_tol {self.abs_tol})")
        # the constructor's value is a bound of the given kind
        if self.value is not None:
            if self.kind is BoundKind.EXACT:
                self.lower = self.value if self.lower is None else self.lower
                self.upper = self.value if self.upper is None else self.upper
            elif self.kind is BoundKind.UPPER and self.upper is None:
                self.upper = self.value
            elif self.kind is BoundKind.LOWER and self.lower is None:
                self.lower = self.value
        self.finalise()

    # -- construction from a bracket ------------------------------------------------------------
    @classmethod
    def from_bracket(
        cls,
        method: str,
        declared_kind: BoundKind | str,
        lower: float | None,
        upper: float | None,
        verdict: Verdict | str = Verdict.OK,
        stop: StopReason | str | None = None,
        rel_tol: float = 1e-6,
        abs_tol: float = 0.0,
        **fields: Any,
    ) -> LipschitzResult:
        """A record from a certified bracket: kind and value follow from it (see :meth:`finalise`).

        ``lower`` must be attained (a certified lower bound), ``upper`` a sound upper bound; either may
        be None. ``fields``: any other record field (solver, raw_status, notes, stats, ...)."""
        return cls(method, BoundKind(declared_kind), None, lower=lower, upper=upper, verdict=Verdict(verdict),
                   stop=None if stop is None else StopReason(stop), rel_tol=rel_tol, abs_tol=abs_tol,
                   declared_kind=BoundKind(declared_kind), **fields)

    # -- the one place where kind and value are decided ------------------------------------------
    def _hide(self) -> None:
        """Move every number aside (a record that is not ok shows none)."""
        if self.value is not None and self.unverified_value is None:
            self.unverified_value = self.value
        if self.lower is not None and self.unverified_lower is None:
            self.unverified_lower = self.lower
        if self.upper is not None and self.unverified_upper is None:
            self.unverified_upper = self.upper
        self.value = self.lower = self.upper = None
        self.kind = self.declared_kind or self.kind

    def _fail_check(self, name: str, detail: str) -> None:
        if not any(c.name == name and not c.passed for c in self.checks):
            self.checks.append(Check(name, False, detail))

    def exact_tolerance(self, upper: float) -> float:
        """Largest ``upper - lower`` for which the bracket counts as closed (EXACT)."""
        return max(self.rel_tol * abs(upper), self.abs_tol)

    def finalise(self) -> LipschitzResult:
        """Enforce the invariants and derive ``kind`` and ``value`` from the verdict and the bracket.

        Idempotent. Called on construction, by :meth:`add_check`, when ``status`` is set, by
        ``run_method`` and before serialising; call it after changing ``lower`` / ``upper`` / ``verdict``
        by hand. ``kind`` and ``value`` are outputs: after construction, set the bracket, not them."""
        assert self.verdict is not None and self.declared_kind is not None
        lo, up = self.lower, self.upper
        for name, v in (("lower", lo), ("upper", up), ("value", self.value)):
            if v is not None and math.isnan(v):
                self._fail_check(f"{name} is a number", f"{name} is NaN")
        if up is not None and up == math.inf:
            self.notes.append("the upper bound is +inf (no bound); dropped")
            self.upper = up = None
        if lo is not None and lo == -math.inf:
            self.lower = lo = None
        if up is not None and not math.isnan(up) and up < 0:
            self._fail_check("upper >= 0", f"upper bound {up:.9g} < 0: a norm is never negative")
        if lo is not None and up is not None and not (math.isnan(lo) or math.isnan(up)) and lo > up:
            if lo - up <= self.rel_tol * abs(up):
                self.notes.append(f"the upper bound {up:.12g} is below the certified lower bound {lo:.12g} "
                                  f"within the relative tolerance {self.rel_tol:g}; it is raised to it")
                self.upper = up = lo
            else:
                self._fail_check("lower <= upper", f"certified lower {lo:.9g} > upper {up:.9g} (beyond the "
                                                   f"relative tolerance {self.rel_tol:g})")
        if any(not c.passed for c in self.checks) and self.verdict is Verdict.OK:
            self.verdict = Verdict.CHECK_FAILED
        kind, value = self._derive()
        if self.verdict is not Verdict.OK:
            if self.value is None and self.unverified_value is None:
                self.unverified_value = value  # what the record would have shown
            self._hide()
            return self
        self.kind, self.value = kind, value
        if value is None and self.stop is StopReason.COMPLETED:
            # ran to the end and has nothing: that is an error
            self.verdict = Verdict.ERROR
            self.message = self.message or "no certified bound was obtained"
            self._hide()
        return self

    def _derive(self) -> tuple[BoundKind, float | None]:
        """Kind and value of the bracket (the verdict aside)."""
        assert self.declared_kind is not None
        lo, up = self.lower, self.upper
        if lo is not None and up is not None:
            if up - lo <= self.exact_tolerance(up):
                return BoundKind.EXACT, lo
            return BoundKind.UPPER, up
        if up is not None:
            return BoundKind.UPPER, up
        if lo is not None:
            return BoundKind.LOWER, lo
        if self.declared_kind is BoundKind.ESTIMATE and self.kind is BoundKind.ESTIMATE:
            return BoundKind.ESTIMATE, self.value
        return self.declared_kind, None

    # -- legacy status ---------------------------------------------------------------------------
    def _get_status(self) -> Status:
        assert self.verdict is not None and self.stop is not None
        return legacy_status(self.verdict, self.stop)

    def _set_status(self, status: Status | str) -> None:
        self.verdict, self.stop = _FROM_STATUS[Status(status)]
        self.finalise()

    # -- derived ---------------------------------------------------------------------------------
    @property
    def gap(self) -> float | None:
        """Relative gap (upper - lower) / upper of this record's own bracket."""
        if self.lower is None or self.upper is None:
            return None
        if self.upper == 0:
            return 0.0 if self.lower == 0 else math.inf
        return (self.upper - self.lower) / abs(self.upper)

    @property
    def ok(self) -> bool:
        """The value may be used: verdict ok, a value, every check passed."""
        return self.verdict is Verdict.OK and self.value is not None and all(c.passed for c in self.checks)

    @property
    def failed(self) -> bool:
        """A check failed or the method errored (not-applicable / solver-missing records are not failures)."""
        return self.verdict in FAILED_VERDICTS

    def add_check(self, name: str, passed: bool, detail: str = "") -> Check:
        c = Check(name, bool(passed), detail)
        self.checks.append(c)
        if not c.passed:
            self.finalise()
        return c

    def summary(self) -> str:
        assert self.verdict is not None and self.stop is not None
        if self.failed:
            v = "FAILED"
        else:
            v = "-" if self.value is None else f"{self.value:.6g} [{self.kind.value}]"
        return f"{self.method}: {v} ({self.verdict.value}, {self.stop.value}, {self.wall_time:.3g}s)"

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        self.finalise()
        d = {"schema": SCHEMA, **asdict(self)}
        d["kind"] = self.kind.value
        d["status"] = self.status.value  # legacy, derived from verdict and stop
        d["gap"] = self.gap
        return _clean(d)

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LipschitzResult:
        d = dict(d)
        schema = d.pop("schema", None)
        if schema is not None and schema != SCHEMA and not str(schema).startswith("lipopt.result/"):
            raise ValueError(f"not a lipopt result record (schema {schema!r})")
        d.pop("gap", None)
        if "verdict" in d:
            d.pop("status", None)  # derived
        d["checks"] = [Check(**c) for c in d.get("checks", [])]
        for k in ("value", "lower", "upper", "unverified_value", "unverified_lower", "unverified_upper"):
            if k in d:
                d[k] = _unclean_float(d.get(k))
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> LipschitzResult:
        return cls.from_dict(json.loads(s))


LipschitzResult.status = property(  # type: ignore[assignment,method-assign]
    LipschitzResult._get_status, LipschitzResult._set_status,
    doc="Legacy single status, derived from verdict and stop (setting it sets both)")


def __getattr__(name: str) -> Any:
    """``ResultSet`` and ``format_value`` live in :mod:`lipopt.resultset` (imported on first use: it
    imports this module)."""
    if name in ("ResultSet", "format_value"):
        from lipopt import resultset

        return getattr(resultset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
