"""Certified lower bounds from witnesses, re-evaluated on the network in float64.

* A point x in the domain that lies in the interior of a linear region (every ReLU pre-activation and
  every max-pool winner margin away from a tie) certifies L >= ||J(x)|| (formulations.md, Fact A).
* A pair (x, y) in the domain certifies L >= |f(x) - f(y)| / |x - y| (pairwise constants), once the
  float64 rounding of f(x) - f(y) is allowed for (:func:`certified_pair_ratios`, batched, and
  :func:`certified_pair_ratio`). The allowance is a running error analysis of the two actual forward
  passes (:func:`forward_error`: one pass with |W| per point), not a worst case over the network's width
  and magnitudes; on the CIFAR-10 net of Avant & Morgansen it is about 3e-3 per unit distance at pair
  distance 1e-3, where the old width-times-magnitude allowance was about 200 and took minutes.
  :func:`pair_ratio` is the raw quotient, not a certificate.
* :func:`forward_error` also proves signs: a pre-activation with |z| above its error bound has the sign
  of the exact one; :class:`PointWitness` requires that of every ReLU and max-pool winner.
* For the nominal-point constant only pairs (x, x0) count: L(x0) >= |f(x) - f(x0)| / |x - x0|.

The mathematics as implemented: ``docs/methods.md#witness``.
"""

from __future__ import annotations

import dataclasses
import weakref
from dataclasses import dataclass

import numpy as np

from lipopt.network.layers import ACTIVATION_LAYERS, AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d
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
    #: smallest |pre-activation| / its rigorous float64 error bound (max-pool: gap / the two errors), from
    #: :func:`forward_error`: above 1, every computed sign and winner is the exact one
    error_margin: float = np.inf

    @property
    def certified(self) -> bool:
        """In the domain, a relative margin above :data:`BOUNDARY_RTOL`, and every sign proved exact by
        the running error bound (the relative margin alone is a heuristic for deep or badly scaled nets)."""
        return self.in_domain and self.margin > BOUNDARY_RTOL and self.error_margin > 1.0


_ABS_LAYERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_ABS_STAGES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


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
    abs_stages = _ABS_STAGES.get(network)
    if abs_stages is None:
        abs_stages = [dataclasses.replace(s, weight=abs(s.weight) if hasattr(s.weight, "toarray") else
                                          np.abs(s.weight)) if isinstance(s, AffineStage) else s
                      for s in stages]
        _ABS_STAGES[network] = abs_stages
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
    margin = region_margin(network, x)
    err_margin = float(forward_error(network, x, margins=True).margin[0]) if margin > BOUNDARY_RTOL else 0.0
    return PointWitness(x, value, margin, in_domain(x, question), err_margin)


def pair_ratio(network: Network, x: np.ndarray, y: np.ndarray, question: Question) -> float:
    """|f(x) - f(y)| / |x - y| in the question's norms (0 if x == y), in plain float64: not a certified
    lower bound by itself (see :func:`certified_pair_ratio`)."""
    x = np.ravel(np.asarray(x, dtype=np.float64))
    y = np.ravel(np.asarray(y, dtype=np.float64))
    dx = vector_norm(x - y, question.input_norm)
    if dx == 0:
        return 0.0
    return output_distance(network.forward(x), network.forward(y), question) / dx


#: the unit roundoff of float64 (round to nearest)
UNIT_ROUNDOFF = np.finfo(np.float64).eps / 2
#: an absolute allowance per operation for underflow (gradual underflow loses at most 2^-1074 per
#: operation; 1e-300 covers any sane operation count)
_UNDERFLOW = 1e-300


def _gamma(k: int) -> float:
    """gamma_k = k u / (1 - k u), rounded up a little (the classical bound on k chained roundings)."""
    ku = (k + 1) * UNIT_ROUNDOFF
    return ku / (1.0 - ku) * (1.0 + 1e-12)


def _fan_in(la: object) -> int:
    """The number of terms summed into one output value of a linear layer (the bias not counted)."""
    if isinstance(la, Dense):
        return int(la.weight.shape[1])
    if isinstance(la, Conv2d):
        return int(np.prod(la.weight.shape[1:]))
    if isinstance(la, AvgPool2d):
        return int(np.prod(la.kernel_size))
    return 0


@dataclass
class ForwardError:
    """``network.forward`` on a batch with a rigorous bound on its float64 rounding error.

    ``out`` (B, m): the computed outputs, bit for bit those of ``network.forward``; ``err`` (B, m): bounds
    with |out - f(x)| <= err entrywise, f the exact real-arithmetic network (of the float64 weights);
    ``margin`` (B,): the smallest ratio over ReLU / LeakyReLU pre-activations of |z| / err_z and over
    max-pool windows of (winner - runner-up) / (err_winner + err_runner-up); above 1, every computed sign
    and winner is the exact one (x lies in the interior of a linear region). None unless asked for."""

    out: np.ndarray
    err: np.ndarray
    margin: np.ndarray | None = None


def forward_error(network: Network, x: np.ndarray, margins: bool = False) -> ForwardError:
    """Running error analysis of the float64 forward pass (Wilkinson; Higham, *Accuracy and Stability of
    Numerical Algorithms*, 3.1), along the actual evaluation, for a batch x (B, n) or one input.

    With h the computed values entering a layer and e >= |h - h*| (h* exact; e = 0 at the input):

    * affine (Dense, Conv2d, AvgPool2d; n terms per output): fl(W h + b) differs from W h + b by at
      most gamma_{n+1} (|W| |h| + |b|) whatever the summation order (BLAS blocking, FMA), and W h from
      W h* by at most |W| e, so e' = |W| (e + g |h|) + g |b| with g >= gamma_{n+1}. This is one forward
      pass with |W| per layer (the absolute layers are cached per network), batched over the points;
      its own float64 rounding (nonnegative terms only) is covered by the factor 1 + 4 gamma_{n+8} and
      an absolute underflow allowance.
    * ReLU and LeakyReLU are 1-Lipschitz: e' = e (+ u alpha |z| for the product alpha z).
    * Max-pool is 1-Lipschitz in the max norm: e' = the window maximum of e. Flatten is exact.

    A ReLU sign is certified where |z| > e_z (then z* has the same strict sign); a max-pool winner
    where its lead over every other entry exceeds the sum of their errors."""
    h, single = network._as_batch(x)
    h = np.array(h, dtype=np.float64)
    e = np.zeros_like(h)
    worst = np.full(h.shape[0], np.inf) if margins else None
    u = UNIT_ROUNDOFF
    for la, la_abs in zip(network.layers, _abs_layers(network), strict=True):
        hn = la.forward(h)
        if isinstance(la, Dense | Conv2d | AvgPool2d):
            n = _fan_in(la)
            g = _gamma(n + 2)
            t = e + g * np.abs(h)
            en = la_abs.linear(t)
            if isinstance(la, Dense):
                en = en + g * la_abs.bias
            elif isinstance(la, Conv2d):
                en = en + g * la_abs.bias[None, :, None, None]
            en = en * (1.0 + 4.0 * _gamma(n + 8)) + (n + 4) * _UNDERFLOW
        elif isinstance(la, ACTIVATION_LAYERS):
            if worst is not None:
                with np.errstate(invalid="ignore", divide="ignore"):
                    r = np.where(e > 0, np.abs(h) / e, np.where(h != 0, np.inf, 0.0))
                r = r.reshape(h.shape[0], -1)
                worst = np.minimum(worst, r.min(axis=1) if r.shape[1] else np.inf)
            en = e if la.alpha == 0.0 else (e + u * la.alpha * np.abs(h)) * (1 + 4 * u) + _UNDERFLOW
        elif isinstance(la, MaxPool2d):
            en = la.forward(e)
            if worst is not None:
                worst = np.minimum(worst, _pool_margins(la, h, e))
        elif isinstance(la, Flatten):  # a reshape, exact
            en = e.reshape(hn.shape)
        else:  # a new layer kind needs its own rule: no silent (unsound) default
            raise TypeError(f"forward_error has no rounding rule for {type(la).__name__}")
        h, e = hn, en
    out, err = h.reshape(h.shape[0], -1), e.reshape(e.shape[0], -1)
    bad = ~np.isfinite(out)
    if np.any(bad):
        err = np.where(bad, np.inf, err)
    if single:
        return ForwardError(out[0], err[0], None if worst is None else worst[:1])
    return ForwardError(out, err, worst)


def _pool_margins(la: MaxPool2d, h: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Per batch row: min over windows of (top1 - top2) / (e_top1 + e_top2) (inf for 1-entry windows)."""
    b = h.shape[0]
    win = la.windows(h.shape[1:])
    if win.shape[1] < 2:
        return np.full(b, np.inf)
    flat, ef = h.reshape(b, -1), e.reshape(b, -1)
    idx = np.maximum(win, 0)
    vals = np.where(win >= 0, flat[:, idx], -np.inf)  # (B, n_out, k)
    errs = np.where(win >= 0, ef[:, idx], 0.0)
    order = np.argsort(-vals, axis=2, kind="stable")[..., :2]
    top = np.take_along_axis(vals, order, axis=2)
    etop = np.take_along_axis(errs, order, axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (top[..., 0] - top[..., 1]) / (etop[..., 0] + etop[..., 1])
    r = np.where(np.isnan(r), 0.0, r)
    return r.reshape(b, -1).min(axis=1)


#: points per batch of :func:`forward_error` in :func:`certified_pair_ratios` (memory: a conv layer's
#: im2col columns per point)
PAIR_CHUNK = 64


def _forward_error_chunked(network: Network, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    outs, errs = [], []
    for i in range(0, len(x), PAIR_CHUNK):
        fe = forward_error(network, x[i:i + PAIR_CHUNK])
        outs.append(fe.out)
        errs.append(fe.err)
    m = network.output_size
    if not outs:
        return np.zeros((0, m)), np.zeros((0, m))
    return np.concatenate(outs), np.concatenate(errs)


def certified_pair_ratios(network: Network, xs: np.ndarray, ys: np.ndarray, question: Question
                          ) -> np.ndarray:
    """Certified |f(x) - f(y)| / |x - y| for the rows of xs against the rows of ys (or one y for all):
    values that the exact ratios are at least (0 where nothing is left, or x == y).

    The argument: :func:`forward_error` bounds |fl f(x) - f(x)| <= e_x and |fl f(y) - f(y)| <= e_y for the
    actual points; the computed difference d = fl(fl f(x) - fl f(y)) has a further relative error u, so
    |d - (f(x) - f(y))| <= E = e_x + e_y + 2 u |d| entrywise, and by the triangle inequality
    ||f(x) - f(y)||_q >= ||d||_q - ||E||_q (for a scalar output c^T f: |c^T d| - |c|^T E, less the
    rounding of the dot product gamma_m |c|^T |d|). The norms' own rounding is allowed for by factors
    (1 -/+ gamma_{m+4}); the denominator |x - y|_p is bounded above by its computed value times
    (1 + 2 gamma_{n+4}). The allowance is that of these two actual evaluations, so it is as small as the
    forward pass's real rounding permits (no global magnitude, no dependence on the network's width),
    and the cost is one forward pass with |W| per point, batched."""
    xs = np.asarray(xs, dtype=np.float64).reshape(-1, network.input_size)
    ys = np.asarray(ys, dtype=np.float64).reshape(-1, network.input_size)
    if len(ys) not in (1, len(xs)):
        raise ValueError(f"ys must hold one point or as many as xs ({len(xs)}), got {len(ys)}")
    if len(xs) == 0:
        return np.zeros(0)
    fx, ex = _forward_error_chunked(network, xs)
    fy, ey = _forward_error_chunked(network, ys)
    m, n = fx.shape[1], xs.shape[1]
    u = UNIT_ROUNDOFF
    d = fx - fy
    big = ex + ey + 2.0 * u * np.abs(d)
    c = question.output_vector(m)
    gm = _gamma(m + 4)
    with np.errstate(invalid="ignore", over="ignore"):
        if c is not None:
            ca = np.abs(c)
            num = np.abs(d @ c) * (1 - gm) - (big @ ca + _gamma(m + 2) * (np.abs(d) @ ca)) * (1 + gm)
        else:
            p = question.output_norm.p
            num = np.linalg.norm(d, ord=p, axis=1) * (1 - gm) - np.linalg.norm(big, ord=p, axis=1) * (1 + gm)
        dx = np.linalg.norm(xs - ys, ord=question.input_norm.p, axis=1) * (1 + 2 * _gamma(n + 4))
        ratio = np.where(dx > 0, num / np.where(dx > 0, dx, 1.0), 0.0) * (1 - 4 * u)
    ratio = np.where(np.isfinite(ratio), ratio, 0.0)
    return np.maximum(ratio, 0.0)


def certified_pair_ratio(network: Network, x: np.ndarray, y: np.ndarray, question: Question) -> float:
    """|f(x) - f(y)| / |x - y| less the float64 rounding of that pair's evaluation: a value that the
    exact pair ratio is at least (0 if nothing is left). :func:`certified_pair_ratios` for the argument
    and for batches."""
    return float(certified_pair_ratios(network, np.ravel(x), np.ravel(y), question)[0])


def clip_to_domain(x: np.ndarray, question: Question) -> np.ndarray:
    """Project onto a box / l-inf ball, or scale into an l2 ball, exactly inside (the domain's ``clip``)."""
    return question.domain.clip(np.asarray(x, dtype=np.float64))
