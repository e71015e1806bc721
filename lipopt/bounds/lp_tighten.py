"""LP-based bound tightening (OBBT): minimise and maximise each ambiguous pre-activation over the LP
relaxation of the network in front of it.

Layer by layer (stages of ``network.lower()``), the LP holds the input box, every earlier affine stage as
equalities, every earlier ReLU as its triangle relaxation with the current (already tightened) bounds
(h >= 0, h >= z, h <= u (z - l) / (u - l); stable neurons exact) and every max-pool as
p >= x_i (each window entry) and p <= max_i l_i + sum_i (x_i - l_i). The LP optimum of z_i is a valid
bound on z_i; it is widened by ``LP_PAD * (1 + |value|)`` against the LP solver's feasibility
tolerance and intersected with the bounds it starts from (CROWN, itself intersected with intervals).

Only ambiguous neurons are tightened (a stable neuron needs no binary), and the first affine stage is
skipped (interval bounds of an affine map of a box are exact). LPs are solved with HiGHS through scipy.
The cost is two LPs per ambiguous neuron; ``max_neurons`` caps it (the remaining neurons keep their
CROWN bounds), which is what "applied where it pays" means here.
"""

from __future__ import annotations

import time

import numpy as np

from lipopt.bounds.crown import crown_bounds
from lipopt.bounds.interval import maxpool_interval
from lipopt.bounds.types import ForwardBounds, Interval
from lipopt.network.network import AffineStage, MaxPoolStage, Network, ReLUStage

LP_PAD = 1e-7


def _build_lp(stages: tuple, bounds: list[Interval], t: int, in_lo: np.ndarray, in_hi: np.ndarray):
    """Sparse LP rows over the variables [input, stage 0 out, ..., stage t-2 out] (stage t-1 out is the
    input of the target affine stage t)."""
    import scipy.sparse as sp

    sizes = [in_lo.size] + [b[0].size for b in bounds[:t]]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    n_var = int(starts[-1])
    var_lo = np.concatenate([in_lo] + [b[0] for b in bounds[:t]])
    var_hi = np.concatenate([in_hi] + [b[1] for b in bounds[:t]])
    eq_blocks, eq_rhs, ub_blocks, ub_rhs = [], [], [], []

    def block(cols_start: int, mat: object, n_rows: int) -> object:
        m = sp.csr_matrix(mat)
        return sp.hstack([sp.csr_matrix((n_rows, cols_start)), m,
                          sp.csr_matrix((n_rows, n_var - cols_start - m.shape[1]))], format="csr")

    for s in range(t):
        stage = stages[s]
        i_in, i_out = starts[s], starts[s + 1]  # variable blocks: stage input (block s), output (s+1)
        n_out = sizes[s + 1]
        eye = sp.identity(n_out, format="csr")
        if isinstance(stage, AffineStage):
            eq_blocks += [block(i_out, eye, n_out) - block(i_in, stage.weight, n_out)]
            eq_rhs.append(stage.bias)
        elif isinstance(stage, ReLUStage):
            lo, hi = bounds[s - 1] if s > 0 else (in_lo, in_hi)
            active = lo >= 0
            amb = (lo < 0) & (hi > 0)
            if np.any(active):
                rows = np.nonzero(active)[0]
                k = rows.size
                sel = sp.csr_matrix((np.ones(k), (np.arange(k), rows)), shape=(k, n_out))
                eq_blocks.append(block(i_out, sel, rows.size) - block(i_in, sel, rows.size))
                eq_rhs.append(np.zeros(rows.size))
            if np.any(amb):
                rows = np.nonzero(amb)[0]
                k = rows.size
                sel = sp.csr_matrix((np.ones(k), (np.arange(k), rows)), shape=(k, n_out))
                la, ua = lo[rows], hi[rows]
                slope = ua / (ua - la)
                # z - h <= 0
                ub_blocks.append(block(i_in, sel, k) - block(i_out, sel, k))
                ub_rhs.append(np.zeros(k))
                # h - slope z <= -slope l
                ub_blocks.append(block(i_out, sel, k) - block(i_in, sp.diags(slope) @ sel, k))
                ub_rhs.append(-slope * la)
        else:
            assert isinstance(stage, MaxPoolStage)
            lo, _ = bounds[s - 1] if s > 0 else (in_lo, in_hi)
            win = stage.windows
            rr, cc = np.nonzero(win >= 0)
            members = win[rr, cc]
            nn = rr.size
            # x_i - p_j <= 0
            ub_blocks.append(block(i_in, sp.csr_matrix((np.ones(nn), (np.arange(nn), members)),
                                                       shape=(nn, stage.in_size)), nn)
                             - block(i_out, sp.csr_matrix((np.ones(nn), (np.arange(nn), rr)),
                                                          shape=(nn, n_out)), nn))
            ub_rhs.append(np.zeros(nn))
            # p_j - sum_i x_i <= max_i l_i - sum_i l_i
            agg = sp.csr_matrix((np.ones(nn), (rr, members)), shape=(n_out, stage.in_size))
            lo_w = np.where(win >= 0, lo[np.maximum(win, 0)], -np.inf)
            sum_lo = np.asarray(agg @ lo).reshape(-1)
            ub_blocks.append(block(i_out, eye, n_out) - block(i_in, agg, n_out))
            ub_rhs.append(lo_w.max(axis=1) - sum_lo)
    a_eq = sp.vstack(eq_blocks, format="csr") if eq_blocks else None
    a_ub = sp.vstack(ub_blocks, format="csr") if ub_blocks else None
    b_eq = np.concatenate(eq_rhs) if eq_rhs else None
    b_ub = np.concatenate(ub_rhs) if ub_rhs else None
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
            if isinstance(s, ReLUStage):
                nl, nh = np.maximum(in_lo, 0.0), np.maximum(in_hi, 0.0)
            else:
                nl, nh = maxpool_interval(s, in_lo, in_hi)
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
