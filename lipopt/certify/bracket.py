"""Turn mixed-integer solves into a certified bracket [LOWER, UPPER] and a LipschitzResult.

Shared by every MIP method (``milp``, ``lp-relax``, ``miqcqp``). The rules (docs/HACKING.md, "no silent
wrong answers"):

* **UPPER** is the solver's dual bound (for a maximisation, a valid bound on the MIP optimum even on a
  time limit), intersected with a cheap sound bound the caller may pass (``fallback_upper``, e.g. the
  interval bound on the gradient norm). It is an upper bound on the true constant only when the MIP is a
  relaxation of (or equal to) the exact problem; the caller says so with ``upper_valid``.
  When the problem was split into pieces (one MIP per output row, say) the upper bound is the max over
  the pieces; a piece that was skipped (``outcome=None``) contributes its ``fallback_upper``.
* **LOWER** is never the solver's incumbent value: each incumbent is a
  :class:`lipopt.certify.candidates.Candidate`, certified by an interior point of its pattern's region
  (or by the incumbent point itself) re-evaluated in float64 (see :mod:`lipopt.certify.candidates`). If
  nothing certifies, the result has no lower bound and a note says why.
* **EXACT** only when the certified lower bound meets the upper bound within the recorded tolerance
  ``lower >= upper - max(rel_gap * |upper|, abs_gap)`` (``abs_gap`` 0 by default: relative tolerances
  only, so the rules mean the same at every scale); the value is then the certified lower bound. The kind
  is decided by :meth:`lipopt.result.LipschitzResult.finalise`, from the verdict and the bracket.
  Otherwise the record is an UPPER bound with ``lower`` filled in (a bracket), or a LOWER bound when no
  valid upper bound exists. On degenerate networks (not in general position) the closed-region MIP
  optimum can exceed the exact constant (T4: MIP 2, exact 1): the result is then the honest bracket
  [1, 2] with kind UPPER, never EXACT 2.
* Verdict and stop reason come from the solvers' terminations (:data:`TERMINATION_MAP`): optimal, gap
  limit, time limit, interrupted and licence limit keep the bracket; infeasible (the domain is never
  empty), unbounded, numerical error, error and unknown statuses make the record an ERROR, whose numbers
  are kept aside as unverified, never shown under a bound kind.
* Checks recorded on the result: the certified witness value is >= the solver objective of the same
  pattern (the MIP objective of a pattern never exceeds ||J_s||: a failure means a formulation bug), the
  dual bound is >= the incumbent objective, the upper bound is >= 0, and lower <= upper. A lower bound
  above the dual bound by more than the solver's relative tolerance ``SOLVER_TOL`` fails the record;
  within it the upper bound is raised to the lower bound, with a note, and the recorded EXACT tolerance is
  widened to the relative amount moved. Every tolerance is relative (no absolute floor).

Use::

    res = make_bracket_result("milp", net, q, outcomes=[out], candidates=[cand], rel_gap=opts.rel_gap,
                              build_time=tb, stats={...}, notes=[...])

The mathematics as implemented: ``docs/methods.md#bracket``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from lipopt.certify.candidates import Candidate, certify_candidates
from lipopt.network.network import Network
from lipopt.result import BoundKind, Check, LipschitzResult, StopReason, Verdict
from lipopt.spec import Question

#: relative amount by which a certified lower bound may exceed the solver's dual bound and still be
#: attributed to the solver's feasibility / optimality tolerances (the upper bound is then raised)
SOLVER_TOL = 1e-5


#: termination -> (verdict, stop reason) of one solve. An OK termination keeps the dual bound (valid
#: whenever the solver stopped cleanly, also at a limit); the others make the record an ERROR, because
#: their bound (and "infeasible" on a non-empty domain) cannot be trusted.
TERMINATION_MAP: dict[str, tuple[Verdict, StopReason]] = {
    "optimal": (Verdict.OK, StopReason.COMPLETED),
    "gap_limit": (Verdict.OK, StopReason.GAP_LIMIT),
    "time_limit": (Verdict.OK, StopReason.TIME_LIMIT),
    "interrupted": (Verdict.OK, StopReason.INTERRUPTED),
    "license_limit": (Verdict.OK, StopReason.LICENCE_LIMIT),
    "not_available": (Verdict.SOLVER_MISSING, StopReason.NOT_RUN),
    "infeasible": (Verdict.ERROR, StopReason.INFEASIBLE),
    "unbounded": (Verdict.ERROR, StopReason.SOLVER_FAILED),
    "numerical_error": (Verdict.ERROR, StopReason.SOLVER_FAILED),
    "error": (Verdict.ERROR, StopReason.SOLVER_FAILED),
    "other": (Verdict.ERROR, StopReason.SOLVER_FAILED),
}
_VERDICT_RANK = [Verdict.OK, Verdict.SOLVER_MISSING, Verdict.ERROR]
_STOP_RANK = [StopReason.COMPLETED, StopReason.GAP_LIMIT, StopReason.TIME_LIMIT, StopReason.INTERRUPTED,
              StopReason.LICENCE_LIMIT, StopReason.NOT_RUN, StopReason.INFEASIBLE, StopReason.SOLVER_FAILED]
_CLEAN_STOPS = ("optimal", "gap_limit", "time_limit")


def termination_verdict(outcome: Any) -> tuple[Verdict, StopReason]:
    """Verdict and stop reason of one solver outcome (unknown terminations are errors)."""
    term = getattr(outcome.termination, "value", outcome.termination)
    return TERMINATION_MAP.get(str(term), (Verdict.ERROR, StopReason.SOLVER_FAILED))


def _piece_upper(outcome: Any, fallback: float | None) -> float | None:
    """Sound upper bound of one piece: min(dual bound, fallback); None when neither exists."""
    vals = []
    if outcome is not None and termination_verdict(outcome)[0] is Verdict.OK:
        if outcome.bound is not None and math.isfinite(outcome.bound):
            vals.append(float(outcome.bound))
    if fallback is not None and math.isfinite(fallback):
        vals.append(float(fallback))
    return min(vals) if vals else None


@dataclass(frozen=True)
class BracketOptions:
    """How one MIP run's outcomes become a bracket (see :func:`make_bracket_result`).

    fallback_uppers: one cheap sound upper bound per piece (or None); a skipped piece contributes it.
    upper_valid: the pieces' dual bounds bound the true constant from above (False for lower-side
      problems such as a restricted MIP: then no upper bound is reported from them).
    rel_gap / abs_gap: the EXACT tolerance, recorded on the result (``rel_tol`` / ``abs_tol``), in
      ``options`` and in ``stats``. ``abs_gap`` is 0 by default: the rules mean the same at every scale.
    certify_question: domain for the witnesses (default: the question).
    """

    fallback_uppers: Sequence[float | None] | None = None
    upper_valid: bool = True
    rel_gap: float = 1e-6
    abs_gap: float = 0.0
    certify_question: Question | None = None
    build_time: float = 0.0
    notes: Sequence[str] = ()
    stats: dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    seed: int = 0


@dataclass
class _Status:
    verdict: Verdict = Verdict.OK
    stop: StopReason = StopReason.COMPLETED
    solver: str | None = None
    version: str | None = None
    raws: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    solve_time: float = 0.0


def _aggregate(outcomes: Sequence[Any], notes: list[str]) -> _Status:
    """The worst verdict and stop reason over the pieces, the solver, raw statuses and messages."""
    st = _Status()
    for out in outcomes:
        if out is None:
            continue
        st.solver, st.version = out.solver, out.solver_version
        st.raws.append(str(out.raw_status))
        st.solve_time += float(out.solve_time or 0.0)
        v, stop = termination_verdict(out)
        if _VERDICT_RANK.index(v) > _VERDICT_RANK.index(st.verdict):
            st.verdict = v
        if _STOP_RANK.index(stop) > _STOP_RANK.index(st.stop):
            st.stop = stop
        term = getattr(out.termination, "value", out.termination)
        if term not in _CLEAN_STOPS and out.message:
            st.messages.append(str(out.message))
        if v is Verdict.ERROR:
            notes.append(f"solver {out.solver} stopped with {term} (raw status {out.raw_status!r}): its "
                         "dual bound and incumbent are not used")
    return st


def _solver_checks(candidates: Sequence[Candidate], region_values: dict[int, float], outcomes: Sequence[Any],
                   upper_valid: bool) -> list[Check]:
    """witness >= MIP objective of the same pattern; dual bound >= incumbent (maximisation)."""
    checks: list[Check] = []
    for i, v in region_values.items():
        obj = candidates[i].objective
        if obj is not None and math.isfinite(obj):
            ok = v >= obj - SOLVER_TOL * abs(obj)
            checks.append(Check(f"witness >= MIP objective ({candidates[i].label or i})", ok,
                                f"re-evaluated ||J|| {v:.9g}, solver objective {obj:.9g}"))
    if not upper_valid:
        return checks
    for k, out in enumerate(outcomes):
        if out is None or termination_verdict(out)[0] is not Verdict.OK or not out.has_incumbent:
            continue
        obj, bnd = out.objective, out.bound
        if obj is None or bnd is None or not (math.isfinite(obj) and math.isfinite(bnd)):
            continue
        ok = bnd >= obj - SOLVER_TOL * abs(obj)
        checks.append(Check(f"dual bound >= incumbent (piece {k})", ok,
                            f"dual bound {bnd:.9g}, incumbent objective {obj:.9g}"))
    return checks


def _reconcile(lower: float | None, upper: float | None, rel_gap: float, notes: list[str],
               checks: list[Check]) -> tuple[float | None, float]:
    """An upper bound below the certified lower bound is raised only within the solver's relative
    tolerance (and the EXACT tolerance widened to say so), otherwise a failed check. Returns (upper,
    the EXACT relative tolerance)."""
    rel_tol = rel_gap
    if lower is not None and upper is not None and lower > upper:
        excess = lower - upper
        if upper > 0 and excess <= SOLVER_TOL * abs(upper):
            notes.append(f"the dual bound {upper:.12g} is below the certified lower bound {lower:.12g} by "
                         f"{excess:.3g} ({excess / abs(upper):.2g} relative, within the solver tolerance "
                         f"{SOLVER_TOL:g}); the upper bound is raised to the lower bound and the EXACT "
                         "tolerance widened accordingly")
            rel_tol = max(rel_gap, excess / abs(upper))
            upper = lower
        else:
            checks.append(Check("lower <= upper", False,
                                f"certified {lower:.9g} > dual bound {upper:.9g} (beyond the relative "
                                f"tolerance {SOLVER_TOL:g})"))
    if upper is not None and upper < 0:
        checks.append(Check("upper >= 0", False, f"dual bound {upper:.9g} < 0: a norm is never negative"))
    return upper, rel_tol


def make_bracket_result(method: str, network: Network, question: Question, outcomes: Sequence[Any],
                        candidates: Sequence[Candidate], spec: BracketOptions | None = None,
                        **options: Any) -> LipschitzResult:
    """The LipschitzResult of one MIP run (possibly split in pieces), with its certified bracket.

    outcomes: one ``lipopt_solvers.SolveOutcome`` per piece (``None`` for a piece skipped because its
      ``fallback_uppers`` entry is already below the lower bound). Only ``termination``, ``bound``,
      ``objective``, ``has_incumbent``, ``raw_status``, ``solver``, ``solver_version``, ``solve_time``
      and ``message`` are read.
    candidates: incumbents to certify (see :class:`Candidate`).
    spec: :class:`BracketOptions`, or its fields as keywords (an unknown keyword is an error).
    """
    o = spec if spec is not None else BracketOptions(**options)
    stats = dict(o.stats or {})
    notes = list(o.notes)
    opts = dict(o.options or {})
    opts.setdefault("rel_gap", o.rel_gap)
    opts.setdefault("abs_gap", o.abs_gap)
    fallbacks = list(o.fallback_uppers) if o.fallback_uppers is not None else [None] * len(outcomes)
    if len(fallbacks) != len(outcomes):
        raise ValueError("fallback_uppers must have one entry per outcome")
    st = _aggregate(outcomes, notes)

    upper: float | None = None
    if o.upper_valid:
        piece_uppers = [_piece_upper(out, f) for out, f in zip(outcomes, fallbacks, strict=True)]
        if piece_uppers and all(u is not None for u in piece_uppers):
            upper = max(piece_uppers)  # type: ignore[type-var]
        stats["piece_uppers"] = piece_uppers

    rep = certify_candidates(network, o.certify_question or question, candidates, seed=o.seed)
    notes.extend(rep.notes)
    lower = rep.best.value if rep.best is not None else None
    checks = _solver_checks(candidates, rep.region_values, outcomes, o.upper_valid)
    upper, rel_tol = _reconcile(lower, upper, o.rel_gap, notes, checks)

    stats["exact_tolerance"] = {"rel_gap": rel_tol, "abs_gap": o.abs_gap}
    if lower is None and upper is None and st.verdict is Verdict.OK and st.stop is StopReason.COMPLETED:
        st.verdict = Verdict.ERROR
        st.messages.append("no certified bound was obtained")
    res = LipschitzResult.from_bracket(
        method, BoundKind.EXACT if o.upper_valid else BoundKind.LOWER, lower, upper, st.verdict, st.stop,
        rel_tol=rel_tol, abs_tol=o.abs_gap, raw_status="; ".join(st.raws), solver=st.solver,
        solver_version=st.version, build_time=o.build_time, solve_time=st.solve_time, options=opts,
        notes=notes, stats=stats, message="; ".join(st.messages), checks=checks,
        witness=rep.best.to_dict() if rep.best is not None else None)
    if res.kind is BoundKind.UPPER and res.lower is not None and res.upper is not None:
        if st.stop is StopReason.COMPLETED and rep.degenerate:
            res.notes.append(f"the MIP optimum {res.upper:.9g} is attained only on degenerate patterns (the "
                             f"network is not in general position there); the exact constant lies in the "
                             f"bracket [{res.lower:.9g}, {res.upper:.9g}]")
        else:
            res.notes.append(f"bracket [{res.lower:.9g}, {res.upper:.9g}] (gap not closed)")
    if not res.message and res.verdict is not Verdict.OK:
        res.message = "; ".join(str(c) for c in res.checks if not c.passed)
    return res
