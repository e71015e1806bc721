"""Interval arithmetic: sound forward bounds on every stage output, and backward bounds on gradients.

Forward: for y = W x + b with x in [l, u] (centre m, radius r): y in [W m + b - |W| r, W m + b + |W| r];
an activation max(x, alpha x) (ReLU: alpha = 0) is increasing, so it maps [l, u] to [act(l), act(u)];
max-pool takes the max of lower and of upper bounds per window.
Rounding: the interval is widened by a relative 1e-12 plus an absolute tiny term, so that float64
rounding in the products cannot make a bound unsound.

Backward (formulations.md 2.2): starting from the set of output covectors c in [c_lo, c_hi], y = W^T g;
an activation's slope is 1 where active, alpha where inactive and any s in [alpha, 1] where ambiguous,
so it passes [lam, mu], [alpha lam, alpha mu] or the hull [min(lam, alpha lam), max(mu, alpha mu)]
(ReLU: {0} when inactive and [min(lam, 0), max(mu, 0)] when ambiguous);
a max-pool routes each window's gradient to one of its inputs, so an input receives a sum over the
windows that contain it of [min(lam, 0), max(mu, 0)] (or exactly 0 where it can never win).

The mathematics as implemented: ``docs/methods.md#bounds-interval``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from lipopt.bounds.types import BackwardBounds, ForwardBounds, Interval
from lipopt.network.network import Network
from lipopt.network.stages import (
    ActivationStage,
    AffineStage,
    LeakyReLUStage,
    MaxPoolStage,
    ReLUStage,
    activation_eval,
    dispatch,
)

_RTOL = 1e-12
_ATOL = 1e-300


def widen(lo: np.ndarray, hi: np.ndarray, rtol: float = _RTOL) -> Interval:
    """[lo, hi] padded by ``rtol`` times the magnitude (plus a tiny absolute term) against rounding."""
    pad = rtol * np.maximum(np.abs(lo), np.abs(hi)) + _ATOL
    return lo - pad, hi + pad


_widen = widen


def _abs(w: object) -> object:
    return abs(w) if hasattr(w, "toarray") else np.abs(w)  # type: ignore[arg-type]


def affine_interval_arrays(w: object, w_abs: object, b: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                           rtol: float = _RTOL, dense: np.ndarray | None = None) -> Interval:
    """Bounds of W x + b for x in [lo, hi] (``w_abs`` = |W|; entries of lo / hi may be infinite: then
    positive and negative parts separately, inf * 0 read as 0), widened by ``rtol``."""
    with np.errstate(invalid="ignore"):
        mid = (lo + hi) / 2
        rad = (hi - lo) / 2
        finite = np.isfinite(mid)
    if np.all(finite):
        c = np.asarray(w @ mid).reshape(-1) + b  # type: ignore[operator]
        r = np.asarray(w_abs @ rad).reshape(-1)  # type: ignore[operator]
        return widen(c - r, c + r, rtol)
    wd = np.asarray(w) if dense is None else dense
    wp, wn = np.maximum(wd, 0), np.minimum(wd, 0)

    def prod(m: np.ndarray, v: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            t = m * v[None, :]
        t[m == 0] = 0.0
        return t.sum(axis=1)

    return widen(prod(wp, lo) + prod(wn, hi) + b, prod(wp, hi) + prod(wn, lo) + b, rtol)


def affine_interval(stage: AffineStage, lo: np.ndarray, hi: np.ndarray) -> Interval:
    bounded = bool(np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)))
    return affine_interval_arrays(stage.weight, _abs(stage.weight), stage.bias, lo, hi,
                                  dense=None if bounded else stage.dense())


def maxpool_interval(stage: MaxPoolStage, lo: np.ndarray, hi: np.ndarray) -> Interval:
    win = stage.windows
    valid = win >= 0
    idx = np.maximum(win, 0)
    wlo = np.where(valid, lo[idx], -np.inf).max(axis=1)
    whi = np.where(valid, hi[idx], -np.inf).max(axis=1)
    return wlo, whi


def activation_interval(stage: ActivationStage, lo: np.ndarray, hi: np.ndarray) -> Interval:
    """[act(l), act(u)]: max(x, alpha x) is increasing (inf stays inf)."""
    with np.errstate(invalid="ignore"):
        return activation_eval(stage, lo), activation_eval(stage, hi)


#: stage type -> forward interval rule (stage, lo, hi) -> (lo, hi)
FORWARD_INTERVAL: dict[type, Callable[..., Interval]] = {
    AffineStage: affine_interval,
    ReLUStage: activation_interval,
    LeakyReLUStage: activation_interval,
    MaxPoolStage: maxpool_interval,
}


def interval_bounds(network: Network, lo: np.ndarray, hi: np.ndarray) -> ForwardBounds:
    """Forward interval bounds for inputs in [lo, hi] (entries may be +-inf for the global domain)."""
    stages = network.lower()
    lo = np.asarray(lo, dtype=np.float64).reshape(-1)
    hi = np.asarray(hi, dtype=np.float64).reshape(-1)
    cur_lo, cur_hi = lo, hi
    out: list[Interval] = []
    for s in stages:
        cur_lo, cur_hi = dispatch(FORWARD_INTERVAL, s, "interval bounds")(s, cur_lo, cur_hi)
        out.append((cur_lo, cur_hi))
    return ForwardBounds(stages, lo, hi, out, method="interval")


def maxpool_can_win(stage: MaxPoolStage, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(n_out, k) mask: window entry may be the maximum (its upper bound >= the window's best lower bound)."""
    win = stage.windows
    valid = win >= 0
    idx = np.maximum(win, 0)
    best_lo = np.where(valid, lo[idx], -np.inf).max(axis=1, keepdims=True)
    return valid & (hi[idx] >= best_lo)


def _back_affine(fwd: ForwardBounds, i: int, s: AffineStage, g_lo: np.ndarray, g_hi: np.ndarray) -> Interval:
    wt = s.weight.T
    mid, rad = (g_lo + g_hi) / 2, (g_hi - g_lo) / 2
    c = np.asarray(wt @ mid).reshape(-1)
    r = np.asarray(_abs(wt) @ rad).reshape(-1)  # type: ignore[operator]
    return _widen(c - r, c + r)


def activation_slope_interval(fwd: ForwardBounds, i: int) -> Interval:
    """Per neuron of activation stage i: the interval of its possible slopes (1, alpha or [alpha, 1])."""
    a = fwd.stages[i].alpha  # type: ignore[union-attr]
    active, inactive, _ = fwd.relu_masks(i)
    return np.where(inactive, a, np.where(active, 1.0, a)), np.where(inactive, a, 1.0)


def _back_activation(fwd: ForwardBounds, i: int, s: ActivationStage, g_lo: np.ndarray,
                     g_hi: np.ndarray) -> Interval:
    s_lo, s_hi = activation_slope_interval(fwd, i)
    # the product of g in [g_lo, g_hi] and a slope in [s_lo, s_hi] with 0 <= s_lo <= s_hi
    return np.minimum(s_lo * g_lo, s_hi * g_lo), np.maximum(s_lo * g_hi, s_hi * g_hi)


def _back_maxpool(fwd: ForwardBounds, i: int, s: MaxPoolStage, g_lo: np.ndarray,
                  g_hi: np.ndarray) -> Interval:
    lo, hi = fwd.pre_activation(i)
    can = maxpool_can_win(s, lo, hi)
    single = can.sum(axis=1) == 1  # the winner is known: gradient passes unchanged
    contrib_lo = np.where(single, g_lo, np.minimum(g_lo, 0.0))
    contrib_hi = np.where(single, g_hi, np.maximum(g_hi, 0.0))
    new_lo = np.zeros(s.in_size)
    new_hi = np.zeros(s.in_size)
    rows, cols = np.nonzero(can)
    np.add.at(new_lo, s.windows[rows, cols], contrib_lo[rows])
    np.add.at(new_hi, s.windows[rows, cols], contrib_hi[rows])
    return _widen(new_lo, new_hi)


#: stage type -> backward interval rule (fwd, stage index, stage, g_lo, g_hi) -> (lo, hi)
BACKWARD_INTERVAL: dict[type, Callable[..., Interval]] = {
    AffineStage: _back_affine,
    ReLUStage: _back_activation,
    LeakyReLUStage: _back_activation,
    MaxPoolStage: _back_maxpool,
}


def backward_interval(fwd: ForwardBounds, c_lo: np.ndarray, c_hi: np.ndarray) -> BackwardBounds:
    """Bounds on the gradient of c^T f for c in [c_lo, c_hi], with forward states from ``fwd``."""
    stages = fwd.stages
    g_lo = np.asarray(c_lo, dtype=np.float64).reshape(-1)
    g_hi = np.asarray(c_hi, dtype=np.float64).reshape(-1)
    grad_out: list[Interval] = [(np.empty(0), np.empty(0))] * len(stages)
    for i in range(len(stages) - 1, -1, -1):
        grad_out[i] = (g_lo, g_hi)
        s = stages[i]
        g_lo, g_hi = dispatch(BACKWARD_INTERVAL, s, "backward interval bounds")(fwd, i, s, g_lo, g_hi)
    return BackwardBounds(grad_out, (g_lo, g_hi), method="interval")
