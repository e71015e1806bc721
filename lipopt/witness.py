"""Certified lower bounds from witnesses, re-evaluated on the network in float64.

* A point x in the domain that lies in the interior of a linear region (every ReLU pre-activation and
  every max-pool winner margin away from a tie) certifies L >= ||J(x)|| (formulations.md, Fact A).
* A pair (x, y) in the domain certifies L >= |f(x) - f(y)| / |x - y| (pairwise constants), once the
  float64 rounding of f(x) - f(y) is allowed for (:func:`certified_pair_ratio`; it dominates for close
  pairs). :func:`pair_ratio` is the raw quotient, not a certificate.
* For the nominal-point constant only pairs (x, x0) count: L(x0) >= |f(x) - f(x0)| / |x - x0|.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipopt.network.layers import MaxPool2d, ReLU
from lipopt.network.network import AffineStage, Network
from lipopt.norms import jacobian_norm, output_distance, vector_norm
from lipopt.spec import Ball, Box, Question

#: relative margin below which a pre-activation counts as "on a region boundary"
BOUNDARY_RTOL = 1e-9


@dataclass
class PointWitness:
    x: np.ndarray
    value: float  # ||J(x)|| in the question's norms
    margin: float  # smallest |pre-activation| / max-pool gap, relative
    in_domain: bool

    @property
    def certified(self) -> bool:
        return self.in_domain and self.margin > BOUNDARY_RTOL


def region_margin(network: Network, x: np.ndarray) -> float:
    """Smallest distance from a tie over ReLUs (|z|) and max-pools (winner minus runner-up),
    relative to the scale of the layer's values."""
    h = np.asarray(x, dtype=np.float64).reshape(1, *network.input_shape)
    worst = np.inf
    for la in network.layers:
        if isinstance(la, ReLU):
            scale = max(1.0, float(np.max(np.abs(h))))
            worst = min(worst, float(np.min(np.abs(h))) / scale)
        elif isinstance(la, MaxPool2d):
            win = la.windows(h.shape[1:])
            flat = h.reshape(-1)
            vals = np.where(win >= 0, flat[np.maximum(win, 0)], -np.inf)
            if vals.shape[1] > 1:
                top2 = np.sort(vals, axis=1)[:, -2:]
                gaps = top2[:, 1] - top2[:, 0]
                scale = max(1.0, float(np.max(np.abs(flat))))
                worst = min(worst, float(np.min(gaps)) / scale)
        h = la.forward(h)
    return worst


def in_domain(x: np.ndarray, question: Question, tol: float = 1e-12) -> bool:
    x = np.ravel(x)
    dom = question.domain
    if isinstance(dom, Box):
        return bool(np.all(x >= dom.lo - tol) and np.all(x <= dom.hi + tol))
    if isinstance(dom, Ball):
        return vector_norm(x - dom.center, dom.norm) <= dom.radius * (1 + 1e-12) + tol
    return True


def point_witness(network: Network, x: np.ndarray, question: Question) -> PointWitness:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    jac = network.jacobian(x)
    return PointWitness(x, jacobian_norm(jac, question), region_margin(network, x), in_domain(x, question))


def pair_ratio(network: Network, x: np.ndarray, y: np.ndarray, question: Question) -> float:
    """|f(x) - f(y)| / |x - y| in the question's norms (0 if x == y), in plain float64: not a certified
    lower bound by itself (see :func:`certified_pair_ratio`)."""
    x = np.ravel(np.asarray(x, dtype=np.float64))
    y = np.ravel(np.asarray(y, dtype=np.float64))
    dx = vector_norm(x - y, question.input_norm)
    if dx == 0:
        return 0.0
    return output_distance(network.forward(x), network.forward(y), question) / dx


def forward_magnitude(network: Network, x: np.ndarray) -> float:
    """max_i of |W_L| ... |W_1| |x| + |b| terms: a bound on the size of the numbers summed in f(x)."""
    h = np.abs(np.asarray(x, dtype=np.float64).reshape(1, -1))
    for s in network.lower():
        if isinstance(s, AffineStage):
            w = s.weight
            wa = abs(w) if hasattr(w, "toarray") else np.abs(w)  # type: ignore[arg-type]
            h = np.asarray((wa @ h.T).T) + np.abs(s.bias)  # type: ignore[operator]
        elif hasattr(s, "windows"):
            win = s.windows  # type: ignore[union-attr]
            h = np.where(win >= 0, h[:, np.maximum(win, 0)], 0.0).max(axis=2)
    return float(np.max(h)) if h.size else 0.0


def certified_pair_ratio(network: Network, x: np.ndarray, y: np.ndarray, question: Question) -> float:
    """|f(x) - f(y)| / |x - y| minus an allowance for float64 rounding in f(x) - f(y) (which dominates
    when x and y are close): a value that the exact pair ratio is at least. 0 if nothing is left."""
    x = np.ravel(np.asarray(x, dtype=np.float64))
    y = np.ravel(np.asarray(y, dtype=np.float64))
    dx = float(np.linalg.norm(x - y, ord=question.input_norm.p))
    if dx == 0:
        return 0.0
    ratio = pair_ratio(network, x, y, question)
    width = sum(s.shape[1] for s in network.lower() if isinstance(s, AffineStage))
    m = question.output_vector(network.output_size)
    cnorm = 1.0 if m is None else float(np.sum(np.abs(m)))
    out_dim = network.output_size if m is None else 1
    err = 4.0 * np.finfo(float).eps * (width + 4) * cnorm * out_dim * (
        forward_magnitude(network, x) + forward_magnitude(network, y))
    return max(0.0, (ratio * dx - err) / dx * (1 - 1e-15))


def clip_to_domain(x: np.ndarray, question: Question) -> np.ndarray:
    """Project onto a box / l-inf ball, or scale into an l2 ball."""
    x = np.asarray(x, dtype=np.float64).copy()
    dom = question.domain
    if isinstance(dom, Box):
        return np.clip(x, dom.lo, dom.hi)
    if isinstance(dom, Ball):
        d = x - dom.center
        if dom.norm.p == np.inf:
            return dom.center + np.clip(d, -dom.radius, dom.radius)
        n = np.linalg.norm(d)
        return x if n <= dom.radius else dom.center + d * (dom.radius / n)
    return x
