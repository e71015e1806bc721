"""Certified local constants and robustness radii of a trained classifier at test points.

For each of ``points`` seeded test points x0 (:class:`LocalEvalOptions`):

* the **local constant** on the ball B(x0, eps) of each norm (l2 radius ``eps_l2``, l-inf radius
  ``eps_linf``; same input and output norm), a pairwise question ``Question(p, p, Ball(x0, eps, p))`` run
  through :func:`lipopt.compare` with the norm's methods: its bracket is [best certified LOWER, min(best
  certified UPPER, the net's certified global UPPER)] (the global constant bounds every local one);
* the **nominal-point l2 constant** sup |f(x) - f(x0)| / |x - x0| on the l2 ball (the analytic local bound
  ``local-affine``: UPPER; ``sampling``: LOWER);
* the **certified l2 radius** from the analytic local bound
  (:func:`lipopt.analytic.robustness.certified_radius`: eps L(x0, eps) < Delta / sqrt 2 at the radius)
  and, beside it, the radius of the global upper bound Delta / (sqrt 2 U_global); both are 0 at a
  misclassified point (no certificate of the right class).

The row summary holds the means over the points. A mean of certified LOWER (UPPER) bounds is a LOWER
(UPPER) bound of the mean local constant over those points, so the kinds stay honest; a mean is None when
one point has no certified value on that side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from lipopt.options import StrictOptions
from lipopt.train.options import _positive

__all__ = ["LocalEvalOptions", "local_evaluation", "sample_points"]

SQRT2 = math.sqrt(2.0)


@dataclass(frozen=True)
class LocalEvalOptions(StrictOptions):
    """``points`` seeded test points; ball radii ``eps_l2`` and ``eps_linf``; ``norms`` of the local
    constant; the methods of each norm (``methods_l2``, ``methods_linf``); ``time_limit`` per method and
    point; ``radius``: the certified l2 radius (analytic local bound); ``ascent_restarts`` and
    ``ascent_steps``: the budget of the ``grad-ascent`` LOWER bound when it is one of the methods (smaller
    than its defaults: it runs at every point; not a default method, being ~100x slower than sampling
    for a bound within 1 % of sampling's on the digits nets)."""

    points: int = 5
    eps_l2: float = 1.0
    eps_linf: float = 0.1
    norms: tuple[str, ...] = ("l2",)
    methods_l2: tuple[str, ...] = ("naive", "sampling")
    methods_linf: tuple[str, ...] = ("naive", "sampling", "lp-relax")
    time_limit: float = 10.0
    seed: int = 0
    radius: bool = True
    ascent_restarts: int = 2
    ascent_steps: int = 50

    def __post_init__(self) -> None:
        from lipopt.errors import InvalidOptionsError

        _positive("local.points", self.points, integer=True)
        _positive("local.eps_l2", self.eps_l2)
        _positive("local.eps_linf", self.eps_linf)
        _positive("local.time_limit", self.time_limit)
        _positive("local.ascent_restarts", self.ascent_restarts, integer=True)
        _positive("local.ascent_steps", self.ascent_steps, integer=True)
        for name in ("norms", "methods_l2", "methods_linf"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        bad = [n for n in self.norms if n not in ("l2", "linf")]
        if bad:
            raise InvalidOptionsError(f"local.norms: {bad} not supported; choose from l2, linf")

    def eps(self, norm: str) -> float:
        return self.eps_l2 if norm == "l2" else self.eps_linf

    def methods(self, norm: str) -> list[str]:
        return list(self.methods_l2 if norm == "l2" else self.methods_linf)


def sample_points(n_test: int, points: int, seed: int) -> np.ndarray:
    """The indices of the seeded test points (a permutation's first ``points``)."""
    return np.random.default_rng(seed).permutation(n_test)[:points]


def _ball_set(net: Any, x0: np.ndarray, norm: str, opts: LocalEvalOptions, methods: list[str],
              nominal: bool = False) -> Any:
    from lipopt.api import compare
    from lipopt.options import RunOptions
    from lipopt.spec import Ball, Norm, make_question

    p = Norm.parse(norm)
    q = make_question(p, domain=Ball(x0, opts.eps(norm), p), nominal=nominal)
    run = RunOptions(time_limit=opts.time_limit, seed=opts.seed,
                     extra={"grad-ascent": {"restarts": opts.ascent_restarts, "steps": opts.ascent_steps,
                                             "n_init": 200}})
    return compare(net, methods=methods, question=q, options=run, title=net.name or "")


def _point(net: Any, x0: np.ndarray, label: int, opts: LocalEvalOptions,
           global_upper: dict[str, float | None]) -> tuple[dict[str, Any], list[tuple[str, Any]]]:
    """One test point: its brackets and radii, and the (question name, ResultSet) pairs run."""
    from lipopt.analytic.robustness import certified_radius, logit_margin

    out: dict[str, Any] = {}
    sets: list[tuple[str, Any]] = []
    for norm in opts.norms:
        rs = _ball_set(net, x0, norm, opts, opts.methods(norm))
        ups = [u for u in (rs.best_upper, global_upper.get(norm)) if u is not None]
        out[f"local_lower_{norm}"] = rs.best_lower
        out[f"local_upper_{norm}"] = min(ups) if ups else None
        out[f"local_consistent_{norm}"] = rs.consistency().passed and (
            rs.best_lower is None or not ups or rs.best_lower <= min(ups) * (1 + 1e-6))
        sets.append((f"local {norm}", rs))
    rs = _ball_set(net, x0, "l2", opts, ["local-affine", "sampling"], nominal=True)
    out["nominal_lower_l2"], out["nominal_upper_l2"] = rs.best_lower, rs.best_upper
    sets.append(("nominal l2", rs))
    margin, pred = logit_margin(net, x0)
    correct = pred == label
    out.update({"label": int(label), "predicted": pred, "margin": margin, "correct": bool(correct)})
    if opts.radius:
        rad = certified_radius(net, x0)
        out["radius_local_l2"] = rad.radius if correct else 0.0
    up = global_upper.get("l2")
    out["radius_global_l2"] = (margin / (SQRT2 * up) if correct else 0.0) if up else None
    return out, sets


def _mean(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r.get(key) for r in rows]
    if not vals or any(v is None for v in vals):
        return None
    return float(np.mean(vals))


def local_evaluation(net: Any, x_test: np.ndarray, y_test: np.ndarray, opts: LocalEvalOptions | None = None,
                     global_upper: dict[str, float | None] | None = None
                     ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The means over the test points (``summary``) and the records of every method run (dicts of
    :meth:`LipschitzResult.to_dict` with ``point`` and ``question`` added). ``global_upper``: the net's
    certified global UPPER bound per norm (it bounds the local constants too), when known."""
    opts = opts or LocalEvalOptions()
    global_upper = dict(global_upper or {})
    idx = sample_points(len(x_test), opts.points, opts.seed)
    rows, records = [], []
    for i in idx:
        x0 = np.asarray(x_test[i], dtype=np.float64).reshape(-1)
        row, sets = _point(net, x0, int(y_test[i]), opts, global_upper)
        row["index"] = int(i)
        rows.append(row)
        for qname, rs in sets:
            for r in rs:
                d = r.to_dict()
                d.update({"point": int(i), "question_name": qname})
                records.append(d)
    keys = [f"local_{s}_{n}" for n in opts.norms for s in ("lower", "upper")]
    keys += ["nominal_lower_l2", "nominal_upper_l2", "radius_global_l2"]
    keys += ["radius_local_l2"] if opts.radius else []
    summary: dict[str, Any] = {k: _mean(rows, k) for k in keys}
    summary.update({"points": len(rows), "eps_l2": opts.eps_l2, "eps_linf": opts.eps_linf,
                    "consistent": all(r[f"local_consistent_{n}"] for r in rows for n in opts.norms),
                    "per_point": rows})
    return summary, records
