"""Pyomo models of the MIQCQP upper- and lower-bound problems (Sbihi, Jan & Couellan; formulations.md 1.2).

Variables: the input (x, and t for the lifted global set, see :mod:`lipopt.formulations.miqcqp_geometry`),
pre-activations z_k, post-activations h_k, activation indicators g_k (binary only for ambiguous neurons;
stable neurons are fixed from sound bounds), the direction v in the unit ball of the input norm, and the
propagated direction w_k = g_k * (W_k w_{k-1}).

* ReLU and activation-region constraints (h = g z, (2g - 1) z >= 0) by the exact big-M encoding of
  formulations.md 2.2 with the forward bounds [l, u]: h >= 0, h >= z, h <= u g, h <= z - l (1 - g).
  For g = 1 it forces h = z >= 0, for g = 0 h = 0 >= z: the closed activation region.
* Lower-bound problem: additionally z >= eps g + l (1 - g) and z <= u g - eps (1 - g) (the margin
  (2g - 1) z >= eps); stable neurons get z >= eps / z <= -eps.
* Direction: w = g * y with y = W_k w_{k-1} linearised with the direction bounds [ylo, yhi] (all products
  are binary x continuous, so the constraints are linear); |v|_2 <= 1 is a convex quadratic constraint,
  |v|_inf <= 1 the variable bounds, |v|_1 <= 1 a split v = v+ - v-.
* Objective (a variable tau <= the expression, so a known lower bound can be imposed as tau >= cutoff):
  scalar output c^T f: the linear c^T W_L w_{L-1} (its maximum over the ball is ||c^T J||_{p*});
  all outputs, output l2: the convex quadratic ||W_L w_{L-1}||_2^2 (maximised: the nonconvexity);
  all outputs, output l-inf: max_j (W_L w_{L-1})_j by a selector (v -> -v covers the sign).
* Sign split (quadratic objective): with symmetric bounds [-B, B] on an output the solver's concave
  envelope of out_j^2 is the constant B^2, so the root bound never moves. Writing out_j = p_j - n_j with a
  sign binary (p_j <= B+ s_j, n_j <= B- (1 - s_j)) and the objective sum p_j^2 + n_j^2 (exact, as p n = 0)
  gives the secants B+ p_j and B- n_j, which follow the LP solution.
* Symmetry (quadratic objective only): (x, g, v, w) -> (x, g, -v, -w) maps solutions to solutions with the
  same objective, so out_0 >= 0 (with the sign split: s_0 = 1) or else v_j >= 0 for one coordinate j (the
  largest column of W_1) is imposed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.errors import NotApplicableError
from lipopt.formulations.miqcqp_geometry import (
    InputSet,
    LayerBounds,
    fallback_upper,
    input_set,
    is_finite_bounds,
    layer_bounds,
    margin_epsilons,
    mlp_weights,
)
from lipopt.network.network import Network
from lipopt.spec import Norm, Question


@dataclass(frozen=True)
class MiqcqpConfig:
    """Options of one model. ``problem``: "ub" (closed regions) or "lb" (epsilon margin)."""

    problem: str = "ub"
    epsilon: float | None = None  # absolute uniform margin; None: epsilon_rel x each neuron's range
    epsilon_rel: float = 1e-4
    epsilon_min: float = 1e-5
    bounds: str = "auto"  # forward bounds: "auto" | "interval" | "crown" | "lp"
    fix_stable: bool = True
    symmetry: bool = True
    sign_split: bool = True  # quadratic objective: out_j = p_j - n_j with a sign binary (see module doc)
    direction_bounds: str = "matrix"  # "matrix" | "interval"
    global_radius: float | None = None
    cutoff: float | None = None  # impose objective >= cutoff (norm units, relaxed by cutoff_rtol)
    cutoff_rtol: float = 1e-6
    #: per hidden layer, original pre-activation / model pre-activation (the model is built on a
    #: normalised network, lipopt.formulations.scaling); an absolute ``epsilon`` is divided by it
    z_scales: tuple[float, ...] | None = None


def objective_kind(question: Question, n_out: int | None = None) -> str:
    """"linear" for a scalar output (and for a single-output network: every output norm of a 1 x n
    Jacobian is the dual norm of its row), "quadratic" for output l2, "max-row" for output l-inf."""
    if question.scalar_output or n_out == 1:
        return "linear"
    if question.output_norm is Norm.L2:
        return "quadratic"
    if question.output_norm is Norm.LINF:
        return "max-row"
    raise NotApplicableError(
        f"the MIQCQP formulations support scalar outputs and output norms l2 / l-inf; "
        f"{question.input_norm.label}->{question.output_norm.label} needs absolute values of every output "
        "(use a scalar output, or another method)")


def check_supported(network: Network, question: Question) -> None:
    if question.constant == "nominal":
        raise NotApplicableError("the MIQCQP formulations compute pairwise (global / local) constants, not "
                                 "the nominal-point constant")
    if network.has_maxpool:
        raise NotApplicableError("the MIQCQP formulations support dense ReLU networks (no max-pool)")
    objective_kind(question, network.output_size)


@dataclass
class MiqcqpModel:
    model: Any
    config: MiqcqpConfig
    iset: InputSet
    bounds: LayerBounds
    objective: str  # "linear" | "quadratic" | "max-row"
    epsilons: list[np.ndarray] | None
    fallback_upper: float
    build_time: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)

    def to_norm(self, value: float | None) -> float | None:
        """Objective units -> Lipschitz units (sqrt for the squared l2 objective)."""
        if value is None or not math.isfinite(value):
            return value
        if self.objective == "quadratic":
            return math.sqrt(max(value, 0.0))
        return float(value)

    def relu_states(self) -> list[np.ndarray]:
        """The incumbent's activation pattern (True = active), stable neurons from the bounds."""
        m = self.model
        out = []
        for k, (act, ina) in enumerate(zip(self.bounds.active, self.bounds.inactive, strict=True)):
            s = act.copy()
            amb = np.nonzero(~(act | ina))[0]
            for i in amb:
                val = m.g[k, int(i)].value
                s[i] = bool(val is not None and val > 0.5)
            out.append(s)
        return out

    def input_point(self) -> np.ndarray | None:
        """The incumbent's input in the network's coordinates (x / t for the lifted set), if defined."""
        m = self.model
        x = np.array([m.x[j].value if m.x[j].value is not None else np.nan for j in range(self.iset.n_x)])
        if not np.all(np.isfinite(x)):
            return None
        if self.iset.lifted:
            t = m.t.value
            if t is None or t <= 1e-7:
                return None
            return x / t
        return x

    def direction(self) -> np.ndarray | None:
        vals = [self.model.v[j].value for j in range(self.iset.n_x)]
        return None if any(v is None for v in vals) else np.asarray(vals, float)


def _affine(row: np.ndarray, terms: list[Any]) -> Any:
    """sum_j row[j] * terms[j] as one Pyomo LinearExpression, built from the nonzero coefficients of
    the terms that are variables (a term 0.0 is a neuron fixed at zero)."""
    from pyomo.core.expr.numeric_expr import LinearExpression

    idx = [j for j in np.flatnonzero(row) if not isinstance(terms[j], float)]
    return LinearExpression(constant=0.0, linear_coefs=[float(row[j]) for j in idx],
                            linear_vars=[terms[j] for j in idx])


def build_model(network: Network, question: Question, config: MiqcqpConfig | None = None,
                bounds: LayerBounds | None = None, iset: InputSet | None = None) -> MiqcqpModel:
    """Build the upper-bound (``config.problem == "ub"``) or lower-bound ("lb") problem as a Pyomo model.

    ``question`` must be bound to ``network``. ``bounds`` / ``iset`` may be passed to reuse them."""
    import time

    import pyomo.environ as pe

    t0 = time.perf_counter()
    cfg = config or MiqcqpConfig()
    if cfg.problem not in ("ub", "lb"):
        raise ValueError(f"problem must be 'ub' or 'lb', got {cfg.problem!r}")
    check_supported(network, question)
    obj_kind = objective_kind(question, network.output_size)
    ws, bs = mlp_weights(network)
    iset = iset or input_set(network, question, cfg.global_radius)
    lb = bounds or layer_bounds(network, question, iset, method=cfg.bounds, fix_stable=cfg.fix_stable,
                                direction=cfg.direction_bounds)
    if not is_finite_bounds(lb):
        raise NotApplicableError("the forward bounds are not finite (big-M values need a bounded input set)")
    z_scales = None if cfg.z_scales is None else list(cfg.z_scales)
    eps = (margin_epsilons(lb, cfg.epsilon, cfg.epsilon_rel, cfg.epsilon_min, z_scales)
           if cfg.problem == "lb" else None)
    n_x = iset.n_x
    p = question.input_norm

    m = pe.ConcreteModel(name=f"miqcqp-{cfg.problem}")
    m.cons = pe.ConstraintList()
    add = m.cons.add

    # ---------------------------------------------------------------- input set
    m.x = pe.Var(range(n_x), bounds=lambda _m, j: (float(iset.lo[j]), float(iset.hi[j])))
    t_var = None
    if iset.lifted:
        m.t = pe.Var(bounds=(0.0, 1.0))
        t_var = m.t
    n_bin_facets = 0
    if iset.surface:
        r = float(iset.radius)
        facets = [(j, s) for j in range(n_x) for s in (1, -1)]
        if iset.lifted:
            facets.append((-1, 0))
        m.facet = pe.Var(range(len(facets)), domain=pe.Binary)
        n_bin_facets = len(facets)
        add(sum(m.facet[f] for f in range(len(facets))) == 1)
        for f, (j, s) in enumerate(facets):
            if s == 1:
                add(m.x[j] >= -r + 2 * r * m.facet[f])
            elif s == -1:
                add(m.x[j] <= r - 2 * r * m.facet[f])
            else:
                add(m.t >= m.facet[f])
    elif iset.kind == "l2ball":
        c = iset.center
        add(sum((m.x[j] - float(c[j])) ** 2 for j in range(n_x)) <= float(iset.ball_radius) ** 2)

    # ---------------------------------------------------------------- forward pass with regions
    n_hidden = len(ws) - 1
    g_index = [(k, int(i)) for k in range(n_hidden) for i in np.nonzero(lb.ambiguous[k])[0]]
    m.g = pe.Var(g_index, domain=pe.Binary)
    prev: list[Any] = [m.x[j] for j in range(n_x)]
    n_margin_rows = 0
    for k in range(n_hidden):
        w, b = ws[k], bs[k]
        lo, hi = lb.z_lo[k], lb.z_hi[k]
        act, ina = lb.active[k], lb.inactive[k]
        nk = w.shape[0]
        zname, hname = f"z{k + 1}", f"h{k + 1}"
        z = pe.Var(range(nk), bounds=lambda _m, i, lo=lo, hi=hi: (float(lo[i]), float(hi[i])))
        m.add_component(zname, z)
        h = pe.Var(range(nk), bounds=lambda _m, i, lo=lo, hi=hi: (max(float(lo[i]), 0.0),
                                                                   max(float(hi[i]), 0.0)))
        m.add_component(hname, h)
        cur: list[Any] = []
        for i in range(nk):
            row = w[i]
            expr = _affine(row, prev)
            bias = float(b[i])
            if t_var is not None:
                add(z[i] == expr + bias * t_var)
            else:
                add(z[i] == expr + bias)
            li, ui = float(lo[i]), float(hi[i])
            if act[i]:
                add(h[i] == z[i])
                if eps is not None and li < eps[k][i]:
                    add(z[i] >= float(eps[k][i]))
                    n_margin_rows += 1
                cur.append(h[i])
            elif ina[i]:
                h[i].fix(0.0)
                if eps is not None and ui > -eps[k][i]:
                    add(z[i] <= -float(eps[k][i]))
                    n_margin_rows += 1
                cur.append(0.0)
            else:
                g = m.g[k, i]
                add(h[i] >= z[i])
                add(h[i] <= ui * g)
                add(h[i] <= z[i] - li * (1 - g))
                if eps is not None:
                    e = float(eps[k][i])
                    add(z[i] >= e * g + li * (1 - g))
                    add(z[i] <= ui * g - e * (1 - g))
                    n_margin_rows += 2
                cur.append(h[i])
        prev = cur

    # ---------------------------------------------------------------- direction
    j_sym = int(np.argmax(np.linalg.norm(ws[0], axis=0))) if n_x else 0
    use_sym = cfg.symmetry and obj_kind == "quadratic" and not cfg.sign_split
    m.v = pe.Var(range(n_x), bounds=lambda _m, j: ((0.0 if (use_sym and j == j_sym) else -1.0), 1.0))
    if p is Norm.L2:
        add(sum(m.v[j] ** 2 for j in range(n_x)) <= 1.0)
    elif p is Norm.L1:
        m.vp = pe.Var(range(n_x), bounds=(0.0, 1.0))
        m.vn = pe.Var(range(n_x), bounds=(0.0, 1.0))
        for j in range(n_x):
            add(m.v[j] == m.vp[j] - m.vn[j])
        add(sum(m.vp[j] + m.vn[j] for j in range(n_x)) <= 1.0)
    dprev: list[Any] = [m.v[j] for j in range(n_x)]
    for k in range(n_hidden):
        w = ws[k]
        act, ina = lb.active[k], lb.inactive[k]
        yl, yh = lb.y_lo[k], lb.y_hi[k]
        nk = w.shape[0]
        y = pe.Var(range(nk), bounds=lambda _m, i, yl=yl, yh=yh: (float(yl[i]), float(yh[i])))
        m.add_component(f"y{k + 1}", y)
        wv = pe.Var(range(nk), bounds=lambda _m, i, yl=yl, yh=yh: (min(float(yl[i]), 0.0),
                                                                   max(float(yh[i]), 0.0)))
        m.add_component(f"w{k + 1}", wv)
        cur = []
        for i in range(nk):
            if ina[i]:
                y[i].fix(0.0)
                wv[i].fix(0.0)
                cur.append(0.0)
                continue
            row = w[i]
            expr = _affine(row, dprev)
            add(y[i] == expr)
            if act[i]:
                add(wv[i] == y[i])
            else:
                g = m.g[k, i]
                lam, mu = min(float(yl[i]), 0.0), max(float(yh[i]), 0.0)
                add(wv[i] <= y[i] - lam * (1 - g))
                add(wv[i] >= y[i] - mu * (1 - g))
                add(wv[i] >= lam * g)
                add(wv[i] <= mu * g)
            cur.append(wv[i])
        dprev = cur

    # ---------------------------------------------------------------- objective
    w_out = ws[-1]
    c = question.output_vector(w_out.shape[0])
    if c is not None:
        w_out = (c @ w_out)[None, :]
    n_out = w_out.shape[0]
    m.out = pe.Var(range(n_out), bounds=lambda _m, j: (float(lb.out_lo[j]), float(lb.out_hi[j])))
    for j in range(n_out):
        row = w_out[j]
        expr = _affine(row, dprev)
        add(m.out[j] == expr)
    fb_up = fallback_upper(lb, question)
    obj_ub = fb_up ** 2 if obj_kind == "quadratic" else fb_up
    cut = None
    if cfg.cutoff is not None and cfg.cutoff > 0:
        cut = cfg.cutoff * (1.0 - cfg.cutoff_rtol)
        if obj_kind == "quadratic":
            cut = cut ** 2
    m.tau = pe.Var(bounds=(cut if cut is not None else None, obj_ub * (1 + 1e-9)))  # relative (obj_ub >= 0)
    if obj_kind == "linear":
        add(m.tau <= m.out[0])
    elif obj_kind == "quadratic" and cfg.sign_split:
        pos = [max(float(lb.out_hi[j]), 0.0) for j in range(n_out)]
        neg = [max(-float(lb.out_lo[j]), 0.0) for j in range(n_out)]
        m.sgn = pe.Var(range(n_out), domain=pe.Binary)
        m.op = pe.Var(range(n_out), bounds=lambda _m, j: (0.0, pos[j]))
        m.on = pe.Var(range(n_out), bounds=lambda _m, j: (0.0, neg[j]))
        for j in range(n_out):
            add(m.out[j] == m.op[j] - m.on[j])
            add(m.op[j] <= pos[j] * m.sgn[j])
            add(m.on[j] <= neg[j] * (1 - m.sgn[j]))
        if cfg.symmetry:  # (v, w, out) -> -(v, w, out) keeps the objective: out_0 >= 0 is WLOG
            m.sgn[0].fix(1)
        add(m.tau <= sum(m.op[j] ** 2 + m.on[j] ** 2 for j in range(n_out)))
    elif obj_kind == "quadratic":
        add(m.tau <= sum(m.out[j] ** 2 for j in range(n_out)))
    else:
        m.sel = pe.Var(range(n_out), domain=pe.Binary)
        add(sum(m.sel[j] for j in range(n_out)) == 1)
        top = obj_ub
        for j in range(n_out):
            add(m.tau <= m.out[j] + (top - float(lb.out_lo[j])) * (1 - m.sel[j]))
    m.obj = pe.Objective(expr=m.tau, sense=pe.maximize)

    res = MiqcqpModel(m, cfg, iset, lb, obj_kind, eps, fb_up, build_time=time.perf_counter() - t0)
    res.stats = {
        **lb.stats,
        "problem": cfg.problem,
        "input_set": iset.kind,
        "global_radius": iset.radius,
        "binaries": len(g_index) + n_bin_facets + (n_out if obj_kind == "max-row" else 0),
        "relu_binaries": len(g_index),
        "facet_binaries": n_bin_facets,
        "objective": obj_kind,
        "symmetry": ("v_j >= 0, j = " + str(j_sym)) if use_sym else (
            "out_0 >= 0" if (cfg.symmetry and obj_kind == "quadratic") else None),
        "sign_split": bool(cfg.sign_split and obj_kind == "quadratic"),
        "margin_rows": n_margin_rows,
        "cutoff": cfg.cutoff,
        "fallback_upper": fb_up,
    }
    if eps is not None:
        allv = np.concatenate(eps) if eps else np.zeros(0)
        res.stats["epsilon_min_used"] = float(allv.min()) if allv.size else None
        res.stats["epsilon_max_used"] = float(allv.max()) if allv.size else None
    return res
