"""Method "sampling" (LOWER): the largest Jacobian norm at random points of the domain.

Points are uniform in a box / ball. For the global domain the points are drawn around 0 at the scale of the
first layer's hyperplanes and beyond (``lipopt.certify.points.sample_domain``): a heuristic choice of *where
to look* only; the value is still a certified lower bound because each Jacobian is that of a real linear
region (formulations.md Fact A). With biases the maximising region can be far away (Fact C): expect gaps.

Jacobian norms are computed for the whole batch (numpy, float64); the best points are then re-evaluated one
by one with ``point_witness`` and only a point inside a region's interior and in the domain counts (a point on
a boundary is nudged, or replaced by a pair along its maximising direction, or the next best is used).

Nominal-point questions: the value is max over samples of |f(x) - f(x0)| / |x - x0| (never a Jacobian norm).

Options (``RunOptions.extra``): n_samples (1000), seed (default ``RunOptions.seed``), global_radius.

Time limit (``RunOptions.time_limit``, every phase counts): the points are evaluated in chunks until 70 % of
the budget is used, then the best of those evaluated so far are certified (at least one point is evaluated
and one certified, so a tiny limit can be overrun by that much). The value is still a certified LOWER bound,
of the points evaluated; the record stops with ``StopReason.TIME_LIMIT`` and says how many were evaluated.

The mathematics as implemented: ``docs/methods.md#sampling``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lipopt.certify.points import (
    certify_best,
    input_scale,
    nominal_candidates,
    nominal_ratios,
    sample_domain,
)
from lipopt.certify.witness import certified_pair_ratio, in_domain
from lipopt.deadline import Deadline
from lipopt.lower.batch import batch_jacobian_norms, evaluate_until
from lipopt.network.network import Network
from lipopt.options import MethodOptions, RunOptions
from lipopt.result import BoundKind, LipschitzResult, Status, StopReason, Verdict
from lipopt.spec import Question


@dataclass(frozen=True)
class Options(MethodOptions):
    n_samples: int = 1000
    seed: int | None = None  # default: RunOptions.seed
    global_radius: float | None = None  # sampling scale for the global domain


def applicable(network: Network, question: Question) -> str | None:
    return None


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    t0 = time.perf_counter()
    dl = Deadline.start(options.time_limit, t0)
    q = question.bind(network)
    o = Options.from_run(options, "sampling")
    n = int(o.n_samples)
    seed = int(options.seed if o.seed is None else o.seed)
    rng = np.random.default_rng(seed)
    opts = {"n_samples": n, "seed": seed, "time_limit": options.time_limit}
    if q.constant == "nominal":
        return _run_nominal(network, q, n, rng, opts, t0, dl)
    gr = o.global_radius
    x = sample_domain(network, q, n, rng, None if gr is None else float(gr))
    vals = evaluate_until(lambda xs: batch_jacobian_norms(network, xs, q), x, dl.share(0.7),
                          "sampled Jacobian norms")
    x = x[: len(vals)]
    scale = input_scale(network, q)
    cert = certify_best(network, x, vals, q, rng, scale, deadline=dl)
    stats = {"n_samples": n, "n_evaluated": len(vals),
             "best_sampled": float(np.max(vals)) if vals.size else None}
    if cert is None:
        if dl.hit:  # out of time before any point was certified: no number, honestly
            return LipschitzResult("sampling", BoundKind.LOWER, None, verdict=Verdict.OK,
                                   stop=StopReason.TIME_LIMIT, options=opts, stats=stats, notes=[dl.note()],
                                   message="time limit reached before a sampled point was certified",
                                   wall_time=time.perf_counter() - t0)
        return LipschitzResult("sampling", BoundKind.LOWER, None, Status.ERROR, options=opts, stats=stats,
                               message="no sampled point could be certified (all on region boundaries?)",
                               wall_time=time.perf_counter() - t0)
    stats["certify_tries"] = cert.tried
    res = LipschitzResult("sampling", BoundKind.LOWER, cert.value, options=opts, stats=stats,
                          witness={**cert.witness, "kind": cert.how}, notes=list(cert.notes))
    _check_witness(res, network, q, cert.witness, cert.how)
    dl.mark(res)
    res.wall_time = time.perf_counter() - t0
    return res




def _check_witness(res: LipschitzResult, network: Network, q: Question, w: dict, how: str) -> None:
    """Re-evaluate the witness in float64 and check that it certifies the value."""
    from lipopt.certify.witness import point_witness

    x = np.asarray(w["x"])
    if how == "point":
        pw = point_witness(network, x, q)
        res.add_check("witness in domain and region interior", pw.certified,
                      f"in domain {pw.in_domain}, relative margin {pw.margin:.3g}")
        res.add_check("witness value re-evaluated", abs(pw.value - res.value) <= 1e-12 * max(1.0, res.value),
                      f"{pw.value:.12g}")
    else:
        y = np.asarray(w["y"])
        ok = in_domain(x, q) and in_domain(y, q)
        res.add_check("pair in domain", ok, "")
        r = certified_pair_ratio(network, x, y, q)
        res.add_check("pair ratio re-evaluated (with rounding allowance)",
                      abs(r - res.value) <= 1e-12 * max(1.0, res.value), f"{r:.12g}")


#: how many of the best batch ratios are certified one by one (pair by pair, with the rounding allowance)
N_CERTIFY = 32


def _run_nominal(network: Network, q: Question, n: int, rng: np.random.Generator, opts: dict,
                 t0: float, dl: Deadline | None = None) -> LipschitzResult:
    """The best certified pair ratio |f(x) - f(x0)| / |x - x0| over sampled points and points along the
    Jacobian's maximising direction at x0. The batch ratios (plain float64) only rank the points; the
    best :data:`N_CERTIFY` are certified with :func:`certified_pair_ratio` (rounding allowance), and the
    value is the best certified one, so the re-check recomputes exactly the same number."""
    dl = dl or Deadline()
    x = nominal_candidates(network, q, n, rng)
    ratios = evaluate_until(lambda xs: nominal_ratios(network, xs, q), x, dl.share(0.8), "sampled ratios")
    x = x[: len(ratios)]
    x0 = q.domain.center  # type: ignore[union-attr]
    top = np.argsort(-ratios)[:N_CERTIFY]
    certified = [(certified_pair_ratio(network, x[i], x0, q), int(i)) for i in top if in_domain(x[i], q)]
    value, i = max(certified, default=(0.0, int(top[0])))
    xb = x[i]
    res = LipschitzResult("sampling", BoundKind.LOWER, value, options=opts,
                          stats={"n_samples": n, "n_evaluated": len(ratios), "n_certified": len(certified),
                                 "best_batch_ratio": float(ratios[top[0]]),
                                 "batch_ratio_of_witness": float(ratios[i])},
                          witness={"x": xb.tolist(), "x0": x0.tolist(), "kind": "nominal pair"})
    res.add_check("witness in domain", in_domain(xb, q), "")
    again = certified_pair_ratio(network, xb, x0, q)
    res.add_check("certified ratio re-evaluated in float64", again == value, f"{again:.12g}")
    res.add_check("certified ratio <= its float64 batch ratio", value <= ratios[i] * (1 + 1e-12),
                  f"{value:.12g} vs batch {ratios[i]:.12g}")
    dl.mark(res)
    res.wall_time = time.perf_counter() - t0
    return res
