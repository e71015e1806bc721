"""Branch and bound over activation patterns for the exact Lipschitz constant (docs/bab.md).

The constant is L = max ||J_s|| over the activation patterns s whose region has interior in the domain
(formulations.md, Fact A). A node of the search is a partial pattern: some neurons fixed active (+1) or
inactive (-1), the others free (0). For a node:

* forward bounds: interval bounds of every pre-activation over {x in the domain : the fixed neurons
  have their signs}, re-computed under the node's constraints (a fixed neuron's interval is clipped to
  its sign before it is propagated) and intersected with the root bounds (CROWN for ReLU nets on a
  bounded domain). A free neuron whose interval has one sign is stable in the node;
* upper bound: backward interval propagation of the Jacobian, the fixed and stable neurons with their
  slope (1 or alpha), the free ambiguous ones with a slope in [alpha, 1]; the result is an interval
  matrix [G_lo, G_hi] containing every J_s of the node, and ||J|| <= ||max(|G_lo|, |G_hi|)|| for every
  J in it (entrywise-monotone norms; all the operator norms here are monotone on non-negative
  matrices, and have closed forms there). For l-inf and l1 inputs, the smaller forward directional
  bound: max over the vertices v of the input ball of the interval of J v (propagated forward, and for
  a scalar output intersected with the cuts sum_i g_i d_i t_i at every hidden layer);
* feasibility: an LP through the solver layer (``lipopt_solvers.solve_lp``) over the node's relaxed set
  (exact affine maps, the fixed and stable neurons exact, the free ones relaxed by the triangle / chord
  of their interval); maximise the margin t of the fixed neurons' sign constraints; t* < 0 proves the
  node's pattern infeasible and the node is pruned. A child that contains a point of its parent (true
  forward pass, fixed signs strictly satisfied) needs no LP;
* leaf (no free ambiguous neuron): the pattern is complete, J_s is exact, and the node counts iff its
  region has interior in the domain, proved by a point with a certified region margin
  (``lipopt.certify.witness.point_witness``) or by the margin LP of region enumeration
  (``lipopt.exact.interior.solve_margin``). The value ||J_s|| is exact (the same norm computation as
  enumeration) and, with the point re-evaluated in float64, a certified LOWER bound.

Search: best-first on the node upper bound; branching on the free ambiguous neuron with the largest
influence on the bound (at the forward bound's maximising direction: tangent times backward interval;
else its backward interval magnitude times the absolute weight mass from it to the input; times
1 - alpha). The lower side: seeded samples, hill climbing over regions, node points, bound-argmax
completions and leaves, each certified in float64. docs/bab.md has the mathematics. The bracket
[best certified leaf / sample, max(open nodes' bounds, best leaf)]
is valid at any time and recorded with its history.

Everything is numpy float64; bounds are widened by a relative 1e-10 against rounding.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.certify.witness import point_witness
from lipopt.errors import LipoptError, NotApplicableError
from lipopt.exact.interior import UnitDomain, solve_margin, unit_domain
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, LeakyReLUStage, MaxPoolStage, ReLUStage, dispatch
from lipopt.norms import jacobian_norm
from lipopt.spec import AllOutputs, Ball, Box, Direction, Global, Norm, Question

__all__ = ["BabOutcome", "BabSettings", "Layers", "bab_layers", "nonneg_norm", "run_bab"]

#: relative widening of every interval bound (float64 rounding of the products)
BOUND_RTOL = 1e-10
#: an LP margin below -PRUNE_TOL proves a node infeasible
PRUNE_TOL = 1e-7
#: the forward directional bound keeps (first width x directions) matrices; beyond this many entries it is off
MAX_TANGENT_ENTRIES = 1 << 23
#: a pre-activation row counts as zero below this fraction of the terms that built it (as enumeration)
ZERO_RTOL = 1e-12


@dataclass
class BabSettings:
    time_limit: float | None = None
    rel_gap: float = 1e-6
    tau: float = 1e-9  # interior tolerance of the leaf margin LP (unit-domain coordinates)
    max_nodes: int | None = None
    lp_prune: bool = True  # prune infeasible nodes by the relaxed LP
    lp_min_fixed: int | None = None  # LP only on nodes with at least this many fixed neurons (None: auto)
    dual_iters: int = 20  # supergradient steps of the first layer's Lagrangian bound tightening (0: off)
    max_directions: int = 1 << 15  # forward (directional) bound over the input-ball vertices up to this many
    node_crown: bool = True  # CROWN bounds of the deeper layers' pre-activations in every node
    climb_time: float = 3.0  # hill climbing over regions from the best sample (at most 10 % of the limit)
    joint_rows: bool = True  # all outputs, output norm l-inf: one heap over (output row, pattern) nodes
    split_rows: bool = False  # all outputs, output norm l-inf: one search per output row, in turn
    completion: bool = True  # complete each branched node's pattern by its bound's argmax (lower side)
    repair: bool = True  # move the parent's point across the new neuron's boundary before any LP
    n_samples: int = 2000  # seeded domain samples, the best certified as the first lower bound
    seed: int = 0
    root_bounds: str = "crown"  # "interval" | "crown" (ReLU nets on a bounded domain)
    branching: str = "influence"  # "influence" | "layer" (first free neuron, layer by layer)
    solver: str | None = None  # LP solver of the layer (None: its default)


@dataclass
class BabOutcome:
    lower: float | None
    upper: float | None
    witness: dict[str, Any] | None
    stop: str  # "completed" | "time_limit" | "interrupted" | "node_limit" | "gap"
    history: list[tuple[float, float | None, float | None]]
    stats: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    cert_question: Question | None = None


# ------------------------------------------------------------------------------------------------ network


@dataclass
class Layers:
    """The network as hidden layers z_k = W_k h_{k-1} + b_k, h_k = max(z_k, alpha_k z_k), and the output
    affine map W_out h_{K-1} + b_out (dense float64)."""

    w: list[np.ndarray]
    b: list[np.ndarray]
    alpha: list[float]
    w_out: np.ndarray
    b_out: np.ndarray

    @property
    def sizes(self) -> list[int]:
        return [int(w.shape[0]) for w in self.w]


def _add_affine(acc: dict[str, Any], stage: AffineStage) -> None:
    w, b = np.asarray(stage.dense(), dtype=np.float64), np.asarray(stage.bias, dtype=np.float64)
    if acc["pending"] is None:
        acc["pending"] = (w, b)
    else:  # two affine stages in a row (lower() merges them; kept safe)
        w0, b0 = acc["pending"]
        acc["pending"] = (w @ w0, w @ b0 + b)


def _add_activation(acc: dict[str, Any], stage: ReLUStage | LeakyReLUStage) -> None:
    if acc["pending"] is None:  # two activations in a row: an identity map between them
        acc["pending"] = (np.eye(stage.size), np.zeros(stage.size))
    w, b = acc["pending"]
    acc["w"].append(w)
    acc["b"].append(b)
    acc["alpha"].append(float(stage.alpha))
    acc["pending"] = None


#: per-stage handlers of the lowering (ReLU and LeakyReLU share one, through stage.alpha)
_STAGE_TABLE = {AffineStage: _add_affine, ReLUStage: _add_activation, LeakyReLUStage: _add_activation}


def bab_layers(network: Network) -> Layers:
    """The lowered network as dense layers; max-pool stages are refused (UnsupportedLayerError)."""
    acc: dict[str, Any] = {"w": [], "b": [], "alpha": [], "pending": None}
    for stage in network.lower():
        dispatch(_STAGE_TABLE, stage, "the bab method")(acc, stage)
    if acc["pending"] is None:
        n = acc["w"][-1].shape[0] if acc["w"] else network.input_size
        acc["pending"] = (np.eye(n), np.zeros(n))
    w_out, b_out = acc["pending"]
    return Layers(acc["w"], acc["b"], acc["alpha"], w_out, b_out)


def has_maxpool(network: Network) -> bool:
    return any(isinstance(s, MaxPoolStage) for s in network.lower())


# ------------------------------------------------------------------------------------------------ norms


def nonneg_norm(m: np.ndarray, question: Question) -> float:
    """The question's norm of a non-negative matrix M (rows: outputs, or one row c^T J for a scalar
    output). Every norm here is monotone on non-negative matrices, so it bounds ||J|| for all |J| <= M;
    on M >= 0 the NP-hard pairs have closed forms (the maximising sign vector is all ones)."""
    p, q = question.input_norm, question.output_norm
    if question.scalar_output:
        return float(np.linalg.norm(m[0], ord=p.dual.p))
    if p is Norm.L1:
        return float(np.max(np.linalg.norm(m, ord=q.p, axis=0)))
    if q is Norm.LINF:
        return float(np.max(np.linalg.norm(m, ord=p.dual.p, axis=1)))
    if p is Norm.L2 and q is Norm.L2:
        return float(np.linalg.norm(m, ord=2))
    if p is Norm.LINF:  # inf -> 1 or inf -> 2: v = 1
        return float(np.linalg.norm(m.sum(axis=1), ord=q.p))
    # 2 -> 1 = ||M^T||_{inf->2}
    return float(np.linalg.norm(m.sum(axis=0), ord=2))


def _act(z: np.ndarray, alpha: float) -> np.ndarray:
    return np.maximum(z, 0.0) if alpha == 0.0 else np.maximum(z, alpha * z)


def _widen(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pad = BOUND_RTOL * np.maximum(np.abs(lo), np.abs(hi)) + 1e-300
    return lo - pad, hi + pad


def _affine_interval(w: np.ndarray, w_abs: np.ndarray, b: np.ndarray, lo: np.ndarray,
                     hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)):
        mid, rad = (lo + hi) / 2, (hi - lo) / 2
        c = w @ mid + b
        r = w_abs @ rad
        return _widen(c - r, c + r)
    wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)

    def prod(m: np.ndarray, v: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            t = m * v[None, :]
        t[m == 0] = 0.0
        return t.sum(axis=1)

    return _widen(prod(wp, lo) + prod(wn, hi) + b, prod(wp, hi) + prod(wn, lo) + b)


# ------------------------------------------------------------------------------------------------ search


@dataclass
class _Node:
    states: list[np.ndarray]  # int8 per hidden layer: +1 fixed active, -1 fixed inactive, 0 free
    upper: float
    point: np.ndarray | None  # a true point of the node (fixed signs strictly satisfied), if known
    depth: int
    # filled by _bound
    eff: list[np.ndarray] | None = None  # effective states (fixed or stable; 0 = free ambiguous)
    zb: list[tuple[np.ndarray, np.ndarray]] | None = None
    scores: list[np.ndarray] | None = None
    back: list[tuple[np.ndarray, np.ndarray]] | None = None  # backward intervals before each slope
    fwd: dict[str, Any] | None = None  # the forward bound's maximising direction (see _forward_bound)
    fcache: tuple[np.ndarray, ...] | None = None  # slopes and per-direction bounds (incremental update)
    live: np.ndarray | None = None  # the directions still above the lower bound (None: all)
    row: int | None = None  # the output row the node bounds (joint row search), else None


class _Throttle:
    """Runs an optional step (an LP that may prune, a completion that may raise the lower side) always
    for the first ``warm`` tries, then only while it succeeds at least ``rate`` of the time, and every
    ``every``-th time otherwise (so the rate keeps being measured). Skipping a step is always sound."""

    def __init__(self, warm: int = 30, rate: float = 0.05, every: int = 16) -> None:
        self.warm, self.rate, self.every = warm, rate, every
        self.tries = self.hits = self.asked = 0

    def go(self) -> bool:
        self.asked += 1
        if self.tries < self.warm or self.hits >= self.rate * self.tries:
            return True
        return self.asked % self.every == 0

    def record(self, hit: bool) -> None:
        self.tries += 1
        self.hits += int(bool(hit))


class _Bab:
    def __init__(self, network: Network, question: Question, st: BabSettings) -> None:
        self.net = network
        self.st = st
        self.t0 = time.perf_counter()
        self.notes: list[str] = []
        self.L = bab_layers(network)
        self.n = network.input_size
        q = question.bind(network)
        self.q = q
        self.mode = "box"
        if isinstance(q.domain, Global):
            if network.has_bias:
                self.mode = "global"
            else:
                self.mode = "bias-free-global"
                q = q.with_(domain=Box(-np.ones(self.n), np.ones(self.n))).bind(network)
                self.notes.append("bias-free network: the global constant equals the constant on [-1, 1]^n "
                                  "(formulations.md, Fact C); bounds and witnesses on that box")
        self.cq = q  # where witnesses are certified and bounds computed
        self.dom: UnitDomain = unit_domain(q, self.n)
        self.x_lo, self.x_hi = self.dom.x_bounds()
        self.w_abs = [np.abs(w) for w in self.L.w]
        m = network.output_size
        c = q.output_vector(m)
        self.c_out = self.L.w_out if c is None else (c @ self.L.w_out)[None, :]
        self.root = self._root_bounds()
        self.dirs = self._directions()
        # joint search over output rows (all outputs, output norm l-inf): every node carries its row
        self.c_rows = ([self.L.w_out[r:r + 1] for r in range(m)]
                       if st.joint_rows and c is None and q.output_norm is Norm.LINF and m > 1 else None)
        self.p_list: dict[int | None, tuple[np.ndarray, np.ndarray, float]] = {}
        if self.dirs is not None and self.L.w:
            # the first layer's tangents W_0 v are the same in every node; rounding pads are absolute
            self.u0 = self.L.w[0] @ self.dirs
            pad0 = 1e-13 * (self.w_abs[0] @ np.abs(self.dirs)) + 1e-300  # float64 rounding of W_0 v
            self.u0_lo, self.u0_hi = self.u0 - pad0, self.u0 + pad0
            keys: list[int | None] = []
            if len(self.L.w) == 1 and self.c_out.shape[0] == 1:
                keys = [None]
            elif (len(self.L.w) == 1 and self.c_rows is not None
                  and m * self.u0.size <= 4 * MAX_TANGENT_ENTRIES):
                keys = list(range(m))
            for key in keys:
                cv = self.c_out[0] if key is None else self.c_rows[key][0]
                pm = cv[:, None] * self.u0
                self.p_list[key] = (np.maximum(pm, 0.0), np.minimum(pm, 0.0),
                                    1e-12 * (1.0 + float(np.max(np.abs(pm).sum(axis=0)))))
        # per-node caches of the one-hidden-layer forward bound (2 vectors per direction), ~512 MB at most
        self.n_cached = 0
        self.max_cached = int(2 ** 29 // (16 * self.dirs.shape[1] + 1)) if self.dirs is not None else 0
        if self.L.w:  # the first layer in unit-domain coordinates: z_1 = a0y y + b0y
            self.a0y = self.L.w[0] * self.dom.d[None, :]
            self.b0y = self.L.w[0] @ self.dom.xc + self.L.b[0]
        # mass[k][i]: the dual input norm of row i of |W_k| ... |W_0| (neuron i's reach to the input)
        self.mass: list[np.ndarray] = []
        prod = np.eye(self.n)
        for w_abs in self.w_abs:
            prod = w_abs @ prod
            self.mass.append(np.linalg.norm(prod, ord=q.input_norm.dual.p, axis=1))
        self.stats: dict[str, Any] = {"nodes": 0, "leaves": 0, "leaves_full": 0, "leaves_empty": 0,
                                      "lp_prune_calls": 0, "pruned_lp": 0, "pruned_interval": 0,
                                      "pruned_bound": 0, "inherited": 0, "margin_lps": 0,
                                      "leaf_by_point": 0, "repaired": 0, "forward_tighter": 0,
                                      "completions": 0, "incremental": 0, "climb_lps": 0,
                                      "directions_dropped": 0,
                                      "completions_full": 0, "max_depth": 0, "mode": self.mode}
        self.lp_min_fixed = (int(st.lp_min_fixed) if st.lp_min_fixed is not None
                             else max(1, min(self.n, 12)))
        self.tried: set[bytes] = set()
        self.throttle = {"lp": _Throttle(), "completion": _Throttle(), "dual": _Throttle(rate=0.2)}
        self.lower: float | None = None
        self.witness: dict[str, Any] | None = None
        self.leaf_upper = -math.inf  # max value of full-dimensional leaves (exact values)
        self.history: list[tuple[float, float | None, float | None]] = []
        self._counter = itertools.count()

    # -- bounds -----------------------------------------------------------------------------------
    def _root_bounds(self) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        lo, hi = self.x_lo, self.x_hi
        for w, w_abs, b, a in zip(self.L.w, self.w_abs, self.L.b, self.L.alpha, strict=True):
            zl, zu = _affine_interval(w, w_abs, b, lo, hi)
            out.append((zl, zu))
            lo, hi = _act(zl, a), _act(zu, a)
        if (self.st.root_bounds == "crown" and self.mode != "global" and self.L.w
                and all(a == 0.0 for a in self.L.alpha)
                and all(isinstance(s, AffineStage | ReLUStage) for s in self.net.lower())):
            from lipopt.bounds import crown_bounds

            try:
                fb = crown_bounds(self.net, self.x_lo, self.x_hi)
                affine_idx = [i for i, s in enumerate(fb.stages) if isinstance(s, AffineStage)]
                for k in range(len(out)):
                    cl, cu = fb.stage_bounds[affine_idx[k]]
                    out[k] = (np.maximum(out[k][0], cl), np.minimum(out[k][1], cu))
            except Exception as exc:  # pragma: no cover - interval bounds stand
                self.notes.append(f"CROWN root bounds failed ({exc}); interval bounds used")
        return out

    def _directions(self) -> np.ndarray | None:
        """The vertices of the input-norm unit ball up to sign (columns), or None (l2 input, or more
        than ``max_directions`` of them)."""
        p = self.cq.input_norm
        if p is Norm.L1:
            return np.eye(self.n)
        width = self.L.sizes[0] if self.L.w else 0
        if p is Norm.LINF and self.n >= 1 and (1 << (self.n - 1)) <= self.st.max_directions \
                and (1 << (self.n - 1)) * max(width, 1) <= MAX_TANGENT_ENTRIES:
            m = 1 << (self.n - 1)
            bits = (np.arange(m)[None, :] >> np.arange(self.n - 1)[:, None]) & 1
            return np.vstack([np.ones((1, m)), 1.0 - 2.0 * bits])
        return None

    def _dual_lower(self, am: np.ndarray, bv: np.ndarray, s0: np.ndarray) -> np.ndarray:
        """Lower bounds of the rows of a y + b over {y in the unit domain : the fixed first-layer
        neurons (states s0) have their signs}, by Lagrangian duality: for any lam >= 0,
        min_y (a - lam G) y + b - lam g (a closed form over the unit box / ball) is a lower bound of
        a y + b on that set (G y + g >= 0 are the fixed sign rows). lam is improved by projected
        supergradient ascent; every iterate's value is a valid bound and the best one is kept. At the
        optimum this is the LP bound (LP duality). Widened against rounding."""
        ball = self.dom.kind == "ball"
        order = 2 if ball else 1
        ra = np.linalg.norm(am, ord=order, axis=1)
        ra = np.where(ra > 0, ra, 1.0)
        an, bn = am / ra[:, None], bv / ra
        fixed = np.flatnonzero(s0 != 0) if self.st.dual_iters > 0 else np.zeros(0, dtype=int)
        gm = (s0[fixed].astype(np.float64)[:, None] * self.a0y[fixed])
        gv = s0[fixed].astype(np.float64) * self.b0y[fixed]
        rg = np.linalg.norm(gm, ord=order, axis=1)
        keep = rg > 0
        gm, gv = gm[keep] / rg[keep, None], gv[keep] / rg[keep]
        iters = self.st.dual_iters if gm.shape[0] else 1
        lam = np.zeros((an.shape[0], gm.shape[0]))
        best = np.full(an.shape[0], -np.inf)
        for t in range(iters):
            cm = an - lam @ gm
            if ball:
                cn = np.linalg.norm(cm, axis=1)
                val = -cn + bn - lam @ gv
                ystar = -cm / np.where(cn > 0, cn, 1.0)[:, None]
            else:
                val = -np.abs(cm).sum(axis=1) + bn - lam @ gv
                ystar = -np.sign(cm)
            best = np.maximum(best, val)
            if gm.shape[0] == 0:
                break
            sub = -(ystar @ gm.T + gv[None, :])
            lam = np.maximum(0.0, lam + (0.5 / math.sqrt(t + 1.0)) * sub)
        return (best - 1e-9 * (1.0 + np.abs(best))) * ra

    def _dual_tighten(self, s: np.ndarray, zl: np.ndarray, zu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The free first-layer pre-activations' bounds over the node's first-layer polytope."""
        free = np.flatnonzero((s == 0) & (zl < 0) & (zu > 0))
        if free.size == 0 or not np.any(s != 0):
            return zl, zu
        am, bv = self.a0y[free], self.b0y[free]
        zl, zu = zl.copy(), zu.copy()
        zl[free] = np.maximum(zl[free], self._dual_lower(am, bv, s))
        zu[free] = np.minimum(zu[free], -self._dual_lower(-am, -bv, s))
        return zl, zu

    def _crown(self, k: int, eff: list[np.ndarray], zb: list[tuple[np.ndarray, np.ndarray]],
               s0: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Linear (CROWN) bounds of the pre-activations ``rows`` of hidden layer k >= 1 under the node:
        back-substitution through the earlier layers with the node's bounds (fixed and stable neurons
        exact, free ones by the chord above and an adaptive slope below), then concretised over the
        node's first-layer polytope by :meth:`_dual_lower`."""
        relax = []
        for j in range(k):
            zl, zu = zb[j]
            a = self.L.alpha[j]
            e = eff[j]
            free = e == 0
            width = np.where(free, zu - zl, 1.0)
            su = np.where(e > 0, 1.0, np.where(e < 0, a, (zu - a * zl) / width))
            tu = np.where(free, a * zl - su * zl, 0.0)
            sl = np.where(e > 0, 1.0, np.where(e < 0, a, np.where(zu >= -zl, 1.0, a)))
            relax.append((su, tu, sl))
        out = []
        for sense in (1.0, -1.0):  # 1: lower bound of z; -1: lower bound of -z
            am = sense * self.L.w[k][rows]
            cv = sense * self.L.b[k][rows]
            for j in range(k - 1, -1, -1):
                su, tu, sl = relax[j]
                pos, neg = np.maximum(am, 0.0), np.minimum(am, 0.0)
                cv = cv + neg @ tu  # a lower bound takes the upper relaxation where the weight is < 0
                am = pos * sl + neg * su
                cv = cv + am @ self.L.b[j]
                am = am @ self.L.w[j]
            ay = am * self.dom.d[None, :]
            by = am @ self.dom.xc + cv
            lowv = self._dual_lower(ay, by, s0)
            pad = 1e-12 * (np.abs(ay).sum(axis=1) + np.abs(by))
            out.append(lowv - pad)
        return out[0], -out[1]

    def _bound(self, node: _Node, parent: _Node | None = None) -> bool:
        """Forward bounds, effective states and the backward upper bound of a node; False when the
        interval bounds prove it empty."""
        lo, hi = self.x_lo, self.x_hi
        eff, zb = [], []
        for k, (w, w_abs, b, a) in enumerate(zip(self.L.w, self.w_abs, self.L.b, self.L.alpha, strict=True)):
            zl, zu = _affine_interval(w, w_abs, b, lo, hi)
            rl, ru = self.root[k]
            zl, zu = np.maximum(zl, rl), np.minimum(zu, ru)
            s = node.states[k]
            zl = np.where(s > 0, np.maximum(zl, 0.0), zl)
            zu = np.where(s < 0, np.minimum(zu, 0.0), zu)
            if (k == 0 and self.st.dual_iters > 0 and self.mode != "global" and np.any(s != 0)
                    and self.throttle["dual"].go()):
                amb_before = int(np.sum((zl < 0) & (zu > 0)))
                zl, zu = self._dual_tighten(s, zl, zu)
                self.throttle["dual"].record(int(np.sum((zl < 0) & (zu > 0))) < amb_before)
            elif k > 0 and self.st.node_crown and self.mode != "global" and np.all(np.isfinite(zl)):
                rows = np.flatnonzero((zl < 0) & (zu > 0))
                if rows.size:
                    cl, cu = self._crown(k, eff, zb, node.states[0], rows)
                    zl, zu = zl.copy(), zu.copy()
                    zl[rows], zu[rows] = np.maximum(zl[rows], cl), np.minimum(zu[rows], cu)
            if np.any(zl > zu):
                return False
            e = s.copy()
            free = s == 0
            e[free & (zl >= 0) & ~(zu <= 0)] = 1
            e[free & (zu <= 0)] = -1
            eff.append(e)
            zb.append((zl, zu))
            lo, hi = _act(zl, a), _act(zu, a)
        node.eff, node.zb = eff, zb
        # backward interval of the Jacobian (rows: outputs or c^T)
        g_lo = g_hi = self._c(node)
        scores: list[np.ndarray] = []
        back: list[tuple[np.ndarray, np.ndarray]] = []
        for k in range(len(self.L.w) - 1, -1, -1):
            a = self.L.alpha[k]
            e = eff[k]
            d_lo = np.where(e > 0, 1.0, a)
            d_hi = np.where(e < 0, a, 1.0)
            back.append((g_lo, g_hi))
            mag = np.maximum(np.abs(g_lo), np.abs(g_hi)).sum(axis=0)
            scores.append(np.where(e == 0, mag * (1.0 - a), -1.0))
            h_lo = np.where(g_lo >= 0, g_lo * d_lo, g_lo * d_hi)
            h_hi = np.where(g_hi >= 0, g_hi * d_hi, g_hi * d_lo)
            mid, rad = (h_lo + h_hi) / 2, (h_hi - h_lo) / 2
            cm, cr = mid @ self.L.w[k], rad @ self.w_abs[k]
            g_lo, g_hi = _widen(cm - cr, cm + cr)
        node.scores = scores[::-1]
        node.back = back[::-1]
        ub = nonneg_norm(np.maximum(np.abs(g_lo), np.abs(g_hi)), self.cq) * (1 + BOUND_RTOL)
        if self.dirs is not None:
            fub, node.fwd = self._forward_bound(eff, node, parent)
            if fub < ub:
                self.stats["forward_tighter"] += 1
                ub = fub
                # branching influence at the maximising direction: forward tangent x backward interval
                r = node.fwd["row"]
                node.scores = [np.where(e == 0, (1.0 - a) * np.maximum(np.abs(tl), np.abs(th))
                                        * np.maximum(np.abs(bl[r]), np.abs(bh[r])), -1.0)
                               for e, a, (tl, th), (bl, bh) in zip(eff, self.L.alpha, node.fwd["pre"],
                                                                   node.back, strict=True)]
            else:
                node.fwd = None
        node.upper = min(node.upper, ub)
        return True

    def _c(self, node: _Node | None) -> np.ndarray:
        """The output rows a node bounds: its own row in a joint row search, else c^T W_out or W_out."""
        if node is not None and node.row is not None and self.c_rows is not None:
            return self.c_rows[node.row]
        return self.c_out

    def _forward_bound(self, eff: list[np.ndarray], node: _Node | None = None,
                       parent: _Node | None = None) -> tuple[float, dict[str, Any]]:
        """max over the vertices v of the input-norm ball (l-inf: sign vectors up to a global sign; l1:
        the unit vectors) of the question's norm of the interval of J v, propagated forward with the
        node's slope intervals: ||J||_{p->q} = max_v ||J v||_q (a convex function of v on the ball), so
        this bounds every J of the node. For one hidden layer and a scalar output it is exact over the
        slope box (the geometry of the regions aside)."""
        assert self.dirs is not None
        slopes = [(np.where(e > 0, 1.0, a)[:, None], np.where(e < 0, a, 1.0)[:, None])
                  for e, a in zip(eff, self.L.alpha, strict=True)]
        pl = self.p_list.get(node.row if node is not None else None)
        if pl is not None:  # one hidden layer, scalar output: matrix-vector products
            p_pos, p_neg, p_pad = pl
            dl, dh = slopes[0][0][:, 0], slopes[0][1][:, 0]
            cache = parent.fcache if parent is not None else None
            live = parent.live if parent is not None else None
            if cache is not None:  # incremental: only the neurons whose slope interval changed
                pdl, pdh, hi, lo = cache
                ch = np.flatnonzero((pdl != dl) | (pdh != dh))
                if ch.size:
                    ddl, ddh = dl[ch] - pdl[ch], dh[ch] - pdh[ch]
                    if live is None:
                        pp, pn = p_pos[ch], p_neg[ch]
                    else:
                        pp, pn = p_pos[np.ix_(ch, live)], p_neg[np.ix_(ch, live)]
                    hi = hi + ddh @ pp + ddl @ pn
                    lo = lo + ddl @ pp + ddh @ pn
                self.stats["incremental"] += 1
            else:
                pp = p_pos if live is None else p_pos[:, live]
                pn = p_neg if live is None else p_neg[:, live]
                d2 = np.vstack([dh, dl])
                a, b = d2 @ pp, d2[::-1] @ pn
                hi, lo = a[0] + b[0], a[1] + b[1]
            vals = np.maximum(hi, -lo)
            j = int(np.argmax(vals))
            top = (float(vals[j]) + p_pad) * (1 + BOUND_RTOL)
            jj = j if live is None else int(live[j])
            u = self.u0[:, jj]
            info = {"dir": jj, "row": 0, "sign": 1.0 if hi[j] >= -lo[j] else -1.0, "pre": [(u, u)]}
            if node is not None:
                # directions whose bound is at most the certified lower bound cannot raise the maximum
                # in this subtree (their bounds only shrink): they are dropped for the node's children
                floor = self.lower if self.lower is not None else -math.inf
                keep = (vals + p_pad) * (1 + BOUND_RTOL) > floor
                if not np.all(keep):
                    idx = np.flatnonzero(keep)
                    node.live = idx.astype(np.int64) if live is None else live[idx]
                    hi, lo = hi[idx], lo[idx]
                    self.stats["directions_dropped"] += int(keep.size - idx.size)
                else:
                    node.live = live
                if self.n_cached < self.max_cached:
                    node.fcache = (dl, dh, hi, lo)
                    self.n_cached += 1
            return top, info
        best, info = -math.inf, {}
        nv = self.dirs.shape[1]
        for start in range(0, nv, 4096):
            tl, th = self.u0_lo[:, start:start + 4096], self.u0_hi[:, start:start + 4096]
            pre = [(tl, th)]
            for k in range(len(self.L.w)):
                if k > 0:
                    mid, rad = (tl + th) / 2, (th - tl) / 2
                    cm, cr = self.L.w[k] @ mid, self.w_abs[k] @ rad
                    tl, th = _widen(cm - cr, cm + cr)
                    pre.append((tl, th))
                dl, dh = slopes[k]
                tl, th = np.where(tl >= 0, tl * dl, tl * dh), np.where(th >= 0, th * dh, th * dl)
            mid, rad = (tl + th) / 2, (th - tl) / 2
            c_out = self._c(node)
            cm, cr = c_out @ mid, np.abs(c_out) @ rad
            ol, oh = _widen(cm - cr, cm + cr)
            if c_out.shape[0] == 1 and node is not None and node.back is not None and len(pre) > 1:
                # cuts at the earlier hidden layers: c^T J v = sum_i g_i d_i t_i with g the backward
                # interval (layers above k) and t the forward tangent (layers below), each term bounded
                # over its corners; every cut contains c^T J v, so their intersection does
                for k in range(len(pre) - 1):
                    bl, bh = node.back[k][0][0][:, None], node.back[k][1][0][:, None]
                    dl, dh = slopes[k]
                    gl, gh = np.minimum(bl * dl, bl * dh), np.maximum(bh * dl, bh * dh)
                    ptl, pth = pre[k]
                    c1, c2, c3, c4 = gl * ptl, gl * pth, gh * ptl, gh * pth
                    kh = np.maximum(np.maximum(c1, c2), np.maximum(c3, c4)).sum(axis=0)
                    kl = np.minimum(np.minimum(c1, c2), np.minimum(c3, c4)).sum(axis=0)
                    kl, kh = _widen(kl, kh)
                    ol, oh = np.maximum(ol, kl[None, :]), np.minimum(oh, kh[None, :])
            mag = np.maximum(np.abs(ol), np.abs(oh))
            vals = mag[0] if mag.shape[0] == 1 else np.linalg.norm(mag, ord=self.cq.output_norm.p, axis=0)
            j = int(np.argmax(vals))
            if vals[j] > best:
                best = float(vals[j])
                r = int(np.argmax(mag[:, j]))
                info = {"dir": start + j, "row": r, "sign": 1.0 if oh[r, j] >= -ol[r, j] else -1.0,
                        "pre": [(pl[:, j].copy(), ph[:, j].copy()) for pl, ph in pre]}
        return best * (1 + BOUND_RTOL), info

    # -- true forward pass --------------------------------------------------------------------------
    def _pre(self, x: np.ndarray) -> list[np.ndarray]:
        h, zs = x, []
        for w, b, a in zip(self.L.w, self.L.b, self.L.alpha, strict=True):
            z = w @ h + b
            zs.append(z)
            h = _act(z, a)
        return zs

    def _repair(self, x: np.ndarray, states: list[np.ndarray], k: int, i: int,
                zb: tuple[np.ndarray, np.ndarray]) -> np.ndarray | None:
        """A true point of a child: the parent's point x moved along the gradient of z_{k,i} (the
        Jacobian row of the pattern at x) across the neuron's boundary, kept in the bounding box; None
        if the moved point breaks a fixed sign or leaves the domain."""
        sign = float(states[k][i])
        a = np.eye(self.n)
        h = x
        for j in range(k + 1):
            z = self.L.w[j] @ h + self.L.b[j]
            a = self.L.w[j] @ a
            if j < k:
                sl = np.where(z > 0, 1.0, self.L.alpha[j])
                a, h = sl[:, None] * a, _act(z, self.L.alpha[j])
        grad, zi = a[i], float(z[i])
        g2 = float(grad @ grad)
        if g2 == 0.0:
            return None
        reach = zb[1][i] if sign > 0 else -zb[0][i]
        for frac in (0.25, 0.05):
            target = sign * frac * (reach if np.isfinite(reach) and reach > 0 else max(1.0, abs(zi)))
            y = np.clip(x + (target - zi) / g2 * grad, self.x_lo, self.x_hi)
            if self.cq.domain.contains(y) and self._satisfies(states, self._pre(y)):
                return y
        return None

    def _satisfies(self, states: list[np.ndarray], zs: list[np.ndarray]) -> bool:
        return all(np.all(z[s > 0] > 0) and np.all(z[s < 0] < 0) for s, z in zip(states, zs, strict=True))

    # -- LPs --------------------------------------------------------------------------------------
    def _node_lp(self, node: _Node) -> tuple[bool, np.ndarray | None]:
        """(prunable, x): maximise the margin of the fixed neurons' signs over the relaxed node set."""
        from lipopt_solvers import SolverOptions, Termination, solve_lp

        assert node.eff is not None and node.zb is not None
        fixed_layers = [k for k, s in enumerate(node.states) if np.any(s != 0)]
        if not fixed_layers:
            return False, None
        depth = fixed_layers[-1] + 1
        if depth == 1:  # first-layer signs only: the exact polytope, an LP in (y, t) (unit coordinates)
            s0 = node.states[0]
            fx = np.flatnonzero(s0 != 0)
            sg = s0[fx].astype(np.float64)
            g = sg[:, None] * self.a0y[fx]
            h = sg * self.b0y[fx]
            nrm = np.linalg.norm(g, axis=1)
            if np.any((nrm == 0) & (h < 0)):
                return True, None
            keep = nrm > 0
            self.stats["lp_prune_calls"] += 1
            box = self.dom if self.dom.kind != "ball" else UnitDomain("box", self.dom.xc, self.dom.d)
            try:
                sol = solve_margin(g[keep] / nrm[keep, None], h[keep] / nrm[keep], box)
            except LipoptError:
                return False, None  # unsure: keep the node
            if sol.t_solver < -PRUNE_TOL and sol.margin < -PRUNE_TOL:
                return True, None
            return False, self.dom.to_x(sol.y)
        sizes = self.L.sizes[:depth]
        # variables: x, then (z_k, h_k) per layer, then t
        offs = [self.n]
        for sz in sizes:
            offs.append(offs[-1] + 2 * sz)
        nv = offs[-1] + 1
        it = nv - 1
        eq_rows, eq_rhs, ub_rows, ub_rhs = [], [], [], []
        for k in range(depth):
            sz = sizes[k]
            zo, ho = offs[k], offs[k] + sz
            prev = slice(0, self.n) if k == 0 else slice(offs[k - 1] + sizes[k - 1], offs[k])
            w = self.L.w[k]
            a = self.L.alpha[k]
            blk = np.zeros((sz, nv))
            blk[:, zo:zo + sz] = np.eye(sz)
            blk[:, prev] = -w
            eq_rows.append(blk)
            eq_rhs.append(self.L.b[k])
            e, s = node.eff[k], node.states[k]
            zl, zu = node.zb[k]
            rn = np.linalg.norm(w * (self.dom.d[None, :] if k == 0 else 1.0), axis=1)
            rn = np.where(rn > 0, rn, 1.0)
            for i in range(sz):
                zi, hi_ = zo + i, ho + i
                if e[i] != 0:
                    row = np.zeros(nv)
                    row[hi_] = 1.0
                    row[zi] = -1.0 if e[i] > 0 else -a
                    eq_rows.append(row[None, :])
                    eq_rhs.append(np.zeros(1))
                    if s[i] != 0:  # sign with margin: sign * z >= t * |row|
                        r = np.zeros(nv)
                        r[zi] = -float(s[i])
                        r[it] = rn[i]
                        ub_rows.append(r)
                        ub_rhs.append(0.0)
                else:
                    for slope in (1.0, a):  # h >= slope z
                        r = np.zeros(nv)
                        r[zi], r[hi_] = slope, -1.0
                        ub_rows.append(r)
                        ub_rhs.append(0.0)
                    if np.isfinite(zl[i]) and np.isfinite(zu[i]) and zu[i] > zl[i]:
                        # chord through (l, a l) and (u, u): h <= a l + (u - a l) (z - l) / (u - l)
                        sl = (zu[i] - a * zl[i]) / (zu[i] - zl[i])
                        r = np.zeros(nv)
                        r[hi_], r[zi] = 1.0, -sl
                        ub_rows.append(r)
                        ub_rhs.append(a * zl[i] - sl * zl[i])
        cost = np.zeros(nv)
        cost[it] = -1.0
        bounds: list[tuple[float | None, float | None]] = []
        for j in range(self.n):
            lo, hi = self.x_lo[j], self.x_hi[j]
            bounds.append((float(lo) if np.isfinite(lo) else None, float(hi) if np.isfinite(hi) else None))
        bounds += [(None, None)] * (nv - self.n - 1) + [(-1.0, 1.0)]
        self.stats["lp_prune_calls"] += 1
        out = solve_lp(cost, A_ub=np.vstack(ub_rows) if ub_rows else None,
                       b_ub=np.asarray(ub_rhs) if ub_rows else None,
                       A_eq=np.vstack(eq_rows), b_eq=np.concatenate(eq_rhs), bounds=bounds,
                       solver=self.st.solver, options=SolverOptions(feasibility_tol=1e-10))
        if out.termination is Termination.INFEASIBLE:
            return True, None
        if out.termination is not Termination.OPTIMAL or out.x is None:
            return False, None  # unsure: keep the node
        t = float(out.x[it])
        if t < -PRUNE_TOL:
            return True, None
        return False, np.asarray(out.x[:self.n], dtype=np.float64)

    def _region_rows(self, eff: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
        """Region of a complete pattern in unit-domain coordinates, rows normalised: g y + h >= t; None
        when a constant row has the wrong sign (empty)."""
        d, xc = self.dom.d, self.dom.xc
        a_mat, c = np.eye(self.n), np.zeros(self.n)
        a_abs, c_abs = np.eye(self.n), np.zeros(self.n)
        gs, hs = [], []
        for k, (w, w_abs, b, alpha) in enumerate(zip(self.L.w, self.w_abs, self.L.b, self.L.alpha,
                                                     strict=True)):
            a_mat, c = w @ a_mat, w @ c + b
            a_abs, c_abs = w_abs @ a_abs, w_abs @ c_abs + np.abs(b)
            amb = (self.root[k][0] < 0) & (self.root[k][1] > 0)
            sign = np.where(eff[k] > 0, 1.0, -1.0)
            for i in np.flatnonzero(amb):
                ay = a_mat[i] * d
                cy = float(a_mat[i] @ xc + c[i])
                nrm = float(np.linalg.norm(ay))
                scale = float(np.linalg.norm(a_abs[i] * d))
                if nrm <= ZERO_RTOL * scale or nrm == 0.0:
                    cscale = float(a_abs[i] @ np.abs(xc) + c_abs[i])
                    if abs(cy) <= ZERO_RTOL * cscale or cy == 0.0:
                        continue
                    if sign[i] * cy < 0:
                        return None
                    continue
                gs.append(sign[i] * ay / nrm)
                hs.append(sign[i] * cy / nrm)
            sl = np.where(eff[k] > 0, 1.0, alpha)
            a_mat, c = a_mat * sl[:, None], c * sl
            a_abs, c_abs = a_abs * sl[:, None], c_abs * sl
        if not gs:
            return np.zeros((0, self.n)), np.zeros(0)
        return np.vstack(gs), np.asarray(hs)

    def _jacobian(self, eff: list[np.ndarray]) -> np.ndarray:
        j = np.eye(self.n)
        for w, a, e in zip(self.L.w, self.L.alpha, eff, strict=True):
            j = np.where(e > 0, 1.0, a)[:, None] * (w @ j)
        return self.L.w_out @ j

    # -- lower side -----------------------------------------------------------------------------------
    def _offer(self, x: np.ndarray, source: str, pattern: list[np.ndarray] | None = None) -> float | None:
        pw = point_witness(self.net, x, self.cq)
        if not pw.certified:
            return None
        if self.lower is None or pw.value > self.lower:
            self.lower = pw.value
            zs = self._pre(x)
            self.witness = {"x": x.tolist(), "value": pw.value, "margin": pw.margin, "source": source,
                            "pattern": [(z > 0).astype(int).tolist() for z in zs]}
            self._record()
        return pw.value

    def _samples(self) -> None:
        k = int(self.st.n_samples)
        if k <= 0:
            return
        rng = np.random.default_rng(self.st.seed)
        xs = self.cq.domain.sample(rng, k, self.n)
        centre = self.dom.xc[None, :]
        xs = np.vstack([centre, xs])
        from lipopt.lower.batch import batch_jacobian_norms

        try:
            vals = batch_jacobian_norms(self.net, xs, self.cq)
        except Exception:  # pragma: no cover - fall back to a few float64 evaluations
            vals = np.zeros(len(xs))
        for i in np.argsort(-vals)[:8]:
            if self._offer(xs[i], "sample") is not None:
                break

    def _climb(self, x0: np.ndarray, budget: float) -> None:
        """Lower side: hill climbing over neighbouring regions from the region of x0 (one neuron flipped
        at a time, the flips ranked by their exact ||J_s||, kept when the flipped region has interior:
        margin LP, then the float64 witness)."""
        t_end = time.perf_counter() + budget
        eff = [np.where(z > 0, 1, -1).astype(np.int8) for z in self._pre(x0)]
        best = jacobian_norm(self._jacobian(eff), self.cq)
        for _ in range(50):
            cands = []
            for k, e in enumerate(eff):
                for i in np.flatnonzero((self.root[k][0] < 0) & (self.root[k][1] > 0)):
                    e[i] = -e[i]
                    v = jacobian_norm(self._jacobian(eff), self.cq)
                    e[i] = -e[i]
                    if v > best * (1 + 1e-9):
                        cands.append((v, k, int(i)))
            improved = False
            for v, k, i in sorted(cands, reverse=True)[:16]:
                if time.perf_counter() > t_end:
                    return
                eff[k][i] = -eff[k][i]
                rows = self._region_rows(eff)
                self.stats["climb_lps"] += 1
                if rows is not None:
                    try:
                        sol = solve_margin(rows[0], rows[1], self.dom)
                    except LipoptError:
                        sol = None
                    if sol is not None and sol.margin > self.st.tau:
                        got = self._offer(self.dom.to_x(sol.y), "climb")
                        if got is not None:
                            best, improved = max(best, v), True
                            break
                eff[k][i] = -eff[k][i]
            if not improved:
                return

    # -- bracket ------------------------------------------------------------------------------------
    def _upper(self, heap: list) -> float | None:
        top = -heap[0][0] if heap else -math.inf
        up = max(top, self.leaf_upper)
        if self.lower is not None:
            up = max(up, self.lower)
        return up if up > -math.inf else None  # nothing known yet

    def _record(self, heap: list | None = None) -> None:
        up = self._upper(heap) if heap is not None else (self.history[-1][2] if self.history else None)
        entry = (time.perf_counter() - self.t0, self.lower, up)
        if not self.history or self.history[-1][1:] != entry[1:]:
            self.history.append(entry)

    # -- main loop ----------------------------------------------------------------------------------
    def _leaf(self, node: _Node) -> None:
        """A node without free ambiguous neurons: exact J, counted iff its region has interior."""
        assert node.eff is not None
        self.stats["leaves"] += 1
        jac = self._jacobian(node.eff)
        value = jacobian_norm(jac, self.cq)
        if value * (1 + 1e-12) <= self.leaf_upper:
            self.stats["pruned_bound"] += 1
            return  # cannot change the bracket's upper side; its lower side only via a bigger value
        x = None
        if node.point is not None:
            pw = point_witness(self.net, node.point, self.cq)
            zs = self._pre(node.point)
            same = all(np.array_equal(np.where(z > 0, 1, -1), np.where(e > 0, 1, -1))
                       for z, e in zip(zs, node.eff, strict=True))
            if pw.certified and same:
                x = node.point
                self.stats["leaf_by_point"] += 1
        if x is None:
            rows = self._region_rows(node.eff)
            if rows is None:
                self.stats["leaves_empty"] += 1
                return
            self.stats["margin_lps"] += 1
            try:
                sol = solve_margin(rows[0], rows[1], self.dom)
            except LipoptError as exc:  # undecided: the value stays on the upper side only
                self.leaf_upper = max(self.leaf_upper, value * (1 + 1e-12))
                self.stats["leaves_undecided"] = self.stats.get("leaves_undecided", 0) + 1
                self.notes.append(f"a leaf's margin problem failed ({exc}); its value {value:.9g} is kept "
                                  "on the upper side")
                return
            if not sol.margin > self.st.tau:
                self.stats["leaves_empty"] += 1
                return
            x = self.dom.to_x(sol.y)
        self.stats["leaves_full"] += 1
        self.leaf_upper = max(self.leaf_upper, value * (1 + 1e-12))
        got = self._offer(x, "leaf")
        if got is not None and abs(got - value) > 1e-9 * max(1.0, value):
            self.notes.append(f"leaf value {value:.12g} and re-evaluated witness {got:.12g} differ")

    def _complete(self, node: _Node) -> None:
        """Lower side: complete the node's pattern by the slope that maximises its forward bound at the
        maximising direction (exact for one hidden layer: the bound's own argmax), and test the complete
        pattern by the margin LP; the LP's point (a true point, in any region) is offered as a witness."""
        assert node.eff is not None and node.fwd is not None and node.back is not None
        r, sign = node.fwd["row"], node.fwd["sign"]
        eff = []
        for e, (tl, th), (bl, bh) in zip(node.eff, node.fwd["pre"], node.back, strict=True):
            gain = sign * (bl[r] + bh[r]) * (tl + th)
            eff.append(np.where(e != 0, e, np.where(gain > 0, 1, -1)).astype(np.int8))
        key = b"".join(e.tobytes() for e in eff)
        if key in self.tried:
            return
        self.tried.add(key)
        self.stats["completions"] += 1
        rows = self._region_rows(eff)
        if rows is None:
            return
        try:
            sol = solve_margin(rows[0], rows[1], self.dom)
        except LipoptError:
            return
        x = self.dom.to_x(sol.y)
        before = self.lower
        if sol.margin > self.st.tau:
            self.stats["completions_full"] += 1
        if self.cq.domain.contains(x):
            self._offer(x, "completion")
        self.throttle["completion"].record(sol.margin > self.st.tau or self.lower != before)

    def _branch_index(self, node: _Node) -> tuple[int, int] | None:
        assert node.eff is not None and node.scores is not None
        best, arg = -1.0, None
        for k, (e, sc) in enumerate(zip(node.eff, node.scores, strict=True)):
            free = np.flatnonzero(e == 0)
            if free.size == 0:
                continue
            if self.st.branching == "layer":
                return k, int(free[0])
            zl, zu = node.zb[k] if node.zb is not None else (None, None)
            s = sc[free] * self.mass[k][free]
            if zl is not None and np.all(np.isfinite(zl[free])) and np.all(np.isfinite(zu[free])):
                width = np.minimum(-zl[free], zu[free]) / np.maximum(zu[free] - zl[free], 1e-300)
                s = s * (0.5 + width)
            j = int(np.argmax(s))
            if s[j] > best:
                best, arg = float(s[j]), (k, int(free[j]))
        return arg

    def _drop_cache(self, node: _Node) -> None:
        if node.fcache is not None:
            node.fcache = None
            self.n_cached -= 1

    def run(self) -> BabOutcome:
        from lipopt_solvers import interrupts

        limit = self.st.time_limit
        self._samples()
        if self.witness is not None and self.st.climb_time > 0:
            budget = self.st.climb_time if limit is None else min(self.st.climb_time, 0.1 * limit)
            self._climb(np.asarray(self.witness["x"]), budget)
        rows = list(range(len(self.c_rows))) if self.c_rows is not None else [None]
        heap: list = []
        stop = "completed"
        root_uppers, amb = [], 0
        for r in rows:
            root = _Node([np.zeros(sz, dtype=np.int8) for sz in self.L.sizes], math.inf, None, 0, row=r)
            if self._bound(root):
                heapq.heappush(heap, (-root.upper, next(self._counter), root))
                root_uppers.append(root.upper)
                amb = max(amb, int(sum(int(np.sum(e == 0)) for e in (root.eff or []))))
        self._record(heap)
        self.stats["root_upper"] = max(root_uppers) if root_uppers else None
        self.stats["ambiguous_root"] = amb
        if self.c_rows is not None:
            self.stats["joint_rows"] = len(rows)
        try:
            while heap:
                if interrupts.requested():
                    stop = "interrupted"
                    break
                if limit is not None and time.perf_counter() - self.t0 > limit:
                    stop = "time_limit"
                    break
                if self.st.max_nodes is not None and self.stats["nodes"] >= self.st.max_nodes:
                    stop = "node_limit"
                    break
                up = self._upper(heap)
                if self.lower is not None and up - self.lower <= self.st.rel_gap * abs(up):
                    stop = "gap" if heap else "completed"
                    break
                _, _, node = heapq.heappop(heap)
                if node.fcache is not None:  # used by this node's children only
                    self.n_cached -= 1
                self.stats["nodes"] += 1
                self.stats["max_depth"] = max(self.stats["max_depth"], node.depth)
                if node.upper <= max(self.leaf_upper, self.lower if self.lower is not None else -math.inf):
                    self.stats["pruned_bound"] += 1
                    self._record(heap)
                    continue
                br = self._branch_index(node)
                if (br is not None and node.fwd is not None and self.st.completion
                        and self.throttle["completion"].go()):
                    self._complete(node)
                if br is None:
                    self._leaf(node)
                    self._record(heap)
                    continue
                k, i = br
                zs_parent = self._pre(node.point) if node.point is not None else None
                for sign in (1, -1):
                    states = [s.copy() for s in node.states]
                    states[k][i] = sign
                    child = _Node(states, node.upper, None, node.depth + 1, row=node.row)
                    if zs_parent is not None and self._satisfies(states, zs_parent):
                        child.point = node.point
                    if not self._bound(child, node):
                        self.stats["pruned_interval"] += 1
                        self._drop_cache(child)
                        continue
                    if child.point is None and node.point is not None and self.st.repair:
                        child.point = self._repair(node.point, states, k, i, child.zb[k])
                        if child.point is not None:
                            self.stats["repaired"] += 1
                            self._offer(child.point, "node")
                    if (child.point is None and self.st.lp_prune
                            and sum(int(np.count_nonzero(v)) for v in states) >= self.lp_min_fixed
                            and self.throttle["lp"].go()):
                        pruned, x = self._node_lp(child)
                        self.throttle["lp"].record(pruned)
                        if pruned:
                            self.stats["pruned_lp"] += 1
                            self._drop_cache(child)
                            continue
                        if x is not None and self._satisfies(states, self._pre(x)):
                            child.point = x
                            self._offer(x, "node")
                    elif child.point is not None:
                        self.stats["inherited"] += 1
                    heapq.heappush(heap, (-child.upper, next(self._counter), child))
                node.fcache = None
                self._record(heap)
        except KeyboardInterrupt:
            stop = "interrupted"
        upper = self._upper(heap) if (heap or self.leaf_upper > -math.inf or self.lower is not None) else None
        if not heap and stop == "completed" and self.leaf_upper == -math.inf:
            # every node was pruned: by bound (then the lower bound is the maximum) or as infeasible
            upper = self.lower
            if upper is None:
                self.notes.append("no complete pattern with interior was found (numerical trouble?)")
        self._record(heap)
        self.stats["time"] = time.perf_counter() - self.t0
        self.stats["open_nodes"] = len(heap)
        return BabOutcome(self.lower, upper, self.witness, stop, self.history, self.stats, self.notes,
                          self.cq)


def run_bab(network: Network, question: Question, settings: BabSettings | None = None) -> BabOutcome:
    """Branch and bound over activation patterns (see the module docstring); the certified bracket."""
    st = settings or BabSettings()
    if has_maxpool(network):
        raise NotApplicableError("bab handles affine and (leaky) ReLU stages; the network has max-pooling")
    if isinstance(question.domain, Ball) and question.domain.norm not in (Norm.L2, Norm.LINF):
        raise NotApplicableError("bab handles l2 and l-inf balls")
    q = question.bind(network)
    if (st.split_rows and isinstance(q.output, AllOutputs) and q.output_norm is Norm.LINF
            and network.output_size > 1):
        return _run_rows(network, q, st)
    return _Bab(network, q, st).run()


def _run_rows(network: Network, q: Question, st: BabSettings) -> BabOutcome:
    """All outputs with output norm l-inf: ||J||_{p->inf} = max_r ||e_r^T J||_{p*}, one search per output
    row (a scalar output: the forward bound gets its cuts), in decreasing order of the rows' root
    bounds, each seeded with the certified lower bound so far (nodes at or below it are pruned) and given
    the time left. A row whose root bound is at most the lower bound is skipped; a row not searched in
    time keeps its root bound. Every witness is re-evaluated on the all-outputs question."""
    import dataclasses

    t0 = time.perf_counter()
    m = network.output_size
    main = _Bab(network, q, st)  # the all-outputs question as searched (bias-free global: the box)
    cq = main.cq
    row_q = [q.with_(output=Direction(np.eye(m)[r])).bind(network) for r in range(m)]
    roots = []
    for qr in row_q:
        b = _Bab(network, qr, dataclasses.replace(st, n_samples=0, climb_time=0.0))
        node = _Node([np.zeros(sz, dtype=np.int8) for sz in b.L.sizes], math.inf, None, 0)
        roots.append(node.upper if b._bound(node) else 0.0)
    uppers = list(roots)
    lower, witness = None, None
    history: list[tuple[float, float | None, float | None]] = []
    stats: dict[str, Any] = {"rows": [], "mode": main.mode, "root_upper": max(roots)}
    notes = list(main.notes)
    stop = "completed"
    for r in sorted(range(m), key=lambda i: -roots[i]):
        elapsed = time.perf_counter() - t0
        row = {"row": r, "root_upper": roots[r]}
        stats["rows"].append(row)
        if lower is not None and roots[r] <= lower:
            row["skipped"] = "root bound below the certified lower bound"
            continue
        if st.time_limit is not None and elapsed >= st.time_limit:
            row["skipped"] = "time limit"
            stop = "time_limit"
            continue
        left = None if st.time_limit is None else st.time_limit - elapsed
        b = _Bab(network, row_q[r], dataclasses.replace(st, time_limit=left))
        b.lower, b.witness = lower, witness
        others = max((uppers[i] for i in range(m) if i != r), default=-math.inf)
        out = b.run()
        for t, lo, up in out.history:
            history.append((elapsed + t, lo, None if up is None else max(up, others)))
        uppers[r] = out.upper if out.upper is not None else roots[r]
        row.update({"lower": out.lower, "upper": out.upper, "stop": out.stop, "nodes": out.stats["nodes"]})
        for key, v in out.stats.items():
            if isinstance(v, int) and not isinstance(v, bool) and key not in ("max_depth",):
                stats[key] = stats.get(key, 0) + v
        if out.witness is not None:
            x = np.asarray(out.witness["x"], dtype=np.float64)
            pw = point_witness(network, x, cq)
            value = max(pw.value, out.lower if out.lower is not None else -math.inf)  # same up to rounding
            if pw.certified and (lower is None or value > lower):
                lower = value
                witness = {**out.witness, "value": value, "margin": pw.margin, "row": r}
        if out.stop not in ("completed", "gap"):
            stop = out.stop
            if out.stop == "interrupted":
                break
    upper = max(uppers)
    if lower is not None:
        upper = max(upper, lower)
    history.append((time.perf_counter() - t0, lower, upper))
    stats["time"] = time.perf_counter() - t0
    notes.append(f"all outputs with output norm l-inf: one search per output row ({m} rows), "
                 "||J||_{p->inf} = max_r ||e_r^T J||_{p*}")
    return BabOutcome(lower, upper, witness, stop, history, stats, notes, cq)
