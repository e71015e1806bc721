"""Linear-relaxation bounds by backward substitution (CROWN / DeepPoly style), intersected with intervals.

For every affine stage t (a pre-activation layer), the output z_t = W_t h + b_t is bounded by
substituting, stage by stage back to the input, linear relaxations of the earlier nonlinear stages:

* an activation max(z, a z) (ReLU: a = 0) with pre-activation bounds [l, u]: stable neurons are exact
  (h = z or h = a z); an ambiguous one has the chord h <= a l + (u - a l) (z - l) / (u - l) as upper line
  and the lower line h >= s z with s = 1 if u >= -l else a (the adaptive CROWN choice; any s in [a, 1]
  is sound, the function being convex).
* max-pool: p_j >= x_{i*} (i* the entry with the largest lower bound) and p_j <= max_i u_i (a constant),
  or p_j = x_i when a single entry can win.
* affine stages are substituted exactly.

Positive coefficients take the upper relaxation and negative ones the lower relaxation (for the upper
bound; the other way round for the lower bound). The final linear function of x is bounded over the
input box. The bound is widened by 1e-10 times the magnitude of the terms summed (float64 rounding) and
intersected with the interval bounds, so it is never looser than interval arithmetic.
Unbounded inputs (the global domain): the interval bounds are returned unchanged.

The mathematics as implemented: ``docs/methods.md#bounds-crown``.
"""

from __future__ import annotations

import time

import numpy as np

from lipopt.bounds.interval import FORWARD_INTERVAL, affine_interval, interval_bounds, maxpool_can_win
from lipopt.bounds.types import ForwardBounds, Interval
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, LeakyReLUStage, MaxPoolStage, ReLUStage, dispatch

_PAD = 1e-10


def _times_weight(lam: np.ndarray, w: object) -> np.ndarray:
    """lam @ w for a dense or sparse w, dense result."""
    if hasattr(w, "toarray"):
        return np.asarray((w.T @ lam.T).T)  # type: ignore[attr-defined]
    return lam @ np.asarray(w)


def relu_relaxation(lo: np.ndarray, hi: np.ndarray, alpha: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(upper slope, upper intercept, lower slope) of the relaxation of max(z, alpha z) per neuron."""
    active = lo >= 0
    inactive = (hi <= 0) & ~active
    amb = ~(active | inactive)
    su = np.where(active, 1.0, alpha)
    tu = np.zeros_like(lo)
    sl = np.where(active, 1.0, alpha)
    if np.any(amb):
        la, ua = lo[amb], hi[amb]
        su[amb] = (ua - alpha * la) / (ua - la)
        tu[amb] = -(1.0 - alpha) * ua * la / (ua - la)
        sl[amb] = np.where(ua >= -la, 1.0, alpha)
    return su, tu, sl


def _relax_activation(stage, lo, hi, lam_u, lam_l):
    """Back-substitute an activation: new (lam_u, lam_l), offsets added (u, l) and magnitudes (u, l)."""
    pu, nu = np.maximum(lam_u, 0), np.minimum(lam_u, 0)
    pl, nl = np.maximum(lam_l, 0), np.minimum(lam_l, 0)
    su, tu, sl = relu_relaxation(lo, hi, stage.alpha)
    return (pu * su + nu * sl, pl * sl + nl * su), (pu @ tu, nl @ tu), (pu @ tu, -(nl @ tu))


def _relax_maxpool(stage, lo, hi, lam_u, lam_l):
    pu, nu = np.maximum(lam_u, 0), np.minimum(lam_u, 0)
    pl, nl = np.maximum(lam_l, 0), np.minimum(lam_l, 0)
    p_up, c_up, p_lo = _maxpool_relaxation(stage, lo, hi)
    lam = (np.asarray((p_up.T @ pu.T).T) + np.asarray((p_lo.T @ nu.T).T),
           np.asarray((p_lo.T @ pl.T).T) + np.asarray((p_up.T @ nl.T).T))
    return lam, (pu @ c_up, nl @ c_up), (np.abs(pu @ c_up), np.abs(nl @ c_up))


#: nonlinear stage type -> back-substitution step (stage, lo, hi, lam_u, lam_l)
RELAXATION = {ReLUStage: _relax_activation, LeakyReLUStage: _relax_activation, MaxPoolStage: _relax_maxpool}


def _maxpool_relaxation(stage: MaxPoolStage, lo: np.ndarray, hi: np.ndarray):
    """Selection matrices for the upper (P_up, constant c_up) and lower (P_lo) relaxations of max-pool."""
    import scipy.sparse as sp

    win = stage.windows
    can = maxpool_can_win(stage, lo, hi)
    single = can.sum(axis=1) == 1
    valid = win >= 0
    idx = np.maximum(win, 0)
    lo_w = np.where(valid, lo[idx], -np.inf)
    hi_w = np.where(valid, hi[idx], -np.inf)
    best = win[np.arange(win.shape[0]), np.argmax(lo_w, axis=1)]
    n_out = win.shape[0]
    p_lo = sp.csr_matrix((np.ones(n_out), (np.arange(n_out), best)), shape=(n_out, stage.in_size))
    rows = np.nonzero(single)[0]
    p_up = sp.csr_matrix((np.ones(rows.size), (rows, best[rows])), shape=(n_out, stage.in_size))
    c_up = np.where(single, 0.0, hi_w.max(axis=1))
    return p_up, c_up, p_lo


def _backsub(stages: tuple, bounds: list[Interval], t: int, in_lo: np.ndarray,
             in_hi: np.ndarray) -> Interval:
    """CROWN bounds on the output of affine stage t given bounds of all earlier stage outputs."""
    st = stages[t]
    w = st.dense()
    lam_u, lam_l = w.copy(), w.copy()
    off_u, off_l = st.bias.copy(), st.bias.copy()
    mag_u = np.abs(st.bias).copy()
    mag_l = mag_u.copy()
    for s in range(t - 1, -1, -1):
        stage = stages[s]
        if isinstance(stage, AffineStage):
            b = stage.bias
            off_u += lam_u @ b
            off_l += lam_l @ b
            mag_u += np.abs(lam_u) @ np.abs(b)
            mag_l += np.abs(lam_l) @ np.abs(b)
            lam_u = _times_weight(lam_u, stage.weight)
            lam_l = _times_weight(lam_l, stage.weight)
            continue
        lo, hi = bounds[s - 1] if s > 0 else (in_lo, in_hi)
        (lam_u, lam_l), (du, dl), (mu, ml) = dispatch(RELAXATION, stage, "linear bounds")(
            stage, lo, hi, lam_u, lam_l)
        off_u += du
        off_l += dl
        mag_u += mu
        mag_l += ml
    mid, rad = (in_lo + in_hi) / 2, (in_hi - in_lo) / 2
    amax = np.maximum(np.abs(in_lo), np.abs(in_hi))
    up = lam_u @ mid + np.abs(lam_u) @ rad + off_u
    low = lam_l @ mid - np.abs(lam_l) @ rad + off_l
    up += _PAD * (mag_u + np.abs(lam_u) @ amax) + 1e-300
    low -= _PAD * (mag_l + np.abs(lam_l) @ amax) + 1e-300
    return low, up


def crown_bounds(network: Network, lo: np.ndarray, hi: np.ndarray) -> ForwardBounds:
    """Forward bounds by backward substitution, never looser than :func:`interval_bounds`."""
    t0 = time.perf_counter()
    lo = np.asarray(lo, dtype=np.float64).reshape(-1)
    hi = np.asarray(hi, dtype=np.float64).reshape(-1)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        fb = interval_bounds(network, lo, hi)
        fb.stats["note"] = "unbounded input: linear relaxation not applicable, interval bounds used"
        return fb
    stages = network.lower()
    out: list[Interval] = []
    cur_lo, cur_hi = lo, hi
    for t, s in enumerate(stages):
        if isinstance(s, AffineStage):
            ia_lo, ia_hi = affine_interval(s, cur_lo, cur_hi)
            if t > 0:
                c_lo, c_hi = _backsub(stages, out, t, lo, hi)
                cur_lo, cur_hi = np.maximum(ia_lo, c_lo), np.minimum(ia_hi, c_hi)
            else:
                cur_lo, cur_hi = ia_lo, ia_hi  # the first affine map of a box: intervals are exact
        else:
            cur_lo, cur_hi = dispatch(FORWARD_INTERVAL, s, "linear bounds")(s, cur_lo, cur_hi)
        out.append((cur_lo, cur_hi))
    fb = ForwardBounds(stages, lo, hi, out, method="crown")
    fb.stats["time"] = time.perf_counter() - t0
    return fb
