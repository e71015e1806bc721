"""Method "region-climb" (LOWER): hill climbing over neighbouring linear regions from the best samples.

The lower side of ``bab`` on its own (:func:`lipopt.exact.bab.region_climb`; docs/methods.md#region-climb):
``n_samples`` seeded points of the domain, then from the best samples of ``climb_starts`` distinct regions
in turn, one ambiguous neuron flipped at a time, the flips ranked by the exact Jacobian norm of the
flipped pattern, a flip kept when the margin LP proves that the flipped region has interior in the domain
and the LP's point re-evaluates in float64 (``point_witness``) to a certified value. Each climb stops at
a local maximum; the value is the best certified witness. It is a LOWER bound, never more: a local
maximum over regions, not the maximum. The exact methods ``milp`` and ``miqcqp`` run it in their prior
phase (``lipopt.exact.prior``); ``bab`` climbs itself.

Options (``RunOptions.extra``): n_samples (2000), climb_starts (32), climb_time (seconds, 3.0; capped by
the run's time limit). Needs an LP solver (the margin LPs go through ``lipopt_solvers``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lipopt.errors import InvalidOptionsError, NotApplicableError
from lipopt.network.network import Network
from lipopt.options import MethodOptions, RunOptions
from lipopt.result import BoundKind, LipschitzResult, Status, StopReason
from lipopt.spec import Question

METHOD = "region-climb"


@dataclass(frozen=True)
class Options(MethodOptions):
    n_samples: int = 2000  # seeded domain samples: the climbs start from the best of them
    climb_starts: int = 32  # ... of this many distinct regions, best first
    climb_time: float = 3.0  # seconds of climbing (at most the run's time limit)

    def __post_init__(self) -> None:
        bad = []
        for name in ("n_samples", "climb_starts"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                bad.append(f"{name} must be an integer >= 0, got {v!r}")
        t = self.climb_time
        if isinstance(t, bool) or not isinstance(t, int | float) or not float(t) > 0:
            bad.append(f"climb_time must be a number > 0, got {t!r}")
        if bad:
            raise InvalidOptionsError(f"bad option(s) for method {METHOD!r}: " + "; ".join(bad))


def applicable(network: Network, question: Question) -> str | None:
    from lipopt.methods.bab import applicable as bab_applicable

    reason = bab_applicable(network, question)
    return None if reason is None else reason.replace("bab", "region-climb", 1)


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    from lipopt.certify.witness import point_witness
    from lipopt.exact.bab import BabSettings, region_climb

    t0 = time.perf_counter()
    q = question.bind(network)
    reason = applicable(network, q)
    if reason is not None:
        raise NotApplicableError(reason)
    o = Options.from_run(options, METHOD)
    budget = float(o.climb_time)
    # the set-up and the samples count against the limit too (region_climb caps the budget by it)
    deadline = None if options.time_limit is None else t0 + 0.8 * float(options.time_limit)
    st = BabSettings(n_samples=int(o.n_samples), climb_starts=int(o.climb_starts), seed=options.seed,
                     solver=options.solver, climb_time=budget)
    out = region_climb(network, q, st, budget, deadline)
    opts = {"n_samples": o.n_samples, "climb_starts": o.climb_starts, "climb_time": o.climb_time,
            "time_limit": options.time_limit}
    stats = {k: out.stats.get(k) for k in ("climbs", "climb_starts", "climb_lps", "climb_budget",
                                           "climb_seconds", "time")}
    if out.lower is None or out.witness is None:
        return LipschitzResult(METHOD, BoundKind.LOWER, None, Status.ERROR, options=opts, stats=stats,
                               notes=list(out.notes),
                               message="no sampled or climbed point could be certified",
                               wall_time=time.perf_counter() - t0)
    from lipopt_solvers import Capability, default_solver

    w = out.witness
    res = LipschitzResult(METHOD, BoundKind.LOWER, float(out.lower), options=opts, stats=stats,
                          solver=f"{options.solver or default_solver(Capability.LP)} (margin LPs)",
                          witness={"x": w["x"], "value": w["value"], "margin": w["margin"],
                                   "source": w["source"], "kind": "point"},
                          notes=list(out.notes))
    cq = out.cert_question or q
    pw = point_witness(network, np.asarray(w["x"], dtype=np.float64), cq)
    res.add_check("witness in domain and region interior", pw.certified,
                  f"in domain {pw.in_domain}, relative margin {pw.margin:.3g}")
    res.add_check("witness value re-evaluated", abs(pw.value - res.value) <= 1e-12 * max(1.0, res.value),
                  f"{pw.value:.12g}")
    if out.stop == "time_limit":
        used = float(stats["climb_budget"])
        capped = options.time_limit is not None and used < float(o.climb_time)
        res.notes.append(f"climbed from {stats['climbs']} of {stats['climb_starts']} starts in {used:.3g} s"
                         + (" (the run's time limit)" if capped else " (climb_time)"))
        if capped:
            res.stop = StopReason.TIME_LIMIT
    res.wall_time = time.perf_counter() - t0
    return res
