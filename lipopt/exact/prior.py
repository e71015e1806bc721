"""The best certified bounds lipopt's cheap methods already give, for the exact methods (``milp``,
``miqcqp`` and its ``-ub`` / ``-lb`` variants, ``bab``): their cut-offs and starts, and the last word
on the reported bracket (docs/bab.md, "Prior bounds").

:func:`gather` runs, through the registry (:func:`lipopt.methods.run_method`, so applicability,
time limits and the methods' own re-checks are the registry's), within one time box (a fraction of
the run's time limit, never more than what is left):

* UPPER side: ``naive`` (always applicable: a global bound, also valid for a local question),
  ``lipsdp-fast`` (closed-form LipSDP-Neuron multipliers) and, when time is left in the box and its
  gap is still open, ``lipsdp-neuron``. LipSDP bounds the global l2 constant; a local question is
  asked of them as its global version (L_local <= L_global, so their value caps the local constant
  too) and only where the registry finds them applicable to it; lipsdp-neuron only with at least
  :data:`SLOW_MIN_TIME` seconds left in the box. ``local-affine`` bounds the
  nominal-point constant, which is below the pairwise one the exact methods compute, so it never
  caps them (the registry's applicability says so: the exact methods refuse nominal questions).
* LOWER side, with what is left of the box: ``region-climb`` (hill climbing over neighbouring regions
  from the best samples; not for ``bab``, which climbs itself) and ``grad-ascent`` (projected gradient
  ascent with restarts), whose witnesses are re-evaluated here in float64 (a
  point in a region's interior: :func:`lipopt.certify.witness.point_witness`; a pair:
  :func:`lipopt.certify.witness.certified_pair_ratio`) before its value counts.

A method that is not applicable, errors, stops without a certified value or whose witness fails its
re-check contributes nothing (recorded in :attr:`Prior.runs`, never as a value).

:func:`merge` intersects an exact method's own certified bracket with the prior one: the record's
bracket becomes [max(own lower, prior lower), min(own upper, prior upper)],
``stats["bracket_sources"]`` names the method of each side, the notes say so, ``stats["history"]``
gets the prior as its first row and the merged bracket as its last, and a lower bound above an upper
bound beyond the tolerance (prior against own, or the prior sides against each other) is a failed
check of the record (its numbers hidden as unverified), never silently resolved.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from lipopt.network.network import Network
from lipopt.spec import Box, Global, Question

#: cheap certified UPPER-bound methods, in the order they run
UPPER_METHODS = ("lipsdp-fast", "naive")
#: run after the others when time is left in the box
SLOW_UPPER_METHODS = ("lipsdp-neuron",)
#: cheap certified LOWER-bound methods (with a witness), in the order they run
LOWER_METHODS = ("region-climb", "grad-ascent")
#: without a run time limit, the prior's time box in seconds
DEFAULT_MAX_TIME = 10.0
#: a prior side and an own side may cross by this relative amount (solver tolerances) before the
#: record is flagged inconsistent (the same allowance as lipopt.certify.bracket.SOLVER_TOL)
CROSS_TOL = 1e-5
#: lipsdp-neuron is tried only with at least this many seconds left in the box
SLOW_MIN_TIME = 2.0
#: lipsdp-neuron and grad-ascent (the seconds-long ones) run only on networks with at least this many
#: activation units: below it the exact methods close in about a second themselves, and those two would
#: double their time (milp on a 3-6-5-2 net: 3.0 s alone, 7.2 s with them); naive and lipsdp-fast cost
#: milliseconds and always run
SLOW_MIN_UNITS = 40
#: cheap methods that import torch (about 1 s on a cold start): also left out below SLOW_MIN_UNITS, where
#: the exact methods' own interval bounds are tighter than the norm product anyway
TORCH_METHODS = ("naive",)
#: a cheap method's own time limit is this share of the time it is allotted: they overrun their limit
#: by their final certification (lipsdp-neuron 3 s -> 4.2 s, grad-ascent 2 s -> 3.2 s on 784-50-10)
LIMIT_SHARE = 0.6


@dataclasses.dataclass
class PriorSide:
    """One side of the prior bracket: its certified value and the method it came from (and, for the
    lower side, the witness that certifies it, re-evaluated here)."""

    value: float
    method: str
    witness: dict[str, Any] | None = None


@dataclasses.dataclass
class Prior:
    lower: PriorSide | None = None
    upper: PriorSide | None = None
    runs: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    time: float = 0.0
    budget: float = 0.0
    interrupted: bool = False  # a Ctrl-C stopped the prior phase (the flag is raised again for the caller)

    def lower_value(self) -> float | None:
        return None if self.lower is None else self.lower.value

    def upper_value(self) -> float | None:
        return None if self.upper is None else self.upper.value

    def closes(self, lower: float | None, rel_gap: float) -> bool:
        """Whether a certified ``lower`` meets the prior upper within the relative gap."""
        up = self.upper_value()
        return lower is not None and up is not None and lower >= up - rel_gap * abs(up)

    def start_points(self) -> list[np.ndarray]:
        """The lower side's witness point(s) (both points of a pair), as starts for a search."""
        w = None if self.lower is None else self.lower.witness
        if not w or "x" not in w:
            return []
        pts = [np.asarray(w["x"], dtype=np.float64)]
        if w.get("y") is not None:
            pts.append(np.asarray(w["y"], dtype=np.float64))
        return pts

    def to_stats(self) -> dict[str, Any]:
        def side(s: PriorSide | None) -> dict[str, Any] | None:
            return None if s is None else {"value": s.value, "method": s.method}

        return {"lower": side(self.lower), "upper": side(self.upper),
                "time": self.time, "budget": self.budget, "runs": self.runs, "interrupted": self.interrupted}


def budget(time_limit: float | None, fraction: float, deadline: float | None = None,
           max_time: float = DEFAULT_MAX_TIME) -> float:
    """The prior's time box: ``fraction`` of the time limit (at most ``max_time``; ``max_time`` without
    a limit), never more than what is left before ``deadline`` (a ``time.perf_counter()`` instant)."""
    b = max_time if time_limit is None else min(max_time, max(0.0, fraction) * float(time_limit))
    if deadline is not None:
        b = min(b, deadline - time.perf_counter())
    return max(0.0, b)


def _sub_options(options: Any, time_limit: float) -> Any:
    """The cheap method's own RunOptions: the run's seed and threads, none of the exact method's
    ``extra`` (flat keys such as ``n_samples`` are not meant for it), no progress lines."""
    return dataclasses.replace(options, time_limit=max(time_limit, 1e-3), extra={}, progress=False,
                               verbose=False, write_model=None, solver_log=None, isolate=False)


def _run_one(name: str, network: Network, q: Question, options: Any, left: float,
             runs: list[dict[str, Any]]) -> Any:
    """One cheap method through the registry; its record, or None (the reason in ``runs``)."""
    from lipopt_solvers import interrupts

    from lipopt.methods import get_method, run_method

    row: dict[str, Any] = {"method": name}
    runs.append(row)
    if interrupts.requested():
        row["skipped"] = "interrupted (Ctrl-C)"
        return None
    if left <= 0:
        row["skipped"] = "no time left in the prior's time box"
        return None
    try:
        why = get_method(name).applicable(network, q)
        if why is not None:
            row["skipped"] = f"not applicable: {why}"
            return None
        t = time.perf_counter()
        res = run_method(name, network, q, _sub_options(options, LIMIT_SHARE * left))
        row["time"] = time.perf_counter() - t
        if _absorbed_interrupt(res):
            row["interrupted"] = True
    except KeyboardInterrupt:  # stop the prior phase; the exact method's loop sees the flag and stops
        interrupts.request()
        row["skipped"], row["interrupted"] = "interrupted (Ctrl-C)", True
        return None
    except Exception as exc:  # a failing cheap method contributes nothing
        row["skipped"] = f"raised {type(exc).__name__}: {exc}"
        return None
    return _usable(res, row)


def _absorbed_interrupt(res: Any) -> bool:
    """Whether the cheap run ended on a Ctrl-C that it absorbed (stop INTERRUPTED or the solver layer's
    flag); the flag is raised again, because the next ``run_method`` clears it."""
    from lipopt_solvers import interrupts

    from lipopt.result import StopReason

    hit = interrupts.requested() or res.stop is StopReason.INTERRUPTED
    if hit:
        interrupts.request()
    return hit


def _usable(res: Any, row: dict[str, Any]) -> Any:
    """The record when it is usable as a prior side, else None (the reason in ``row``)."""
    row["verdict"] = res.verdict.value if res.verdict is not None else None
    if not res.ok:
        row["skipped"] = f"{res.verdict.value}: {res.message[:200]}"
        return None
    return res


def _upper_question(q: Question) -> Question:
    """The question an upper-bound method is asked: a local question's global version (its constant
    is at least the local one)."""
    return q if isinstance(q.domain, Global) else q.with_(domain=Global())


def recheck_lower(network: Network, q: Question, res: Any) -> PriorSide | None:
    """A LOWER record's value as a prior side, when its witness re-evaluates in float64 to at least it
    (the re-evaluated value is the one used); None otherwise."""
    from lipopt.certify.witness import certified_pair_ratio, in_domain, point_witness

    w = res.witness or {}
    if res.lower is None or "x" not in w:
        return None
    x = np.asarray(w["x"], dtype=np.float64)
    if w.get("y") is not None:  # a pair: |f(x) - f(y)| / |x - y| with the rounding allowance
        y = np.asarray(w["y"], dtype=np.float64)
        if not (in_domain(x, q) and in_domain(y, q)):
            return None
        v = float(certified_pair_ratio(network, x, y, q))
        wit = {"x": x.tolist(), "y": y.tolist(), "value": v, "kind": "pair"}
    else:
        pw = point_witness(network, x, q)
        if not pw.certified:
            return None
        v = float(pw.value)
        wit = {"x": x.tolist(), "value": v, "margin": pw.margin, "kind": "point"}
    if not (math.isfinite(v) and v > 0):
        return None
    return PriorSide(v, res.method, {**wit, "source": res.method})


def gather(network: Network, question: Question, options: Any, fraction: float = 0.1,
           deadline: float | None = None, max_time: float = DEFAULT_MAX_TIME,
           lowers: bool | tuple[str, ...] = True, uppers: bool = True) -> Prior:
    """The best certified prior bracket of ``question`` (bound to ``network``) within the time box
    :func:`budget`; see the module docstring. ``lowers``: the cheap LOWER methods to run (True: all of
    :data:`LOWER_METHODS`, in their order; False: none; or a tuple of their names: ``bab`` leaves out
    ``region-climb``, its own lower side)."""
    from lipopt_solvers import interrupts

    t0 = time.perf_counter()
    q = question.bind(network)
    box = budget(options.time_limit, fraction, deadline, max_time)
    end = t0 + box
    pr = Prior(budget=box)
    if q.constant == "nominal":  # the exact methods compute pairwise constants only
        pr.runs.append({"skipped": "nominal-point question"})
        return pr
    qu = _upper_question(q)
    small = network.n_relus < SLOW_MIN_UNITS
    if uppers:
        for name in UPPER_METHODS:
            if small and name in TORCH_METHODS:
                pr.runs.append({"method": name, "skipped": f"fewer than {SLOW_MIN_UNITS} activation units "
                                "(its torch import would double a tiny net's first run)"})
                continue
            _take_upper(pr, _run_one(name, network, qu, options, end - time.perf_counter(), pr.runs))
        for name in SLOW_UPPER_METHODS:  # the tighter, slower bound: only with time left in the box
            left = end - time.perf_counter()
            if small:
                pr.runs.append({"method": name, "skipped": f"fewer than {SLOW_MIN_UNITS} activation units"})
                continue
            if left < SLOW_MIN_TIME:
                pr.runs.append({"method": name, "skipped": f"less than {SLOW_MIN_TIME:g} s left in the box"})
                continue
            _take_upper(pr, _run_one(name, network, qu, options, left, pr.runs))
    if lowers:  # the exact methods sample the domain themselves: the lower side gets what is left
        for name in (m for m in LOWER_METHODS if lowers is True or m in lowers):
            if small:
                pr.runs.append({"method": name, "skipped": f"fewer than {SLOW_MIN_UNITS} activation units"})
                continue
            res = _run_one(name, network, q, options, end - time.perf_counter(), pr.runs)
            if res is None:
                continue
            side = recheck_lower(network, q, res)
            pr.runs[-1]["value"] = res.lower
            if side is None:
                pr.runs[-1]["skipped"] = "its witness did not re-evaluate to a certified value"
            elif pr.lower is None or side.value > pr.lower.value:
                pr.lower = side
    pr.time = time.perf_counter() - t0
    pr.interrupted = interrupts.requested()
    return pr


def _take_upper(pr: Prior, res: Any) -> None:
    if res is None:
        return
    up = res.upper
    pr.runs[-1]["value"] = up
    if up is None or not math.isfinite(up) or up < 0:
        pr.runs[-1]["skipped"] = "no certified upper bound"
        return
    if pr.upper is None or up < pr.upper.value:
        pr.upper = PriorSide(float(up), res.method)


def point_in(network: Network, cert_q: Question, x: np.ndarray) -> np.ndarray | None:
    """``x`` as a point of ``cert_q``'s domain: itself when it is in it; for a bias-free network and a
    box containing 0, ``x`` scaled into the box (same activation pattern and Jacobian: the network is
    positively homogeneous); else None."""
    if cert_q.domain.contains(x):
        return x
    dom = cert_q.domain
    if network.has_bias or not isinstance(dom, Box) or not (np.all(dom.lo < 0) and np.all(dom.hi > 0)):
        return None
    s = np.max(np.maximum(x / dom.hi, x / dom.lo))  # the smallest factor with x / s in the box
    if not (math.isfinite(s) and s > 0):
        return None
    y = x / (s * (1 + 1e-9))
    return y if dom.contains(y) else None


# ---------------------------------------------------------------------------------------- merging


def merge(res: Any, prior: Prior | None, method: str) -> Any:
    """Intersect the record's own certified bracket with the prior one (see the module docstring).
    The record is changed in place (and finalised) and returned."""
    own_lo, own_up = res.lower, res.upper
    src = {"lower": method if own_lo is not None else None, "upper": method if own_up is not None else None}
    res.stats["own_bracket"] = [own_lo, own_up]
    if prior is None:
        res.stats["bracket_sources"] = src
        return res
    res.stats["prior"] = prior.to_stats()
    if prior.interrupted:
        _mark_interrupted(res)
    if res.verdict is None or res.verdict.value != "ok":
        res.stats["bracket_sources"] = src
        res.notes.append("the record is not ok: the prior bounds are recorded in stats['prior'] but not "
                         "merged into its bracket")
        return res
    p_lo, p_up = prior.lower_value(), prior.upper_value()
    tol = max(float(res.rel_tol), CROSS_TOL)
    bad = []
    for (lo, lo_src), (up, up_src) in (((p_lo, _name(prior.lower)), (own_up, method)),
                                       ((own_lo, method), (p_up, _name(prior.upper))),
                                       ((p_lo, _name(prior.lower)), (p_up, _name(prior.upper)))):
        if lo is not None and up is not None and lo > up + tol * abs(up):
            bad.append(f"certified lower {lo:.9g} ({lo_src}) > certified upper {up:.9g} ({up_src})")
    if bad:
        res.add_check("prior bounds consistent", False,
                      "; ".join(bad) + f" (beyond the relative tolerance {tol:g}): one of the methods is "
                      "wrong on this question, so no bracket is reported")
        res.stats["bracket_sources"] = src
        res.stats["inconsistent"] = bad
        return res
    lo, up = own_lo, own_up
    notes = []
    # the prior's side wins ties: the own search may have re-certified the prior's own witness
    if p_lo is not None and (lo is None or p_lo >= lo * (1 - 1e-12)):
        lo, src["lower"] = p_lo, prior.lower.method  # type: ignore[union-attr]
        res.witness = {**(prior.lower.witness or {}), "source": prior.lower.method}  # type: ignore[union-attr]
        notes.append(f"lower side {p_lo:.9g} from {src['lower']} (certified witness, re-evaluated in float64)"
                     + ("" if own_lo is None else f"; {method}'s own lower bound {own_lo:.9g}"))
        lo = max(lo, own_lo) if own_lo is not None else lo
    if p_up is not None and (up is None or p_up < up):
        up, src["upper"] = p_up, prior.upper.method  # type: ignore[union-attr]
        notes.append(f"upper side {p_up:.9g} from {src['upper']} (certified)"
                     + ("" if own_up is None else f"; {method}'s own upper bound {own_up:.9g}"))
    if lo is not None and up is not None and lo > up:  # crossed within the tolerance: a closed bracket
        notes.append(f"the upper bound {up:.12g} is below the certified lower bound {lo:.12g} within the "
                     f"relative tolerance {tol:g}; it is raised to the lower bound")
        res.rel_tol = max(float(res.rel_tol), (lo - up) / abs(up)) if up else float(res.rel_tol)
        up = lo
    res.lower, res.upper = lo, up
    res.stats["bracket_sources"] = src
    if notes:
        res.notes.append("prior bounds of lipopt's cheap methods: " + "; ".join(notes))
        closed = lo is not None and up is not None and up - lo <= res.exact_tolerance(up)
        if src["lower"] != method and closed:
            res.add_check("lower side has a certified witness", bool(res.witness and "x" in res.witness),
                          f"witness from {src['lower']}")
    _history(res, prior)
    return res.finalise()


def _mark_interrupted(res: Any) -> None:
    """A Ctrl-C in the prior phase: the exact search stopped at once, so the record's stop says so."""
    from lipopt.result import StopReason

    if res.stop in (StopReason.COMPLETED, StopReason.GAP_LIMIT, StopReason.TIME_LIMIT):
        res.stop = StopReason.INTERRUPTED
    res.notes.append("interrupted (Ctrl-C) while the cheap methods ran: the search stopped before it "
                     "started; the bracket is what was certified so far")


def _name(side: PriorSide | None) -> str:
    return "?" if side is None else side.method


def _history(res: Any, prior: Prior) -> None:
    """Cap the anytime history by the prior bracket (known from its end on, before the search), with
    the prior as the first row and the reported bracket as the last."""
    hist = res.stats.get("history")
    if hist is None:
        return
    p_lo, p_up = prior.lower_value(), prior.upper_value()
    rows = [[prior.time, p_lo, p_up]]
    for t, lo, up in hist:
        if p_lo is not None:
            lo = p_lo if lo is None else max(lo, p_lo)
        if p_up is not None:
            up = p_up if up is None else min(up, p_up)
        rows.append([max(float(t), prior.time), lo, up])
    final = [max(float(res.wall_time or 0.0), rows[-1][0]), res.lower, res.upper]
    if rows[-1][1:] != final[1:]:
        rows.append(final)
    else:
        rows[-1] = final
    res.stats["history"] = rows
