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
from lipopt.errors import NotApplicableError
from lipopt.exact.bab_bounds import _BoundsMixin
from lipopt.exact.bab_core import (
    BOUND_RTOL,
    MAX_TANGENT_ENTRIES,
    PRUNE_TOL,
    ZERO_RTOL,
    Layers,
    _Node,
    _Throttle,
    bab_layers,
    has_maxpool,
    nonneg_norm,
)
from lipopt.exact.bab_lower import CLIMB_FIRST, _LowerMixin
from lipopt.exact.interior import UnitDomain, unit_domain
from lipopt.network.network import Network
from lipopt.spec import AllOutputs, Ball, Box, Direction, Global, Norm, Question

__all__ = ["BOUND_RTOL", "MAX_TANGENT_ENTRIES", "PRUNE_TOL", "ZERO_RTOL", "BabOutcome", "BabSettings",
           "Layers", "bab_layers", "has_maxpool", "nonneg_norm", "run_bab"]


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
    climb_time: float = 3.0  # hill climbing over regions from the best samples (at most 10 % of the limit)
    climb_starts: int = 32  # ... from this many samples of distinct regions, best first
    joint_rows: bool = True  # all outputs, output norm l-inf: one heap over (output row, pattern) nodes
    split_rows: bool = False  # all outputs, output norm l-inf: one search per output row, in turn
    completion: bool = True  # complete each branched node's pattern by its bound's argmax (lower side)
    repair: bool = True  # move the parent's point across the new neuron's boundary before any LP
    n_samples: int = 2000  # seeded domain samples, the best certified as the first lower bound
    seed: int = 0
    root_bounds: str = "crown"  # "interval" | "crown" (ReLU nets on a bounded domain)
    branching: str = "influence"  # "influence" | "layer" (first free neuron, layer by layer)
    solver: str | None = None  # LP solver of the layer (None: its default)
    #: called with (certified lower, certified upper, None) at every node (lipopt.progress.solve_reporter
    #: rate-limits the lines it prints); None: silent
    progress: Any = None
    #: a certified upper bound of the constant from elsewhere (lipopt.exact.prior): the search stops
    #: when its lower bound meets it within rel_gap (it prunes no node: it caps the constant, not a node)
    upper_cap: float | None = None
    #: points offered to the lower side before the search (each certified in float64 like a sample)
    starts: tuple[Any, ...] = ()


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


class _Bab(_BoundsMixin, _LowerMixin):
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
                                      "completions": 0, "incremental": 0, "climb_lps": 0, "climbs": 0,
                                      "directions_dropped": 0,
                                      "completions_full": 0, "max_depth": 0, "mode": self.mode}
        self.lp_min_fixed = (int(st.lp_min_fixed) if st.lp_min_fixed is not None
                             else max(1, min(self.n, 12)))
        self.tried: set[bytes] = set()
        #: climb starts by activation pattern, best first (_samples: best samples of distinct regions)
        self.climb_from: dict[bytes, np.ndarray] = {}
        self.climb_spent, self.climb_cap = 0.0, 0.0  # seconds climbed, and the climb budget
        self.throttle = {"lp": _Throttle(), "completion": _Throttle(), "dual": _Throttle(rate=0.2)}
        self.lower: float | None = None
        self.witness: dict[str, Any] | None = None
        self.leaf_upper = -math.inf  # max value of full-dimensional leaves (exact values)
        self.history: list[tuple[float, float | None, float | None]] = []
        self._counter = itertools.count()

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
        limit = self.st.time_limit
        self._samples()
        self._starts()
        if self.st.climb_time > 0:
            budget = self.st.climb_time if limit is None else min(self.st.climb_time, 0.1 * limit)
            self._climbs(budget, CLIMB_FIRST)  # the starts left are climbed during the search
        heap = self._roots()
        stop = "completed"
        try:
            stop = self._search(heap, limit)
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

    def _starts(self) -> None:
        """Offer the settings' start points (a prior method's witness) to the lower side."""
        from lipopt.exact.prior import point_in

        for x in self.st.starts:
            y = point_in(self.net, self.cq, np.asarray(x, dtype=np.float64))
            if y is not None:
                self._offer(y, "prior")

    def _roots(self) -> list:
        """The heap with the root node (one per output row in a joint row search)."""
        rows = list(range(len(self.c_rows))) if self.c_rows is not None else [None]
        heap: list = []
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
        return heap

    def _search(self, heap: list, limit: float | None) -> str:
        """The best-first loop; returns the stop reason."""
        from lipopt_solvers import interrupts

        stop = "completed"
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
            if self.st.progress is not None:
                self.st.progress(self.lower, up, None)
            if self.lower is not None and up - self.lower <= self.st.rel_gap * abs(up):
                stop = "gap" if heap else "completed"
                break
            cap = self.st.upper_cap
            if self.lower is not None and cap is not None and cap - self.lower <= self.st.rel_gap * abs(cap):
                self.stats["stopped_at_cap"] = cap
                stop = "gap"
                break
            self._climb_during_search()
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
                child = self._child(node, k, i, sign, zs_parent)
                if child is not None:
                    heapq.heappush(heap, (-child.upper, next(self._counter), child))
            node.fcache = None
            self._record(heap)
        return stop

    def _child(self, node: _Node, k: int, i: int, sign: int,
               zs_parent: list[np.ndarray] | None) -> _Node | None:
        """The child of a node with neuron (k, i) fixed to ``sign``, bounded; None when it is pruned."""
        states = [s.copy() for s in node.states]
        states[k][i] = sign
        child = _Node(states, node.upper, None, node.depth + 1, row=node.row)
        if zs_parent is not None and self._satisfies(states, zs_parent):
            child.point = node.point
        if not self._bound(child, node):
            self.stats["pruned_interval"] += 1
            self._drop_cache(child)
            return None
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
                return None
            if x is not None and self._satisfies(states, self._pre(x)):
                child.point = x
                self._offer(x, "node")
        elif child.point is not None:
            self.stats["inherited"] += 1
        return child


def region_climb(network: Network, question: Question, settings: BabSettings, budget: float,
                 deadline: float | None = None) -> BabOutcome:
    """The lower side of :func:`run_bab` alone (method ``region-climb``): the settings' samples and starts,
    then hill climbing over neighbouring regions from the best of them for ``budget`` seconds, and not
    past ``deadline`` (a ``time.perf_counter()`` instant: the set-up and samples count against it). The
    outcome's ``lower`` is a certified witness value (``upper`` None; stop "completed", or "time_limit"
    when the budget ran out before every start was climbed)."""
    if has_maxpool(network):
        raise NotApplicableError("region climbing flips (leaky) ReLU slopes only; the network has "
                                 "max-pooling")
    b = _Bab(network, question, settings)
    b._samples()
    b._starts()
    if deadline is not None:
        budget = max(0.0, min(budget, deadline - time.perf_counter()))
    done = b._climbs(budget)
    b.stats["time"] = time.perf_counter() - b.t0
    b.stats["climb_budget"], b.stats["climb_seconds"] = budget, b.climb_spent
    return BabOutcome(b.lower, None, b.witness, "completed" if done else "time_limit", b.history, b.stats,
                      b.notes, b.cq)


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
        # a row's bracket is not the constant's: no progress lines from the row searches
        b = _Bab(network, row_q[r], dataclasses.replace(st, time_limit=left, progress=None))
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
