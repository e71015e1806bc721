"""The interior (geometric-margin) problem of formulations.md section 6.

Coordinates: the domain is mapped to a unit shape, x = xc + D * y (D diagonal), so that margins and the
interior tolerance are scale-aware (full-dimensionality is invariant under this affine change):

* global: y in R^n (xc = 0, D = 1);
* box / l-inf ball: |y_j| <= 1 - t;
* l2 ball: ||y||_2 <= 1 - t (an SOCP, solved with cvxpy + Clarabel).

Constraint rows are normalised, g_i y + h_i >= t with ||g_i||_2 = 1, so t is a geometric margin; t <= 1
caps unbounded regions. ``solve_margin`` maximises t (t itself is free, so the LP is always feasible:
t* >= 0 iff the closed region meets the domain, t* > 0 iff it has interior); ``margin_at`` recomputes the
margin of a point in float64, which is what the enumeration uses to decide (a certificate, not the
solver's word).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipopt.errors import LipoptError
from lipopt.spec import Ball, Box, Norm, Question


@dataclass(frozen=True)
class UnitDomain:
    """x = xc + d * y with y in the unit shape ``kind`` ('free', 'box' or 'ball')."""

    kind: str
    xc: np.ndarray
    d: np.ndarray

    def to_x(self, y: np.ndarray) -> np.ndarray:
        return self.xc + self.d * np.asarray(y, dtype=np.float64)

    def to_y(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.xc) / self.d

    def x_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """A box containing the domain (+-inf for the global domain)."""
        if self.kind == "free":
            return np.full(self.xc.size, -np.inf), np.full(self.xc.size, np.inf)
        return self.xc - self.d, self.xc + self.d

    def domain_margin(self, y: np.ndarray) -> float:
        if self.kind == "box":
            return float(1.0 - np.max(np.abs(y))) if y.size else 1.0
        if self.kind == "ball":
            return float(1.0 - np.linalg.norm(y))
        return 1.0


def unit_domain(question: Question, n: int) -> UnitDomain:
    dom = question.domain
    if isinstance(dom, Box):
        lo = np.broadcast_to(dom.lo, (n,)).astype(np.float64)
        hi = np.broadcast_to(dom.hi, (n,)).astype(np.float64)
        return UnitDomain("box", (lo + hi) / 2, (hi - lo) / 2)
    if isinstance(dom, Ball):
        kind = "box" if dom.norm is Norm.LINF else "ball"
        return UnitDomain(kind, dom.center.astype(np.float64).copy(), np.full(n, float(dom.radius)))
    return UnitDomain("free", np.zeros(n), np.ones(n))


def margin_at(g: np.ndarray, h: np.ndarray, dom: UnitDomain, y: np.ndarray) -> float:
    """min(1, domain margin, min_i g_i y + h_i) in float64."""
    m = min(1.0, dom.domain_margin(y))
    if h.size:
        m = min(m, float(np.min(g @ y + h)))
    return m


@dataclass
class MarginSolution:
    y: np.ndarray
    t_solver: float  # the solver's optimal t
    margin: float  # the float64 margin of y (<= t_solver up to tolerances)


_FEASIBILITY_TOL = 1e-10


def solve_margin(g: np.ndarray, h: np.ndarray, dom: UnitDomain) -> MarginSolution:
    """Maximise t subject to g y + h >= t, the domain shape with margin t, and t <= 1."""
    n = dom.xc.size
    if dom.kind == "ball":
        return _solve_ball(g, h, n)
    from lipopt_solvers import SolverOptions, Termination, solve_lp

    rows = [np.hstack([-g, np.ones((g.shape[0], 1))])] if h.size else []
    rhs = [h] if h.size else []
    if dom.kind == "box":
        eye = np.eye(n)
        rows += [np.hstack([eye, np.ones((n, 1))]), np.hstack([-eye, np.ones((n, 1))])]
        rhs += [np.ones(n), np.ones(n)]
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    bounds = [(None, None)] * n + [(None, 1.0)]
    if not rows:  # no constraint at all: the whole space, margin 1 at the origin
        return MarginSolution(np.zeros(n), 1.0, 1.0)
    out = solve_lp(cost, A_ub=np.vstack(rows), b_ub=np.concatenate(rhs), bounds=bounds,
                   options=SolverOptions(feasibility_tol=_FEASIBILITY_TOL))
    if out.termination is not Termination.OPTIMAL or out.x is None:
        raise LipoptError(f"margin LP failed ({out.solver} {out.raw_status}: {out.message})")
    y = np.asarray(out.x[:n], dtype=np.float64)
    return MarginSolution(y, float(out.x[n]), margin_at(g, h, dom, y))


def _solve_ball(g: np.ndarray, h: np.ndarray, n: int) -> MarginSolution:
    import cvxpy as cp
    from lipopt_solvers import Capability, default_solver, solve_cvxpy

    y = cp.Variable(n)
    t = cp.Variable()
    cons = [cp.norm(y, 2) <= 1 - t, t <= 1]
    if h.size:
        cons.append(g @ y + h >= t)
    prob = cp.Problem(cp.Maximize(t), cons)
    out = solve_cvxpy(prob, default_solver(Capability.SOCP))
    if y.value is None or t.value is None:
        raise LipoptError(f"margin SOCP failed ({out.message})")
    yv = np.asarray(y.value, dtype=np.float64).reshape(-1)
    dom = UnitDomain("ball", np.zeros(n), np.ones(n))
    return MarginSolution(yv, float(t.value), margin_at(g, h, dom, yv))
