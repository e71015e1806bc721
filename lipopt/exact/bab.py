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
  matrices, and have closed forms there);
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
influence on the bound (its backward interval magnitude times the absolute weight mass from it to the
input, times 1 - alpha). The bracket [best certified leaf / sample, max(open nodes' bounds, best leaf)]
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
from lipopt.errors import NotApplicableError
from lipopt.exact.interior import UnitDomain, solve_margin, unit_domain
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, LeakyReLUStage, MaxPoolStage, ReLUStage, dispatch
from lipopt.norms import jacobian_norm
from lipopt.spec import Ball, Box, Global, Norm, Question

__all__ = ["BabOutcome", "BabSettings", "Layers", "bab_layers", "nonneg_norm", "run_bab"]

#: relative widening of every interval bound (float64 rounding of the products)
BOUND_RTOL = 1e-10
#: an LP margin below -PRUNE_TOL proves a node infeasible
PRUNE_TOL = 1e-7
#: a pre-activation row counts as zero below this fraction of the terms that built it (as enumeration)
ZERO_RTOL = 1e-12


@dataclass
class BabSettings:
    time_limit: float | None = None
    rel_gap: float = 1e-6
    tau: float = 1e-9  # interior tolerance of the leaf margin LP (unit-domain coordinates)
    max_nodes: int | None = None
    lp_prune: bool = True  # prune infeasible nodes by the relaxed LP
    n_samples: int = 256  # seeded domain samples, the best certified as the first lower bound
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
        # mass[k][i]: the dual input norm of row i of |W_k| ... |W_0| (neuron i's reach to the input)
        self.mass: list[np.ndarray] = []
        prod = np.eye(self.n)
        for w_abs in self.w_abs:
            prod = w_abs @ prod
            self.mass.append(np.linalg.norm(prod, ord=q.input_norm.dual.p, axis=1))
        self.stats: dict[str, Any] = {"nodes": 0, "leaves": 0, "leaves_full": 0, "leaves_empty": 0,
                                      "lp_prune_calls": 0, "pruned_lp": 0, "pruned_interval": 0,
                                      "pruned_bound": 0, "inherited": 0, "margin_lps": 0,
                                      "leaf_by_point": 0, "max_depth": 0, "mode": self.mode}
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

    def _bound(self, node: _Node) -> bool:
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
        g_lo = g_hi = self.c_out
        scores = []
        for k in range(len(self.L.w) - 1, -1, -1):
            a = self.L.alpha[k]
            e = eff[k]
            d_lo = np.where(e > 0, 1.0, a)
            d_hi = np.where(e < 0, a, 1.0)
            mag = np.maximum(np.abs(g_lo), np.abs(g_hi)).sum(axis=0)
            scores.append(np.where(e == 0, mag * (1.0 - a), -1.0))
            h_lo = np.where(g_lo >= 0, g_lo * d_lo, g_lo * d_hi)
            h_hi = np.where(g_hi >= 0, g_hi * d_hi, g_hi * d_lo)
            mid, rad = (h_lo + h_hi) / 2, (h_hi - h_lo) / 2
            cm, cr = mid @ self.L.w[k], rad @ self.w_abs[k]
            g_lo, g_hi = _widen(cm - cr, cm + cr)
        node.scores = scores[::-1]
        ub = nonneg_norm(np.maximum(np.abs(g_lo), np.abs(g_hi)), self.cq) * (1 + BOUND_RTOL)
        node.upper = min(node.upper, ub)
        return True

    # -- true forward pass --------------------------------------------------------------------------
    def _pre(self, x: np.ndarray) -> list[np.ndarray]:
        h, zs = x, []
        for w, b, a in zip(self.L.w, self.L.b, self.L.alpha, strict=True):
            z = w @ h + b
            zs.append(z)
            h = _act(z, a)
        return zs

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

    # -- bracket ------------------------------------------------------------------------------------
    def _upper(self, heap: list) -> float:
        top = -heap[0][0] if heap else -math.inf
        up = max(top, self.leaf_upper)
        if self.lower is not None:
            up = max(up, self.lower)
        return up if up > -math.inf else (self.lower if self.lower is not None else 0.0)

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
            sol = solve_margin(rows[0], rows[1], self.dom)
            if not sol.margin > self.st.tau:
                self.stats["leaves_empty"] += 1
                return
            x = self.dom.to_x(sol.y)
        self.stats["leaves_full"] += 1
        self.leaf_upper = max(self.leaf_upper, value * (1 + 1e-12))
        got = self._offer(x, "leaf")
        if got is not None and abs(got - value) > 1e-9 * max(1.0, value):
            self.notes.append(f"leaf value {value:.12g} and re-evaluated witness {got:.12g} differ")

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

    def run(self) -> BabOutcome:
        from lipopt_solvers import interrupts

        self._samples()
        root = _Node([np.zeros(sz, dtype=np.int8) for sz in self.L.sizes], math.inf, None, 0)
        heap: list = []
        stop = "completed"
        limit = self.st.time_limit
        if self._bound(root):
            heapq.heappush(heap, (-root.upper, next(self._counter), root))
        self._record(heap)
        self.stats["root_upper"] = root.upper
        self.stats["ambiguous_root"] = int(sum(int(np.sum(e == 0)) for e in (root.eff or [])))
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
                self.stats["nodes"] += 1
                self.stats["max_depth"] = max(self.stats["max_depth"], node.depth)
                if node.upper <= max(self.leaf_upper, self.lower if self.lower is not None else -math.inf):
                    self.stats["pruned_bound"] += 1
                    self._record(heap)
                    continue
                br = self._branch_index(node)
                if br is None:
                    self._leaf(node)
                    self._record(heap)
                    continue
                k, i = br
                zs_parent = self._pre(node.point) if node.point is not None else None
                for sign in (1, -1):
                    states = [s.copy() for s in node.states]
                    states[k][i] = sign
                    child = _Node(states, node.upper, None, node.depth + 1)
                    if zs_parent is not None and self._satisfies(states, zs_parent):
                        child.point = node.point
                    if not self._bound(child):
                        self.stats["pruned_interval"] += 1
                        continue
                    if child.point is None and self.st.lp_prune:
                        pruned, x = self._node_lp(child)
                        if pruned:
                            self.stats["pruned_lp"] += 1
                            continue
                        if x is not None and self._satisfies(states, self._pre(x)):
                            child.point = x
                            self._offer(x, "node")
                    elif child.point is not None:
                        self.stats["inherited"] += 1
                    heapq.heappush(heap, (-child.upper, next(self._counter), child))
                self._record(heap)
        except KeyboardInterrupt:
            stop = "interrupted"
        upper = self._upper(heap) if (heap or self.leaf_upper > -math.inf or self.lower is not None) else None
        if not heap and stop == "completed" and self.leaf_upper == -math.inf:
            upper = 0.0 if self.lower is None else self.lower
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
    return _Bab(network, question, st).run()
