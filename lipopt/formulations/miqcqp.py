"""Pyomo models of the MIQCQP upper- and lower-bound problems (Sbihi, Jan & Couellan; formulations.md 1.2).

Variables: the input (x, and t for the lifted global set, see :mod:`lipopt.formulations.miqcqp_geometry`),
pre-activations z_k, post-activations h_k, activation indicators g_k (binary only for ambiguous neurons;
stable neurons are fixed from sound bounds), the direction v in the unit ball of the input norm, and the
propagated direction w_k = g_k * (W_k w_{k-1}).

* Activation and region constraints (h = max(z, alpha z), (2g - 1) z >= 0; ReLU: alpha = 0) by the exact
  big-M encoding of formulations.md 2.2 with the forward bounds [l, u], written once for the MILP and
  this model in :mod:`lipopt.formulations.encodings`: h >= z, h >= alpha z, h <= alpha z + (1 - alpha) u g,
  h <= z - (1 - alpha) l (1 - g). For g = 1 it forces h = z >= 0, for g = 0 h = alpha z, z <= 0: the
  closed activation region.
* Lower-bound problem: additionally z >= eps g + l (1 - g) and z <= u g - eps (1 - g) (the margin
  (2g - 1) z >= eps); stable neurons get z >= eps / z <= -eps.
* Direction: w = (alpha + (1 - alpha) g) y with y = W_k w_{k-1}, the product g y linearised with the
  direction bounds [ylo, yhi] (all products are binary x continuous, so the constraints are linear);
  |v|_2 <= 1 is a convex quadratic constraint, |v|_inf <= 1 the variable bounds, |v|_1 <= 1 a split
  v = v+ - v-.
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

The mathematics as implemented: ``docs/methods.md#miqcqp-model``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.errors import NotApplicableError
from lipopt.formulations.encodings import (
    activation_output_bounds,
    activation_rows,
    margin_rows,
    switch_bounds,
    switch_rows,
)
from lipopt.formulations.forms import ZERO, AffineRows, FormVector, Rows, var_form
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

    def pool_winners(self) -> list[np.ndarray] | None:
        """The incumbent's max-pool winners (flat input index per window); None: no max-pool."""
        return None

    def direction(self) -> np.ndarray | None:
        vals = [self.model.v[j].value for j in range(self.iset.n_x)]
        return None if any(v is None for v in vals) else np.asarray(vals, float)


def _affine_rows(w: np.ndarray, terms: list[Any], bias: np.ndarray | None = None) -> AffineRows:
    """The rows of ``w @ terms + bias``, built in bulk from the weight array (the MILP's
    :meth:`FormVector.rows`; a term 0.0 is a neuron fixed at zero)."""
    forms = [ZERO if isinstance(t, float) else var_form(t) for t in terms]
    return FormVector(forms).rows(w, np.arange(w.shape[0]), bias)


def _vars(m: Any, name: str, lo: np.ndarray, hi: np.ndarray) -> Any:
    import pyomo.environ as pe

    var = pe.Var(range(len(lo)), bounds=lambda _m, i: (float(lo[i]), float(hi[i])))
    m.add_component(name, var)
    return var


def _input_rows(m: Any, iset: InputSet) -> int:
    """The input variables and the rows of the input set (facet selectors of the compactified global
    set, or the l2 ball); returns the number of facet binaries."""
    import pyomo.environ as pe

    n_x = iset.n_x
    m.x = pe.Var(range(n_x), bounds=lambda _m, j: (float(iset.lo[j]), float(iset.hi[j])))
    if iset.lifted:
        m.t = pe.Var(bounds=(0.0, 1.0))
    rows = Rows(m, "input_set")
    if iset.surface:
        r = float(iset.radius)
        facets = [(j, s) for j in range(n_x) for s in (1, -1)]
        if iset.lifted:
            facets.append((-1, 0))
        m.facet = pe.Var(range(len(facets)), domain=pe.Binary)
        rows.add(sum(m.facet[f] for f in range(len(facets))) == 1, "one_facet")
        for f, (j, s) in enumerate(facets):
            if s == 1:
                rows.add(m.x[j] >= -r + 2 * r * m.facet[f], "facet", j, "pos")
            elif s == -1:
                rows.add(m.x[j] <= r - 2 * r * m.facet[f], "facet", j, "neg")
            else:
                rows.add(m.t >= m.facet[f], "facet", "t")
        return len(facets)
    if iset.kind == "l2ball":
        c = iset.center
        rows.add(sum((m.x[j] - float(c[j])) ** 2 for j in range(n_x)) <= float(iset.ball_radius) ** 2, "ball")
    return 0


def _forward_layer(m: Any, k: int, w: np.ndarray, b: np.ndarray, lb: LayerBounds,
                   eps: list[np.ndarray] | None, prev: list[Any]) -> tuple[list[Any], int]:
    """Hidden layer k: z = W h + b t (t = 1 off the lifted set), h = max(z, alpha z) with the region
    binaries g (stable neurons fixed), and the lower-bound problem's margins. Returns (h terms, margin
    rows)."""
    lo, hi = lb.z_lo[k], lb.z_hi[k]
    act, ina, al = lb.active[k], lb.inactive[k], lb.alpha(k)
    z = _vars(m, f"z{k + 1}", lo, hi)
    h = _vars(m, f"h{k + 1}", *activation_output_bounds(lo, hi, al))
    zdef, hrows, mrows = Rows(m, f"z{k + 1}_def"), Rows(m, f"h{k + 1}_act"), Rows(m, f"z{k + 1}_margin")
    if hasattr(m, "t"):  # the lifted set: z = W h + b t
        rows = _affine_rows(np.hstack([w, np.reshape(b, (-1, 1))]), [*prev, m.t])
    else:
        rows = _affine_rows(w, prev, b)
    cur: list[Any] = []
    n_margin = 0
    for i in range(w.shape[0]):
        zdef.add(z[i] == rows.expr(i), i)
        li, ui = float(lo[i]), float(hi[i])
        e = None if eps is None else float(eps[k][i])
        if act[i]:
            hrows.add(h[i] == z[i], i, "on")
            if e is not None and li < e:
                mrows.add(z[i] >= e, i, "on")
                n_margin += 1
            cur.append(h[i])
        elif ina[i]:
            if al == 0.0:
                h[i].fix(0.0)
                cur.append(0.0)
            else:
                hrows.add(h[i] == al * z[i], i, "off")
                cur.append(h[i])
            if e is not None and ui > -e:
                mrows.add(z[i] <= -e, i, "off")
                n_margin += 1
        else:
            g = m.g[k, i]
            activation_rows(hrows, (i,), h[i], z[i], g, li, ui, al)
            if e is not None:
                n_margin += margin_rows(mrows, (i,), z[i], g, li, ui, e)
            cur.append(h[i])
    return cur, n_margin


def _direction_input(m: Any, p: Norm, n_x: int, fixed_sign: int | None) -> list[Any]:
    """The direction v in the unit ball of the input norm (v_j >= 0 for j = ``fixed_sign``)."""
    import pyomo.environ as pe

    m.v = pe.Var(range(n_x), bounds=lambda _m, j: ((0.0 if j == fixed_sign else -1.0), 1.0))
    rows = Rows(m, "direction_ball")
    if p is Norm.L2:
        rows.add(sum(m.v[j] ** 2 for j in range(n_x)) <= 1.0, "l2")
    elif p is Norm.L1:
        m.vp = pe.Var(range(n_x), bounds=(0.0, 1.0))
        m.vn = pe.Var(range(n_x), bounds=(0.0, 1.0))
        for j in range(n_x):
            rows.add(m.v[j] == m.vp[j] - m.vn[j], "split", j)
        rows.add(sum(m.vp[j] + m.vn[j] for j in range(n_x)) <= 1.0, "l1")
    return [m.v[j] for j in range(n_x)]


def _direction_layer(m: Any, k: int, w: np.ndarray, lb: LayerBounds, dprev: list[Any]) -> list[Any]:
    """w_k = slope * (W_k w_{k-1}): y = W_k w_{k-1} and the gated direction with the region binaries
    (slope 1 active, alpha inactive, alpha + (1 - alpha) g ambiguous; the switch rows of
    :mod:`.encodings` with the direction bounds [ylo, yhi] as big-M)."""
    act, ina, al = lb.active[k], lb.inactive[k], lb.alpha(k)
    yl, yh = lb.y_lo[k], lb.y_hi[k]
    y = _vars(m, f"y{k + 1}", yl, yh)
    wv = _vars(m, f"w{k + 1}", np.minimum(al * yl, yl), np.maximum(al * yh, yh))
    ydef, wrows = Rows(m, f"y{k + 1}_def"), Rows(m, f"w{k + 1}_gate")
    amb = [i for i in range(w.shape[0]) if not (act[i] or ina[i])]
    hat = None
    if al != 0.0 and amb:  # w = alpha y + (1 - alpha) hat, hat = g y
        hv = _vars(m, f"wh{k + 1}", *switch_bounds(yl[amb], yh[amb]))
        hat = {i: hv[n] for n, i in enumerate(amb)}
    rows = _affine_rows(w, dprev)
    cur: list[Any] = []
    for i in range(w.shape[0]):
        if ina[i] and al == 0.0:
            y[i].fix(0.0)
            wv[i].fix(0.0)
            cur.append(0.0)
            continue
        ydef.add(y[i] == rows.expr(i), i)
        if act[i]:
            wrows.add(wv[i] == y[i], i, "on")
        elif ina[i]:
            wrows.add(wv[i] == al * y[i], i, "off")
        elif hat is None:
            switch_rows(wrows, (i,), wv[i], y[i], m.g[k, i], float(yl[i]), float(yh[i]))
        else:
            switch_rows(wrows, (i,), hat[i], y[i], m.g[k, i], float(yl[i]), float(yh[i]))
            wrows.add(wv[i] == al * y[i] + (1.0 - al) * hat[i], i, "slope")
        cur.append(wv[i])
    return cur


def _objective(m: Any, obj_kind: str, out_exprs: list[Any], lb: Any, obj_ub: float, cut: float | None,
               cfg: MiqcqpConfig) -> None:
    """out = the output direction (``out_exprs``: W_L w_{L-1}, or c^T of it; bounds ``lb.out_lo`` /
    ``lb.out_hi``) and the objective tau (<= c^T out, ||out||_2^2 with the sign split, or max_j out_j by a
    selector), maximised."""
    import pyomo.environ as pe

    n_out = len(out_exprs)
    m.out = pe.Var(range(n_out), bounds=lambda _m, j: (float(lb.out_lo[j]), float(lb.out_hi[j])))
    rows = Rows(m, "objective")
    for j in range(n_out):
        rows.add(m.out[j] == out_exprs[j], "out", j)
    m.tau = pe.Var(bounds=(cut, obj_ub * (1 + 1e-9)))  # relative (obj_ub >= 0)
    if obj_kind == "linear":
        rows.add(m.tau <= m.out[0], "tau")
    elif obj_kind == "quadratic" and cfg.sign_split:
        pos = [max(float(lb.out_hi[j]), 0.0) for j in range(n_out)]
        neg = [max(-float(lb.out_lo[j]), 0.0) for j in range(n_out)]
        m.sgn = pe.Var(range(n_out), domain=pe.Binary)
        m.op = pe.Var(range(n_out), bounds=lambda _m, j: (0.0, pos[j]))
        m.on = pe.Var(range(n_out), bounds=lambda _m, j: (0.0, neg[j]))
        for j in range(n_out):
            rows.add(m.out[j] == m.op[j] - m.on[j], "split", j)
            rows.add(m.op[j] <= pos[j] * m.sgn[j], "pos", j)
            rows.add(m.on[j] <= neg[j] * (1 - m.sgn[j]), "neg", j)
        if cfg.symmetry:  # (v, w, out) -> -(v, w, out) keeps the objective: out_0 >= 0 is WLOG
            m.sgn[0].fix(1)
        rows.add(m.tau <= sum(m.op[j] ** 2 + m.on[j] ** 2 for j in range(n_out)), "tau")
    elif obj_kind == "quadratic":
        rows.add(m.tau <= sum(m.out[j] ** 2 for j in range(n_out)), "tau")
    else:
        m.sel = pe.Var(range(n_out), domain=pe.Binary)
        rows.add(sum(m.sel[j] for j in range(n_out)) == 1, "one_selector")
        for j in range(n_out):
            rows.add(m.tau <= m.out[j] + (obj_ub - float(lb.out_lo[j])) * (1 - m.sel[j]), "tau", j)
    m.obj = pe.Objective(expr=m.tau, sense=pe.maximize)


def objective_cutoff(cfg: MiqcqpConfig, obj_kind: str) -> float | None:
    """The cut-off tau >= cutoff (1 - cutoff_rtol), in objective units (squared for the l2 objective)."""
    if cfg.cutoff is None or cfg.cutoff <= 0:
        return None
    cut = cfg.cutoff * (1.0 - cfg.cutoff_rtol)
    return cut ** 2 if obj_kind == "quadratic" else cut


def build_model(network: Network, question: Question, config: MiqcqpConfig | None = None,
                bounds: LayerBounds | None = None, iset: InputSet | None = None) -> MiqcqpModel:
    """Build the upper-bound (``config.problem == "ub"``) or lower-bound ("lb") problem as a Pyomo model:
    one block of variables and rows per stage, indexed by neuron (a written row says which layer and
    neuron it belongs to); networks with max-pool by :mod:`.miqcqp_pool`. ``question`` must be bound to
    ``network``. ``bounds`` / ``iset`` may be passed to reuse them."""
    import time

    import pyomo.environ as pe

    t0 = time.perf_counter()
    cfg = config or MiqcqpConfig()
    if cfg.problem not in ("ub", "lb"):
        raise ValueError(f"problem must be 'ub' or 'lb', got {cfg.problem!r}")
    check_supported(network, question)
    if network.has_maxpool:  # stage by stage, with the MILP's max-pool encoders
        from lipopt.formulations.miqcqp_pool import build_stage_model

        return build_stage_model(network, question, cfg, bounds, iset)
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

    m = pe.ConcreteModel(name=f"miqcqp-{cfg.problem}")
    n_bin_facets = _input_rows(m, iset)
    n_hidden = len(ws) - 1
    g_index = [(k, int(i)) for k in range(n_hidden) for i in np.nonzero(lb.ambiguous[k])[0]]
    m.g = pe.Var(g_index, domain=pe.Binary)
    prev: list[Any] = [m.x[j] for j in range(iset.n_x)]
    n_margin_rows = 0
    for k in range(n_hidden):
        prev, n = _forward_layer(m, k, ws[k], bs[k], lb, eps, prev)
        n_margin_rows += n

    j_sym = int(np.argmax(np.linalg.norm(ws[0], axis=0))) if iset.n_x else 0
    use_sym = cfg.symmetry and obj_kind == "quadratic" and not cfg.sign_split
    dprev = _direction_input(m, question.input_norm, iset.n_x, j_sym if use_sym else None)
    for k in range(n_hidden):
        dprev = _direction_layer(m, k, ws[k], lb, dprev)

    w_out = ws[-1]
    c = question.output_vector(w_out.shape[0])
    if c is not None:
        w_out = (c @ w_out)[None, :]
    fb_up = fallback_upper(lb, question)
    obj_ub = fb_up ** 2 if obj_kind == "quadratic" else fb_up
    cut = objective_cutoff(cfg, obj_kind)
    out_rows = _affine_rows(w_out, dprev)
    _objective(m, obj_kind, [out_rows.expr(j) for j in range(w_out.shape[0])], lb, obj_ub, cut, cfg)

    res = MiqcqpModel(m, cfg, iset, lb, obj_kind, eps, fb_up, build_time=time.perf_counter() - t0)
    res.stats = {
        **lb.stats,
        "problem": cfg.problem,
        "input_set": iset.kind,
        "global_radius": iset.radius,
        "binaries": len(g_index) + n_bin_facets + (w_out.shape[0] if obj_kind == "max-row" else 0),
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
