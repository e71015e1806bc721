"""Solving the LipSDP LMI with cvxpy (formulations.md 3; docs/methods.md#lipsdp): the coefficient
matrices of the chain, the dense or chordal (block-per-layer-pair) form, the input reduction; the value
is certified afterwards in float64 (:mod:`lipopt.sdp.certification`)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lipopt.sdp.chain import FORMS, Chain


@dataclass
class SDPSolve:
    rho: float | None
    lam: np.ndarray | None  # per neuron
    outcome: Any
    build_time: float
    solve_size: int


def _coefficients(chain: Chain) -> Any:
    """Sparse (n*n, N) matrix F with vec(M - out^T out + rho E_0) = F @ lam (column-major vec)."""
    import scipy.sparse as sp

    n = chain.size
    rows, cols, vals = [], [], []
    col = 0
    for la in chain.layers:
        for r, u in enumerate(la.idx):
            nz = np.flatnonzero(la.V[r])
            v = la.V[r, nz]
            rows += [u + nz * n, nz + u * n, np.array([u + u * n])]
            vals += [v, v, np.array([-2.0])]
            cols += [np.full(nz.size, col), np.full(nz.size, col), np.array([col])]
            col += 1
    if not rows:
        return sp.csr_matrix((n * n, 0))
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n * n, col))


def _blocks(chain: Chain) -> list[np.ndarray]:
    """Index ranges of xi's blocks: x_0, then the unstable neurons of each hidden layer."""
    return [np.arange(chain.n0)] + [la.idx for la in chain.layers]


def is_block_tridiagonal(chain: Chain) -> bool:
    """Whether M is block tri-diagonal over (x_0, x_1, ..., x_{L-1}) with at least two hidden layers (the
    chordal form's case): see :func:`reads_previous_block_only`."""
    return len(chain.layers) >= 2 and reads_previous_block_only(chain)


def reads_previous_block_only(chain: Chain) -> bool:
    """Whether every pre-activation reads only the previous block and the output only the last (no hidden
    block empty): always on the global question; stable-on neurons of a local question can couple blocks
    further apart."""
    blocks = _blocks(chain)
    if any(b.size == 0 for b in blocks):
        return False
    for k, la in enumerate(chain.layers):
        cols = np.flatnonzero(np.any(la.V != 0, axis=0))
        if cols.size and not np.all(np.isin(cols, blocks[k])):
            return False
    cols = np.flatnonzero(np.any(chain.out != 0, axis=0))
    return bool(not cols.size or np.all(np.isin(cols, blocks[-1])))


def chordal_size(chain: Chain) -> int:
    """Largest clique (two consecutive blocks) of the chordal form."""
    w = [b.size for b in _blocks(chain)]
    return max(w[k] + w[k + 1] for k in range(len(w) - 1))


def solve_lmi(chain: Chain, form: str, solver: str, solver_options: Any = None, reduce_input: bool = True,
              chordal: bool = False, hidden_margin: float = 0.0) -> SDPSolve:
    """min rho s.t. M(rho, lam) <= 0 with cvxpy through the solver layer (Neuron: lam per unstable
    neuron; Layer: one per hidden layer).

    ``chordal`` (block tri-diagonal M only, :func:`is_block_tridiagonal`): M <= 0 written as
    -M = sum_k E_k^T Y_k E_k with Y_k >= 0 on the cliques (x_{k-1}, x_k) (exact for this chordal
    pattern); the diagonal block x_k shared by cliques k and k+1 is split by a free symmetric S_k. The
    cone sizes are n_{k-1} + n_k instead of n_0 + N: depth costs linearly.

    ``hidden_margin`` > 0 asks for M + margin * blkdiag(0, I_N) <= 0 (a strictly negative hidden block, so
    that an inexact solver's multipliers still leave rho repairable); the certification is of M itself."""
    import cvxpy as cp
    import scipy.sparse as sp
    from lipopt_solvers import solve_cvxpy

    if form not in FORMS:
        raise ValueError(f"unknown LipSDP form {form!r}; offered: {', '.join(FORMS)} (the Network form is "
                         "unsound for ReLU and is not offered as a bound)")
    t0 = time.perf_counter()
    ch = chain.reduced() if reduce_input else chain
    n, widths = ch.size, ch.widths
    f = _coefficients(ch)
    if form == "layer":
        layer_of = np.repeat(np.arange(len(widths)), widths)
        f = f @ sp.csr_matrix((np.ones(layer_of.size), (np.arange(layer_of.size), layer_of)),
                              shape=(layer_of.size, len(widths)))
    rho = cp.Variable(nonneg=True, name="rho")
    e0 = np.zeros((n, n))
    e0[:ch.n0, :ch.n0] = np.eye(ch.n0)
    const = ch.out.T @ ch.out
    if hidden_margin > 0:
        const = const + hidden_margin * np.diag(np.r_[np.zeros(ch.n0), np.ones(ch.n_hidden)])
    lam = None
    if f.shape[1] > 0:
        lam = cp.Variable(f.shape[1], nonneg=True, name="lam" if form == "neuron" else "lam_layer")
    if chordal and is_block_tridiagonal(ch):
        f = f.tocsr()
        blocks = _blocks(ch)

        def blk(i: int, j: int) -> Any:
            rs, cs = blocks[i], blocks[j]
            e = const[np.ix_(rs, cs)] - rho * e0[np.ix_(rs, cs)]
            if lam is not None:
                rows = (rs[:, None] + cs[None, :] * n).ravel(order="F")
                e = e + cp.reshape(f[rows] @ lam, (rs.size, cs.size), order="F")
            return e

        nk = len(blocks) - 1
        splits = [cp.Variable((blocks[k].size, blocks[k].size), symmetric=True) for k in range(1, nk)]
        cons = []
        for k in range(1, nk + 1):
            tl = -blk(0, 0) if k == 1 else -blk(k - 1, k - 1) - splits[k - 2]
            br = -blk(nk, nk) if k == nk else splits[k - 1]
            off = -blk(k - 1, k)
            y = cp.bmat([[tl, off], [off.T, br]])
            cons.append(0.5 * (y + y.T) >> 0)
        prob = cp.Problem(cp.Minimize(rho), cons)
    else:
        m = const - rho * e0
        if lam is not None:
            m = m + cp.reshape(f @ lam, (n, n), order="F")
        prob = cp.Problem(cp.Minimize(rho), [0.5 * (m + m.T) << 0])
    build = time.perf_counter() - t0
    out = solve_cvxpy(prob, solver, solver_options)
    rv = None if rho.value is None else float(rho.value)
    lv = None
    if lam is None:
        lv = np.zeros(0) if rv is not None else None
    elif lam.value is not None:
        vals = np.asarray(lam.value, dtype=np.float64).reshape(-1)
        lv = vals if form == "neuron" else np.repeat(vals, widths)
    return SDPSolve(rv, lv, out, build, n)
