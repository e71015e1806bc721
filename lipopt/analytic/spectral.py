"""Certified upper bounds on spectral norms ||R A D||_2 of masked layers (never a power-iteration value).

Power iteration (the paper's method, formulations.md 4.2) approaches ||M||_2 from BELOW: ||M v|| <= ||M||
for every unit v. It is kept only as an ESTIMATE. The UPPER value returned here comes from one of:

1. ``exact-eig`` (small: the smaller side s of the compressed matrix M = R A D restricted to rows with
   r_i > 0 and columns with d_j > 0 is <= ``exact_limit``): form the s x s Gram matrix G (M^T M or
   M M^T) and take its largest eigenvalue with LAPACK, plus a rounding allowance
   (forming G: <= (k+2) eps ||M||_F^2 in the 2-norm; symmetric eigensolver: <= 4 s eps ||G||_F).
2. ``lanczos+cholesky`` (medium: s <= ``cholesky_limit``): Lanczos gives lambda~ ~ lambda_max(G); the
   value lambda_c = lambda~ (1 + delta) is then PROVED to exceed lambda_max(G) by a successful Cholesky
   factorisation of lambda_c I - G (a symmetric matrix has a Cholesky factor iff it is positive definite;
   the floating-point factorisation's backward error, <= (s+1) eps |R^T||R| (Demmel), is covered by
   adding 4 (s+1) eps (lambda_c + ||G||_F) to lambda_c). delta grows 1e-8, 1e-6, ... until it succeeds.
   A sparse M (convolutions; ``SpectralOptions.banded``, default) never forms the dense Gram matrix:
   Lanczos on the sparse G, and the Cholesky certificate in a reverse Cuthill-McKee order by LAPACK's
   banded factorisation (n w^2 instead of n^3 / 3), with Rump's trace criterion for its rounding
   (:func:`_banded_norm_upper`).
3. ``fourier-gram`` (large convolutions, unmasked): the zero-padded convolution on an H x W input is a
   restriction of the stride-1 *circular* convolution on the (H + 2p) x (W + 2p) torus (input embedding
   and output subsampling have norm <= 1), whose norm is max over frequencies w of ||K^(w)||_2
   (c_out x c_in blocks, rfft2; a stride-s convolution is first rewritten, exactly, as a stride-1
   convolution of the s*s input phases). Each block's norm is certified by a batched Cholesky
   factorisation of t I - K^H K at t = (1 + delta) x a power-iteration value (as in 2.); blocks it cannot
   settle get Gram iteration (Delattre et al. 2023): with X_0 = K^(w), X_{t+1} = Y_t^H Y_t,
   Y_t = X_t / ||X_t||_F, ||K^(w)||_2 <= prod_{t=0..T} ||X_t||_F^(1/2^t). Plus an FFT rounding allowance.
   Default (``SpectralOptions.fourier_taps``): the blocks G(w) = K^(w)^H K^(w) as a trigonometric
   polynomial of the kernel's tap correlations, every block proved below t = (1 + 1e-10) x the largest
   eigenvalue met by one Cholesky factorisation, no power iteration (:func:`_fourier_taps_upper`); the
   baseline above is kept with ``fourier_taps=False``.
   For a masked operator:
   ||R A D|| <= max_i r_i * ||A||.
4. ``schur`` (any size): ||M||_2 <= sqrt(||M||_1 ||M||_inf) with the row and column absolute sums of
   |R A D| = R |A| D computed by one convolution and one transposed convolution with |kernel|.

Cases 3 and 4 are rigorous but can be loose; the record says which one was used per layer.

Time budget (``SpectralOptions.deadline``, an absolute ``time.perf_counter()`` instant, None = none): an
unmasked operator whose certified computation (1.-3.) would not fit in what is left (a flop-count
estimate for 1.-2.; the Fourier bound checks the clock between frequency chunks) gets a cheaper sound bound
instead, not cached: min(||A||_F, sqrt(||A||_1 ||A||_inf)) for dense layers, 4. otherwise; its method ends
in ``TIME_LIMIT_TAG``, so a caller can say that the time limit was reached.

The mathematics as implemented: ``docs/methods.md#spectral``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lipopt.analytic.linops import DTYPE, AvgPoolOp, ComposedOp, ConvOp, DenseOp, LinOp, ReshapeOp

EPS = float(np.finfo(np.float64).eps)
#: suffix of the method of a bound that replaced a certified computation which did not fit the deadline
TIME_LIMIT_TAG = " (time limit)"
#: flop rate assumed when deciding whether a certified dense computation fits in what is left (conservative)
FLOPS = 1e9


class _OutOfTimeError(Exception):
    """The deadline passed during a certified computation (caught by :func:`global_upper`)."""


@dataclass(frozen=True)
class SpectralOptions:
    exact_limit: int = 256  # dense symmetric eigensolver on the Gram matrix up to this smaller side
    cholesky_limit: int = 6000  # Lanczos + shifted-Cholesky certificate up to this smaller side
    sparse_max_nnz: int = 30_000_000  # lower a structured operator to a sparse matrix below this
    dense_max_entries: int = 150_000_000  # dense layers (fc) up to this many (compressed) entries
    power_iters: int = 100  # iterations of the power-iteration ESTIMATE (0: skip)
    fourier_iters: int = 6  # Gram iterations per frequency (for blocks the Cholesky test cannot settle)
    fourier_taps: bool = True  # per-frequency Gram blocks from the kernel's tap correlations (False: the
    # baseline: K^H K per frequency from an FFT of the kernel, power iteration, Cholesky ladder)
    fourier: bool = True  # large convolutions: Fourier bound (tight, costly) or only Schur (cheap, loose)
    banded: bool = True  # sparse Gram matrices: band-reordered Cholesky certificate (False: the dense one)
    banded_max_fraction: float = 0.5  # ... when the reordered bandwidth is at most this fraction of s
    rel_margin: float = 1e-9  # relative safety added to every certified value
    seed: int = 0
    deadline: float | None = None  # perf_counter instant: past it (or not fitting), cheaper sound bounds


@dataclass
class SpectralBound:
    upper: float  # certified upper bound on ||R A D||_2
    method: str
    exact: bool  # True when upper is the exact norm up to the rounding allowance
    estimate: float | None = None  # power-iteration value (a lower bound in exact arithmetic; not certified)

    def to_dict(self) -> dict[str, Any]:
        return {"upper": self.upper, "method": self.method, "exact": self.exact, "estimate": self.estimate}


# ------------------------------------------------------------------------------------------- matrices


def _frob(m: Any) -> float:
    if hasattr(m, "toarray"):
        return float(np.sqrt((m.data.astype(np.float64) ** 2).sum()))
    return float(np.linalg.norm(m))


def _gram(m: Any) -> tuple[np.ndarray, int]:
    """Dense Gram matrix of the smaller side and the inner dimension."""
    rows, cols = m.shape
    if hasattr(m, "toarray"):
        g = (m.T @ m) if cols <= rows else (m @ m.T)
        g = g.toarray()
    else:
        m = np.asarray(m, dtype=np.float64)
        g = (m.T @ m) if cols <= rows else (m @ m.T)
    return np.asarray(g, dtype=np.float64), max(rows, cols)


def matrix_norm_upper(m: Any, opts: SpectralOptions | None = None) -> SpectralBound | None:
    """Certified ||m||_2 for a dense or sparse matrix (None when too large for methods 1-2)."""
    import scipy.linalg as sla

    opts = opts or SpectralOptions()
    rows, cols = m.shape
    s = min(rows, cols)
    if s == 0 or _frob(m) == 0.0:
        return SpectralBound(0.0, "zero", True, 0.0)
    if s > opts.cholesky_limit:
        return None
    if opts.banded and hasattr(m, "tocsr") and s > opts.exact_limit:
        res = _banded_norm_upper(m, opts)
        if res is not None:
            return res
    fro2 = _frob(m) ** 2
    g, k = _gram(m)
    gf = float(np.linalg.norm(g))
    form_err = (k + 2) * EPS * fro2 * 1.01
    if s <= opts.exact_limit:
        lam = float(sla.eigh(g, eigvals_only=True, subset_by_index=[s - 1, s - 1], check_finite=False)[0])
        lam_up = max(lam, 0.0) + 4 * s * EPS * gf + form_err
        up = math.sqrt(lam_up) * (1 + opts.rel_margin)
        return SpectralBound(up, "exact-eig", True, math.sqrt(max(lam, 0.0)))
    from scipy.sparse.linalg import eigsh

    try:
        lam_est = float(eigsh(g, k=1, which="LA", tol=1e-10, return_eigenvectors=False)[0])
    except Exception:  # ARPACK did not converge: fall back to the Frobenius-free crude start
        lam_est = float(np.max(np.abs(g).sum(axis=1)))
    lam_est = max(lam_est, 0.0)
    for delta in (1e-8, 1e-6, 1e-4, 1e-2, 1e-1, 1.0):
        lam_c = lam_est * (1 + delta) + 4 * (s + 1) * EPS * (lam_est + gf) + form_err
        shifted = -g
        shifted[np.diag_indices(s)] += lam_c
        try:
            sla.cholesky(shifted, lower=True, overwrite_a=True, check_finite=False)
        except np.linalg.LinAlgError:
            continue
        lam_up = _trace_certified(lam_c, np.diag(g).copy(), s, form_err)  # g is untouched: shifted was a copy
        return SpectralBound(math.sqrt(lam_up) * (1 + opts.rel_margin), "lanczos+cholesky", delta <= 1e-6,
                             math.sqrt(lam_est))
    lam = float(sla.eigh(g, eigvals_only=True, subset_by_index=[s - 1, s - 1], check_finite=False)[0])
    return SpectralBound(math.sqrt(max(lam, 0.0) + 4 * s * EPS * gf + form_err) * (1 + opts.rel_margin),
                         "exact-eig", True, math.sqrt(max(lam, 0.0)))


def _sparse_gram(m: Any) -> tuple[Any, int]:
    """Sparse Gram matrix (CSR) of the smaller side of a sparse m, and the inner dimension."""
    rows, cols = m.shape
    m = m.tocsr()
    g = (m.T.tocsr() @ m) if cols <= rows else (m @ m.T.tocsr())
    return g.tocsr(), max(rows, cols)


def _band_order(g: Any) -> tuple[np.ndarray, int]:
    """A symmetric permutation of the sparse symmetric g with a small bandwidth (reverse Cuthill-McKee)
    and that bandwidth."""
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    perm = np.asarray(reverse_cuthill_mckee(g, symmetric_mode=True), dtype=np.int64)
    inv = np.empty_like(perm)
    inv[perm] = np.arange(perm.size)
    coo = g.tocoo()
    w = int(np.max(np.abs(inv[coo.row] - inv[coo.col]))) if coo.nnz else 0
    return perm, w


def _trace_certified(t: float, diag: np.ndarray, inner: int, form_err: float, g_factor: float = 1.0) -> float:
    """lambda_max(G) <= this when a floating-point Cholesky factorisation of fl(t I - G~) ran to completion
    (Demmel 1989; Rump, BIT 2006, Lemma 2.1 / Theorem 2.3): with g = ``g_factor`` gamma_{inner+1} for
    inner products of length <= ``inner`` (2 for complex arithmetic), lambda_min(A~) >= -g/(1-g) tr(A~),
    forming A~ moves each diagonal entry by <= u (|g_ii| + t), and forming G~ adds ``form_err``.
    ``diag``: the diagonal of G~."""
    u = EPS / 2.0
    gam = g_factor * (inner + 2) * u / (1.0 - g_factor * (inner + 2) * u)
    n = diag.size
    tr = float(np.sum(np.abs(t - diag)))
    return (t + gam / (1.0 - gam) * tr * (1 + 4 * n * u) + u * (float(np.max(np.abs(diag))) + t)
            + form_err) * (1 + 4 * u)


def _banded_norm_upper(m: Any, opts: SpectralOptions) -> SpectralBound | None:
    """``lanczos+cholesky`` for a sparse m without a dense Gram matrix: Lanczos on the sparse Gram matrix
    G, then the Cholesky certificate of t I - G in a band-reducing symmetric order (reverse
    Cuthill-McKee; a symmetric permutation changes no eigenvalue), LAPACK dpbtrf, n w^2 instead of n^3/3.
    None when the band is not narrow enough (the dense path then runs).

    Rounding (the argument of :func:`lipopt.sdp.certification.banded_check`: Demmel 1989; Rump, BIT 2006,
    Lemma 2.1 / Theorem 2.3, inner products of length <= w + 1): if the factorisation of
    A~ = fl(t I - G~) runs to completion, lambda_min(A~) >= -g/(1-g) tr(A~), g = gamma_{w+2}, and forming
    A~ moves each diagonal entry by <= u (|g_ii| + t); so lambda_max(G~) <= t + g/(1-g) tr(A~)
    + u (max|g_ii| + t), and lambda_max(M^T M) <= that + (k+2) eps ||M||_F^2 (forming G~, as in the dense
    path). tr(A~) is bounded by the sum of |diagonal| of the stored band."""
    import scipy.linalg as sla
    from scipy.sparse.linalg import eigsh

    s = min(m.shape)
    fro2 = _frob(m) ** 2
    g, k = _sparse_gram(m)
    perm, w = _band_order(g)
    if w > opts.banded_max_fraction * s:
        return None
    form_err = (k + 2) * EPS * fro2 * 1.01
    try:
        lam_est = float(eigsh(g, k=1, which="LA", tol=1e-10, return_eigenvectors=False)[0])
    except Exception:  # ARPACK did not converge: the absolute row sums (>= lambda_max) as the start
        lam_est = float(abs(g).sum(axis=1).max())
    lam_est = max(lam_est, 0.0)
    gp = g[perm][:, perm].tocoo()
    up = gp.row <= gp.col
    band = np.zeros((w + 1, s))
    band[w + gp.row[up] - gp.col[up], gp.col[up]] = -gp.data[up]
    gdiag = -band[w].copy()
    for delta in (1e-8, 1e-6, 1e-4, 1e-2, 1e-1, 1.0):
        t = lam_est * (1 + delta) + form_err
        ab = band.copy()
        ab[w] += t
        try:
            sla.cholesky_banded(ab, lower=False, overwrite_ab=True, check_finite=False)
        except np.linalg.LinAlgError:
            continue
        lam_up = _trace_certified(t, gdiag, w + 1, form_err)
        return SpectralBound(math.sqrt(lam_up) * (1 + opts.rel_margin), "lanczos+cholesky", delta <= 1e-6,
                             math.sqrt(lam_est))
    return None


# -------------------------------------------------------------------------------------- convolutions


def conv_fourier_upper(op: ConvOp, opts: SpectralOptions | None = None) -> float:
    """Certified ||A||_2 of a zero-padded (strided, dilated, grouped) convolution via the circular
    convolution on the padded torus and per-frequency Gram iteration (see the module docstring).
    ``opts.fourier_taps`` (default): :func:`_fourier_taps_upper`; else the baseline below."""
    opts = opts or SpectralOptions()
    if opts.fourier_taps:
        return _fourier_taps_upper(op, opts)
    key = f"fourier{opts.fourier_iters}"
    if key in op._cache:
        return op._cache[key]
    # polyphase: a stride-s convolution on the N-torus (N a multiple of s) equals a stride-1 convolution
    # of the s*s input phases (a permutation of the input) with the kernel phases
    kd, nh, nw = _polyphase_kernel(op)
    c_out, cg = int(kd.shape[0]), int(kd.shape[1])
    g = op.groups
    og = c_out // g
    # FFT rounding allowance on each entry of K^(w): ~ log2(N) eps sum|k|
    l1 = kd.abs().sum(dim=(2, 3))  # (c_out, cg)
    fft_err_entry = 5 * math.log2(nh * nw + 2) * EPS * float(l1.max())
    best = 0.0
    for gi in range(g):
        kg = kd[gi * og:(gi + 1) * og]
        khat = torch.fft.rfft2(kg, s=(nh, nw))  # (og, cg, nh, nw//2+1)
        blocks = khat.permute(2, 3, 0, 1).reshape(-1, og, cg)
        if og < cg:
            blocks = blocks.transpose(1, 2).conj()
        c = min(og, cg)
        chunk = max(1, int(16_000_000 // max(1, og * cg + c * c)))
        best2 = 0.0  # certified bound on the largest squared singular value so far
        for s in range(0, blocks.shape[0], chunk):
            if opts.deadline is not None and time.perf_counter() >= opts.deadline:
                raise _OutOfTimeError
            x = blocks[s:s + chunk]
            lam, rest = _cholesky_certified_sq(x, best2)
            best2 = max(best2, lam)
            if rest is not None:  # blocks the Cholesky certificate could not settle: Gram iteration
                b = _gram_iteration_bound(rest, opts.fourier_iters)
                best2 = max(best2, float(b.max()) ** 2)
        best = max(best, math.sqrt(best2))
    extra = fft_err_entry * math.sqrt(og * cg)
    val = (best + extra) * (1 + opts.rel_margin + 4 * opts.fourier_iters * 1e-14)
    op._cache[key] = val
    return val


def _polyphase_kernel(op: ConvOp) -> tuple[torch.Tensor, int, int]:
    """The stride-1 kernel (c_out, cg * sh * sw, P, Q) of the s*s input phases and the torus size
    (nh, nw) on which the zero-padded convolution is a restriction of the circular one (as in the
    baseline :func:`conv_fourier_upper`)."""
    w = op.w
    c_out, cg, kh, kw = w.shape
    dh, dw = op.dilation
    keh, kew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    sh, sw = op.stride
    keh2, kew2 = -(-keh // sh) * sh, -(-kew // sw) * sw
    nh = -(-max(op.in_shape[1] + 2 * op.padding[0], keh2) // sh) * sh
    nw = -(-max(op.in_shape[2] + 2 * op.padding[1], kew2) // sw) * sw
    kd = torch.zeros((c_out, cg, keh2, kew2), dtype=DTYPE, device=w.device)
    kd[:, :, :keh:dh, :kew:dw] = w
    kd = kd.reshape(c_out, cg, keh2 // sh, sh, kew2 // sw, sw).permute(0, 1, 3, 5, 2, 4)
    kd = kd.reshape(c_out, cg * sh * sw, keh2 // sh, kew2 // sw)
    return kd, nh // sh, nw // sw


def _fourier_taps_upper(op: ConvOp, opts: SpectralOptions) -> float:
    """Certified ||A||_2 of a convolution: max over the torus frequencies w of lambda_max(G(w))^(1/2),
    G(w) = K^(w)^H K^(w) (the smaller side), certified without forming K^H K per frequency.

    * G(w) = sum_D H_D exp(-i w.D) is a trigonometric polynomial: H_D = sum_{b - a = D} m_a^T m_b over the
      kernel taps m_a (c_out x c_in, or transposed for the smaller side), (2P-1)(2Q-1) offsets D. Each
      frequency block is then two real matrix products of length |D| (4 |D| c^2 flops) instead of a
      complex c x c x c product, a power iteration and Frobenius norms.
    * Rounding of G~ (H~ by inner products of length <= c_out + PQ; twiddles cos / sin of the reduced
      argument 2 pi ((k D) mod N) / N, each within 25 u; products of length |D|; real and imaginary parts):
      |G~(w) - G(w)| <= e_G S entrywise with S = L1^T L1, L1 = sum_a |m_a|, e_G = 2 sqrt(2) (c_out + PQ
      + |D| + 30) u; hence ||G~ - G||_2 <= e_G ||L1||_F^2, added once at the end.
    * The certificate: frequencies in decreasing order of tr G(w); the floor is the largest eigenvalue
      (LAPACK) of the first blocks; every block is proved lambda_max(G~) <= t + g/(1-g) tr(t I - G~)
      + u (max|g_ii| + t), t = floor (1 + 1e-10), by a successful Cholesky factorisation of
      fl(t I - G~) (Demmel; Rump, BIT 2006, Theorem 2.3, with the complex constant
      g = 2 gamma_{c+3} >= sqrt(2) gamma_{c+2} for complex inner products of length <= c). A block it
      fails on gets its own eigenvalue as the new floor and the ladder t = max(floor, own) (1 + delta),
      delta = 1e-10, 1e-8, 1e-6, ...; what that cannot settle gets Gram iteration (as the baseline).
    The result (cached) is sqrt(max certified bound + ||G~ - G||) (1 + rel_margin) (1 + 4u); it is at most
    the baseline's value, whose Cholesky ladder starts at delta = 1e-6 above a power-iteration value."""
    key = "fourier-taps"
    if key in op._cache:
        return op._cache[key]
    kd, nh, nw = _polyphase_kernel(op)
    c_out, cg_all = kd.shape[0], kd.shape[1]
    g_n = op.groups
    og = c_out // g_n
    u = EPS / 2.0
    best_sq = 0.0
    form_err = 0.0
    P, Q = kd.shape[2], kd.shape[3]
    offs = [(p, q) for p in range(-(P - 1), P) for q in range(-(Q - 1), Q)]
    n_d = len(offs)
    e_g = 2.0 * math.sqrt(2.0) * (max(og, cg_all) + P * Q + n_d + 30) * u
    phase = _tap_phases(nh, nw, offs)
    cos_t = torch.as_tensor(np.cos(phase), dtype=DTYPE, device=kd.device)
    ncos_t = -cos_t
    nsin_t = torch.as_tensor(np.sin(phase), dtype=DTYPE, device=kd.device)  # -(-sin): Im of -G
    for gi in range(g_n):
        kg = kd[gi * og:(gi + 1) * og]  # (og, cg, P, Q)
        m = kg.permute(2, 3, 0, 1)  # (P, Q, og, cg): taps m_a
        if og < cg_all:
            m = m.transpose(2, 3)  # the smaller side: K K^H has the taps' transposes
        c = m.shape[3]
        h = _tap_correlations(m, offs)
        l1 = m.abs().sum(dim=(0, 1))
        form_err = max(form_err, e_g * float((l1 * l1).sum()) * 1.01)
        hflat = h.reshape(n_d, c * c)
        trace = (cos_t @ torch.diagonal(h, dim1=1, dim2=2).sum(dim=1)).cpu().numpy()  # tr G(w)
        order = np.argsort(-trace, kind="stable")
        chunk = max(1, int(16_000_000 // max(1, 2 * c * c)))
        floor = None

        def neg_blocks(sel: np.ndarray) -> torch.Tensor:
            """-G~(w) for the frequencies ``sel`` (negated twiddles: the same roundings as G~)."""
            idx = torch.as_tensor(sel, device=kd.device)
            gr = (ncos_t[idx] @ hflat).reshape(-1, c, c)  # noqa: B023 - used within the iteration
            gim = (nsin_t[idx] @ hflat).reshape(-1, c, c)  # noqa: B023
            return torch.complex(gr, gim)

        for s0 in range(0, order.size, chunk):
            if opts.deadline is not None and time.perf_counter() >= opts.deadline:
                raise _OutOfTimeError
            nb = neg_blocks(order[s0:s0 + chunk])  # -G~; the shift is added to its diagonal in place
            if floor is None:
                top = torch.linalg.eigvalsh(nb[:min(4, nb.shape[0])])[:, 0].neg()
                floor = max(float(top.max()), 0.0)
            chunk_sq, chunk_top = _certify_tap_blocks(nb, floor, c, opts.fourier_iters)
            best_sq = max(best_sq, chunk_sq)
            floor = max(floor, chunk_top)  # the largest eigenvalue met so far, not a bound
    val = math.sqrt(best_sq + form_err) * (1 + opts.rel_margin) * (1 + 4 * u)
    op._cache[key] = val
    return val


def _tap_phases(nh: int, nw: int, offs: list[tuple[int, int]]) -> np.ndarray:
    """The twiddle phases 2 pi ((k dp) mod nh / nh + (l dq) mod nw / nw) (frequencies x offsets) of the
    rfft2 grid (k < nh, l <= nw // 2), exact integer reduction first; of the conjugate pairs
    (k, l) ~ (nh - k, l) in the columns l = 0 and l = nw / 2 (equal spectra) one is kept."""
    kk, ll = np.meshgrid(np.arange(nh), np.arange(nw // 2 + 1), indexing="ij")
    kk, ll = kk.reshape(-1), ll.reshape(-1)
    self_conj = (ll == 0) | ((nw % 2 == 0) & (ll == nw // 2))
    keep = ~(self_conj & (kk > nh // 2))
    kk, ll = kk[keep], ll[keep]
    dp = np.array([o[0] for o in offs], dtype=np.int64)
    dq = np.array([o[1] for o in offs], dtype=np.int64)
    num = (np.mod(kk[:, None] * dp[None], nh) * nw + np.mod(ll[:, None] * dq[None], nw) * nh) % (nh * nw)
    return 2.0 * math.pi * num.astype(np.float64) / float(nh * nw)


def _tap_correlations(m: torch.Tensor, offs: list[tuple[int, int]]) -> torch.Tensor:
    """H_D = sum_{b - a = D} m_a^T m_b for every offset D of ``offs`` (taps m (P, Q, r, c)): computed for
    D >= 0 (lexicographic), H_{-D} = H_D^T."""
    p_taps, q_taps, c = m.shape[0], m.shape[1], m.shape[3]
    h = torch.zeros((len(offs), c, c), dtype=DTYPE, device=m.device)
    index = {o: i for i, o in enumerate(offs)}
    for a in range(p_taps * q_taps):
        pa, qa = divmod(a, q_taps)
        for b in range(p_taps * q_taps):
            pb, qb = divmod(b, q_taps)
            if (pb - pa, qb - qa) >= (0, 0):
                h[index[(pb - pa, qb - qa)]] += m[pa, qa].T @ m[pb, qb]
    for (dp_, dq_), i in index.items():
        if (dp_, dq_) < (0, 0):
            h[i] = h[index[(-dp_, -dq_)]].T
    return h


def _certify_tap_blocks(nb: torch.Tensor, floor: float, c: int, fourier_iters: int) -> tuple[float, float]:
    """For a batch ``nb`` of -G~(w) (overwritten): (a certified bound >= lambda_max of every block, the
    largest eigenvalue met). The shift ladder t = max(floor, own eigenvalue) (1 + delta) proved by one
    batched Cholesky factorisation per step with the trace criterion (complex g = 2 gamma_{c+3}), Gram
    iteration for what no step settles (see :func:`_fourier_taps_upper`)."""
    u = EPS / 2.0
    gam = 2.0 * (c + 3) * u / (1.0 - 2.0 * (c + 3) * u)
    n_b = nb.shape[0]
    best_sq = 0.0
    gdiag = -torch.diagonal(nb, dim1=1, dim2=2).real.clone()
    pending = torch.arange(n_b, device=nb.device)
    t_blk = torch.full((n_b,), floor, dtype=DTYPE, device=nb.device)
    t_in = torch.zeros(n_b, dtype=DTYPE, device=nb.device)  # the shift now on nb's diagonal
    for step, delta in enumerate((1e-10, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2, 1e-1)):
        if pending.numel() == 0:
            break
        if step == 1:  # blocks above the floor: their own eigenvalue (LAPACK) as the start
            sub = nb[pending]
            torch.diagonal(sub, dim1=1, dim2=2).sub_(t_in[pending][:, None])
            lam = torch.linalg.eigvalsh(sub)[:, 0].neg().clamp_min(0)
            del sub
            t_blk[pending] = torch.maximum(t_blk[pending], lam)
        t = t_blk[pending] * (1 + delta) + 1e-300
        # A~ = fl(t I - G~): off-diagonal entries exact negations, diagonal fl(t - g_ii)
        torch.diagonal(nb, dim1=1, dim2=2)[pending] = (t[:, None] - gdiag[pending]).to(nb.dtype)
        t_in[pending] = t
        dgp = gdiag[pending]
        tr = (t[:, None] - dgp).abs().sum(dim=1) * (1 + 2 * u)  # >= tr(A~)
        gii = dgp.abs().amax(dim=1)
        every = pending.numel() == n_b
        _, info = torch.linalg.cholesky_ex(nb if every else nb[pending])
        ok = info == 0
        if ok.any():
            bound = (t[ok] + gam / (1.0 - gam) * tr[ok] * (1 + 4 * c * u) + u * (gii[ok] + t[ok]))
            best_sq = max(best_sq, float(bound.max()) * (1 + 4 * u))
        pending = pending[~ok]
    if pending.numel():  # not settled by Cholesky: Gram iteration on K-free blocks of G (PSD)
        gb_rest = nb[pending].neg()
        torch.diagonal(gb_rest, dim1=1, dim2=2).copy_(gdiag[pending].to(nb.dtype))
        b = _gram_iteration_bound(gb_rest, fourier_iters)  # >= ||G~||_2 (exact arithmetic)
        best_sq = max(best_sq, float(b.max()) * (1 + 4 * fourier_iters * 1e-14))
    return best_sq, float(t_blk.max())


def _cholesky_certified_sq(x: torch.Tensor, floor: float) -> tuple[float, torch.Tensor | None]:
    """For a batch (B, m, n), m >= n: a certified t >= max_b ||x_b||_2^2 (and >= ``floor``), proved by
    batched Cholesky factorisations of t I - x_b^H x_b (positive definite iff t > lambda_max), with the
    threshold from a batched power iteration; returns (t, blocks left unproved or None)."""
    g = x.conj().transpose(1, 2) @ x  # (B, n, n) Hermitian
    n = g.shape[-1]
    fro2 = torch.linalg.matrix_norm(x, ord="fro") ** 2
    v = torch.ones((g.shape[0], n, 1), dtype=g.dtype, device=g.device)
    for _ in range(60):
        v = g @ v
        v = v / torch.linalg.vector_norm(v, dim=1, keepdim=True).clamp_min(1e-300)
    lam_lo = (v.conj().transpose(1, 2) @ g @ v).real.reshape(-1).clamp_min(0)
    # rounding allowances: forming g, and the Cholesky backward error
    form = (x.shape[1] + 2) * EPS * fro2 * 1.01
    eye = torch.eye(n, dtype=g.dtype, device=g.device)
    pending = torch.arange(g.shape[0], device=g.device)
    t_best = floor
    for delta in (1e-6, 1e-4, 1e-3, 1e-2, 1e-1):
        if pending.numel() == 0:
            break
        t = torch.maximum(lam_lo[pending] * (1 + delta), torch.full_like(lam_lo[pending], floor))
        t = t + form[pending]
        _, info = torch.linalg.cholesky_ex(t[:, None, None] * eye - g[pending])
        ok = info == 0
        if ok.any():
            diag = torch.diagonal(g[pending][ok], dim1=1, dim2=2).real.cpu().numpy()
            for tb, db, fb in zip(t[ok].tolist(), diag, form[pending][ok].tolist(), strict=True):
                # complex arithmetic: twice the real gamma (the factorisation's inner products)
                t_best = max(t_best, _trace_certified(tb, db, n, fb, g_factor=2.0))
        pending = pending[~ok]
    return t_best, (x[pending] if pending.numel() else None)


def _gram_iteration_bound(x: torch.Tensor, iters: int) -> torch.Tensor:
    """Per-matrix upper bound on ||x_b||_2 for a batch (B, m, n), m >= n: Gram iteration, log-scaled."""
    logb = torch.zeros(x.shape[0], dtype=DTYPE, device=x.device)
    cur = x
    for t in range(iters + 1):
        f = torch.linalg.matrix_norm(cur, ord="fro")
        f = torch.where(f > 0, f, torch.ones_like(f))
        logb = logb + torch.log(f) / (2.0 ** t)
        if t == iters:
            break
        y = cur / f[:, None, None].to(cur.dtype)
        cur = y.conj().transpose(1, 2) @ y
    zero = torch.linalg.matrix_norm(x, ord="fro") == 0
    return torch.where(zero, torch.zeros_like(logb), torch.exp(logb))


# ------------------------------------------------------------------------------------ masked operators


def schur_upper(op: LinOp, r: torch.Tensor | None, d: torch.Tensor) -> float:
    """sqrt(max row abs sum * max column abs sum) of R|A|D (>= ||R A D||_2, always valid)."""
    dd = d.reshape(1, *op.in_shape).abs()
    rr = (torch.ones(op.out_shape, dtype=DTYPE, device=op.device) if r is None
          else r.reshape(op.out_shape).abs())
    rows = (rr * op.abs_forward(dd)[0]).max()
    cols = (dd[0] * op.abs_adjoint(rr.reshape(1, *op.out_shape))[0]).max()
    return math.sqrt(float(rows) * float(cols)) * (1 + 1e-10)


def power_estimate(op: LinOp, r: torch.Tensor | None, d: torch.Tensor, iters: int = 100,
                   seed: int = 0) -> float:
    """Power iteration on (RAD)^T (RAD) from a random non-negative start (the paper's method).
    Returns ||M v|| for the final unit v: a LOWER bound on ||RAD||_2 in exact arithmetic, NOT an upper."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.rand((1, *op.in_shape), generator=gen, dtype=DTYPE).to(op.device) * d.reshape(1, *op.in_shape)
    rr = None if r is None else r.reshape(1, *op.out_shape)
    val = 0.0
    for _ in range(max(1, iters)):
        nv = torch.linalg.vector_norm(v)
        if nv == 0:
            return 0.0
        v = v / nv
        u = op.forward(v)
        if rr is not None:
            u = u * rr
        val = float(torch.linalg.vector_norm(u))
        if rr is not None:
            u = u * rr
        v = op.adjoint(u) * d.reshape(1, *op.in_shape)
    return val


def _dense_quick_upper(w: np.ndarray) -> float:
    """min(||W||_F, sqrt(||W||_1 ||W||_inf)) >= ||W||_2, with a rounding allowance on the sums."""
    a = np.abs(np.asarray(w, dtype=np.float64))
    if a.size == 0:
        return 0.0
    fro = math.sqrt(float(np.sum(a * a)))
    schur = math.sqrt(float(a.sum(axis=0).max()) * float(a.sum(axis=1).max()))
    return min(fro, schur) * (1 + 2 * (a.size + 2) * EPS) * (1 + 1e-12)


def _fourier_cost(op: ConvOp) -> float:
    """Rough seconds of :func:`conv_fourier_upper` (complex Gram blocks, power iteration, Cholesky, per
    frequency), at :data:`FLOPS`."""
    c_out, cg, kh, kw = op.w.shape
    (sh, sw), (dh, dw) = op.stride, op.dilation
    keh2, kew2 = -(-(dh * (kh - 1) + 1) // sh) * sh, -(-(dw * (kw - 1) + 1) // sw) * sw
    nh = -(-max(op.in_shape[1] + 2 * op.padding[0], keh2) // sh)
    nw = -(-max(op.in_shape[2] + 2 * op.padding[1], kew2) // sw)
    og, cg = c_out // op.groups, cg * sh * sw
    c, big = min(og, cg), max(og, cg)
    per_block = 8 * big * c * c + 60 * 8 * c * c + 20 * c ** 3
    # plus ~70 batched torch calls per group (power iteration, factorisations), ~1 ms each when small
    return op.groups * (nh * (nw // 2 + 1) * per_block / FLOPS + 0.1)


def _late_bound(op: LinOp, opts: SpectralOptions) -> SpectralBound | None:
    """A cheaper sound bound when the certified computation of ``op`` would not fit before the deadline
    (None: go on with the certified one; composed operators are decided part by part)."""
    if opts.deadline is None or isinstance(op, ReshapeOp | ComposedOp):
        return None
    left = opts.deadline - time.perf_counter()
    if isinstance(op, DenseOp):
        if op.weight_np.size > opts.dense_max_entries:
            return None  # the certified path is the cheap one already
        m, n = op.weight_np.shape
    elif min(op.n_in, op.n_out) <= opts.cholesky_limit and op.nnz() <= opts.sparse_max_nnz:
        m, n = op.n_out, op.n_in
    elif isinstance(op, ConvOp) and opts.fourier:
        if f"fourier{opts.fourier_iters}" in op._cache or _fourier_cost(op) <= left:
            return None  # (the Fourier bound also checks the clock between frequency chunks)
        m = n = 0
    else:
        return None  # Schur: cheap
    s, k = min(m, n), max(m, n)
    cost = (k * s * s + s ** 3 + 200 * s * s) / FLOPS  # Gram matrix, Cholesky / eigh, Lanczos
    if s > 0 and cost <= left:
        return None
    if isinstance(op, DenseOp):
        return SpectralBound(_dense_quick_upper(op.weight_np), "frobenius/schur" + TIME_LIMIT_TAG, False)
    d = torch.ones(op.in_shape, dtype=DTYPE, device=op.device)
    return SpectralBound(schur_upper(op, None, d), "schur" + TIME_LIMIT_TAG, False)


def global_upper(op: LinOp, opts: SpectralOptions | None = None) -> SpectralBound:
    """Certified ||A||_2 of an (unmasked) operator, cached on the operator (a bound that replaced the
    certified computation because of ``opts.deadline`` is not cached)."""
    opts = opts or SpectralOptions()
    if "global" in op._cache:
        return op._cache["global"]
    late = _late_bound(op, opts)
    if late is not None:
        return late
    res: SpectralBound | None = None
    if isinstance(op, ReshapeOp) or (isinstance(op, ComposedOp) and op.is_reshape):
        res = SpectralBound(1.0, "identity", True, 1.0)
    elif isinstance(op, DenseOp):
        if op.weight_np.size <= opts.dense_max_entries:
            res = matrix_norm_upper(op.weight_np, opts)
    elif min(op.n_in, op.n_out) <= opts.cholesky_limit and op.nnz() <= opts.sparse_max_nnz:
        res = matrix_norm_upper(op.to_matrix(), opts)
    if res is None:
        if isinstance(op, ConvOp) and opts.fourier:
            try:
                res = SpectralBound(conv_fourier_upper(op, opts), "fourier-gram", False)
            except _OutOfTimeError:  # not cached: a later call without the deadline computes the tight bound
                d = torch.ones(op.in_shape, dtype=DTYPE, device=op.device)
                return SpectralBound(schur_upper(op, None, d), "schur" + TIME_LIMIT_TAG, False)
        elif isinstance(op, ConvOp):
            d = torch.ones(op.in_shape, dtype=DTYPE, device=op.device)
            res = SpectralBound(schur_upper(op, None, d), "schur", False)
        elif isinstance(op, ComposedOp) and op.core is not None:
            res = global_upper(op.core, opts)
        elif isinstance(op, ComposedOp):
            parts = [global_upper(p, opts) for p in op.ops if not p.is_reshape]
            late = any(p.method.endswith(TIME_LIMIT_TAG) for p in parts)
            res = SpectralBound(math.prod(p.upper for p in parts),
                                "product" + (TIME_LIMIT_TAG if late else ""), False)
        elif isinstance(op, AvgPoolOp | DenseOp):
            d = torch.ones(op.in_shape, dtype=DTYPE, device=op.device)
            res = SpectralBound(schur_upper(op, None, d), "schur", False)
        else:  # pragma: no cover - every LinOp kind is handled above
            raise TypeError(type(op).__name__)
    if not res.method.endswith(TIME_LIMIT_TAG):
        op._cache["global"] = res
    return res


def _compressed_matrix(op: LinOp, r: torch.Tensor | None, d: torch.Tensor, rows: np.ndarray,
                       cols: np.ndarray) -> Any:
    m = op.to_matrix()
    rv = None if r is None else r.reshape(-1).cpu().numpy()[rows]
    dv = d.reshape(-1).cpu().numpy()[cols]
    if hasattr(m, "tocsr"):
        import scipy.sparse as sp

        m = m.tocsr()[rows][:, cols]
        if rv is not None:
            m = sp.diags(rv) @ m
        if not np.all(dv == 1):
            m = m @ sp.diags(dv)
        return m.tocsr()
    m = np.asarray(m)[np.ix_(rows, cols)]
    if rv is not None:
        m = m * rv[:, None]
    if not np.all(dv == 1):
        m = m * dv[None, :]
    return m


def masked_norm_upper(op: LinOp, r: torch.Tensor | None, d: torch.Tensor,
                      opts: SpectralOptions | None = None) -> SpectralBound:
    """Certified upper bound on ||R A D||_2 (r: output-shaped weights or None = 1; d: input-shaped mask)."""
    opts = opts or SpectralOptions()
    rf = None if r is None else r.reshape(-1)
    rows = np.arange(op.n_out) if rf is None else np.flatnonzero(rf.cpu().numpy())
    cols = np.flatnonzero(d.reshape(-1).cpu().numpy())
    if rows.size == 0 or cols.size == 0:
        return SpectralBound(0.0, "zero", True, 0.0)
    s = min(rows.size, cols.size)
    is_dense = isinstance(op, DenseOp) or (isinstance(op, ComposedOp) and isinstance(op.core, DenseOp))
    fits = ((rows.size * cols.size <= opts.dense_max_entries) if is_dense
            else (op.nnz() <= opts.sparse_max_nnz))
    if s <= opts.cholesky_limit and fits:
        m = _compressed_matrix(op, r, d, rows, cols)
        res = matrix_norm_upper(m, opts)
        if res is not None:
            return res
    est = power_estimate(op, r, d, opts.power_iters, opts.seed) if opts.power_iters > 0 else None
    sch = schur_upper(op, r, d)
    rmax = 1.0 if rf is None else float(rf.abs().max())
    glob = global_upper(op, opts)
    cand = rmax * glob.upper * (1 + 1e-15)
    if cand <= sch:
        return SpectralBound(cand, f"maxr*{glob.method}", False, est)
    return SpectralBound(sch, "schur", False, est)
