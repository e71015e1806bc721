"""Depth-first enumeration of the linear regions of a lowered network (formulations.md section 6).

A node of the search fixes the ReLU states (and max-pool winners) of a prefix of the units; its region is
the polyhedron where the fixed units behave as fixed, intersected with the domain. Children are pruned when
their region has no interior (strict mode: float64 margin of the LP centre <= tau) or is empty (weak mode:
LP margin < -tau). The child that contains the parent's witness point (with margin > tau) needs no LP.

Stable units (interval bounds over the domain) are fixed without a constraint; degenerate rows (a zero row
of the pre-activation map) are dropped, make the pattern infeasible, or (identically zero unit) keep only
s = 0, which has the same Jacobian. Max-pool windows branch over the entries that may win; two entries that
are the same affine function on the region keep only the lower index (as ``Network.jacobian`` does).

The mathematics as implemented: ``docs/methods.md#enumeration``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from lipopt.errors import NotApplicableError
from lipopt.exact.interior import UnitDomain, solve_margin, unit_domain
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, MaxPoolStage, activation_slopes, is_activation
from lipopt.norms import jacobian_norm
from lipopt.spec import Question

#: a pre-activation row counts as zero below this fraction of the size of the terms that built it
ZERO_RTOL = 1e-12


@dataclass
class EnumerationOptions:
    strict: bool = True  # full-dimensional regions (S_full); False: closed regions meeting X (S_weak)
    tau: float = 1e-9  # interior tolerance on the margin in unit-domain coordinates
    max_bits: float = 20.0  # refuse when ambiguous ReLUs + log2(max-pool choices) exceed this
    time_limit: float | None = None
    max_regions: int | None = None


@dataclass
class Region:
    """One linear region: the pattern (bool array per ReLU stage, winner indices per max-pool stage),
    a witness point x (in the region and the domain, with the given margin), and the Jacobian J_s."""

    pattern: list[np.ndarray]
    x: np.ndarray
    margin: float
    jacobian: np.ndarray
    value: float  # the question's norm of J_s


class EnumerationStoppedError(Exception):
    """Raised inside the search on a time or region limit."""


@dataclass
class EnumerationStats:
    n_lp: int = 0
    n_nodes: int = 0
    n_pruned: int = 0
    n_inherited: int = 0
    n_solver_disagree: int = 0
    ambiguous_relus: int = 0
    maxpool_bits: float = 0.0
    fixed_relus: int = 0
    time: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class _Cons:
    """The current constraint rows (unit-domain coordinates, normalised): g y + h >= t."""

    g: list[np.ndarray] = field(default_factory=list)
    h: list[float] = field(default_factory=list)

    def arrays(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.h:
            return np.zeros((0, n)), np.zeros(0)
        return np.vstack(self.g), np.asarray(self.h, dtype=np.float64)


def pattern_budget(network: Network, question: Question) -> tuple[int, float, int]:
    """(ambiguous ReLUs, log2 of the max-pool choices, IA-fixed ReLUs) over the domain."""
    fwd, stages = _interval(network, question)
    amb = fixed = 0
    bits = 0.0
    for i, s in enumerate(stages):
        lo, hi = fwd.pre_activation(i) if i else (None, None)
        if is_activation(s):
            a = ~((lo >= 0) | (hi <= 0))
            amb += int(a.sum())
            fixed += int((~a).sum())
        elif isinstance(s, MaxPoolStage):
            from lipopt.bounds.interval import maxpool_can_win

            k = maxpool_can_win(s, lo, hi).sum(axis=1)
            bits += float(np.sum(np.log2(k[k > 1])))
    return amb, bits, fixed


def _interval(network: Network, question: Question):
    from lipopt.bounds.interval import interval_bounds

    dom = unit_domain(question, network.input_size)
    lo, hi = dom.x_bounds()
    return interval_bounds(network, lo, hi), network.lower()


class _Map(NamedTuple):
    """The affine map x -> A x + c of a node's region (and |A|, |c|: the magnitudes of the terms summed,
    for the scale-relative zero tests)."""

    A: np.ndarray
    c: np.ndarray
    A_abs: np.ndarray
    c_abs: np.ndarray


class _Search:
    def __init__(self, network: Network, question: Question, opts: EnumerationOptions) -> None:
        self.net = network
        self.q = question
        self.opts = opts
        self.stages = network.lower()
        self.n = network.input_size
        self.dom: UnitDomain = unit_domain(question, self.n)
        self.fwd, _ = _interval(network, question)
        self.stats = EnumerationStats()
        self.regions: list[Region] = []
        self.best: Region | None = None
        self.best_cons: tuple[np.ndarray, np.ndarray] | None = None
        self.keep_all = True
        self.n_leaves = 0
        self.t0 = time.perf_counter()
        self.cons = _Cons()

    # -- decisions -------------------------------------------------------------------------------
    def _accept(self, margin: float) -> bool:
        return margin > self.opts.tau if self.opts.strict else margin >= -self.opts.tau

    def _lp(self) -> tuple[np.ndarray, float] | None:
        """Solve the margin problem for the current constraints; the witness if the node survives."""
        if self.opts.time_limit is not None and time.perf_counter() - self.t0 > self.opts.time_limit:
            raise EnumerationStoppedError(f"time limit {self.opts.time_limit:g}s reached")
        self.stats.n_lp += 1
        g, h = self.cons.arrays(self.n)
        sol = solve_margin(g, h, self.dom)
        if self.opts.strict:
            if (sol.t_solver > self.opts.tau) != (sol.margin > self.opts.tau):
                self.stats.n_solver_disagree += 1
            return (sol.y, sol.margin) if sol.margin > self.opts.tau else None
        return (sol.y, sol.margin) if sol.t_solver >= -self.opts.tau else None

    def _row(self, a: np.ndarray, c: float, a_abs: np.ndarray, c_abs: float) -> tuple[str, np.ndarray, float]:
        """Classify the affine function a x + c in unit coordinates: ('row', g, h) normalised, or
        ('pos' | 'neg' | 'zero', ., .) for a (numerically) constant function."""
        ay = a * self.dom.d
        cy = float(a @ self.dom.xc + c)
        nrm = float(np.linalg.norm(ay))
        scale = float(np.linalg.norm(a_abs * self.dom.d))
        if nrm <= ZERO_RTOL * scale or nrm == 0.0:
            cscale = float(a_abs @ np.abs(self.dom.xc) + c_abs)
            if abs(cy) <= ZERO_RTOL * cscale or cy == 0.0:
                return "zero", ay, 0.0
            return ("pos" if cy > 0 else "neg"), ay, cy
        return "row", ay / nrm, cy / nrm

    # -- recursion -------------------------------------------------------------------------------
    def run(self) -> None:
        first = self.stages[0]
        assert isinstance(first, AffineStage)
        a = first.dense()
        f = _Map(a, first.bias.copy(), np.abs(a), np.abs(first.bias))
        self._after_affine(0, f, [], np.zeros(self.n), 1.0)

    def _after_affine(self, k: int, f: _Map, pattern, y, margin) -> None:
        """Stage k (affine) produced z = A x + c (``f``); continue with stage k+1 or record a leaf."""
        if k == len(self.stages) - 1:
            self._leaf(f.A, pattern, y, margin)
            return
        nxt = self.stages[k + 1]
        lo, hi = self.fwd.pre_activation(k + 1)
        if is_activation(nxt):
            s = np.zeros(nxt.size, dtype=bool)
            amb = []
            for i in range(nxt.size):
                if self.opts.strict:
                    if lo[i] >= 0 and not hi[i] <= 0:
                        s[i] = True
                        continue
                    if hi[i] <= 0:
                        continue
                else:
                    if lo[i] > 0:
                        s[i] = True
                        continue
                    if hi[i] < 0:
                        continue
                amb.append(i)
            self._relu_unit(k + 1, 0, amb, s, f, pattern, y, margin)
        else:
            assert isinstance(nxt, MaxPoolStage)
            from lipopt.bounds.interval import maxpool_can_win

            can = maxpool_can_win(nxt, lo, hi)
            win = np.full(nxt.out_size, -1, dtype=np.int64)
            self._pool_unit(k + 1, 0, can, win, f, pattern, y, margin)

    def _relu_unit(self, k, j, amb, s, f: _Map, pattern, y, margin) -> None:
        self.stats.n_nodes += 1
        A, c, A_abs, c_abs = f
        if j == len(amb):
            self._next_affine(k, activation_slopes(self.stages[k], s), None, f,
                              [*pattern, s.copy()], y, margin)
            return
        i = amb[j]
        kind, g, h = self._row(A[i], c[i], A_abs[i], c_abs[i])
        if kind != "row":  # constant pre-activation on the region: one branch, no constraint
            s[i] = kind == "pos"
            self._relu_unit(k, j + 1, amb, s, f, pattern, y, margin)
            s[i] = False
            return
        val = float(g @ y + h)
        first = val > 0 if val != 0 else False
        for state in (first, not first):
            sign = 1.0 if state else -1.0
            self.cons.g.append(sign * g)
            self.cons.h.append(sign * h)
            child_val = sign * val
            if self._accept(margin) and self._accept(child_val):
                self.stats.n_inherited += 1
                child = (y, min(margin, child_val))
            else:
                child = self._lp()
            if child is not None:
                s[i] = state
                self._relu_unit(k, j + 1, amb, s, f, pattern, child[0], child[1])
                s[i] = False
            else:
                self.stats.n_pruned += 1
            self.cons.g.pop()
            self.cons.h.pop()

    def _pool_unit(self, k, j, can, win, f: _Map, pattern, y, margin) -> None:
        self.stats.n_nodes += 1
        A, c, A_abs, c_abs = f
        stage = self.stages[k]
        if j == stage.out_size:
            self._next_affine(k, None, win, f, [*pattern, win.copy()], y, margin)
            return
        cand = [int(v) for v in stage.windows[j][can[j]]]
        if len(cand) == 1:
            win[j] = cand[0]
            self._pool_unit(k, j + 1, can, win, f, pattern, y, margin)
            return
        x_now = self.dom.to_x(y)
        vals = A[cand] @ x_now + c[cand]
        order = [cand[i] for i in np.argsort(-vals, kind="stable")]
        for p in order:
            rows: list[tuple[np.ndarray, float]] = []
            ok = True
            for i in cand:
                if i == p:
                    continue
                kind, g, h = self._row(A[p] - A[i], c[p] - c[i], A_abs[p] + A_abs[i], c_abs[p] + c_abs[i])
                if kind == "row":
                    rows.append((g, h))
                elif kind == "neg" or (kind == "zero" and i < p):
                    ok = False  # p never wins, or ties identically with a lower index that is kept
                    break
            if not ok:
                self.stats.n_pruned += 1
                continue
            for g, h in rows:
                self.cons.g.append(g)
                self.cons.h.append(h)
            child_val = min((float(g @ y + h) for g, h in rows), default=1.0)
            if self._accept(margin) and self._accept(child_val):
                self.stats.n_inherited += 1
                child = (y, min(margin, child_val))
            else:
                child = self._lp()
            if child is not None:
                win[j] = p
                self._pool_unit(k, j + 1, can, win, f, pattern, child[0], child[1])
            else:
                self.stats.n_pruned += 1
            for _ in rows:
                self.cons.g.pop()
                self.cons.h.pop()

    def _next_affine(self, k, s, win, f: _Map, pattern, y, margin) -> None:
        """Apply the nonlinear stage k (activation slopes s, or max-pool winners win), then affine stage
        k+1."""
        A, c, A_abs, c_abs = f
        if s is not None:
            A2, c2, A2_abs, c2_abs = A * s[:, None], c * s, A_abs * s[:, None], c_abs * s
        else:
            A2, c2, A2_abs, c2_abs = A[win], c[win], A_abs[win], c_abs[win]
        st = self.stages[k + 1]
        assert isinstance(st, AffineStage)
        w = st.weight
        w_abs = abs(w) if hasattr(w, "toarray") else np.abs(w)  # type: ignore[arg-type]
        A3 = np.asarray(w @ A2)  # type: ignore[operator]
        c3 = np.asarray(w @ c2).reshape(-1) + st.bias  # type: ignore[operator]
        A3_abs = np.asarray(w_abs @ A2_abs)  # type: ignore[operator]
        c3_abs = np.asarray(w_abs @ c2_abs).reshape(-1) + np.abs(st.bias)  # type: ignore[operator]
        self._after_affine(k + 1, _Map(A3, c3, A3_abs, c3_abs), pattern, y, margin)

    def _leaf(self, J: np.ndarray, pattern: list[np.ndarray], y: np.ndarray, margin: float) -> None:
        value = jacobian_norm(J, self.q)
        reg = Region(pattern, self.dom.to_x(y), margin, J, value)
        self.n_leaves += 1
        if self.keep_all:
            self.regions.append(reg)
        if self.best is None or value > self.best.value:
            self.best = reg
            self.best_cons = self.cons.arrays(self.n)
        lim = self.opts.max_regions
        if lim is not None and self.n_leaves >= lim:
            raise EnumerationStoppedError(f"region limit {lim} reached")

    def recentre_best(self) -> Region | None:
        """Re-solve the margin problem of the best region: its witness becomes the LP centre."""
        if self.best is None or self.best_cons is None:
            return self.best
        g, h = self.best_cons
        self.stats.n_lp += 1
        sol = solve_margin(g, h, self.dom)
        if sol.margin > self.best.margin:
            self.best = Region(self.best.pattern, self.dom.to_x(sol.y), sol.margin, self.best.jacobian,
                               self.best.value)
        return self.best


def check_budget(network: Network, question: Question, max_bits: float) -> tuple[int, float, int]:
    amb, bits, fixed = pattern_budget(network, question)
    if amb + bits > max_bits:
        raise NotApplicableError(
            f"region enumeration refused: {amb} ambiguous ReLUs + {bits:.3g} bits of max-pool choices "
            f"(after fixing {fixed} stable ReLUs by interval bounds) exceed the limit of {max_bits:g} "
            f"(up to 2^{math.ceil(amb + bits)} patterns); use a MIP method, or raise the limit with "
            "the option max_relus"
        )
    return amb, bits, fixed


def search(network: Network, question: Question, opts: EnumerationOptions | None = None,
           keep_all: bool = True) -> _Search:
    """Run the search (raises EnumerationStoppedError on a limit; the partial state stays on the object
    only if the caller constructs ``_Search`` itself)."""
    opts = opts or EnumerationOptions()
    q = question.bind(network)
    s = _Search(network, q, opts)
    s.keep_all = keep_all
    amb, bits, fixed = check_budget(network, q, opts.max_bits)
    s.stats.ambiguous_relus, s.stats.maxpool_bits, s.stats.fixed_relus = amb, bits, fixed
    s.run()
    s.stats.time = time.perf_counter() - s.t0
    return s


def enumerate_regions(network: Network, question: Question, strict: bool = True,
                      options: EnumerationOptions | None = None) -> list[Region]:
    """All linear regions of ``network`` with interior in the question's domain (strict), or all closed
    regions that meet it (weak, ``strict=False``): pattern, witness point, margin, Jacobian, norm."""
    opts = options or EnumerationOptions()
    opts = EnumerationOptions(strict, opts.tau, opts.max_bits, opts.time_limit, opts.max_regions)
    return search(network, question, opts).regions


def enumeration_value(network: Network, question: Question, strict: bool = True,
                      options: EnumerationOptions | None = None) -> float:
    """max ||J_s|| over the enumerated regions (strict: the exact constant; weak: max over S_weak)."""
    return max(r.value for r in enumerate_regions(network, question, strict, options))
