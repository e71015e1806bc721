"""LP-based bound tightening (OBBT): minimise and maximise each ambiguous pre-activation over the LP
relaxation of the network in front of it.

Layer by layer (stages of ``network.lower()``), the LP holds the input box, every earlier affine stage as
equalities, every earlier activation max(z, a z) (ReLU: a = 0) as its triangle relaxation with the
current (already tightened) bounds (h >= a z, h >= z, h <= a l + (u - a l) (z - l) / (u - l); stable
neurons exact: h = z, or h = a z) and every max-pool as
p >= x_i (each window entry) and p <= max_i l_i + sum_i (x_i - l_i). The LP optimum of z_i is a valid
bound on z_i; it is widened by ``LP_PAD * (1 + |value|)`` against the LP solver's feasibility
tolerance and intersected with the bounds it starts from (CROWN, itself intersected with intervals).

Only ambiguous neurons are tightened (a stable neuron needs no binary), and the first affine stage is
skipped (interval bounds of an affine map of a box are exact). LPs are solved with HiGHS through scipy.
The cost is two LPs per ambiguous neuron; ``max_neurons`` caps it (the remaining neurons keep their
CROWN bounds), which is what "applied where it pays" means here.

The mathematics as implemented: ``docs/methods.md#bounds-lp``.
"""

from __future__ import annotations

import time

import numpy as np

from lipopt.bounds.crown import crown_bounds
from lipopt.bounds.interval import FORWARD_INTERVAL
from lipopt.bounds.types import ForwardBounds, Interval
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, LeakyReLUStage, MaxPoolStage, ReLUStage, dispatch

LP_PAD = 1e-7


class _Rows:
    """Sparse LP rows over a fixed list of variable blocks."""

    def __init__(self, n_var: int) -> None:
        self.n_var = n_var
        self.eq: list = []
        self.eq_rhs: list[np.ndarray] = []
        self.ub: list = []
        self.ub_rhs: list[np.ndarray] = []

    def block(self, cols_start: int, mat: object, n_rows: int) -> object:
        import scipy.sparse as sp

        m = sp.csr_matrix(mat)
        return sp.hstack([sp.csr_matrix((n_rows, cols_start)), m,
                          sp.csr_matrix((n_rows, self.n_var - cols_start - m.shape[1]))], format="csr")


def _select(rows: np.ndarray, n: int) -> object:
    import scipy.sparse as sp

    return sp.csr_matrix((np.ones(rows.size), (np.arange(rows.size), rows)), shape=(rows.size, n))


def _affine_rows(r: _Rows, stage: AffineStage, i_in: int, i_out: int, n_out: int, lo, hi) -> None:
    import scipy.sparse as sp

    r.eq.append(r.block(i_out, sp.identity(n_out, format="csr"), n_out) - r.block(i_in, stage.weight, n_out))
    r.eq_rhs.append(stage.bias)


def _activation_rows(r: _Rows, stage, i_in: int, i_out: int, n_out: int, lo, hi) -> None:
    import scipy.sparse as sp

    a = stage.alpha
    active = lo >= 0
    inactive = (hi <= 0) & ~active
    amb = ~(active | inactive)
    for mask, slope in ((active, 1.0), (inactive if a != 0.0 else np.zeros_like(inactive), a)):
        if np.any(mask):  # h = slope z (a ReLU's inactive h = 0 is fixed by its bounds already)
            sel = _select(np.nonzero(mask)[0], n_out)
            r.eq.append(r.block(i_out, sel, sel.shape[0]) - r.block(i_in, slope * sel, sel.shape[0]))
            r.eq_rhs.append(np.zeros(sel.shape[0]))
    if np.any(amb):
        rows = np.nonzero(amb)[0]
        k = rows.size
        sel = _select(rows, n_out)
        la, ua = lo[rows], hi[rows]
        su = (ua - a * la) / (ua - la)
        r.ub.append(r.block(i_in, sel, k) - r.block(i_out, sel, k))  # z - h <= 0
        r.ub_rhs.append(np.zeros(k))
        if a != 0.0:  # a z - h <= 0 (for ReLU, h >= 0 is the variable bound)
            r.ub.append(r.block(i_in, a * sel, k) - r.block(i_out, sel, k))
            r.ub_rhs.append(np.zeros(k))
        # h - su z <= a l - su l
        r.ub.append(r.block(i_out, sel, k) - r.block(i_in, sp.diags(su) @ sel, k))
        r.ub_rhs.append((a - su) * la)


def _maxpool_rows(r: _Rows, stage: MaxPoolStage, i_in: int, i_out: int, n_out: int, lo, hi) -> None:
    import scipy.sparse as sp

    win = stage.windows
    rr, cc = np.nonzero(win >= 0)
    members = win[rr, cc]
    nn = rr.size
    # x_i - p_j <= 0
    r.ub.append(r.block(i_in, sp.csr_matrix((np.ones(nn), (np.arange(nn), members)),
                                            shape=(nn, stage.in_size)), nn)
                - r.block(i_out, sp.csr_matrix((np.ones(nn), (np.arange(nn), rr)), shape=(nn, n_out)), nn))
    r.ub_rhs.append(np.zeros(nn))
    # p_j - sum_i x_i <= max_i l_i - sum_i l_i
    agg = sp.csr_matrix((np.ones(nn), (rr, members)), shape=(n_out, stage.in_size))
    lo_w = np.where(win >= 0, lo[np.maximum(win, 0)], -np.inf)
    sum_lo = np.asarray(agg @ lo).reshape(-1)
    r.ub.append(r.block(i_out, sp.identity(n_out, format="csr"), n_out) - r.block(i_in, agg, n_out))
    r.ub_rhs.append(lo_w.max(axis=1) - sum_lo)


#: stage type -> LP rows of its relaxation (rows, stage, input block, output block, n_out, in lo, in hi)
LP_ROWS = {AffineStage: _affine_rows, ReLUStage: _activation_rows, LeakyReLUStage: _activation_rows,
           MaxPoolStage: _maxpool_rows}


def _build_lp(stages: tuple, bounds: list[Interval], t: int, in_lo: np.ndarray, in_hi: np.ndarray):
    """Sparse LP rows over the variables [input, stage 0 out, ..., stage t-2 out] (stage t-1 out is the
    input of the target affine stage t)."""
    import scipy.sparse as sp

    sizes = [in_lo.size] + [b[0].size for b in bounds[:t]]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    n_var = int(starts[-1])
    var_lo = np.concatenate([in_lo] + [b[0] for b in bounds[:t]])
    var_hi = np.concatenate([in_hi] + [b[1] for b in bounds[:t]])
    r = _Rows(n_var)
    for s in range(t):
        lo, hi = bounds[s - 1] if s > 0 else (in_lo, in_hi)
        dispatch(LP_ROWS, stages[s], "LP bound tightening")(r, stages[s], starts[s], starts[s + 1],
                                                            sizes[s + 1], lo, hi)
    a_eq = sp.vstack(r.eq, format="csr") if r.eq else None
    a_ub = sp.vstack(r.ub, format="csr") if r.ub else None
    b_eq = np.concatenate(r.eq_rhs) if r.eq_rhs else None
    b_ub = np.concatenate(r.ub_rhs) if r.ub_rhs else None
    return a_eq, b_eq, a_ub, b_ub, var_lo, var_hi, int(starts[t]), n_var


def lp_bounds(network: Network, lo: np.ndarray, hi: np.ndarray, *, start: ForwardBounds | None = None,
              max_neurons: int | None = 4000, time_limit: float | None = None) -> ForwardBounds:
    """CROWN bounds (or ``start``) tightened by two LPs per ambiguous neuron, layer by layer (each LP
    through the solver layer's default LP solver, within what is left of ``time_limit``)."""
    from lipopt_solvers import SolverOptions, Termination, solve_lp

    t0 = time.perf_counter()
    lo = np.asarray(lo, dtype=np.float64).reshape(-1)
    hi = np.asarray(hi, dtype=np.float64).reshape(-1)
    base = start if start is not None else crown_bounds(network, lo, hi)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        base.stats["note"] = "unbounded input: LP tightening not applicable"
        return base
    stages = network.lower()
    bounds: list[Interval] = [(b[0].copy(), b[1].copy()) for b in base.stage_bounds]
    n_lp = n_tight = 0
    budget = max_neurons if max_neurons is not None else np.inf
    stopped = False
    for t in range(1, len(stages) - 1):
        s = stages[t]
        if not isinstance(s, AffineStage):
            # recompute the nonlinear stage from its (possibly tightened) input, intersected
            in_lo, in_hi = bounds[t - 1]
            nl, nh = dispatch(FORWARD_INTERVAL, s, "LP bound tightening")(s, in_lo, in_hi)
            bounds[t] = (np.maximum(bounds[t][0], nl), np.minimum(bounds[t][1], nh))
            continue
        z_lo, z_hi = bounds[t]
        amb = np.nonzero((z_lo < 0) & (z_hi > 0))[0]
        if amb.size == 0 or stopped:
            continue
        a_eq, b_eq, a_ub, b_ub, v_lo, v_hi, off, n_var = _build_lp(stages, bounds, t, lo, hi)
        w = s.dense()
        var_bounds = np.column_stack([v_lo, v_hi])
        for i in amb:
            if n_lp >= 2 * budget or (time_limit is not None and time.perf_counter() - t0 > time_limit):
                stopped = True
                break
            c = np.zeros(n_var)
            c[off:off + w.shape[1]] = w[i]
            new = [z_lo[i], z_hi[i]]
            for sign, k in ((1.0, 0), (-1.0, 1)):
                left = None if time_limit is None else max(1e-3, time_limit - (time.perf_counter() - t0))
                out = solve_lp(sign * c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=var_bounds,
                               options=SolverOptions(time_limit=left))
                n_lp += 1
                if out.termination is not Termination.OPTIMAL or out.objective is None:
                    continue  # no proved optimum: keep the sound bound we had
                val = sign * float(out.objective) + s.bias[i]
                pad = LP_PAD * (1.0 + abs(val))
                new[k] = max(new[k], val - pad) if k == 0 else min(new[k], val + pad)
            if new[0] > z_lo[i] or new[1] < z_hi[i]:
                n_tight += 1
            z_lo[i], z_hi[i] = new
        bounds[t] = (z_lo, z_hi)
    fb = ForwardBounds(stages, lo, hi, bounds, method="lp")
    fb.stats.update({"time": time.perf_counter() - t0, "lps": n_lp, "tightened": n_tight,
                     "stopped_early": stopped, "start_method": base.method})
    return fb
