"""Certified lower bounds from witnesses, re-evaluated on the network in float64.

* A point x in the domain that lies in the interior of a linear region (every ReLU pre-activation and
  every max-pool winner margin away from a tie) certifies L >= ||J(x)|| (formulations.md, Fact A).
* A pair (x, y) in the domain certifies L >= |f(x) - f(y)| / |x - y| (pairwise constants), once the
  float64 rounding of f(x) - f(y) is allowed for (:func:`certified_pair_ratio`; it dominates for close
  pairs). :func:`pair_ratio` is the raw quotient, not a certificate.
* For the nominal-point constant only pairs (x, x0) count: L(x0) >= |f(x) - f(x0)| / |x - x0|.

The mathematics as implemented: ``docs/methods.md#witness``.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import numpy as np

from lipopt.network.layers import ACTIVATION_LAYERS, Conv2d, Dense, MaxPool2d
from lipopt.network.network import AffineStage, Network
from lipopt.norms import jacobian_norm, output_distance, vector_norm
from lipopt.spec import Question

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


_ABS_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _abs_layers(network: Network) -> list:
    """The layers with |W| and |b| (cached per network): their forward pass on |x| bounds the size of
    every term summed into each value, hence the float64 rounding error of the value."""
    got = _ABS_LAYERS.get(network)
    if got is None:
        got = [dataclasses.replace(la, weight=np.abs(la.weight),
                                   bias=None if la.bias is None else np.abs(la.bias))
               if isinstance(la, Dense | Conv2d) else la for la in network.layers]
        _ABS_LAYERS[network] = got
    return got


def region_margin(network: Network, x: np.ndarray) -> float:
    """Smallest distance from a tie over ReLUs and LeakyReLUs (|z|) and max-pools (winner minus
    runner-up), relative to the magnitude of the terms that make up each value: |z_i| / (|W| a + |b|)_i,
    with a the same magnitudes one layer down (|x| at the input). The rounding error of z_i is a small
    multiple of that magnitude, so the margin is scale-invariant (weights times c leave it unchanged) and
    a margin above :data:`BOUNDARY_RTOL` means the computed signs and winners are the true ones."""
    h = np.asarray(x, dtype=np.float64).reshape(1, *network.input_shape)
    a = np.abs(h)
    worst = np.inf
    tiny = np.finfo(np.float64).tiny
    for la, la_abs in zip(network.layers, _abs_layers(network), strict=True):
        if isinstance(la, ACTIVATION_LAYERS):
            worst = min(worst, float(np.min(np.abs(h) / np.maximum(a, tiny))))
        elif isinstance(la, MaxPool2d):
            win = la.windows(h.shape[1:])
            flat, mag = h.reshape(-1), a.reshape(-1)
            vals = np.where(win >= 0, flat[np.maximum(win, 0)], -np.inf)
            if vals.shape[1] > 1:
                top2 = np.sort(vals, axis=1)[:, -2:]
                gaps = top2[:, 1] - top2[:, 0]
                scale = np.max(np.where(win >= 0, mag[np.maximum(win, 0)], 0.0), axis=1)
                worst = min(worst, float(np.min(gaps / np.maximum(scale, tiny))))
        h = la.forward(h)
        a = la_abs.forward(a)
    return worst


def in_domain(x: np.ndarray, question: Question, tol: float = 0.0) -> bool:
    """Whether x lies in the domain, exactly by default: a witness a hair outside a box can sit in a
    region that never meets the domain (T6: relu(-x) on [0, 1] at x = -1e-13), and with margins measured
    relative to the values, nothing else would catch it. (The domain classes own the test.)"""
    return question.domain.contains(x, tol)


def jacobian_rounding(network: Network, x: np.ndarray, question: Question) -> float:
    """An upper bound on how far the float64 ``||J(x)||`` can lie above the exact norm of the region's
    Jacobian: the computed J differs from the exact product by at most gamma_k |W_L| |D| ... |W_1|
    entrywise (k the number of terms summed along the chain, gamma_k = k u / (1 - k u)), and every
    p -> q operator norm of a matrix E is at most the sum of |E_ij|; so the allowance is gamma_k times
    the sum of the entries of |c^T| |W_L| |D_L| ... |W_1| (one reverse pass with absolute values), plus a
    relative allowance for the norm's own evaluation."""
    from lipopt.lower.batch import _backward, _forward_states

    stages = network.lower()
    xb = np.asarray(x, dtype=np.float64).reshape(1, network.input_size)
    states = _forward_states(stages, xb)
    abs_stages = [dataclasses.replace(s, weight=abs(s.weight) if hasattr(s.weight, "toarray") else
                                      np.abs(s.weight)) if isinstance(s, AffineStage) else s for s in stages]
    c = question.output_vector(network.output_size)
    seed = np.ones((1, 1, network.output_size)) if c is None else np.abs(c).reshape(1, 1, -1)
    total = float(np.sum(_backward(abs_stages, states, seed)))
    u = np.finfo(np.float64).eps / 2
    k = 2 * sum(int(np.prod(shp)) for shp in network.shapes) + 2 * len(network.layers)
    gamma = k * u / (1 - k * u)
    return gamma * total * (1 + 1e-6)


def point_witness(network: Network, x: np.ndarray, question: Question) -> PointWitness:
    """||J(x)|| at x, lowered by the float64 rounding allowance of :func:`jacobian_rounding` (so that it
    is at most the exact norm of the region's Jacobian), with the region margin and domain membership."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    jac = network.jacobian(x)
    raw = jacobian_norm(jac, question)
    u = np.finfo(np.float64).eps / 2
    rel = 16 * (jac.shape[0] + jac.shape[1]) * u  # the norm's own evaluation (SVD, sums)
    value = max(0.0, raw * (1 - rel) - jacobian_rounding(network, x, question)) if raw > 0 else 0.0
    return PointWitness(x, value, region_margin(network, x), in_domain(x, question))


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
    """Project onto a box / l-inf ball, or scale into an l2 ball, exactly inside (the domain's ``clip``)."""
    return question.domain.clip(np.asarray(x, dtype=np.float64))
