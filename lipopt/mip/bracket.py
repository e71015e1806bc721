"""Turn mixed-integer solves into a certified bracket [LOWER, UPPER] and a LipschitzResult.

Shared by every MIP method (``milp``, ``lp-relax``, ``miqcqp``). The rules (docs/HACKING.md, "no silent
wrong answers"):

* **UPPER** is the solver's dual bound (for a maximisation, a valid bound on the MIP optimum even on a
  time limit), intersected with a cheap sound bound the caller may pass (``fallback_upper``, e.g. the
  interval bound on the gradient norm). It is an upper bound on the true constant only when the MIP is a
  relaxation of (or equal to) the exact problem; the caller says so with ``upper_valid``.
  When the problem was split into pieces (one MIP per output row, say) the upper bound is the max over
  the pieces; a piece that was skipped (``outcome=None``) contributes its ``fallback_upper``.
* **LOWER** is never the solver's incumbent value. Each incumbent is a :class:`Candidate` (its ReLU
  pattern and max-pool winners read from the binaries, and its input x). The pattern's region is handed to
  :func:`lipopt.regions.certify_pattern`, which finds an interior point of the region inside the domain;
  the network's real float64 Jacobian norm there is a certified lower bound (formulations.md, Fact A).
  If the region has no interior (a degenerate pattern: e.g. T4, where the MIP optimum 2 lives only at
  x = 0), the incumbent x itself and a few points around it are re-evaluated (``point_witness``); any of
  them that lies strictly inside a linear region of the domain certifies its own Jacobian norm. If
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
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.network.network import Network
from lipopt.result import BoundKind, Check, LipschitzResult, StopReason, Verdict
from lipopt.spec import Question

#: relative amount by which a certified lower bound may exceed the solver's dual bound and still be
#: attributed to the solver's feasibility / optimality tolerances (the upper bound is then raised)
SOLVER_TOL = 1e-5


@dataclass
class Candidate:
    """One incumbent of a MIP: its activation pattern and input point (either may be missing).

    ``relu_states[k]``: booleans of the k-th ReLU stage of ``network.lower()`` (True = active, the
    binary a = 1; stable neurons filled in from the bounds). ``pool_winners[k]``: flat input index of the
    selected winner of each window of the k-th max-pool stage. ``objective``: the solver's objective value
    of this incumbent (used for the consistency check only, never as a bound)."""

    relu_states: list[np.ndarray] | None = None
    pool_winners: list[np.ndarray] | None = None
    x: np.ndarray | None = None
    objective: float | None = None
    label: str = ""


@dataclass
class LowerCertificate:
    value: float
    x: np.ndarray
    source: str  # "region interior" | "incumbent point" | "near incumbent"
    margin: float
    candidate: int
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x.tolist(), "value": self.value, "source": self.source, "margin": self.margin,
                "candidate": self.label or self.candidate}


@dataclass
class CertifyReport:
    best: LowerCertificate | None
    notes: list[str] = field(default_factory=list)
    degenerate: list[int] = field(default_factory=list)  # candidates whose region has no interior
    region_values: dict[int, float] = field(default_factory=dict)  # candidate -> certified ||J_s||


def _probe_points(x: np.ndarray, question: Question, n: int, radius: float, seed: int) -> list[np.ndarray]:
    from lipopt.witness import clip_to_domain

    rng = np.random.default_rng(seed)
    scale = radius * max(1.0, float(np.max(np.abs(x))) if x.size else 1.0)
    return [clip_to_domain(x + scale * rng.uniform(-1, 1, size=x.shape), question) for _ in range(n)]


def certify_candidates(
    network: Network,
    question: Question,
    candidates: Sequence[Candidate],
    *,
    n_probe: int = 24,
    probe_radius: float = 1e-5,
    seed: int = 0,
) -> CertifyReport:
    """The best certified lower bound obtainable from the candidates (see the module docstring).

    ``question`` must be bound to the network and have the domain in which witnesses are valid (for a
    bias-free global question the box [-1, 1]^n may be passed: a witness there is valid globally)."""
    from lipopt.regions import certify_pattern
    from lipopt.witness import point_witness

    rep = CertifyReport(None)

    def offer(value: float, x: np.ndarray, source: str, margin: float, i: int, label: str) -> None:
        if rep.best is None or value > rep.best.value:
            rep.best = LowerCertificate(float(value), np.asarray(x, dtype=np.float64), source, float(margin),
                                        i, label)

    for i, cand in enumerate(candidates):
        name = cand.label or f"incumbent {i}"
        region_ok = False
        if cand.relu_states is not None:
            try:
                rw = certify_pattern(network, question, cand.relu_states, cand.pool_winners)
            except Exception as exc:  # a failing LP certifies nothing; say so
                rw = None
                rep.notes.append(f"{name}: region LP failed ({type(exc).__name__}: {exc})")
            if rw is not None and rw.certified:
                region_ok = True
                rep.region_values[i] = rw.value
                offer(rw.value, rw.x, "region interior", rw.margin, i, cand.label)
            else:
                rep.degenerate.append(i)
                rep.notes.append(
                    f"{name}: the incumbent's activation pattern has no interior in the domain (a "
                    "degenerate or boundary-only pattern), so it certifies no lower bound by itself"
                )
        if not region_ok and cand.x is not None:
            x0 = np.asarray(cand.x, dtype=np.float64).reshape(-1)
            found = False
            pw = point_witness(network, x0, question)
            if pw.certified:
                found = True
                offer(pw.value, x0, "incumbent point", pw.margin, i, cand.label)
            else:  # on a region boundary: the regions around it (one of them carries the MIP value)
                for p in _probe_points(x0, question, n_probe, probe_radius, seed + i):
                    pw = point_witness(network, p, question)
                    if pw.certified:
                        found = True
                        offer(pw.value, p, "near incumbent", pw.margin, i, cand.label)
            if not found:
                rep.notes.append(f"{name}: no point at or near the incumbent lies inside a linear region")
    return rep


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


def make_bracket_result(
    method: str,
    network: Network,
    question: Question,
    outcomes: Sequence[Any],
    candidates: Sequence[Candidate],
    *,
    fallback_uppers: Sequence[float | None] | None = None,
    upper_valid: bool = True,
    rel_gap: float = 1e-6,
    abs_gap: float = 0.0,
    certify_question: Question | None = None,
    build_time: float = 0.0,
    notes: Sequence[str] = (),
    stats: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
    seed: int = 0,
) -> LipschitzResult:
    """The LipschitzResult of one MIP run (possibly split in pieces), with its certified bracket.

    outcomes: one ``lipopt_solvers.SolveOutcome`` per piece (``None`` for a piece skipped because its
      ``fallback_uppers`` entry is already below the lower bound). Only ``termination``, ``bound``,
      ``objective``, ``has_incumbent``, ``raw_status``, ``solver``, ``solver_version``, ``solve_time``
      and ``message`` are read.
    candidates: incumbents to certify (see :class:`Candidate`).
    upper_valid: the pieces' dual bounds bound the true constant from above (False for lower-side
      problems such as a restricted MIP: then no upper bound is reported from them).
    certify_question: domain for the witnesses (default ``question``).
    rel_gap / abs_gap: the EXACT tolerance, recorded on the result (``rel_tol`` / ``abs_tol``), in
      ``options`` and in ``stats``. ``abs_gap`` is 0 by default: the rules mean the same at every scale.
    """
    stats = dict(stats or {})
    notes = list(notes)
    opts = dict(options or {})
    opts.setdefault("rel_gap", rel_gap)
    opts.setdefault("abs_gap", abs_gap)
    fallbacks = list(fallback_uppers) if fallback_uppers is not None else [None] * len(outcomes)
    if len(fallbacks) != len(outcomes):
        raise ValueError("fallback_uppers must have one entry per outcome")

    # ---- verdict, stop reason, solver, times
    verdict, stop = Verdict.OK, StopReason.COMPLETED
    solver = version = None
    raws, messages, solve_time = [], [], 0.0
    for out in outcomes:
        if out is None:
            continue
        solver, version = out.solver, out.solver_version
        raws.append(str(out.raw_status))
        solve_time += float(out.solve_time or 0.0)
        v, st = termination_verdict(out)
        if _VERDICT_RANK.index(v) > _VERDICT_RANK.index(verdict):
            verdict = v
        if _STOP_RANK.index(st) > _STOP_RANK.index(stop):
            stop = st
        term = getattr(out.termination, "value", out.termination)
        if term not in _CLEAN_STOPS and out.message:
            messages.append(str(out.message))
        if v is Verdict.ERROR:
            notes.append(f"solver {out.solver} stopped with {term} (raw status {out.raw_status!r}): its "
                         "dual bound and incumbent are not used")

    # ---- upper bound
    upper: float | None = None
    if upper_valid:
        piece_uppers = [_piece_upper(o, f) for o, f in zip(outcomes, fallbacks, strict=True)]
        if piece_uppers and all(u is not None for u in piece_uppers):
            upper = max(piece_uppers)  # type: ignore[type-var]
        stats["piece_uppers"] = piece_uppers

    # ---- certified lower bound
    cq = certify_question or question
    rep = certify_candidates(network, cq, candidates, seed=seed)
    notes.extend(rep.notes)
    lower = rep.best.value if rep.best is not None else None

    checks: list[Check] = []
    for i, v in rep.region_values.items():
        obj = candidates[i].objective
        if obj is not None and math.isfinite(obj):
            ok = v >= obj - SOLVER_TOL * abs(obj)
            checks.append(Check(f"witness >= MIP objective ({candidates[i].label or i})", ok,
                                f"re-evaluated ||J|| {v:.9g}, solver objective {obj:.9g}"))
    if upper_valid:  # a maximisation's dual bound is never below its own incumbent
        for k, out in enumerate(outcomes):
            if out is None or termination_verdict(out)[0] is not Verdict.OK or not out.has_incumbent:
                continue
            obj, bnd = out.objective, out.bound
            if obj is None or bnd is None or not (math.isfinite(obj) and math.isfinite(bnd)):
                continue
            ok = bnd >= obj - SOLVER_TOL * abs(obj)
            checks.append(Check(f"dual bound >= incumbent (piece {k})", ok,
                                f"dual bound {bnd:.9g}, incumbent objective {obj:.9g}"))

    # ---- an upper bound below the certified lower bound: raised only within the solver's relative
    #      tolerance (and the EXACT tolerance widened to say so), otherwise a failed check
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

    stats["exact_tolerance"] = {"rel_gap": rel_tol, "abs_gap": abs_gap}
    if lower is None and upper is None and verdict is Verdict.OK and stop is StopReason.COMPLETED:
        verdict = Verdict.ERROR
        messages.append("no certified bound was obtained")
    res = LipschitzResult.from_bracket(
        method, BoundKind.EXACT if upper_valid else BoundKind.LOWER, lower, upper, verdict, stop,
        rel_tol=rel_tol, abs_tol=abs_gap, raw_status="; ".join(raws), solver=solver, solver_version=version,
        build_time=build_time, solve_time=solve_time, options=opts, notes=notes, stats=stats,
        message="; ".join(messages), checks=checks,
        witness=rep.best.to_dict() if rep.best is not None else None)
    if res.kind is BoundKind.UPPER and res.lower is not None and res.upper is not None:
        if stop is StopReason.COMPLETED and rep.degenerate:
            res.notes.append(f"the MIP optimum {res.upper:.9g} is attained only on degenerate patterns (the "
                             f"network is not in general position there); the exact constant lies in the "
                             f"bracket [{res.lower:.9g}, {res.upper:.9g}]")
        else:
            res.notes.append(f"bracket [{res.lower:.9g}, {res.upper:.9g}] (gap not closed)")
    if not res.message and res.verdict is not Verdict.OK:
        res.message = "; ".join(str(c) for c in res.checks if not c.passed)
    return res
