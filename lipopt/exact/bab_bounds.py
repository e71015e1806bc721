"""Node bounds of the branch and bound (:mod:`lipopt.exact.bab`): root bounds (interval, CROWN), the
node's forward interval bounds with Lagrangian tightening of the first layer and CROWN of the deeper
layers, the backward interval bound of the Jacobian and the forward directional bound."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from lipopt.exact.bab_core import (
    BOUND_RTOL,
    MAX_TANGENT_ENTRIES,
    _act,
    _affine_interval,
    _Node,
    _widen,
    nonneg_norm,
)
from lipopt.network.stages import AffineStage, ReLUStage
from lipopt.spec import Norm


class _BoundsMixin:
    """The bounding methods of ``_Bab`` (its attributes are set in ``_Bab.__init__``)."""

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
            return self._forward_one_layer(pl, slopes, node, parent)
        return self._forward_chunks(slopes, node)

    def _forward_one_layer(self, pl: tuple[np.ndarray, np.ndarray, float],
                           slopes: list[tuple[np.ndarray, np.ndarray]], node: _Node | None,
                           parent: _Node | None) -> tuple[float, dict[str, Any]]:
        """The forward bound for one hidden layer and a scalar output (``p_list`` holds c_i (W_0 v)_i
        split by sign): incremental from the parent's cache, dropping directions below the lower bound."""
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

    def _forward_chunks(self, slopes: list[tuple[np.ndarray, np.ndarray]],
                        node: _Node | None) -> tuple[float, dict[str, Any]]:
        """The forward bound in general: the tangents of every direction propagated in chunks of 4096."""
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
                ol, oh = _forward_cuts(node, slopes, pre, ol, oh)
            mag = np.maximum(np.abs(ol), np.abs(oh))
            vals = mag[0] if mag.shape[0] == 1 else np.linalg.norm(mag, ord=self.cq.output_norm.p, axis=0)
            j = int(np.argmax(vals))
            if vals[j] > best:
                best = float(vals[j])
                r = int(np.argmax(mag[:, j]))
                info = {"dir": start + j, "row": r, "sign": 1.0 if oh[r, j] >= -ol[r, j] else -1.0,
                        "pre": [(pl[:, j].copy(), ph[:, j].copy()) for pl, ph in pre]}
        return best * (1 + BOUND_RTOL), info


def _forward_cuts(node: _Node, slopes: list[tuple[np.ndarray, np.ndarray]],
                  pre: list[tuple[np.ndarray, np.ndarray]], ol: np.ndarray,
                  oh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cuts at the earlier hidden layers: c^T J v = sum_i g_i d_i t_i with g the backward interval
    (layers above k) and t the forward tangent (layers below), each term bounded over its corners; every
    cut contains c^T J v, so their intersection does."""
    assert node.back is not None
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
    return ol, oh
