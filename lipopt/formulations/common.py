"""Pieces shared by the MIP formulations (milp.py, miqcqp.py): affine forms, ReLU / max-pool switches,
the big-M forward pass and the backward (gradient) pass of formulations.md section 2.2.

Everything acts on the stages of ``network.lower()`` with sound bounds from :mod:`lipopt.bounds`
(``ForwardBounds`` for pre-activations, ``BackwardBounds`` for gradients); big-M values are these bounds,
never constants. Stable neurons get no binary.

Values are handled as *affine forms* ``Form = (const, vars, coefs)`` (``ZERO`` for an identically zero
value), so constants (a fixed output vector c) propagate without creating variables, and a switch of a
constant gradient is the linear expression ``kappa * a`` without big-M rows. ``to_expr`` turns a form
into a Pyomo ``LinearExpression``; ``form_bounds`` gives its interval from the variables' bounds.

Main entry points:
* :func:`make_switches` - one binary ``a`` per ambiguous ReLU and one selector per possible max-pool
  winner (``relax=True``: continuous in [0, 1], for the LP relaxation).
* :func:`encode_forward` - input variables and the big-M forward pass (h >= 0, h >= z, h <= u a,
  h <= z - l (1 - a); max-pool: p >= x_i, p <= x_i + (U - l_i)(1 - d_i), sum d = 1).
* :func:`encode_backward` - the gradient of c^T f by switched back-propagation
  (hat y = a y with the bounds of y as big-M).
* :func:`read_pattern` - the ReLU states and max-pool winners of the incumbent (for certification).
Pyomo is imported inside the functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.bounds.interval import maxpool_can_win
from lipopt.bounds.types import BackwardBounds, ForwardBounds
from lipopt.network.network import AffineStage, MaxPoolStage, ReLUStage

Form = tuple[float, tuple, tuple]  # (constant, vars, coefs)
ZERO: Form = (0.0, (), ())


def const_form(v: float) -> Form:
    return (float(v), (), ())


def var_form(v: Any, coef: float = 1.0) -> Form:
    return (0.0, (v,), (float(coef),))


def is_const(f: Form) -> bool:
    return len(f[1]) == 0


def combine(forms: list[Form], weights: np.ndarray, const: float = 0.0) -> Form:
    """sum_k weights[k] * forms[k] + const, merging repeated variables."""
    c0 = float(const)
    acc: dict[int, list] = {}
    for f, w in zip(forms, weights, strict=True):
        if w == 0:
            continue
        c0 += w * f[0]
        for v, a in zip(f[1], f[2], strict=True):
            e = acc.get(id(v))
            if e is None:
                acc[id(v)] = [v, w * a]
            else:
                e[1] += w * a
    items = [(v, a) for v, a in acc.values() if a != 0]
    return (c0, tuple(v for v, _ in items), tuple(float(a) for _, a in items))


def to_expr(f: Form) -> Any:
    """A Pyomo expression (or float) for a form."""
    from pyomo.core.expr.numeric_expr import LinearExpression

    if is_const(f):
        return f[0]
    return LinearExpression(constant=f[0], linear_coefs=list(f[2]), linear_vars=list(f[1]))


def form_bounds(f: Form) -> tuple[float, float]:
    """Interval of a form from its variables' bounds (None bounds read as infinite)."""
    lo = hi = f[0]
    for v, a in zip(f[1], f[2], strict=True):
        vl = -np.inf if v.lb is None else v.lb
        vu = np.inf if v.ub is None else v.ub
        if a >= 0:
            lo, hi = lo + a * vl, hi + a * vu
        else:
            lo, hi = lo + a * vu, hi + a * vl
    return float(lo), float(hi)


def form_value(f: Form) -> float:
    """Value of a form at the variables' current values."""
    return f[0] + sum(a * (v.value if v.value is not None else 0.0) for v, a in zip(f[1], f[2], strict=True))


def new_vars(model: Any, name: str, n: int, lo: np.ndarray, hi: np.ndarray, binary: bool = False) -> Any:
    """An indexed Var of size n with per-entry bounds (infinite entries become None)."""
    import pyomo.environ as pyo

    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (n,))
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (n,))
    if binary:
        var = pyo.Var(range(n), within=pyo.Binary)
    else:
        def rule(_m: Any, i: int) -> tuple:
            return (None if not np.isfinite(lo[i]) else float(lo[i]),
                    None if not np.isfinite(hi[i]) else float(hi[i]))
        var = pyo.Var(range(n), bounds=rule)
    model.add_component(name, var)
    return var


class Rows:
    """The constraints of one stage, indexed by neuron (or window) and role: a written model's row
    ``h2_relu(5,le_ua)`` says which layer, which neuron and which of its big-M rows it is."""

    def __init__(self, model: Any, name: str) -> None:
        import pyomo.environ as pyo

        self.con = pyo.Constraint(pyo.Any)
        model.add_component(name, self.con)
        self._count = 0

    def add(self, expr: Any, *key: Any) -> Any:
        """Add ``expr`` under ``key`` (rows without a natural key, e.g. cuts, are numbered)."""
        if not key:
            self._count += 1
            key = (self._count,)
        k = key[0] if len(key) == 1 else key
        if k in self.con:
            raise KeyError(f"row {self.con.name}[{k}] written twice")
        self.con[k] = expr
        return self.con[k]


def constraint_list(model: Any, name: str) -> Rows:
    return Rows(model, name)


def _sub(a: Form, b: Form) -> Form:
    return combine([a, b], np.array([1.0, -1.0]))


# ------------------------------------------------------------------------------------------ switches


@dataclass
class Switches:
    """Binaries shared by the forward and backward passes.

    relu[s][i]: the binary of ambiguous neuron i of ReLU stage s (absent for stable neurons).
    masks[s]: (active, inactive, ambiguous) of ReLU stage s.
    pool[s][j]: list of (flat input index, selector var or None) for the possible winners of window j of
    max-pool stage s; a single possible winner has selector None (it always wins)."""

    relu: dict[int, dict[int, Any]] = field(default_factory=dict)
    masks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    pool: dict[int, list[list[tuple[int, Any]]]] = field(default_factory=dict)

    @property
    def n_relu_binaries(self) -> int:
        return sum(len(d) for d in self.relu.values())

    @property
    def n_pool_binaries(self) -> int:
        return sum(sum(1 for lst in w for _, d in lst if d is not None) for w in self.pool.values())

    def all_binaries(self) -> list[Any]:
        out = [v for d in self.relu.values() for v in d.values()]
        out += [d for w in self.pool.values() for lst in w for _, d in lst if d is not None]
        return out


def make_switches(model: Any, fb: ForwardBounds, *, relax: bool = False, prefix: str = "") -> Switches:
    """Create the ReLU binaries and max-pool selectors (continuous in [0, 1] when ``relax``)."""
    sw = Switches()
    for s, stage in enumerate(fb.stages):
        if isinstance(stage, ReLUStage):
            act, inact, amb = fb.relu_masks(s)
            sw.masks[s] = (act, inact, amb)
            idx = np.nonzero(amb)[0]
            if idx.size:
                var = new_vars(model, f"{prefix}a{s}", idx.size, 0.0, 1.0, binary=not relax)
                sw.relu[s] = {int(i): var[k] for k, i in enumerate(idx)}
            else:
                sw.relu[s] = {}
        elif isinstance(stage, MaxPoolStage):
            lo, hi = fb.pre_activation(s)
            can = maxpool_can_win(stage, lo, hi)
            n_sel = int(sum(int(r.sum()) for r in can if r.sum() > 1))
            var = new_vars(model, f"{prefix}d{s}", n_sel, 0.0, 1.0, binary=not relax) if n_sel else None
            windows: list[list[tuple[int, Any]]] = []
            k = 0
            cons = constraint_list(model, f"{prefix}d{s}_one") if n_sel else None
            for j in range(stage.out_size):
                members = [int(stage.windows[j, q]) for q in np.nonzero(can[j])[0]]
                if len(members) == 1:
                    windows.append([(members[0], None)])
                    continue
                lst = []
                for i in members:
                    lst.append((i, var[k]))
                    k += 1
                cons.add(sum(d for _, d in lst) == 1, j)
                windows.append(lst)
            sw.pool[s] = windows
    return sw


# ------------------------------------------------------------------------------------------ forward


@dataclass
class ForwardEncoding:
    x: Any  # indexed input Var
    values: list[list[Form]]  # values[s][i]: output i of stage s (forms; ZERO where identically 0)
    n_rows: int = 0


def encode_forward(model: Any, fb: ForwardBounds, sw: Switches, *, prefix: str = "") -> ForwardEncoding:
    """Input variables in [input_lo, input_hi] and the big-M forward pass up to the last hidden stage.

    The last affine stage (the network output) is not encoded: the Lipschitz objective needs only the
    pattern. Pre-activation variables are created only where a later stage reads them."""
    stages = fb.stages
    n0 = fb.input_lo.size
    x = new_vars(model, f"{prefix}x", n0, fb.input_lo, fb.input_hi)
    cur: list[Form] = [var_form(x[i]) for i in range(n0)]
    values: list[list[Form]] = []
    rows = 0
    for s, stage in enumerate(stages[:-1]):
        if isinstance(stage, AffineStage):
            nxt = stages[s + 1]
            lo, hi = fb.stage_bounds[s]
            if isinstance(nxt, ReLUStage):
                act, inact, _ = sw.masks[s + 1]
                need = ~inact
            else:
                can = maxpool_can_win(nxt, lo, hi)
                need = np.zeros(lo.size, dtype=bool)
                need[nxt.windows[can]] = True
            idx = np.nonzero(need)[0]
            z = new_vars(model, f"{prefix}z{s}", idx.size, lo[idx], hi[idx])
            cons = constraint_list(model, f"{prefix}z{s}_def")
            w = stage.weight
            is_sparse = hasattr(w, "tocsr")
            wc = w.tocsr() if is_sparse else np.asarray(w)
            out: list[Form] = [ZERO] * lo.size
            for k, i in enumerate(idx):
                if is_sparse:
                    row = wc.getrow(int(i))
                    cols, vals = row.indices, row.data
                else:
                    cols = np.nonzero(wc[i])[0]
                    vals = wc[i, cols]
                f = combine([cur[c] for c in cols], vals, stage.bias[i])
                cons.add(to_expr(_sub(f, var_form(z[k]))) == 0, int(i))
                rows += 1
                out[i] = var_form(z[k])
            cur = out
        elif isinstance(stage, ReLUStage):
            lo, hi = fb.pre_activation(s)
            act, inact, amb = sw.masks[s]
            out = [ZERO] * stage.size
            for i in np.nonzero(act)[0]:
                out[i] = cur[i]
            idx = np.nonzero(amb)[0]
            if idx.size:
                h = new_vars(model, f"{prefix}h{s}", idx.size, 0.0, np.maximum(hi[idx], 0.0))
                cons = constraint_list(model, f"{prefix}h{s}_relu")
                for k, i in enumerate(idx):
                    a, z, hv = sw.relu[s][int(i)], cur[i], h[k]
                    ze = to_expr(z)
                    cons.add(hv >= ze, int(i), "ge_z")
                    cons.add(hv <= float(hi[i]) * a, int(i), "le_ua")
                    cons.add(hv <= ze - float(lo[i]) * (1 - a), int(i), "le_z_la")
                    rows += 3
                    out[i] = var_form(hv)
            cur = out
        else:
            lo, hi = fb.pre_activation(s)
            plo, phi = fb.stage_bounds[s]
            windows = sw.pool[s]
            out = [ZERO] * stage.out_size
            multi = [j for j, lst in enumerate(windows) if lst[0][1] is not None]
            for j, lst in enumerate(windows):
                if lst[0][1] is None:
                    out[j] = cur[lst[0][0]]
            if multi:
                p = new_vars(model, f"{prefix}p{s}", len(multi), plo[multi], phi[multi])
                cons = constraint_list(model, f"{prefix}p{s}_max")
                for k, j in enumerate(multi):
                    u_max = max(float(hi[i]) for i, _ in windows[j])
                    for i, d in windows[j]:
                        xe = to_expr(cur[i])
                        cons.add(p[k] >= xe, j, int(i), "ge")
                        cons.add(p[k] <= xe + (u_max - float(lo[i])) * (1 - d), j, int(i), "le")
                        rows += 2
                    out[j] = var_form(p[k])
            cur = out
        values.append(cur)
    return ForwardEncoding(x, values, rows)


# ------------------------------------------------------------------------------------------ backward


@dataclass
class BackwardEncoding:
    grad_input: list[Form]  # the gradient of c^T f with respect to the input
    grads: dict[int, list[Form]]  # grads[s]: derivative w.r.t. the output of stage s
    n_rows: int = 0


def _switch(model_cons: Any, y: Form, a: Any, lam: float, mu: float, hat: Any, *key: Any) -> int:
    """hat = a * y for y in [lam, mu], a in {0, 1}: four big-M rows (formulations.md 2.2), keyed by
    ``key`` (the neuron, or window and input) and their role."""
    lb, mb = min(lam, 0.0), max(mu, 0.0)
    ye = to_expr(y)
    model_cons.add(hat <= ye - lb * (1 - a), *key, "le_y")
    model_cons.add(hat >= ye - mb * (1 - a), *key, "ge_y")
    model_cons.add(hat >= lb * a, *key, "ge_la")
    model_cons.add(hat <= mb * a, *key, "le_ma")
    return 4


def encode_backward(model: Any, fb: ForwardBounds, bb: BackwardBounds, sw: Switches, c: list[Form], *,
                    prefix: str = "") -> BackwardEncoding:
    """Switched back-propagation of the output covector ``c`` (forms: constants or variables).

    ``bb`` must bound the gradients for every c the forms allow (``backward_interval`` with the box
    hull of the c set). Gradient variables get these sound bounds."""
    stages = fb.stages
    g = list(c)
    grads: dict[int, list[Form]] = {len(stages) - 1: g}
    rows = 0
    for s in range(len(stages) - 1, -1, -1):
        stage = stages[s]
        glo, ghi = bb.grad_out[s - 1] if s > 0 else bb.grad_input
        if isinstance(stage, AffineStage):
            wt = stage.weight.T
            wt = wt.tocsr() if hasattr(wt, "tocsr") else np.asarray(wt)
            n_in = wt.shape[0]
            new: list[Form] = [ZERO] * n_in
            var_rows = []
            for i in range(n_in):
                if hasattr(wt, "getrow"):
                    row = wt.getrow(i)
                    cols, vals = row.indices, row.data
                else:
                    cols = np.nonzero(wt[i])[0]
                    vals = wt[i, cols]
                f = combine([g[j] for j in cols], vals)
                if is_const(f) or len(f[1]) == 1:
                    new[i] = f
                else:
                    var_rows.append((i, f))
            if var_rows:
                y = new_vars(model, f"{prefix}y{s}", len(var_rows), glo[[i for i, _ in var_rows]],
                             ghi[[i for i, _ in var_rows]])
                cons = constraint_list(model, f"{prefix}y{s}_def")
                for k, (i, f) in enumerate(var_rows):
                    cons.add(to_expr(_sub(f, var_form(y[k]))) == 0, int(i))
                    rows += 1
                    new[i] = var_form(y[k])
            g = new
        elif isinstance(stage, ReLUStage):
            act, _, amb = sw.masks[s]
            ylo, yhi = bb.grad_out[s]
            new = [ZERO] * stage.size
            for i in np.nonzero(act)[0]:
                new[i] = g[i]
            need = [int(i) for i in np.nonzero(amb)[0] if not is_const(g[i])]
            for i in np.nonzero(amb)[0]:
                if is_const(g[i]) and g[i][0] != 0:
                    new[i] = var_form(sw.relu[s][int(i)], g[i][0])
            if need:
                # both are sound: the backward interval bounds and the form's own interval
                fbs = [form_bounds(g[i]) for i in need]
                lam = np.array([max(ylo[i], b[0]) for i, b in zip(need, fbs, strict=True)])
                mu = np.array([min(yhi[i], b[1]) for i, b in zip(need, fbs, strict=True)])
                hat = new_vars(model, f"{prefix}yh{s}", len(need), np.minimum(lam, 0), np.maximum(mu, 0))
                cons = constraint_list(model, f"{prefix}yh{s}_switch")
                for k, i in enumerate(need):
                    rows += _switch(cons, g[i], sw.relu[s][i], float(lam[k]), float(mu[k]), hat[k], int(i))
                    new[i] = var_form(hat[k])
            g = new
        else:
            windows = sw.pool[s]
            routed: list[list[Form]] = [[] for _ in range(stage.in_size)]
            need = []
            for j, lst in enumerate(windows):
                for i, d in lst:
                    if d is None:
                        routed[i].append(g[j])
                    elif is_const(g[j]):
                        if g[j][0] != 0:
                            routed[i].append(var_form(d, g[j][0]))
                    else:
                        need.append((j, i, d))
            if need:
                bnds = [form_bounds(g[j]) for j, _, _ in need]
                lam = np.array([b[0] for b in bnds])
                mu = np.array([b[1] for b in bnds])
                hat = new_vars(model, f"{prefix}yp{s}", len(need), np.minimum(lam, 0), np.maximum(mu, 0))
                cons = constraint_list(model, f"{prefix}yp{s}_route")
                for k, (j, i, d) in enumerate(need):
                    rows += _switch(cons, g[j], d, float(lam[k]), float(mu[k]), hat[k], j, int(i))
                    routed[i].append(var_form(hat[k]))
            g = [combine(lst, np.ones(len(lst))) if lst else ZERO for lst in routed]
        if s > 0:
            grads[s - 1] = g
    return BackwardEncoding(g, grads, rows)


# ------------------------------------------------------------------------------------------ tangent


def _widened(f: Form) -> tuple[float, float]:
    """form_bounds padded against float64 rounding in the sums (sound variable bounds)."""
    lo, hi = form_bounds(f)
    pad = 1e-9 * max(abs(lo), abs(hi), 1.0)
    return lo - pad, hi + pad


@dataclass
class TangentEncoding:
    direction: list[Form]  # the input direction s
    output: list[Form]  # J(x) s, the directional derivative of every network output
    n_rows: int = 0


def encode_tangent(model: Any, fb: ForwardBounds, sw: Switches, s: list[Form], *,
                   prefix: str = "") -> TangentEncoding:
    """Forward-mode (directional) derivative J(x) s by switched propagation of the direction ``s``
    (forms over variables with finite bounds): t = W t' through affine stages (no bias), hat t = a t
    through ReLUs (the big-M switch of formulations.md 2.2 with the interval of t as big-M), and the
    winner's entry through a max-pool. For fixed binaries the output is linear in s."""
    t = list(s)
    rows = 0
    for st, stage in enumerate(fb.stages):
        if isinstance(stage, AffineStage):
            w = stage.weight
            wc = w.tocsr() if hasattr(w, "tocsr") else np.asarray(w)
            n_out = wc.shape[0]
            nxt = fb.stages[st + 1] if st + 1 < len(fb.stages) else None
            need = (~sw.masks[st + 1][1]) if isinstance(nxt, ReLUStage) else np.ones(n_out, dtype=bool)
            new: list[Form] = [ZERO] * n_out
            var_rows = []
            for i in np.nonzero(need)[0]:
                if hasattr(wc, "getrow"):
                    row = wc.getrow(int(i))
                    cols, vals = row.indices, row.data
                else:
                    cols = np.nonzero(wc[i])[0]
                    vals = wc[i, cols]
                f = combine([t[c] for c in cols], vals)
                if nxt is None or is_const(f) or len(f[1]) == 1:
                    new[i] = f
                else:
                    var_rows.append((int(i), f))
            if var_rows:
                bnds = [_widened(f) for _, f in var_rows]
                v = new_vars(model, f"{prefix}tz{st}", len(var_rows), np.array([b[0] for b in bnds]),
                             np.array([b[1] for b in bnds]))
                cons = constraint_list(model, f"{prefix}tz{st}_def")
                for k, (i, f) in enumerate(var_rows):
                    cons.add(to_expr(_sub(f, var_form(v[k]))) == 0, int(i))
                    rows += 1
                    new[i] = var_form(v[k])
            t = new
        elif isinstance(stage, ReLUStage):
            act, _, amb = sw.masks[st]
            new = [ZERO] * stage.size
            for i in np.nonzero(act)[0]:
                new[i] = t[i]
            for i in np.nonzero(amb)[0]:
                if is_const(t[i]) and t[i][0] != 0:
                    new[i] = var_form(sw.relu[st][int(i)], t[i][0])
            idx = [int(i) for i in np.nonzero(amb)[0] if not is_const(t[i])]
            if idx:
                bnds = [_widened(t[i]) for i in idx]
                lam = np.array([b[0] for b in bnds])
                mu = np.array([b[1] for b in bnds])
                hat = new_vars(model, f"{prefix}th{st}", len(idx), np.minimum(lam, 0), np.maximum(mu, 0))
                cons = constraint_list(model, f"{prefix}th{st}_switch")
                for k, i in enumerate(idx):
                    rows += _switch(cons, t[i], sw.relu[st][i], float(lam[k]), float(mu[k]), hat[k], int(i))
                    new[i] = var_form(hat[k])
            t = new
        else:
            windows = sw.pool[st]
            new = [ZERO] * stage.out_size
            need = []
            for j, lst in enumerate(windows):
                if lst[0][1] is None:
                    new[j] = t[lst[0][0]]
                else:
                    need.extend((j, i, d) for i, d in lst)
            if need:
                bnds = [_widened(t[i]) for _, i, _ in need]
                lam = np.array([b[0] for b in bnds])
                mu = np.array([b[1] for b in bnds])
                hat = new_vars(model, f"{prefix}tp{st}", len(need), np.minimum(lam, 0), np.maximum(mu, 0))
                cons = constraint_list(model, f"{prefix}tp{st}_route")
                parts: dict[int, list[Form]] = {}
                for k, (j, i, d) in enumerate(need):
                    rows += _switch(cons, t[i], d, float(lam[k]), float(mu[k]), hat[k], j, int(i))
                    parts.setdefault(j, []).append(var_form(hat[k]))
                for j, lst in parts.items():
                    new[j] = combine(lst, np.ones(len(lst)))
            t = new
    return TangentEncoding(list(s), t, rows)


# ------------------------------------------------------------------------------------------ readout


def read_pattern(fb: ForwardBounds, sw: Switches) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """ReLU states (binary > 0.5, stable neurons from the bounds) and max-pool winners (largest selector)
    at the variables' current values."""
    relu, pools = [], []
    for s, stage in enumerate(fb.stages):
        if isinstance(stage, ReLUStage):
            act, _, _ = sw.masks[s]
            st = act.copy()
            for i, a in sw.relu[s].items():
                st[i] = (a.value or 0.0) > 0.5
            relu.append(st)
        elif isinstance(stage, MaxPoolStage):
            win = []
            for lst in sw.pool[s]:
                if lst[0][1] is None:
                    win.append(lst[0][0])
                else:
                    win.append(max(lst, key=lambda t: t[1].value or 0.0)[0])
            pools.append(np.array(win, dtype=np.int64))
    return relu, pools


def read_input(enc: ForwardEncoding) -> np.ndarray:
    return np.array([enc.x[i].value if enc.x[i].value is not None else 0.0 for i in range(len(enc.x))])
