"""LipSDP without an SDP solver: rho as a closed-form function of the multipliers, its ECLipsE-Fast
closed-form multipliers, and a first-order descent on them in torch (CPU, or CUDA when present).

The mathematics (formulations.md 3; docs/methods.md#lipsdp-first-order). For multipliers lam with the
hidden block R(lam) of M(0, lam) negative definite, M(rho, lam) <= 0 holds exactly when

    rho >= rho*(lam) = lambda_max(P + Q (-R)^{-1} Q^T)        (Schur complement of the x_0 block),

and rho*(lam) is convex on the convex set {lam : R(lam) < 0} (the projection of the LMI's feasible set,
jointly convex in (rho, lam)): minimising it over lam is LipSDP itself, with no cone solver. On a block
tri-diagonal chain (every global question) the Schur complement is a backward recursion over the layers,
T_K = 2 D_K - O^T O, T_{k-1} = 2 D_{k-1} - W_k^T D_k T_k^{-1} D_k W_k, rho* = lambda_max(W_1^T D_1
T_1^{-1} D_1 W_1), so one evaluation costs sum_k n_k^3 and depth costs linearly; other chains (local
questions with stable-on neurons) use the dense Schur complement.

ECLipsE-Fast (Xu & Sivaranjani, NeurIPS 2024) is the forward recursion with one closed-form multiplier per
layer: S_0 = I, d_k = 1 / lambda_max(W_k S_{k-1}^{-1} W_k^T), S_k = 2 d_k I - d_k^2 W_k S_{k-1}^{-1}
W_k^T, rho = lambda_max(O S_K^{-1} O^T), and lam_k = rho d_k: a feasible point of LipSDP-Neuron (and of
Layer), hence the descent's start. Nothing here is a bound: the caller certifies (rho, lam) in float64
(:func:`lipopt.sdp.certification.certify`).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.analytic._threads import limit_threads
from lipopt.sdp.chain import Chain
from lipopt.sdp.solve import _blocks, reads_previous_block_only


@dataclass
class Tridiagonal:
    """A block tri-diagonal chain as weights: the unstable neurons of block k read block k-1 through
    ``ws[k-1]`` (n_k x n_{k-1}, k = 1..K), the output reads block K through ``out``."""

    ws: list[np.ndarray]
    out: np.ndarray

    @property
    def widths(self) -> list[int]:
        return [int(w.shape[0]) for w in self.ws]


def tridiagonal(chain: Chain) -> Tridiagonal | None:
    """The weights of a block tri-diagonal chain (None when it is not one)."""
    if not reads_previous_block_only(chain):
        return None
    blocks = _blocks(chain)
    return Tridiagonal([la.V[:, blocks[k]] for k, la in enumerate(chain.layers)], chain.out[:, blocks[-1]])


def _lam_max_sym(a: np.ndarray) -> float:
    return float(np.linalg.eigvalsh(0.5 * (a + a.T))[-1]) if a.size else 0.0


def eclipse_fast(tri: Tridiagonal) -> tuple[float, np.ndarray] | None:
    """ECLipsE-Fast's closed form (module docstring): (rho, lam per neuron), or None when a step meets a
    singular matrix (a layer whose weights are all zero)."""
    import scipy.linalg as sla

    if not tri.ws:
        return max(_lam_max_sym(tri.out.T @ tri.out), 0.0), np.zeros(0)
    s = np.eye(tri.ws[0].shape[1])
    ds: list[float] = []
    for w in tri.ws:
        try:
            c = np.linalg.cholesky(s)
        except np.linalg.LinAlgError:
            return None
        y = sla.solve_triangular(c, w.T, lower=True)  # W S^{-1} W^T = y^T y
        k = y.T @ y
        top = _lam_max_sym(k)
        if not top > 0 or not math.isfinite(top):
            return None
        d = 1.0 / top
        s = 2.0 * d * np.eye(w.shape[0]) - d * d * k
        ds.append(d)
    try:
        c = np.linalg.cholesky(s)
    except np.linalg.LinAlgError:
        return None
    y = sla.solve_triangular(c, tri.out.T, lower=True)
    rho = _lam_max_sym(y.T @ y)
    lam = np.concatenate([np.full(n, rho * d) for n, d in zip(tri.widths, ds, strict=True)])
    return rho, lam


# ------------------------------------------------------------------------------------ rho*(lam) in torch


def _rho_tridiagonal(torch: Any, ws: list[Any], out: Any, lams: list[Any], spectrum: bool = False) -> Any:
    """rho*(lam) by the backward recursion (None: a T_k is not positive definite); ``spectrum``: every
    eigenvalue of the final matrix, ascending (rho* is the last)."""
    t = 2.0 * torch.diag(lams[-1]) - out.T @ out
    for k in range(len(ws) - 1, -1, -1):
        c, info = torch.linalg.cholesky_ex(t)
        if int(info) != 0:
            return None
        y = torch.linalg.solve_triangular(c, lams[k][:, None] * ws[k], upper=False)
        if k == 0:
            g = y @ y.T if y.shape[0] <= y.shape[1] else y.T @ y
            ev = torch.linalg.eigvalsh(0.5 * (g + g.T))
            return ev if spectrum else ev[-1]
        t = 2.0 * torch.diag(lams[k - 1]) - y.T @ y
    raise AssertionError("unreachable")


@dataclass
class Descent:
    """The outcome of :func:`descend`: the best multipliers found (per neuron) and their rho*."""

    rho: float
    lam: np.ndarray
    iterations: int
    evaluations: int
    device: str
    history: list[tuple[float, float]] = field(default_factory=list)  # (seconds, best rho)
    stop: str = "converged"


@dataclass(frozen=True)
class DescentOptions:
    #: "lbfgs": limited-memory BFGS with a weak Wolfe line search on the exact log rho* (nonsmooth BFGS,
    #: Lewis & Overton 2013); "adam": Adam on the smoothed top eigenvalue
    optimizer: str = "lbfgs"
    iterations: int = 3000  # Adam steps, or L-BFGS iterations (each one line search), at most
    lr: float = 0.05  # Adam's step size on log lam; L-BFGS's largest first step per coordinate
    #: stop when the best rho improved by less than this (relative) over the last ``patience`` steps
    tol: float = 1e-7
    patience: int = 100
    #: Adam: on a stall the step size is divided by 4, down to lr * min_lr_ratio; then the descent stops
    min_lr_ratio: float = 1.0 / 64
    #: Adam: relative temperature of the smoothed top eigenvalue (divided by 4 with the step size; 0: none)
    smoothing: float = 1e-2
    memory: int = 20  # L-BFGS: (s, y) pairs kept
    smooth_patience_divisor: int = 5  # L-BFGS: the smoothed stages' patience is patience / this
    #: on the CPU, one torch thread when no block is wider than this
    single_thread_width: int = 512
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda"

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown descent optimizer {self.optimizer!r}: supported are "
                             f"{', '.join(OPTIMIZERS)}")


def pick_device(torch: Any, device: str) -> Any:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("sdp_device 'cuda' asked for, but torch sees no CUDA device")
    return torch.device(device)


def descend(chain: Chain, lam0: np.ndarray, form: str = "neuron", opts: DescentOptions | None = None,
            time_left: Callable[[], float] | None = None,
            progress: Callable[[float], None] | None = None) -> Descent:
    """Minimise rho*(lam) over lam > 0 on a block tri-diagonal chain, from the feasible ``lam0``, over log lam
    (one log per neuron, or per layer for the Layer form), by ``opts.optimizer`` (:data:`OPTIMIZERS`). A
    point that leaves the domain (a Cholesky fails) counts as +inf: it is never accepted; the best point met
    is returned. ``time_left``: seconds left (stops at <= 0); ``progress``: called with the best rho so far
    at every step. Both optimisers are the few lines below: ``torch.optim`` imports torch._dynamo, seconds
    on a cold start for a loop that takes milliseconds."""
    import torch

    opts = opts or DescentOptions()
    tri = tridiagonal(chain)
    if tri is None:
        raise ValueError("the first-order LipSDP needs a block tri-diagonal chain (a global question, or a "
                         "local one without stable-on neurons)")
    lam0 = np.asarray(lam0, dtype=np.float64)
    if lam0.size != chain.n_hidden or np.any(~(lam0 > 0)):
        raise ValueError("descend needs a positive multiplier per unstable neuron")
    dev, f64 = pick_device(torch, opts.device), torch.float64
    widths = chain.widths
    bounds = [int(b) for b in np.r_[0, np.cumsum(widths)]]
    if form == "layer":
        theta0 = np.array([float(np.mean(np.log(lam0[a:b]))) for a, b in itertools.pairwise(bounds)])
    else:
        theta0 = np.log(lam0)
    theta = torch.tensor(theta0, dtype=f64, device=dev, requires_grad=True)
    rep = torch.tensor(np.repeat(np.arange(len(widths)), widths), device=dev)
    ws = [torch.tensor(w, dtype=f64, device=dev) for w in tri.ws]
    out = torch.tensor(tri.out, dtype=f64, device=dev)

    def rho_of(th: Any) -> Any:
        lam = torch.exp(th[rep] if form == "layer" else th)
        return _rho_tridiagonal(torch, ws, out, [lam[a:b] for a, b in itertools.pairwise(bounds)],
                                spectrum=True)

    # the steps are small dense kernels (blocks of a layer's width): extra CPU threads only spin
    one_thread = dev.type == "cpu" and max([*widths, tri.out.shape[0]]) <= opts.single_thread_width
    with limit_threads(1 if one_thread else None):
        return OPTIMIZERS[opts.optimizer](torch, rho_of, theta, opts, time_left,
                                          lambda th: torch.exp(th[rep] if form == "layer" else th), str(dev),
                                          progress)


def _feasible_start(torch: Any, rho_of: Callable[[Any], Any], theta: Any) -> Any:
    """The spectrum at ``theta``, moved strictly inside the domain first when needed (in place)."""
    with torch.no_grad():
        e0 = rho_of(theta)
        # a tight start (ECLipsE-Fast's rho*) leaves the hidden block nearly singular in a deep net, where
        # a Cholesky may fail in rounding: multipliers scaled by c > 1 move it strictly inside (R(c lam) =
        # R(lam) + (c - 1) R_lam, R_lam negative definite at a feasible point)
        for bump in (1e-6, 1e-4, 1e-2):
            if e0 is not None:
                break
            theta += math.log1p(bump)
            e0 = rho_of(theta)
    if e0 is None:
        raise ValueError("the starting multipliers are not in the domain (the hidden block of the LMI is "
                         "not negative definite)")
    return e0


def _adam(torch: Any, rho_of: Callable[[Any], Any], theta: Any, opts: DescentOptions,
          time_left: Callable[[], float] | None, lam_of: Callable[[Any], Any], device: str,
          progress: Callable[[float], None] | None = None) -> Descent:
    """The descent loop of :func:`descend` (Adam with undo-and-halve on leaving the domain, step-size
    reduction on stalls, the smoothed top eigenvalue)."""
    t0 = time.perf_counter()
    e0 = _feasible_start(torch, rho_of, theta)
    best_rho, best_theta = float(e0[-1]), theta.detach().clone()
    history = [(0.0, best_rho)]
    m1, m2 = torch.zeros_like(theta), torch.zeros_like(theta)
    b1, b2, lr, evals, it, stop, steps = 0.9, 0.999, opts.lr, 1, 0, "iterations", 0
    tau = opts.smoothing
    last_gain_at, ref = 0, best_rho
    for it in range(1, opts.iterations + 1):
        if time_left is not None and time_left() <= 0:
            stop = "time limit"
            break
        if progress is not None:
            progress(best_rho)
        ev = rho_of(theta)
        evals += 1
        r = None if ev is None else ev[-1]
        if r is None or not bool(torch.isfinite(r)):
            with torch.no_grad():
                theta.copy_(best_theta)
            lr, steps = lr * 0.5, 0
            m1.zero_()
            m2.zero_()
            if lr < opts.lr * 1e-6:
                stop = "step size"
                break
            continue
        val = float(r.detach())
        if val < best_rho:
            best_rho, best_theta = val, theta.detach().clone()
            history.append((time.perf_counter() - t0, best_rho))
        if best_rho < ref * (1 - opts.tol):
            ref, last_gain_at = best_rho, it
        elif it - last_gain_at >= opts.patience:
            if lr <= opts.lr * opts.min_lr_ratio:
                stop = "converged"
                break
            lr, tau, last_gain_at = lr * 0.25, tau * 0.25, it  # a stall: smaller steps from the best point
            with torch.no_grad():
                theta.copy_(best_theta)
            continue
        # the smoothed top eigenvalue r + tau r log sum exp((ev - r) / (tau r)) >= r: lambda_max is not
        # differentiable where it is multiple, as it tends to be at the optimum
        soft = r + tau * r.detach() * torch.logsumexp((ev - r) / (tau * r.detach()), dim=0) if tau > 0 else r
        (grad,) = torch.autograd.grad(torch.log(soft), theta)
        steps += 1
        with torch.no_grad():  # Adam
            m1.mul_(b1).add_(grad, alpha=1 - b1)
            m2.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            step = lr * (m1 / (1 - b1 ** steps)) / ((m2 / (1 - b2 ** steps)).sqrt() + 1e-12)
            theta.sub_(step)
    lam = lam_of(best_theta)
    return Descent(best_rho, lam.cpu().numpy().astype(np.float64), it, evals, device, history, stop)


def _lbfgs(torch: Any, rho_of: Callable[[Any], Any], theta: Any, opts: DescentOptions,
           time_left: Callable[[], float] | None, lam_of: Callable[[Any], Any], device: str,
           progress: Callable[[float], None] | None = None) -> Descent:
    """Limited-memory BFGS on log of the smoothed top eigenvalue T log sum_i exp(ev_i / T) >= rho*, with a
    continuation T = smoothing * rho (at the stage's start) divided by 10 per stage, down to the exact
    top eigenvalue (T = 0): on each stage the weak Wolfe bisection line search of Lewis & Overton (Math.
    Program. 2013), which lets BFGS run on the nonsmooth last stage; the smoothed stages carry the
    iterates across the kinks where the exact function's BFGS stalls. Points outside the domain are +inf
    (the line search shrinks the step). A stage ends on ``patience`` iterations without a relative gain
    of ``tol`` or when its line search finds no decrease; the best exact rho* met is returned."""
    t0 = time.perf_counter()
    x = theta.detach().clone()
    e0 = _feasible_start(torch, rho_of, x)
    best = [float(e0[-1]), x.clone()]
    history, evals = [(0.0, best[0])], [0]
    temps = [opts.smoothing / 10 ** k for k in range(4)] if opts.smoothing > 0 else []
    it, stop = 0, "converged"
    for temp in [*temps, 0.0]:
        t_abs = temp * best[0]

        def f_and_g(z: Any, t_abs: float = t_abs) -> tuple[float, Any]:
            evals[0] += 1
            z = z.detach().clone().requires_grad_(True)
            ev = rho_of(z)
            top = None if ev is None else float(ev[-1].detach())
            if top is None or not (top > 0 and math.isfinite(top)):
                return math.inf, None
            if top < best[0]:
                best[0], best[1] = top, z.detach().clone()
                history.append((time.perf_counter() - t0, top))
            soft = t_abs * torch.logsumexp(ev / t_abs, dim=0) if t_abs > 0 else ev[-1]
            val = torch.log(soft)
            (g,) = torch.autograd.grad(val, z)
            return float(val.detach()), g

        x = best[1].clone()
        # a smoothed stage is smooth, where BFGS converges fast and a stall means it has: a short patience
        patience = opts.patience if t_abs == 0 else max(1, opts.patience // opts.smooth_patience_divisor)
        it, stop = _lbfgs_stage(f_and_g, x, opts, it, time_left, progress, lambda: best[0], patience)
        if stop in ("time limit", "iterations"):
            break
    return Descent(best[0], lam_of(best[1]).cpu().numpy().astype(np.float64), it, evals[0], device,
                   _thin(history), stop)


def _lbfgs_stage(f_and_g: Callable[[Any], tuple[float, Any]], x: Any, opts: DescentOptions, it: int,
                 time_left: Callable[[], float] | None, progress: Callable[[float], None] | None,
                 best: Callable[[], float], patience: int) -> tuple[int, str]:
    """One stage of :func:`_lbfgs` from ``x``, counting iterations on from ``it``: (iterations, stop)."""
    fx, gx = f_and_g(x)
    pairs: list[tuple[Any, Any]] = []
    ref, last_gain_at = fx, it
    while it < opts.iterations:
        if time_left is not None and time_left() <= 0:
            return it, "time limit"
        it += 1
        if progress is not None:
            progress(best())
        p = _two_loop(gx, pairs)
        if not pairs or float(p @ gx) >= 0:  # no curvature yet (or lost): a steepest step of at most lr
            pairs, p = [], -gx * min(1.0, opts.lr / max(float(gx.abs().max()), 1e-300))
        step = _weak_wolfe(f_and_g, x, fx, gx, p)
        if step is None:
            if not pairs:
                return it, "converged"  # no decrease along the steepest direction
            pairs = []
            continue
        a, fn, gn = step
        s_k, y_k = a * p, gn - gx
        if float(y_k @ s_k) > 1e-16 * float(s_k @ s_k):
            pairs = [*pairs[-(opts.memory - 1):], (s_k, y_k)] if opts.memory > 1 else [(s_k, y_k)]
        x, fx, gx = x + s_k, fn, gn
        if fx < ref + math.log1p(-opts.tol):
            ref, last_gain_at = fx, it
        elif it - last_gain_at >= patience:
            return it, "converged"
    return it, "iterations"


def _two_loop(g: Any, pairs: list[tuple[Any, Any]]) -> Any:
    """The L-BFGS direction -H g from the stored (s, y) pairs (Nocedal & Wright, Algorithm 7.4)."""
    q, alphas = g.clone(), []
    for s_k, y_k in reversed(pairs):
        r = 1.0 / float(y_k @ s_k)
        a = r * float(s_k @ q)
        alphas.append((a, r))
        q -= a * y_k
    if pairs:
        s_k, y_k = pairs[-1]
        q *= float(s_k @ y_k) / float(y_k @ y_k)
    for (s_k, y_k), (a, r) in zip(pairs, reversed(alphas), strict=True):
        q += (a - r * float(y_k @ q)) * s_k
    return -q


def _weak_wolfe(f_and_g: Callable[[Any], tuple[float, Any]], x: Any, f0: float, g0: Any, p: Any,
                c1: float = 1e-4, c2: float = 0.9, tries: int = 20) -> tuple[float, float, Any] | None:
    """A step a along p with sufficient decrease and the weak curvature condition, by doubling and
    bisection; if only the decrease holds after ``tries``, the largest such step; None when none."""
    a, lo, hi, d0, kept = 1.0, 0.0, math.inf, float(g0 @ p), None
    for _ in range(tries):
        fa, ga = f_and_g(x + a * p)
        if not fa <= f0 + c1 * a * d0:
            hi = a
        elif float(ga @ p) < c2 * d0:
            lo, kept = a, (a, fa, ga)
        else:
            return a, fa, ga
        a = 2.0 * lo if hi == math.inf else 0.5 * (lo + hi)
    return kept


def _thin(history: list[tuple[float, float]], keep: int = 400) -> list[tuple[float, float]]:
    """At most ``keep`` rows of a descent history, the first and the last kept."""
    if len(history) <= keep:
        return history
    idx = np.unique(np.linspace(0, len(history) - 1, keep).round().astype(int))
    return [history[i] for i in idx]


#: the descent's optimisers, by name (DescentOptions.optimizer)
OPTIMIZERS: dict[str, Callable[..., Descent]] = {"lbfgs": _lbfgs, "adam": _adam}
