"""The float64 certification of a LipSDP solution (formulations.md 3; docs/methods.md#lipsdp-certify):
the LMI rebuilt at the solver's multipliers, its largest eigenvalue checked against a rounding margin,
and rho repaired in closed form (Schur complement of the x_0 block) with the multipliers fixed. Also the
diagonal rebalancing of a chain for a second solve."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from lipopt.sdp.chain import EPS, Chain, ChainLayer
from lipopt.sdp.solve import _blocks


def lmi_matrix(chain: Chain, rho: float, lam: np.ndarray, absolute: bool = False) -> np.ndarray:
    """M(rho, lam) in float64: sum_i lam_i (e_i v_i^T + v_i e_i^T - 2 e_i e_i^T) + out^T out - rho E_0.
    ``absolute``: the same sums of absolute values (with the rounding bounds of V and out), for the
    margin."""
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    if lam.size != chain.n_hidden:
        raise ValueError(f"{lam.size} multipliers for {chain.n_hidden} unstable neurons")
    n = chain.size
    m = np.zeros((n, n))
    m[:chain.n0, :chain.n0] += (abs(rho) if absolute else -rho) * np.eye(chain.n0)
    off = 0
    for la in chain.layers:
        lk = lam[off:off + la.idx.size]
        off += la.idx.size
        v = la.V_abs if absolute else la.V
        cols = np.flatnonzero(np.any(v != 0, axis=0))  # the coordinates it reads (a deep chain: one block)
        blk = v[:, cols] * (np.abs(lk) if absolute else lk)[:, None]
        m[np.ix_(la.idx, cols)] += blk
        m[np.ix_(cols, la.idx)] += blk.T
        m[la.idx, la.idx] += (2.0 * np.abs(lk)) if absolute else (-2.0 * lk)
    out = chain.out_abs if absolute else chain.out
    cols = np.flatnonzero(np.any(out != 0, axis=0))
    m[np.ix_(cols, cols)] += out[:, cols].T @ out[:, cols]
    return m


@dataclass
class EigenCheck:
    lam_max: float  # largest eigenvalue (eigvalsh), or a certified upper bound on it (Cholesky)
    margin: float
    passed: bool
    size: int
    how: str = "eigvalsh"  # "eigvalsh" (dense) | "banded Cholesky"


#: the banded Cholesky check is used when the LMI is at least this large and its bandwidth at most
#: BANDED_MAX_FRACTION of its size (a deep chain); the dense eigvalsh below
BANDED_MIN_SIZE = 600
BANDED_MAX_FRACTION = 0.25


def eigen_check(chain: Chain, rho: float, lam: np.ndarray) -> EigenCheck:
    """Whether M(rho, lam) is certified negative definite in float64 (exactly zero rows and columns,
    decoupled coordinates, are dropped: they add a zero eigenvalue whatever rho): its largest eigenvalue
    against the rounding margin, or, on a large banded LMI (a deep chain is block tri-diagonal), a
    floating-point Cholesky factorisation of -M - c I with the shift c covering the same margin and the
    factorisation's own rounding (:func:`banded_check`), which costs n w^2 instead of n^3. M(rho, lam) =
    M(0, lam) - rho E_0 is built once per multiplier vector (the repair loops vary rho alone)."""
    pen = _pencil(chain, lam)
    keep = pen.keep_rho if rho != 0 else pen.keep0
    # ||M_abs(rho)||_F^2 = ||M_abs(0)||_F^2 + 2 |rho| tr(M_abs(0)_00) + rho^2 n0 (M_abs >= 0 entrywise)
    fro = math.sqrt(pen.fro2 + 2.0 * abs(rho) * pen.tr00 + rho * rho * chain.n0)
    margin = _margin_of_norm(chain, fro)
    if keep.size == 0:
        return EigenCheck(0.0, 0.0, True, 0)
    x0 = keep < chain.n0  # the kept x_0 coordinates, where -rho sits on the diagonal
    if keep.size >= BANDED_MIN_SIZE:
        w, ab = pen.band(keep)
        if w <= BANDED_MAX_FRACTION * keep.size:
            ab = ab.copy()
            ab[w, x0] += rho  # the band of -M: -M(rho) = -M(0) + rho E_0
            return banded_check(None, w, margin, ab=ab)
    sub = pen.m0[np.ix_(keep, keep)]
    sub[x0, x0] -= rho
    lmax = float(np.linalg.eigvalsh(sub)[-1])
    return EigenCheck(lmax, margin, bool(lmax <= -margin), int(keep.size))


@dataclass
class _Pencil:
    """M(0, lam) and its absolute counterpart for one multiplier vector, with what the checks reuse."""

    m0: np.ndarray
    keep0: np.ndarray  # coordinates with a nonzero entry at rho = 0
    keep_rho: np.ndarray  # ... and at rho != 0 (x_0's diagonal joins)
    fro2: float
    tr00: float
    bands: dict = field(default_factory=dict)

    def band(self, keep: np.ndarray) -> tuple[int, np.ndarray]:
        """(bandwidth, -M(0) restricted to ``keep`` in LAPACK's upper band storage)."""
        key = keep.size
        if key not in self.bands:
            sub = self.m0[np.ix_(keep, keep)]
            w = _bandwidth(sub)
            ab = np.zeros((w + 1, keep.size))  # ab[w + i - j, j] = a[i, j]
            for k in range(w + 1):
                ab[w - k, k:] = -np.diagonal(sub, offset=k)
            self.bands[key] = (w, ab)
        return self.bands[key]


_PENCIL: list = [None, None, None]  # the last (chain, lam bytes, _Pencil): a one-entry cache


def _pencil(chain: Chain, lam: np.ndarray) -> _Pencil:
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    key = lam.tobytes()
    if _PENCIL[0] is chain and _PENCIL[1] == key:
        return _PENCIL[2]
    m0 = lmi_matrix(chain, 0.0, lam)
    a0 = lmi_matrix(chain, 0.0, lam, absolute=True)
    nz = np.any(a0 != 0, axis=1)
    with_rho = nz.copy()
    with_rho[:chain.n0] = True
    pen = _Pencil(m0, np.flatnonzero(nz), np.flatnonzero(with_rho), float(np.sum(a0 * a0)),
                  float(np.trace(a0[:chain.n0, :chain.n0])))
    _PENCIL[:] = [chain, key, pen]
    return pen


def _margin(chain: Chain, mabs: np.ndarray) -> float:
    """The eigen-check's rounding margin: the products in V and out (depth-accumulated inner dimensions),
    forming M, and the eigensolver."""
    return _margin_of_norm(chain, float(np.linalg.norm(mabs)))


def _margin_of_norm(chain: Chain, fro: float) -> float:
    kmax = chain.n0 + sum(chain.widths_all) + int(chain.out.shape[0])
    return 2.0 * (chain.size + kmax + 4) * EPS * fro


def _bandwidth(m: np.ndarray) -> int:
    """The largest j - i with m[i, j] != 0 (m symmetric)."""
    rows, cols = np.nonzero(np.triu(m))
    return int(np.max(cols - rows)) if rows.size else 0


def banded_check(m: np.ndarray | None, w: int, margin: float, ab: np.ndarray | None = None) -> EigenCheck:
    """Certify lambda_max(M) <= -margin for a symmetric float64 M of bandwidth ``w`` by a floating-point
    Cholesky factorisation of A = -M - c I (LAPACK dpbtrf through scipy.linalg.cholesky_banded).

    The argument (Demmel 1989; Rump, BIT 2006, Lemma 2.1 and Theorem 2.3, with the inner products of a
    banded factorisation of length at most w + 1): if the factorisation of the floating-point matrix
    A~ = fl(A) runs to completion, A~ + dA = R^T R with |dA| <= g |R^T| |R|, g = gamma_{w+2} =
    (w+2)u / (1 - (w+2)u), so ||dA||_2 <= g ||R||_F^2 = g tr(R^T R) <= g/(1-g) tr(A~), and
    lambda_min(A~) >= -g/(1-g) tr(A~). Forming A~ = fl(-M - c I) adds at most u (|m_ii| + c) per diagonal
    entry. Hence lambda_max(M) <= -(c - g/(1-g) tr(A~) - u (max|m_ii| + c)), and the shift is chosen so
    that this is <= -margin, the eigen-check's criterion. A failed factorisation proves nothing: the
    check then reports not passed, with no eigenvalue (NaN). ``ab``: -M already in LAPACK's upper band
    storage (``ab[w + i - j, j] = -m[i, j]``), in place of ``m``; it is overwritten."""
    import scipy.linalg as sla

    if ab is None:
        assert m is not None
        ab = np.zeros((w + 1, m.shape[0]))
        for k in range(w + 1):
            ab[w - k, k:] = -np.diagonal(m, offset=k)
    n = ab.shape[1]
    u = EPS / 2.0
    g = (w + 2) * u / (1.0 - (w + 2) * u)
    diag = ab[w]
    # tr(A~) <= sum(-m_ii) - n c + rounding <= sum |m_ii|: the allowance is taken on sum |m_ii|
    tr = float(np.sum(np.abs(diag)))
    allowance = g / (1.0 - g) * tr + 2.0 * u * float(np.max(np.abs(diag)))
    c = (margin + allowance) * (1.0 + 1e-6) + 4.0 * np.finfo(np.float64).tiny * n
    ab[w, :] -= c
    try:
        sla.cholesky_banded(ab, lower=False, check_finite=True)
    except np.linalg.LinAlgError:
        return EigenCheck(float("nan"), margin, False, n, "banded Cholesky")
    lam_bound = -(c - allowance - u * c)
    return EigenCheck(lam_bound, margin, bool(lam_bound <= -margin), n, "banded Cholesky")


def closed_form_rho(chain: Chain, lam: np.ndarray) -> tuple[float | None, str]:
    """The smallest rho with M(rho, lam) <= 0 for these multipliers (Schur complement of the x_0 block),
    or None with the reason when no rho works (the rest of the LMI is not negative definite)."""
    import scipy.linalg as sla

    fast = _closed_form_tridiagonal(chain, lam)
    if fast is not None:
        return fast, "closed form"
    m0 = lmi_matrix(chain, 0.0, lam)
    n0 = chain.n0
    p, q, r = m0[:n0, :n0], m0[:n0, n0:], m0[n0:, n0:]
    if r.shape[0] == 0:
        return max(float(np.linalg.eigvalsh(p)[-1]), 0.0), "closed form (no hidden layer)"
    coupled = np.flatnonzero(np.any(r != 0, axis=1) | np.any(q != 0, axis=0))
    r, q = r[np.ix_(coupled, coupled)], q[:, coupled]
    if coupled.size == 0:
        return max(float(np.linalg.eigvalsh(p)[-1]), 0.0), "closed form"
    try:
        low = np.linalg.cholesky(-r)
    except np.linalg.LinAlgError:
        top = f" (largest eigenvalue {float(np.linalg.eigvalsh(r)[-1]):.3e})" if r.shape[0] <= 1000 else ""
        return None, (f"the hidden-neuron block of the LMI is not negative definite at these multipliers"
                      f"{top}: no rho certifies them")
    x = sla.solve_triangular(low, q.T, lower=True)
    s = p + x.T @ x
    return max(float(np.linalg.eigvalsh(0.5 * (s + s.T))[-1]), 0.0), "closed form"


def _closed_form_tridiagonal(chain: Chain, lam: np.ndarray) -> float | None:
    """:func:`closed_form_rho` on a block tri-diagonal chain by the backward recursion of
    :mod:`lipopt.sdp.first_order` (sum n_k^3 instead of a dense Cholesky of the hidden block); None when
    the chain is not one, or a T_k is not positive definite (the dense path then says why)."""
    import scipy.linalg as sla

    from lipopt.sdp.first_order import tridiagonal

    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    tri = tridiagonal(chain) if chain.n_hidden > 0 and chain.size >= BANDED_MIN_SIZE else None
    if tri is None or lam.size != chain.n_hidden:
        return None
    bounds = np.r_[0, np.cumsum(tri.widths)]
    lams = [lam[a:b] for a, b in itertools.pairwise(bounds)]
    t = 2.0 * np.diag(lams[-1]) - tri.out.T @ tri.out
    for k in range(len(tri.ws) - 1, -1, -1):
        try:
            c = np.linalg.cholesky(t)
        except np.linalg.LinAlgError:
            return None
        y = sla.solve_triangular(c, lams[k][:, None] * tri.ws[k], lower=True)
        if k == 0:
            g = y.T @ y
            return max(float(np.linalg.eigvalsh(0.5 * (g + g.T))[-1]), 0.0)
        t = 2.0 * np.diag(lams[k - 1]) - y.T @ y
    return None


def balanced(chain: Chain, rho: float, lam: np.ndarray) -> tuple[Chain, float, np.ndarray] | None:
    """A diagonally rescaled chain (xi = D xi', d per block, output times s, powers of two) in which the
    multipliers (rho, lam) of a first solve become about 1: M'(rho s^2, lam') = s^2 D M(rho, lam) D with
    lam'_i = lam_i d_i^2 s^2. Returns (chain', s^2, d^2 per unstable neuron) to map a solution back
    (rho = rho' / s^2, lam = lam' / (s^2 d^2)); None when the first solve gives nothing to balance with."""
    lam = np.maximum(np.asarray(lam, dtype=np.float64), 0.0)
    if not (rho > 0 and math.isfinite(rho)) or chain.n_hidden == 0:
        return None
    e_s = -round(0.5 * math.log2(rho))
    dexp = [0]
    off = 0
    for la in chain.layers:
        lk = lam[off:off + la.idx.size]
        off += la.idx.size
        pos = lk[lk > 0]
        if pos.size == 0:
            return None
        dexp.append(round(0.5 * (math.log2(rho) - float(np.mean(np.log2(pos))))))
    dcol = np.zeros(chain.size)
    for b, e in zip(_blocks(chain), dexp, strict=True):
        dcol[b] = e
    dvec = np.ldexp(1.0, dcol.astype(int))
    layers = []
    for la, e in zip(chain.layers, dexp[1:], strict=True):
        f = math.ldexp(1.0, -e)
        layers.append(ChainLayer(la.idx, la.V * dvec[None, :] * f, la.V_abs * dvec[None, :] * f))
    sc = math.ldexp(1.0, e_s)
    out = chain.out * dvec[None, :] * sc
    out_abs = chain.out_abs * dvec[None, :] * sc  # the rounding bounds of out, scaled exactly as out
    new = Chain(chain.n0, layers, out, out_abs, chain.widths_all, chain.log2_scale)
    d2 = np.concatenate([np.full(la.idx.size, math.ldexp(1.0, 2 * e)) for la, e in
                         zip(chain.layers, dexp[1:], strict=True)])
    return new, sc * sc, d2


def hidden_block_max(chain: Chain, lam: np.ndarray) -> float:
    """Largest eigenvalue of the hidden-neuron block R of M (rho plays no role there); R must be negative
    definite for any rho to certify these multipliers."""
    m0 = lmi_matrix(chain, 0.0, lam)
    r = m0[chain.n0:, chain.n0:]
    return float(np.linalg.eigvalsh(r)[-1]) if r.shape[0] else -math.inf


@dataclass
class Certificate:
    """The outcome of :func:`certify`: ``rho`` is certified (None: nothing certified)."""

    rho_solver: float
    rho: float | None
    check_solver: EigenCheck
    check: EigenCheck | None
    action: str  # "none" | "tightened" | "repaired" | "failed"
    steps: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rho is not None and self.check is not None and self.check.passed

    def detail(self) -> str:
        s = (f"lambda_max at the solver's rho {self.rho_solver:.12g}: {self.check_solver.lam_max:.3e} "
             f"(margin {self.check_solver.margin:.1e})")
        if self.ok:
            assert self.check is not None and self.rho is not None
            s += f"; certified rho {self.rho:.12g}, lambda_max {self.check.lam_max:.3e} ({self.action})"
        else:
            s += "; no rho certified: " + "; ".join(self.steps[-2:])
        return s


def certify(chain: Chain, rho: float, lam: np.ndarray, tighten: bool = True, steps: int = 60) -> Certificate:
    """Certify (rho, lam) in float64; repair rho (multipliers fixed) when the check fails."""
    lam = np.maximum(np.nan_to_num(np.asarray(lam, dtype=np.float64).reshape(-1), nan=0.0), 0.0)
    rho = max(float(rho), 0.0) if math.isfinite(float(rho)) else 0.0
    c0 = eigen_check(chain, rho, lam)
    best: tuple[float, EigenCheck] | None = (rho, c0) if c0.passed else None
    log = [f"solver rho {rho:.12g}: lambda_max {c0.lam_max:.3e} vs margin -{c0.margin:.1e} "
           f"({'certified' if c0.passed else 'NOT certified'})"]
    if c0.passed and not tighten:
        return Certificate(rho, rho, c0, c0, "none", log)
    rc, why = closed_form_rho(chain, lam)
    if rc is None:
        log.append(why)
    else:
        bump = max(c0.margin, 4 * EPS * max(rc, 1.0) * chain.size)
        for j in range(max(1, steps)):
            r = rc + bump * (4.0 ** j)
            if best is not None and r >= best[0]:
                break
            cj = eigen_check(chain, r, lam)
            if cj.passed:
                log.append(f"{why} rho_c {rc:.12g}: certified at rho {r:.12g} (bump {r - rc:.1e}, "
                           f"lambda_max {cj.lam_max:.3e})")
                best = (r, cj)
                break
        else:
            log.append(f"{why} rho_c {rc:.12g}: not certified after {steps} growing bumps")
    if best is None:
        return Certificate(rho, None, c0, None, "failed", log)
    action = "none" if best[0] == rho else ("tightened" if c0.passed else "repaired")
    return Certificate(rho, best[0], c0, best[1], action, log)


def certify_closed_form(chain: Chain, rho: float, lam: np.ndarray, steps: int = 60, tries: int = 3
                        ) -> Certificate:
    """Certify multipliers whose smallest rho the caller computed itself (``rho`` = rho*(lam), as the
    first-order LipSDP does). M(rho*, lam) is singular, and raising rho by d lowers its top eigenvalue
    only by d times the x_0 weight of the eigenvector; in a deep net that weight is tiny, and the hidden
    block R itself is nearly singular at a tight point (its top eigenvalue decays with the depth), so no
    rho certifies. The checks: rho* (1 + 1e-9 * 16^j) + 4 rounding margins, j < ``tries``; then the
    multipliers scaled by 1 + delta (delta 1e-6, then 1e-4; R(c lam) = R(lam) + (c - 1) R_lam with the
    multiplier part R_lam negative definite at a feasible point, so this moves R strictly inside) with
    their closed-form rho; then :func:`certify` on the multipliers as given."""
    lam = np.maximum(np.asarray(lam, dtype=np.float64).reshape(-1), 0.0)
    for delta in (0.0, 1e-6, 1e-4):
        lam_d = lam * (1.0 + delta)
        rho_d = rho if delta == 0.0 else closed_form_rho(chain, lam_d)[0]
        if rho_d is None:
            continue
        bump = 4.0 * _margin(chain, lmi_matrix(chain, rho_d, lam_d, absolute=True))
        for j in range(tries):
            r = rho_d * (1.0 + 1e-9 * 16.0 ** j) + bump
            first = certify(chain, r, lam_d, tighten=False, steps=steps)
            if first.ok:
                scaled = f", multipliers scaled by 1 + {delta:g}" if delta else ""
                first.steps[0] = f"rho*(lam) {rho_d:.12g}{scaled} raised to {r:.12g}: " + first.steps[0]
                return first
    return certify(chain, rho, lam, tighten=True, steps=steps)
