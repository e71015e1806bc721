"""Turning candidate points into certified lower bounds, and sampling the domain.

A candidate x certifies L >= ||J(x)|| when ``point_witness`` says x is in the domain and in the interior of
a linear region. Otherwise (a tie, an identically-zero unit, a max-pool tie) the point is nudged, and as a
last resort the pair (x, x + h v) along the maximising direction v of J(x) is used: a pair ratio is a
certified lower bound of every pairwise constant by definition.

The mathematics as implemented: ``docs/methods.md#certify-points``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.certify.witness import certified_pair_ratio, clip_to_domain, in_domain, point_witness
from lipopt.deadline import Deadline
from lipopt.network.network import AffineStage, Network
from lipopt.norms import MAX_ENUM_DIM
from lipopt.spec import Ball, Box, Global, Norm, Question, uniform_ball, unit_directions


@dataclass
class Certified:
    value: float
    witness: dict[str, Any]
    how: str  # 'point' or 'pair'
    tried: int = 0
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ directions


def norm_direction(jac: np.ndarray, question: Question) -> np.ndarray:
    """A unit vector v (in the input norm) with ||J v|| (or |c^T J v|) = the question's norm of J."""
    p = question.input_norm
    n = jac.shape[1]
    c = question.output_vector(jac.shape[0])
    if c is not None:
        return _dual_vector(c @ jac, p)
    q = question.output_norm
    if p is Norm.L1:
        j = int(np.argmax(np.linalg.norm(jac, ord=q.p, axis=0)))
        v = np.zeros(n)
        v[j] = 1.0
        return v
    if q is Norm.LINF:
        i = int(np.argmax(np.linalg.norm(jac, ord=p.dual.p, axis=1)))
        return _dual_vector(jac[i], p)
    if p is Norm.L2 and q is Norm.L2:
        _, _, vt = np.linalg.svd(jac)
        return vt[0]
    if p is Norm.L2:  # 2 -> 1: max over output signs s of ||J^T s||_2
        s = _best_signs(jac.T, Norm.L2)
        u = jac.T @ s
        nu = np.linalg.norm(u)
        return u / nu if nu > 0 else np.eye(n)[0]
    return _best_signs(jac, q)  # inf -> 1 / inf -> 2


def _dual_vector(g: np.ndarray, p: Norm) -> np.ndarray:
    """v with ||v||_p = 1 and g . v = ||g||_{p*}."""
    n = g.size
    if not np.any(g):
        v = np.zeros(n)
        v[0] = 1.0
        return v
    if p is Norm.L2:
        return g / np.linalg.norm(g)
    if p is Norm.LINF:
        return np.where(g >= 0, 1.0, -1.0)
    v = np.zeros(n)
    j = int(np.argmax(np.abs(g)))
    v[j] = np.sign(g[j])
    return v


def _best_signs(m: np.ndarray, q: Norm) -> np.ndarray:
    """argmax over sign vectors s of ||m s||_q (exhaustive up to MAX_ENUM_DIM, else a local search)."""
    n = m.shape[1]
    if n <= MAX_ENUM_DIM:
        best, arg = -1.0, np.ones(n)
        for signs in itertools.product((1.0, -1.0), repeat=n - 1):
            v = np.array((1.0, *signs))
            val = float(np.linalg.norm(m @ v, ord=q.p))
            if val > best:
                best, arg = val, v
        return arg
    v = np.ones(n)
    for _ in range(50):
        w = np.where(m.T @ np.sign(m @ v) >= 0, 1.0, -1.0)
        if np.array_equal(w, v):
            break
        v = w
    return v


# ------------------------------------------------------------------------------------------ scales


def input_scale(network: Network, question: Question) -> float:
    """A length scale of the domain (box half-width, ball radius) or, for the global domain, of where the
    first layer's hyperplanes lie: max(1, 2 max_i |b_i| / ||w_i||) (a heuristic)."""
    dom = question.domain
    if isinstance(dom, Box):
        return float(np.max(dom.hi - dom.lo) / 2)
    if isinstance(dom, Ball):
        return float(dom.radius)
    first = network.lower()[0]
    assert isinstance(first, AffineStage)
    w = first.dense()
    nrm = np.linalg.norm(w, axis=1)
    ok = nrm > 0
    if not np.any(ok):
        return 1.0
    return float(max(1.0, 2.0 * np.max(np.abs(first.bias[ok]) / nrm[ok])))


# ------------------------------------------------------------------------------------------ sampling


def sample_domain(network: Network, question: Question, n: int, rng: np.random.Generator,
                  global_radius: float | None = None) -> np.ndarray:
    """n points of the domain (its ``sample``: uniform in a box / ball). For the global domain, where to
    look is a heuristic: at the scale ``global_radius`` or :func:`input_scale` and up to 1000 times it."""
    scale = 1.0
    if isinstance(question.domain, Global):
        scale = global_radius if global_radius is not None else input_scale(network, question)
    return question.domain.sample(rng, n, network.input_size, scale)


def sample_nominal(question: Question, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points of the ball around x0 for the nominal-point ratio: a third uniform, a third on the sphere,
    a third at log-uniform radii down to 1e-6 r (ratios near x0 approach directional derivatives)."""
    dom = question.domain
    assert isinstance(dom, Ball)
    d = dom.center.size
    r = dom.radius
    n1, n2 = n // 3, n // 3
    n3 = n - n1 - n2
    if dom.norm is Norm.LINF:
        u = rng.uniform(-1.0, 1.0, size=(n1, d))
        s = rng.uniform(-1.0, 1.0, size=(n2, d))
        s[np.arange(n2), rng.integers(0, d, size=n2)] = rng.choice([-1.0, 1.0], size=n2)
    else:
        u = uniform_ball(rng, n1, d)
        s = unit_directions(rng, n2, d, Norm.L2)
    t = unit_directions(rng, n3, d, dom.norm)
    t *= 10.0 ** rng.uniform(-6.0, 0.0, size=(n3, 1))
    return dom.center + r * np.vstack([u, s, t])


def nominal_direction_points(network: Network, question: Question, n: int) -> np.ndarray:
    """``n`` points x0 + t v of the ball along the direction v that maximises the Jacobian's norm at x0,
    at radii t from 1e-3 r to r, both signs: where the nominal ratio is largest near x0 (each a real pair
    ratio, not a derivative). Empty where the Jacobian's norm at x0 is 0 or not finite."""
    dom = question.domain
    assert isinstance(dom, Ball)
    x0, r = dom.center, dom.radius
    v = norm_direction(network.jacobian(x0), question)
    nv = question.input_norm.of(v)
    if not np.isfinite(nv) or nv == 0:
        return np.zeros((0, x0.size))
    t = r * np.geomspace(1e-3, 1.0, max(1, n // 2))
    pts = np.vstack([x0 + np.outer(t, v / nv), x0 - np.outer(t, v / nv)])
    return np.array([dom.clip(p) for p in pts])


def nominal_candidates(network: Network, question: Question, n: int, rng: np.random.Generator
                       ) -> np.ndarray:
    """The candidates of the nominal-point ratio, shared by ``sampling`` and ``grad-ascent`` (so the
    ascent starts from sampling's points): 32 points along J(x0)'s maximising direction
    (:func:`nominal_direction_points`), then ``n`` samples of the ball (:func:`sample_nominal`); a point
    rounded a hair outside the ball (on the sphere) is stepped inside (exact membership)."""
    x = np.vstack([nominal_direction_points(network, question, 32), sample_nominal(question, n, rng)])
    for i in range(len(x)):
        if not in_domain(x[i], question):
            x[i] = clip_to_domain(x[i], question)
    return x


def nominal_ratios(network: Network, x: np.ndarray, question: Question) -> np.ndarray:
    """|f(x) - f(x0)| / |x - x0| for every row of x (0 where x = x0), in the question's norms."""
    x0 = question.domain.center  # type: ignore[union-attr]
    fx = network.forward(np.asarray(x).reshape(-1, network.input_size))
    f0 = network.forward(x0)
    diff = fx - f0[None, :]
    c = question.output_vector(diff.shape[1])
    num = np.abs(diff @ c) if c is not None else np.linalg.norm(diff, ord=question.output_norm.p, axis=1)
    den = np.linalg.norm(np.asarray(x).reshape(-1, x0.size) - x0[None, :], ord=question.input_norm.p, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return out


# ------------------------------------------------------------------------------------------ certification


def certify_point(network: Network, x: np.ndarray, question: Question, rng: np.random.Generator,
                  scale: float, n_nudges: int = 8) -> Certified | None:
    """A certified lower bound from the candidate x (pairwise constants only), or None."""
    x = clip_to_domain(np.asarray(x, dtype=np.float64).reshape(-1), question)
    pw = point_witness(network, x, question)
    if pw.certified:
        return Certified(pw.value, {"x": x.tolist(), "margin": pw.margin}, "point")
    best: Certified | None = None
    for k in range(n_nudges):
        h = scale * 10.0 ** (-8 + k % 4)
        y = clip_to_domain(x + h * rng.standard_normal(x.size), question)
        pw2 = point_witness(network, y, question)
        if pw2.certified and (best is None or pw2.value > best.value):
            best = Certified(pw2.value, {"x": y.tolist(), "margin": pw2.margin}, "point",
                             notes=[f"candidate on a region boundary (margin {pw.margin:.2g}); nudged"])
        if best is not None and best.value >= pw.value * (1 - 1e-12):
            break
    v = norm_direction(network.jacobian(x), question)
    for h in (1e-3, 1e-5, 1e-7):
        a, b = x, x + h * scale * v
        if not in_domain(b, question):
            a, b = x - h * scale * v, x
        if not (in_domain(a, question) and in_domain(b, question)):
            continue
        r = certified_pair_ratio(network, a, b, question)
        if best is None or r > best.value:
            best = Certified(r, {"x": a.tolist(), "y": b.tolist()}, "pair",
                             notes=["pair along the maximising direction of J(x) (x on a boundary)"])
    return best


def certify_best(network: Network, cands: np.ndarray, vals: np.ndarray, question: Question,
                 rng: np.random.Generator, scale: float, n_try: int = 10,
                 deadline: Deadline | None = None) -> Certified | None:
    """Certify the best candidates in order of value; stop once a certified value reaches the next one,
    or once ``deadline`` has passed and some candidate is certified (recorded on the deadline)."""
    order = np.argsort(-vals, kind="stable")
    best: Certified | None = None
    for tried, i in enumerate(order[:n_try], start=1):
        if best is not None and best.value >= vals[i]:
            break
        if best is not None and deadline is not None and deadline.expired():
            deadline.stopped("certification of the best candidates")
            break
        c = certify_point(network, cands[i], question, rng, scale)
        if c is not None and (best is None or c.value > best.value):
            best = c
            best.tried = tried
    return best
