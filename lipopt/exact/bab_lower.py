"""Lower side and node tests of the branch and bound (:mod:`lipopt.exact.bab`): the true forward pass,
point repair, the node feasibility LP, region rows of complete patterns, samples, hill climbing over
regions, leaves and bound-argmax completions; every witness certified in float64."""

from __future__ import annotations

import time

import numpy as np

from lipopt.certify.witness import point_witness
from lipopt.errors import LipoptError
from lipopt.exact.bab_core import PRUNE_TOL, ZERO_RTOL, _act, _Node
from lipopt.exact.interior import UnitDomain, solve_margin
from lipopt.norms import jacobian_norm

#: during the search, climbing continues from the starts left while it has used less than this share of
#: the run's time so far (and less than the climb budget)
CLIMB_SHARE = 0.1
#: before the search, climbing uses at most this share of its budget
CLIMB_FIRST = 0.25


class _LowerMixin:
    """The forward-pass, LP and lower-side methods of ``_Bab`` (attributes set in ``_Bab.__init__``)."""

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
            return self._first_layer_lp(node)
        nv, eq_rows, eq_rhs, ub_rows, ub_rhs = self._relaxed_rows(node, depth)
        it = nv - 1
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

    def _first_layer_lp(self, node: _Node) -> tuple[bool, np.ndarray | None]:
        """The node LP when only first-layer neurons are fixed: the margin LP of their exact polytope."""
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

    def _relaxed_rows(self, node: _Node, depth: int) -> tuple[int, list, list, list, list]:
        """The node LP's rows over the first ``depth`` layers: variables x, then (z_k, h_k) per layer,
        then t; (number of variables, equality rows and right-hand sides, inequality rows and rhs)."""
        assert node.eff is not None and node.zb is not None
        sizes = self.L.sizes[:depth]
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
                    _relax_free(ub_rows, ub_rhs, nv, zi, hi_, a, zl[i], zu[i])
        return nv, eq_rows, eq_rhs, ub_rows, ub_rhs

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
        order = np.argsort(-vals, kind="stable")
        for i in order[:8]:
            if self._offer(xs[i], "sample") is not None:
                break
        self.climb_from = self._distinct_regions(xs[order], int(self.st.climb_starts))

    def _region_key(self, x: np.ndarray) -> bytes:
        return b"".join((z > 0).tobytes() for z in self._pre(x))

    def _distinct_regions(self, xs: np.ndarray, k: int) -> dict[bytes, np.ndarray]:
        """The first ``k`` points of ``xs`` whose activation patterns differ, keyed by their pattern (in
        the order of ``xs``)."""
        out: dict[bytes, np.ndarray] = {}
        for x in xs:
            if len(out) >= k:
                break
            out.setdefault(self._region_key(x), x)
        return out

    def _climbs(self, budget: float, share: float = 1.0) -> bool:
        """Hill climbing from the best witness so far, then from the best samples of other regions in
        turn (one climb ends at a local maximum in a fraction of a second on small nets: a random
        8-32-32-1 in l-inf reaches 3.0293 from its third start and 3.0511 from its sixteenth, against
        2.643 from the best sample alone), until ``share`` x ``budget`` seconds are spent; the starts left
        wait in ``climb_from`` for :meth:`_climb_during_search`. A start in the witness's region is
        dropped (the same climb twice). True when every start was climbed in time."""
        if self.witness is not None:
            x = np.asarray(self.witness["x"])
            key = self._region_key(x)
            self.climb_from.pop(key, None)
            self.climb_from = {key: x, **self.climb_from}
        self.climb_cap = budget
        self.stats["climb_starts"] = len(self.climb_from)
        while self.climb_from and self.climb_spent < share * budget:
            self._climb_next()
        return not self.climb_from and self.climb_spent < budget

    def _climb_next(self) -> None:
        x = self.climb_from.pop(next(iter(self.climb_from)))
        t = time.perf_counter()
        self.stats["climbs"] += 1
        self._climb(x, self.climb_cap - self.climb_spent)
        self.climb_spent += time.perf_counter() - t

    def _climb_during_search(self) -> None:
        """One more climb while the climbing so far is under CLIMB_SHARE of the run's time (and the
        climb budget): a net that closes quickly pays for a quarter of the budget, a long run gets
        every start within its first seconds."""
        if self.climb_from and self.climb_spent < min(self.climb_cap,
                                                      CLIMB_SHARE * (time.perf_counter() - self.t0)):
            self._climb_next()

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


def _relax_free(ub_rows: list, ub_rhs: list, nv: int, zi: int, hi_: int, a: float, zl: float,
                zu: float) -> None:
    """The triangle relaxation rows of a free neuron: h >= z, h >= a z, and the chord when bounded."""
    for slope in (1.0, a):  # h >= slope z
        r = np.zeros(nv)
        r[zi], r[hi_] = slope, -1.0
        ub_rows.append(r)
        ub_rhs.append(0.0)
    if np.isfinite(zl) and np.isfinite(zu) and zu > zl:
        # chord through (l, a l) and (u, u): h <= a l + (u - a l) (z - l) / (u - l)
        sl = (zu - a * zl) / (zu - zl)
        r = np.zeros(nv)
        r[hi_], r[zi] = 1.0, -sl
        ub_rows.append(r)
        ub_rhs.append(a * zl - sl * zl)
