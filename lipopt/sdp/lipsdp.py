"""LipSDP-Neuron / -Layer (and local slope intervals): build the LMI, solve it, certify it in float64.

The mathematics is formulations.md section 3. For x_k = relu(W_k x_{k-1}) (k < L) and the output
``last @ x_{L-1}`` (``last`` = W_L, or c^T W_L for a scalar output c^T f), the LMI is written on
xi = (x_0, outputs of the unstable neurons): with slope interval [0, 1] a neuron's output is a coordinate
u_i of xi and its pre-activation v_i^T xi; a stable-on neuron ([1, 1], local only) is linear and a
stable-off one ([0, 0]) constant, so both are eliminated exactly (no multiplier, no coordinate). With
lam_i >= 0 the incremental quadratic constraint 2 lam_i dx_i (dz_i - dx_i) >= 0 gives

    M(rho, lam) = sum_i lam_i (e_i v_i^T + v_i e_i^T - 2 e_i e_i^T) + out^T out - rho E_0 <= 0,

``out @ xi`` the output increment, E_0 the projector on x_0. On the global question (every neuron
[0, 1]) this is exactly the block-tridiagonal LMI of 3.1; M <= 0 certifies |f(x) - f(y)| <= sqrt(rho)
|x - y|. Neuron form: one lam per neuron; Layer form: one per hidden layer. The Network form (pairwise
couplings) is UNSOUND for ReLU (formulations.md 3.1, net T8): it is here only as
:func:`network_form_estimate`, never as a bound.

Scaling: every weight matrix is multiplied by a power of two (exact in float64) so that its spectral norm
is about 1; the bound of the scaled chain times 2**(-sum of exponents) bounds the original network.
Input reduction for the solve: the x_0 columns are compressed to the row space of everything that reads
x_0 (thin SVD, an exact congruence: the other x_0 directions only meet -rho I); the certification always
uses the full, unreduced LMI.

Certification (:func:`certify`): the LMI is rebuilt in float64 at the solver's multipliers (clipped to
>= 0) and rho; it certifies when the largest eigenvalue (numpy.linalg.eigvalsh) is <= -margin, the margin
covering the rounding of V, out and M and of the eigensolver (2 (n + k + 4) eps ||M_abs||_F, M_abs the
same sums with absolute values). Otherwise rho is repaired with the multipliers fixed: the smallest rho
for them is rho_c = lambda_max(P + X^T X), X = L^{-1} Q^T, -R = L L^T (Schur complement of the x_0 block:
M(0) = [[P, Q], [Q^T, R]], M(rho) = M(0) - rho E_0); rho_c + a growing bump is eigen-checked until it
certifies. The same closed form also tightens a solver rho that certified (the smaller certified value is
reported). If R is not negative definite, no rho certifies these multipliers: no bound.

The mathematics as implemented: ``docs/methods.md#lipsdp``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from lipopt.errors import NotApplicableError
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, MaxPoolStage, is_activation
from lipopt.options import MethodOptions
from lipopt.sdp.chain import EPS, FORMS, VALUE_SAFETY, Chain, ChainLayer
from lipopt.spec import Ball, Box, Global, Norm, Question


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
    #: split the network into consecutive pieces (product of their certified bounds, still an upper
    #: bound: relu is 1-Lipschitz) when the whole LMI is above sdp_max_size
    sdp_split: bool = True
    #: the chordal (clique-wise) form of block tri-diagonal LMIs: "auto" (above sdp_clarabel_max_size),
    #: "on" or "off"; with it sdp_max_size bounds the largest clique, not the whole LMI
    sdp_chordal: str = "auto"
    #: re-solves with a strictly negative hidden block when the solver's multipliers leave it indefinite
    sdp_margin_retries: int = 2
    #: re-solve once on a diagonally rebalanced LMI (multipliers of the first solve about 1) when the
    #: solver is SCS and there are at least this many hidden layers (0: never); the better certified
    #: value is kept
    sdp_balance_depth: int = 3
    #: without a user-chosen solver: the default SDP solver (Clarabel) up to this LMI size, SCS above it
    #: (Clarabel's dense PSD-cone steps grow steeply: size 100 about 30 s, 132 about 285 s; SCS 8 s)
    sdp_clarabel_max_size: int = 110
    #: how the LMI is solved: "solver" (a cone solver through cvxpy), "first-order" (the descent of
    #: :mod:`lipopt.sdp.first_order` on rho*(lam), block tri-diagonal chains only) or "auto": first-order
    #: on block tri-diagonal LMIs above sdp_first_order_min_size when no solver is chosen by the user, with
    #: pieces sized by sdp_max_check_size alone (the descent has no solve-size limit)
    sdp_algorithm: str = "auto"
    #: "auto" uses the first-order descent above this LMI size (after the input reduction): Clarabel
    #: takes 30-50 s at size 100 (784-50-10) where the descent takes seconds, within 1e-5 relative
    sdp_first_order_min_size: int = 64
    #: the descent's optimiser: "lbfgs" (nonsmooth L-BFGS on the exact rho*) or "adam" (smoothed)
    sdp_fo_optimizer: str = "lbfgs"
    sdp_fo_iterations: int = 3000  # its iterations at most (Adam steps, or L-BFGS line searches)
    sdp_fo_lr: float = 0.05  # Adam's step size on log lam; L-BFGS's largest first step per coordinate
    sdp_device: str = "auto"  # torch device of the descent: "auto" (CUDA when available), "cpu", "cuda"


@dataclass
class Segment:
    """A run Affine (ReLU Affine)* of the lowered network and the l2 constant of the max-pool after it (1:
    none). The network is the composition of its segments, each followed by (ReLU and) its pool."""

    affs: list[AffineStage]
    pool: float = 1.0
    #: the negative slope of the activation after each affine stage but the last (0: ReLU; a LeakyReLU's
    #: alpha; consecutive activations multiply: leaky_a o leaky_b has slope a b)
    alphas: list[float] = field(default_factory=list)

    @property
    def mats(self) -> list[np.ndarray]:
        return [np.asarray(s.dense(), dtype=np.float64) for s in self.affs]


MAXPOOL_REFUSAL = ("lipsdp-local does not handle max-pooling (not a scalar slope-restricted activation; the "
                   "global lipsdp-neuron / lipsdp-layer / lipsdp-fast bound each affine-ReLU block and "
                   "multiply by the pooling constant); use 'naive' or an exact method for a local bound")


def pool_constant(stage: MaxPoolStage) -> float:
    """The exact l2 Lipschitz constant of a max-pool: sqrt of the largest number of windows one input lies
    in (each window's max moves by at most the largest change in it)."""
    w = stage.windows[stage.windows >= 0]
    return math.sqrt(float(np.bincount(w, minlength=stage.in_size).max())) if w.size else 0.0


def _is_identity(stage: AffineStage) -> bool:
    rows, cols = stage.shape
    if rows != cols:
        return False
    w = stage.weight
    if hasattr(w, "toarray"):
        import scipy.sparse as sp

        return bool((sp.csr_matrix(w) != sp.identity(rows, format="csr")).nnz == 0)
    return bool(np.array_equal(np.asarray(w), np.eye(rows)))


def segments(network: Network) -> list[Segment]:
    """The network as segments (Avant & Morgansen's treatment of max-pooling: LipSDP per affine-ReLU block,
    times the exact pooling constant). Consecutive ReLUs merge (relu o relu); a ReLU between a segment's
    last affine stage and its pool (with the lowering's identity stage between them), or right after a
    pool, is 1-Lipschitz and left out. A LeakyReLU max(x, alpha x) is kept as its alpha
    (:attr:`Segment.alphas`; :func:`chain_from_matrices` writes it as alpha z + (1 - alpha) relu(z))."""
    segs: list[Segment] = [Segment([])]
    prev = None
    alpha = 1.0
    stages = network.lower()
    for i, s in enumerate(stages):
        if (isinstance(s, AffineStage) and is_activation(prev) and i + 1 < len(stages)
                and isinstance(stages[i + 1], MaxPoolStage) and _is_identity(s)):
            continue  # the lowering's identity between a ReLU and a pool: relu, then the pool
        if isinstance(s, MaxPoolStage):
            if not segs[-1].affs:
                raise NotApplicableError("LipSDP needs an affine stage before each max-pool")
            segs[-1].pool = pool_constant(s)
            segs.append(Segment([]))
        elif isinstance(s, AffineStage):
            if isinstance(prev, AffineStage):
                raise NotApplicableError("LipSDP needs ReLU between consecutive affine stages")
            if segs[-1].affs:
                segs[-1].alphas.append(alpha)
            segs[-1].affs.append(s)
            alpha = 1.0
        elif not is_activation(s):
            raise NotApplicableError(f"LipSDP does not handle the stage {type(s).__name__}")
        else:
            alpha *= float(s.alpha)
        prev = s
    if not segs[-1].affs:
        raise NotApplicableError("LipSDP needs the network to end with an affine stage (after its last "
                                 "max-pool)")
    return segs


def _affine_chain(network: Network) -> list[AffineStage]:
    """The affine stages of an Affine (ReLU Affine)* network (no max-pool; see :func:`segments`)."""
    segs = segments(network)
    if len(segs) > 1:
        raise NotApplicableError(MAXPOOL_REFUSAL)
    return segs[0].affs


def refusal(network: Network, question: Question, opts: LipSDPOptions | None = None, local: bool = False
            ) -> str | None:
    """Why LipSDP cannot answer ``question`` on ``network`` (None: it can). The value is a global or
    local (``local``: lipsdp-local) l2 -> l2 (or l2 -> |c^T f|) bound."""
    opts = opts or LipSDPOptions()
    if question.input_norm is not Norm.L2:
        return (f"LipSDP bounds the l2 constant: the input norm must be l2 (asked: "
                f"{question.input_norm.label}); use naive, milp or miqcqp for other norms")
    if not question.scalar_output and question.output_norm is not Norm.L2:
        return (f"LipSDP bounds the l2 output norm or a scalar output c^T f (asked: all outputs in "
                f"{question.output_norm.label})")
    if local and network.has_maxpool:
        return MAXPOOL_REFUSAL
    try:
        segs = segments(network)
    except NotApplicableError as exc:
        return str(exc)
    if opts.sdp_algorithm == "first-order" or (opts.sdp_algorithm == "auto" and not local):
        # the first-order descent has no solve-size limit (lipsdp-local's chains may not suit it)
        opts = replace(opts, sdp_max_size=opts.sdp_max_check_size)
    for seg in segs:
        plan = plan_pieces([s.shape for s in seg.affs], opts, chordal=opts.sdp_chordal != "off")
        if isinstance(plan, str):
            return plan
    return None


def _piece_size(shapes: list[tuple[int, int]], a: int, b: int, reduce: bool, chordal: bool = False
                ) -> tuple[int, int]:
    """(solve size, full size) of the LMI of affine stages a..b (hidden layers a+1..b); the solve size of
    the chordal form is its largest clique."""
    n_in, rows = shapes[a][1], shapes[a][0]
    hidden = [shapes[k][0] for k in range(a, b)]
    first = min(n_in, rows) if reduce else n_in
    full = n_in + sum(hidden)
    if chordal and len(hidden) >= 2:
        w = [first, *hidden]
        return max(w[k] + w[k + 1] for k in range(len(w) - 1)), full
    return first + sum(hidden), full


def plan_pieces(shapes: list[tuple[int, int]], opts: LipSDPOptions | None = None, chordal: bool = False
                ) -> list[tuple[int, int]] | str:
    """Consecutive pieces (first and last affine stage, inclusive; the relus inside a piece are its hidden
    layers) whose LMIs fit the limits: the whole network when it fits, else (``sdp_split``) greedy runs
    of stages, the relu between two pieces cut (1-Lipschitz: the product of the pieces' bounds is an
    upper bound); or why not. ``chordal``: sizes of the chordal form (largest clique)."""
    opts = opts or LipSDPOptions()
    last = len(shapes) - 1
    red = opts.sdp_reduce_input

    def fits(a: int, b: int) -> bool:
        solve, full = _piece_size(shapes, a, b, red, chordal)
        return solve <= opts.sdp_max_size and full <= opts.sdp_max_check_size

    if fits(0, last):
        return [(0, last)]
    solve, full = _piece_size(shapes, 0, last, red, chordal)
    why = (f"the LipSDP LMI has size {solve} to solve ({full} to check), above the limits sdp_max_size "
           f"{opts.sdp_max_size} / sdp_max_check_size {opts.sdp_max_check_size}")
    if not opts.sdp_split:
        return why + " (splitting is off: sdp_split)"
    pieces, a = [], 0
    while a <= last:  # pieces partition the affine stages; the relu between two pieces is cut
        if not fits(a, a):
            s1, f1 = _piece_size(shapes, a, a, red, chordal)
            return f"{why}; even affine stage {a} alone has size {s1} ({f1} to check)"
        b = a
        while b < last and fits(a, b + 1):
            b += 1
        pieces.append((a, b))
        a = b + 1
    return pieces


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
    """The LipSDP chain of ``network`` (biases play no role). ``slopes``: one (alpha, beta) pair of arrays
    per hidden layer, each neuron [0, 1] (unstable), [1, 1] (stable on) or [0, 0] (stable off); default
    all [0, 1] (the global LMI)."""
    return chain_from_matrices(affine_matrices(network), c, slopes, normalise)


def affine_matrices(network: Network) -> list[np.ndarray]:
    """The dense matrices of the affine stages (ReLU between consecutive ones)."""
    return [np.asarray(s.dense(), dtype=np.float64) for s in _affine_chain(network)]


def chain_from_matrices(mats: list[np.ndarray], c: np.ndarray | None = None,
                        slopes: list[tuple[np.ndarray, np.ndarray]] | None = None,
                        normalise: bool = True, alphas: list[float] | None = None) -> Chain:
    """The chain of W_L relu(... relu(W_1 x)) for ``mats`` = [W_1, ..., W_L] (see :func:`build_chain`).

    ``alphas``: the negative slope of each hidden layer's activation (LeakyReLU; default 0, ReLU). The
    loop transformation max(z, alpha z) = alpha z + (1 - alpha) relu(z) keeps one [0, 1]-sector variable
    per unstable neuron and passes alpha z on (alpha z alone for a stable-off neuron): the LMI then
    uses the slopes [alpha, 1], not the wider [0, 1]. With alpha > 0 the chain is no longer block
    tri-diagonal (z_{k+1} reads alpha W_{k+1} z_k), so it goes to the SDP solver."""
    last = mats[-1]
    if c is not None:
        last = np.asarray(c, dtype=np.float64).reshape(1, -1) @ last
    weights = mats[:-1]
    if slopes is None:
        slopes = [(np.zeros(w.shape[0]), np.ones(w.shape[0])) for w in weights]
    if len(slopes) != len(weights) or any(np.shape(a) != (w.shape[0],) or np.shape(b) != (w.shape[0],)
                                          for (a, b), w in zip(slopes, weights, strict=True)):
        raise ValueError("one (alpha, beta) pair per hidden layer, of the layer's width")
    states = []
    for a, b in slopes:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        on, off, unst = (a == 1) & (b == 1), (a == 0) & (b == 0), (a == 0) & (b == 1)
        if not np.all(on | off | unst):
            raise ValueError("ReLU slope intervals must be [0, 1], [1, 1] or [0, 0]")
        states.append(np.where(on, 1, np.where(off, 0, -1)))
    log2 = 0
    if normalise:
        scaled = []
        for w in [*weights, last]:
            e = _pow2_exponent(w)
            scaled.append(np.ldexp(w, e))
            log2 -= e
        weights, last = scaled[:-1], scaled[-1]
    n0 = int((weights[0] if weights else last).shape[1])
    dim = n0 + int(sum(int((st == -1).sum()) for st in states))
    g = np.zeros((n0, dim))
    g[:, :n0] = np.eye(n0)
    g_abs = g.copy()
    layers: list[ChainLayer] = []
    off = n0
    alphas = [0.0] * len(weights) if alphas is None else [float(a) for a in alphas]
    if len(alphas) != len(weights) or any(not 0.0 <= a < 1.0 for a in alphas):
        raise ValueError("one negative slope 0 <= alpha < 1 per hidden layer")
    for w, st, alpha in zip(weights, states, alphas, strict=True):
        z, z_abs = w @ g, np.abs(w) @ g_abs
        unst = np.flatnonzero(st == -1)
        idx = np.arange(off, off + unst.size)
        off += unst.size
        layers.append(ChainLayer(idx, z[unst], z_abs[unst]))
        g, g_abs = alpha * z, alpha * z_abs  # stable off: alpha z (0 for ReLU)
        on = st == 1
        g[on], g_abs[on] = z[on], z_abs[on]
        g[unst, idx] += 1.0 - alpha
        g_abs[unst, idx] += 1.0 - alpha
    return Chain(n0, layers, last @ g, np.abs(last) @ g_abs, [int(w.shape[0]) for w in weights], log2)


def slope_intervals(network: Network, lo: np.ndarray, hi: np.ndarray, method: str = "crown",
                    loop: bool = False) -> tuple[list[tuple[np.ndarray, np.ndarray]], dict[str, int]]:
    """Per-hidden-layer ReLU slope intervals on the box [lo, hi] from sound neuron bounds: stable off
    [0, 0], stable on [1, 1], unstable [0, 1]. Also the counts. A LeakyReLU's stable-off neurons (slope
    alpha > 0) are stable off in the loop form (``loop``: the chain passes alpha z on, see
    :func:`chain_from_matrices`); otherwise they keep the sector [0, 1], counted as ``leaky_off``."""
    from lipopt.bounds import compute_bounds

    fb = compute_bounds(network, lo, hi, method=method)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    counts = {"stable_on": 0, "stable_off": 0, "unstable": 0, "leaky_off": 0}
    prev_relu = False
    for i in fb.relu_stage_indices():
        if prev_relu and i - 1 in fb.relu_stage_indices():
            continue  # a merged relu o relu: the first one's pattern holds
        active, inactive, amb = fb.relu_masks(i)
        if fb.stages[i].alpha != 0.0 and not loop:  # type: ignore[union-attr]
            counts["leaky_off"] += int(inactive.sum())
            inactive = np.zeros_like(inactive)
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


def network_form_estimate(network: Network, question: Question, solver: str = "clarabel") -> float:
    """LipSDP-Network (diagonal plus all pairwise couplings lam_ij (e_i - e_j)(e_i - e_j)^T over all hidden
    neurons): an ESTIMATE ONLY. It is unsound for ReLU (formulations.md 3.1: on T8 it gives about 0 where
    L = 1); kept for the negative test, never registered as a bound."""
    import cvxpy as cp
    from lipopt_solvers import solve_cvxpy

    q = question.bind(network)
    mats = [np.asarray(s.dense(), dtype=np.float64) for s in _affine_chain(network)]
    c = q.output_vector(network.output_size)
    last = mats[-1] if c is None else c.reshape(1, -1) @ mats[-1]
    weights = mats[:-1]
    n0 = mats[0].shape[1]
    nh = int(sum(w.shape[0] for w in weights))
    if nh > 40:
        raise NotApplicableError("network_form_estimate is for tiny nets (at most 40 hidden neurons)")
    a = np.zeros((nh, n0 + nh))
    off_r, off_c = 0, 0
    for w in weights:
        a[off_r:off_r + w.shape[0], off_c:off_c + w.shape[1]] = w
        off_r += w.shape[0]
        off_c += w.shape[1]
    b = np.hstack([np.zeros((nh, n0)), np.eye(nh)])
    rho = cp.Variable(nonneg=True)
    lam = cp.Variable(nh, nonneg=True)
    t = cp.diag(lam)
    pairs = [(i, j) for i in range(nh) for j in range(i + 1, nh)]
    if pairs:
        lij = cp.Variable(len(pairs), nonneg=True)
        for p, (i, j) in enumerate(pairs):
            e = np.zeros((nh, 1))
            e[i], e[j] = 1.0, -1.0
            t = t + lij[p] * (e @ e.T)
    last_blk = np.zeros((n0 + nh, n0 + nh))
    rows = slice(n0 + nh - last.shape[1], n0 + nh)
    last_blk[rows, rows] = last.T @ last
    e0 = np.zeros((n0 + nh, n0 + nh))
    e0[:n0, :n0] = np.eye(n0)
    m = a.T @ t @ b + b.T @ t @ a - 2 * b.T @ t @ b + last_blk - rho * e0
    prob = cp.Problem(cp.Minimize(rho), [0.5 * (m + m.T) << 0])
    out = solve_cvxpy(prob, solver)
    if rho.value is None:
        raise RuntimeError(f"the Network-form SDP did not solve: {out.message}")
    return math.sqrt(max(float(rho.value), 0.0))


# the solve and the float64 certification have their own modules; their names stay importable from here
from lipopt.sdp.certification import (  # noqa: E402
    Certificate,
    EigenCheck,
    balanced,
    certify,
    closed_form_rho,
    eigen_check,
    hidden_block_max,
    lmi_matrix,
)
from lipopt.sdp.solve import SDPSolve, _blocks, chordal_size, is_block_tridiagonal, solve_lmi  # noqa: E402

__all__ = ["EPS", "FORMS", "VALUE_SAFETY", "Certificate", "Chain", "ChainLayer", "EigenCheck",
           "LipSDPOptions", "SDPSolve", "_blocks",
           "balanced", "build_chain", "certify", "chordal_size", "closed_form_rho", "eigen_check",
           "hidden_block_max", "is_block_tridiagonal", "lmi_matrix", "solve_lmi"]
