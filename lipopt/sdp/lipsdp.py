"""LipSDP-Neuron / -Layer (and local slope intervals): build the LMI, solve it, certify it in float64.

The mathematics is formulations.md section 3. For x_k = relu(W_k x_{k-1}) (k < L) and the output
``last @ x_{L-1}`` (``last`` = W_L, or c^T W_L for a scalar output c^T f), stack xi = (x_0, ..., x_{L-1}).
Neuron i of hidden layer k has a slope interval [a_i, b_i] (global: [0, 1]; local: [0, 0] stable off,
[1, 1] stable on, [0, 1] unstable); the incremental quadratic constraint with multiplier lam_i >= 0 is
2 lam_i (dx_i - a_i dz_i)(b_i dz_i - dx_i) >= 0. The LMI (blocks of xi):

* (k-1, k-1): -2 W_k^T diag(a b lam_k) W_k;   (k-1, k) and its transpose: W_k^T diag((a + b) lam_k);
* (k, k): -2 diag(lam_k);   (0, 0): -rho I;   (L-1, L-1): + last^T last;

M(rho, lam) <= 0 certifies |last (x_{L-1} - y_{L-1})| <= sqrt(rho) |x_0 - y_0| for every pair of
trajectories whose neurons have slopes in their intervals, hence L(f) <= sqrt(rho). Neuron form: one lam
per neuron; Layer form: one per hidden layer. The Network form (pairwise couplings) is UNSOUND for ReLU
(formulations.md 3.1, net T8): it is here only as :func:`network_form_estimate`, never as a bound.

Scaling: every weight matrix is multiplied by a power of two (exact in float64) so that its spectral norm
is about 1; the bound of the scaled chain times 2**(-sum of exponents) bounds the original network.
Input reduction for the solve: when n_0 exceeds the rows of the first matrix W, W is replaced by
U Sigma of its thin SVD (an exact congruence, x_0 directions in ker W only meet -rho I); the
certification always uses the full, unreduced LMI.

Certification (:func:`certify`): the LMI is rebuilt in float64 at the solver's multipliers (clipped to
>= 0) and rho; it certifies when the largest eigenvalue (numpy.linalg.eigvalsh) is <= -margin, the margin
covering the rounding of forming M and of the eigensolver (2 (n + k + 4) eps ||M_abs||_F, M_abs the same
sums with absolute values). Otherwise rho is repaired with the multipliers fixed: the smallest rho for
them is rho_c = lambda_max(P + X^T X), X = L^{-1} Q^T, -R = L L^T (Schur complement of the x_0 block:
M(0) = [[P, Q], [Q^T, R]], M(rho) = M(0) - rho E); rho_c + a growing bump is eigen-checked until it
certifies. The same closed form also tightens a solver rho that certified (the smaller certified value is
reported). If R is not negative definite, no rho certifies these multipliers: no bound.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.errors import NotApplicableError
from lipopt.network.network import AffineStage, MaxPoolStage, Network, ReLUStage
from lipopt.options import MethodOptions
from lipopt.spec import Ball, Box, Global, Norm, Question

FORMS = ("neuron", "layer")
EPS = float(np.finfo(np.float64).eps)
#: relative rounding allowance on sqrt(rho) times the power-of-two scale
VALUE_SAFETY = 1.0 + 8 * EPS


@dataclass(frozen=True)
class LipSDPOptions(MethodOptions):
    """Options of the LipSDP methods: ``RunOptions.extra`` flat keys, or a dict under the method's name
    (``{"lipsdp-neuron": {"sdp_max_size": 600}}``). Unknown names are refused."""

    #: largest LMI (after the input reduction) sent to the solver; a bigger one is not applicable
    sdp_max_size: int = 400
    #: largest full LMI the float64 eigen-check accepts
    sdp_max_check_size: int = 6000
    sdp_normalise: bool = True  # power-of-two scaling of every weight matrix
    sdp_reduce_input: bool = True  # thin-SVD reduction of the x_0 block for the solve
    sdp_tighten: bool = True  # closed-form smallest rho at the solver's multipliers (eigen-checked)
    sdp_repair_steps: int = 60  # growing bumps tried above the closed-form rho
    #: neuron bounds of lipsdp-local (a ``lipopt.bounds.compute_bounds`` method)
    sdp_local_bounds: str = "crown"


# ------------------------------------------------------------------------------------------- the chain


@dataclass
class Chain:
    """The network as LipSDP sees it (see the module docstring); ``lam`` vectors are per neuron, layer by
    layer. L(f) <= ``scale`` * sqrt(rho) for a certified rho."""

    weights: list[np.ndarray]  # W_1 .. W_{L-1}, (n_k, n_{k-1})
    last: np.ndarray  # (m, n_{L-1})
    alpha: list[np.ndarray]
    beta: list[np.ndarray]
    log2_scale: int = 0

    @property
    def n0(self) -> int:
        return int((self.weights[0] if self.weights else self.last).shape[1])

    @property
    def widths(self) -> list[int]:
        return [int(w.shape[0]) for w in self.weights]

    @property
    def n_hidden(self) -> int:
        return int(sum(self.widths))

    @property
    def size(self) -> int:
        return self.n0 + self.n_hidden

    @property
    def scale(self) -> float:
        return math.ldexp(1.0, self.log2_scale)

    def value(self, rho: float) -> float:
        """The Lipschitz bound of a certified rho."""
        return self.scale * math.sqrt(max(float(rho), 0.0)) * VALUE_SAFETY

    def reduced(self) -> Chain:
        """The chain with the x_0 block reduced by the thin SVD of the first matrix (for the solve only)."""
        first = self.weights[0] if self.weights else self.last
        if first.shape[1] <= first.shape[0]:
            return self
        u, s, _ = np.linalg.svd(first, full_matrices=False)
        red = u * s
        if self.weights:
            return Chain([red, *self.weights[1:]], self.last, self.alpha, self.beta, self.log2_scale)
        return Chain([], red, self.alpha, self.beta, self.log2_scale)


def _affine_chain(network: Network) -> list[AffineStage]:
    """The affine stages of an Affine (ReLU Affine)* network (consecutive ReLUs merged: relu o relu)."""
    stages = network.lower()
    affs: list[AffineStage] = []
    prev = None
    for s in stages:
        if isinstance(s, MaxPoolStage):
            raise NotApplicableError(
                "LipSDP does not handle max-pooling (not a scalar slope-restricted activation); use "
                "'naive' (window-count pooling constant) or an exact method for this network")
        if isinstance(s, AffineStage):
            if isinstance(prev, AffineStage):
                raise NotApplicableError("LipSDP needs ReLU between consecutive affine stages")
            affs.append(s)
        elif not isinstance(s, ReLUStage):
            raise NotApplicableError(f"LipSDP does not handle the stage {type(s).__name__}")
        prev = s
    return affs


def refusal(network: Network, question: Question, opts: LipSDPOptions | None = None) -> str | None:
    """Why LipSDP cannot answer ``question`` on ``network`` (None: it can). The value is a global or
    local l2 -> l2 (or l2 -> |c^T f|) bound."""
    opts = opts or LipSDPOptions()
    if question.input_norm is not Norm.L2:
        return (f"LipSDP bounds the l2 constant: the input norm must be l2 (asked: "
                f"{question.input_norm.label}); use naive, milp or miqcqp for other norms")
    if not question.scalar_output and question.output_norm is not Norm.L2:
        return (f"LipSDP bounds the l2 output norm or a scalar output c^T f (asked: all outputs in "
                f"{question.output_norm.label})")
    if network.has_maxpool:
        return ("LipSDP does not handle max-pooling (not a scalar slope-restricted activation); use "
                "'naive' (window-count pooling constant) or an exact method for this network")
    try:
        affs = _affine_chain(network)
    except NotApplicableError as exc:
        return str(exc)
    shapes = [s.shape for s in affs]
    n0 = shapes[0][1]
    hidden = sum(sh[0] for sh in shapes[:-1])
    first_rows = shapes[0][0]
    solve_size = min(n0, first_rows) + hidden if opts.sdp_reduce_input else n0 + hidden
    if solve_size > opts.sdp_max_size:
        return (f"the LipSDP LMI has size {solve_size} (input block reduced to {min(n0, first_rows)}, "
                f"{hidden} hidden neurons), above the dense limit {opts.sdp_max_size} "
                "(option sdp_max_size)")
    if n0 + hidden > opts.sdp_max_check_size:
        return (f"the full LipSDP LMI has size {n0 + hidden}, above the float64 eigen-check limit "
                f"{opts.sdp_max_check_size} (option sdp_max_check_size)")
    return None


def _pow2_exponent(w: np.ndarray) -> int:
    """e with ||2^e W||_2 about 1 (0 for a zero matrix); 2^e W is exact in float64 (checked)."""
    if w.size == 0:
        return 0
    nrm = float(np.linalg.norm(w, 2)) if w.size <= 4_000_000 else float(np.linalg.norm(w))
    if not math.isfinite(nrm) or nrm == 0.0:
        return 0
    e = -round(math.log2(nrm))
    if not np.array_equal(np.ldexp(np.ldexp(w, e), -e), w):
        return 0  # under/overflow somewhere: keep this matrix unscaled
    return e


def build_chain(network: Network, c: np.ndarray | None = None,
                slopes: list[tuple[np.ndarray, np.ndarray]] | None = None, normalise: bool = True) -> Chain:
    """The LipSDP chain of ``network`` (biases play no role; local information enters through
    ``slopes``: one (alpha, beta) pair of arrays per hidden layer)."""
    affs = _affine_chain(network)
    mats = [np.asarray(s.dense(), dtype=np.float64) for s in affs]
    last = mats[-1]
    if c is not None:
        last = np.asarray(c, dtype=np.float64).reshape(1, -1) @ last
    weights = mats[:-1]
    if slopes is None:
        slopes = [(np.zeros(w.shape[0]), np.ones(w.shape[0])) for w in weights]
    if len(slopes) != len(weights) or any(a.shape != (w.shape[0],) or b.shape != (w.shape[0],)
                                          for (a, b), w in zip(slopes, weights, strict=True)):
        raise ValueError("one (alpha, beta) pair per hidden layer, of the layer's width")
    alpha = [np.asarray(a, dtype=np.float64) for a, _ in slopes]
    beta = [np.asarray(b, dtype=np.float64) for _, b in slopes]
    if any(np.any(a < 0) or np.any(b > 1) or np.any(a > b) for a, b in zip(alpha, beta, strict=True)):
        raise ValueError("ReLU slope intervals must satisfy 0 <= alpha <= beta <= 1")
    log2 = 0
    if normalise:
        scaled = []
        for w in [*weights, last]:
            e = _pow2_exponent(w)
            scaled.append(np.ldexp(w, e))
            log2 -= e
        weights, last = scaled[:-1], scaled[-1]
    return Chain(weights, last, alpha, beta, log2)


def slope_intervals(network: Network, lo: np.ndarray, hi: np.ndarray, method: str = "crown"
                    ) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, int]]:
    """Per-hidden-layer ReLU slope intervals on the box [lo, hi] from sound neuron bounds: stable off
    [0, 0], stable on [1, 1], unstable [0, 1]. Also the counts."""
    from lipopt.bounds import compute_bounds

    fb = compute_bounds(network, lo, hi, method=method)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    counts = {"stable_on": 0, "stable_off": 0, "unstable": 0}
    prev_relu = False
    for i in fb.relu_stage_indices():
        if prev_relu and i - 1 in fb.relu_stage_indices():
            continue  # a merged relu o relu: the first one's pattern holds
        active, inactive, amb = fb.relu_masks(i)
        a = np.where(active, 1.0, 0.0)
        b = np.where(inactive, 0.0, 1.0)
        out.append((a, b))
        counts["stable_on"] += int(active.sum())
        counts["stable_off"] += int(inactive.sum())
        counts["unstable"] += int(amb.sum())
        prev_relu = True
    return out, counts


def domain_box(question: Question, n: int) -> tuple[np.ndarray, np.ndarray]:
    """A box containing the question's domain (a ball of any norm lies in centre +- radius)."""
    dom = question.domain
    if isinstance(dom, Box):
        return (np.broadcast_to(dom.lo, (n,)).astype(np.float64),
                np.broadcast_to(dom.hi, (n,)).astype(np.float64))
    if isinstance(dom, Ball):
        ctr = np.asarray(dom.center, dtype=np.float64).reshape(-1)
        return ctr - float(dom.radius), ctr + float(dom.radius)
    if isinstance(dom, Global):
        return np.full(n, -np.inf), np.full(n, np.inf)
    raise NotApplicableError(f"no box for the domain {dom.describe()}")


# ------------------------------------------------------------------------------ the LMI in float64


def _layout(chain: Chain) -> list[slice]:
    """Index ranges of the blocks x_0, x_1, ..., x_{L-1} of xi."""
    sls, off = [slice(0, chain.n0)], chain.n0
    for n in chain.widths:
        sls.append(slice(off, off + n))
        off += n
    return sls


def lmi_matrix(chain: Chain, rho: float, lam: np.ndarray, absolute: bool = False) -> np.ndarray:
    """M(rho, lam) in float64 (``absolute``: the same sums of absolute values, for the rounding margin)."""
    lam = np.asarray(lam, dtype=np.float64).reshape(-1)
    if lam.size != chain.n_hidden:
        raise ValueError(f"{lam.size} multipliers for {chain.n_hidden} hidden neurons")
    ab = (lambda v: np.abs(v)) if absolute else (lambda v: v)
    sgn = 1.0 if absolute else -1.0
    sls = _layout(chain)
    n = chain.size
    m = np.zeros((n, n))
    m[sls[0], sls[0]] += (abs(rho) if absolute else -rho) * np.eye(chain.n0)
    off = 0
    for k, w in enumerate(chain.weights, start=1):
        nk = w.shape[0]
        lk = lam[off:off + nk]
        off += nk
        a, b = chain.alpha[k - 1], chain.beta[k - 1]
        prev, cur = sls[k - 1], sls[k]
        wa = ab(w)
        abl = a * b * lk
        if np.any(abl != 0):
            m[prev, prev] += sgn * 2.0 * (wa.T * ab(abl)) @ wa
        off_blk = wa.T * ab((a + b) * lk)
        m[prev, cur] += off_blk
        m[cur, prev] += off_blk.T
        m[cur, cur] += np.diag(sgn * 2.0 * ab(lk))
    la = ab(chain.last)
    m[sls[-1], sls[-1]] += la.T @ la
    return m


@dataclass
class EigenCheck:
    lam_max: float
    margin: float
    passed: bool
    size: int


def eigen_check(chain: Chain, rho: float, lam: np.ndarray) -> EigenCheck:
    """Largest eigenvalue of the float64 LMI against the rounding margin (exactly zero rows and columns,
    decoupled coordinates, are dropped: they add a zero eigenvalue whatever rho)."""
    m = lmi_matrix(chain, rho, lam)
    mabs = lmi_matrix(chain, rho, lam, absolute=True)
    keep = np.flatnonzero(np.any(mabs != 0, axis=1))
    kmax = max([chain.n0, *chain.widths, int(chain.last.shape[0])])
    margin = 2.0 * (chain.size + kmax + 4) * EPS * float(np.linalg.norm(mabs))
    if keep.size == 0:
        return EigenCheck(0.0, 0.0, True, 0)
    sub = m[np.ix_(keep, keep)]
    lmax = float(np.linalg.eigvalsh(sub)[-1])
    return EigenCheck(lmax, margin, bool(lmax <= -margin), int(keep.size))


def closed_form_rho(chain: Chain, lam: np.ndarray) -> tuple[float | None, str]:
    """The smallest rho with M(rho, lam) <= 0 for these multipliers (Schur complement of the x_0 block),
    or None with the reason when no rho works (the rest of the LMI is not negative definite)."""
    import scipy.linalg as sla

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
        top = float(np.linalg.eigvalsh(r)[-1])
        return None, (f"the hidden-neuron block of the LMI is not negative definite at these multipliers "
                      f"(largest eigenvalue {top:.3e}): no rho certifies them")
    x = sla.solve_triangular(low, q.T, lower=True)
    s = p + x.T @ x
    return max(float(np.linalg.eigvalsh(0.5 * (s + s.T))[-1]), 0.0), "closed form"


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


# ------------------------------------------------------------------------------------------ the solve


@dataclass
class SDPSolve:
    rho: float | None
    lam: np.ndarray | None  # per neuron
    outcome: Any
    build_time: float
    solve_size: int


def solve_lmi(chain: Chain, form: str, solver: str, solver_options: Any = None, reduce_input: bool = True
              ) -> SDPSolve:
    """min rho s.t. M(rho, lam) <= 0 with cvxpy through the solver layer (Neuron: lam per neuron;
    Layer: one per hidden layer)."""
    import cvxpy as cp
    from lipopt_solvers import solve_cvxpy

    if form not in FORMS:
        raise ValueError(f"unknown LipSDP form {form!r}; offered: {', '.join(FORMS)} (the Network form is "
                         "unsound for ReLU and is not offered as a bound)")
    t0 = time.perf_counter()
    ch = chain.reduced() if reduce_input else chain
    widths = ch.widths
    rho = cp.Variable(nonneg=True, name="rho")
    if form == "neuron":
        lam = cp.Variable(max(ch.n_hidden, 1), nonneg=True, name="lam")
        offs = np.concatenate([[0], np.cumsum(widths)]).astype(int)
        tvec = [lam[offs[k]:offs[k + 1]] for k in range(len(widths))]
    else:
        lam = cp.Variable(max(len(widths), 1), nonneg=True, name="lam_layer")
        tvec = [lam[k] * np.ones(n) for k, n in enumerate(widths)]
    nb = len(widths) + 1
    sizes = [ch.n0, *widths]
    blocks: list[list[Any]] = [[np.zeros((sizes[i], sizes[j])) for j in range(nb)] for i in range(nb)]
    diag: list[Any] = [np.zeros((s, s)) for s in sizes]
    diag[0] = diag[0] - rho * np.eye(ch.n0)
    for k, w in enumerate(ch.weights, start=1):
        a, b, t = ch.alpha[k - 1], ch.beta[k - 1], tvec[k - 1]
        if np.any(a * b != 0):
            diag[k - 1] = diag[k - 1] - 2 * (w.T @ cp.diag(cp.multiply(a * b, t)) @ w)
        blk = w.T @ cp.diag(cp.multiply(a + b, t))
        blocks[k - 1][k] = blk
        blocks[k][k - 1] = blk.T
        diag[k] = diag[k] - 2 * cp.diag(t)
    diag[-1] = diag[-1] + ch.last.T @ ch.last
    for i in range(nb):
        blocks[i][i] = diag[i]
    m = cp.bmat(blocks) if nb > 1 else diag[0]
    prob = cp.Problem(cp.Minimize(rho), [0.5 * (m + m.T) << 0])
    build = time.perf_counter() - t0
    out = solve_cvxpy(prob, solver, solver_options)
    rv = None if rho.value is None else float(rho.value)
    lv = None
    if lam.value is not None:
        vals = np.asarray(lam.value, dtype=np.float64).reshape(-1)
        lv = vals[:ch.n_hidden] if form == "neuron" else np.repeat(vals[:len(widths)], widths)
    elif ch.n_hidden == 0 and rv is not None:
        lv = np.zeros(0)
    return SDPSolve(rv, lv, out, build, ch.size)


def network_form_estimate(network: Network, question: Question, solver: str = "clarabel") -> float:
    """LipSDP-Network (diagonal plus all pairwise couplings lam_ij (e_i - e_j)(e_i - e_j)^T, one hidden
    layer or all hidden neurons together): an ESTIMATE ONLY. It is unsound for ReLU (formulations.md 3.1:
    on T8 it gives about 0 where L = 1); kept for the negative test, never registered as a bound."""
    import cvxpy as cp
    from lipopt_solvers import solve_cvxpy

    q = question.bind(network)
    chain = build_chain(network, q.output_vector(network.output_size), normalise=True)
    n0, nh = chain.n0, chain.n_hidden
    if nh > 40:
        raise NotApplicableError("network_form_estimate is for tiny nets (at most 40 hidden neurons)")
    a = np.zeros((nh, n0 + nh))
    off_r, off_c = 0, 0
    for w in chain.weights:
        a[off_r:off_r + w.shape[0], off_c:off_c + w.shape[1]] = w
        off_r += w.shape[0]
        off_c += w.shape[1]
    b = np.hstack([np.zeros((nh, n0)), np.eye(nh)])
    rho = cp.Variable(nonneg=True)
    lam = cp.Variable(nh, nonneg=True)
    pairs = [(i, j) for i in range(nh) for j in range(i + 1, nh)]
    t = cp.diag(lam)
    if pairs:
        lij = cp.Variable(len(pairs), nonneg=True)
        for p, (i, j) in enumerate(pairs):
            e = np.zeros((nh, 1))
            e[i], e[j] = 1.0, -1.0
            t = t + lij[p] * (e @ e.T)
    last_blk = np.zeros((n0 + nh, n0 + nh))
    last_rows = slice(n0 + nh - chain.last.shape[1], n0 + nh)
    last_blk[last_rows, last_rows] = chain.last.T @ chain.last
    e0 = np.zeros((n0 + nh, n0 + nh))
    e0[:n0, :n0] = np.eye(n0)
    m = a.T @ t @ b + b.T @ t @ a - 2 * b.T @ t @ b + last_blk - rho * e0
    prob = cp.Problem(cp.Minimize(rho), [0.5 * (m + m.T) << 0])
    out = solve_cvxpy(prob, solver)
    if rho.value is None:
        raise RuntimeError(f"the Network-form SDP did not solve: {out.message}")
    return chain.scale * math.sqrt(max(float(rho.value), 0.0))
