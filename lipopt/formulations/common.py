"""The MIP encodings of a lowered network shared by the MILP and the LP relaxation (milp.py): switches,
the big-M forward pass, the backward (gradient) pass and the forward-mode (tangent) pass of
formulations.md section 2.2, one function per stage kind in a table keyed by the stage type.

Everything acts on the stages of ``network.lower()`` with sound bounds from :mod:`lipopt.bounds`
(``ForwardBounds`` for pre-activations, ``BackwardBounds`` for gradients); big-M values are these bounds,
never constants. Stable neurons get no binary. The rows of one neuron are written by
:mod:`lipopt.formulations.encodings` (shared with the MIQCQP); values are affine forms
(:mod:`lipopt.formulations.forms`), so a switch of a constant gradient is the linear expression
``kappa * a`` without big-M rows.

Main entry points:
* :func:`make_switches` - one binary ``a`` per ambiguous activation and one selector per possible
  max-pool winner (``relax=True``: continuous in [0, 1], for the LP relaxation).
* :func:`encode_forward` - input variables and the big-M forward pass (activation rows; max-pool:
  p >= x_i, p <= x_i + (U - l_i)(1 - d_i), sum d = 1).
* :func:`encode_backward` - the gradient of c^T f by switched back-propagation (slope
  alpha + (1 - alpha) a, the bounds of y as big-M).
* :func:`encode_tangent` - the directional derivative J(x) s by the same switches, forward.
* :func:`read_pattern` - the activation states and max-pool winners of the incumbent (for certification).
Pyomo is imported inside the functions.

The mathematics as implemented: ``docs/methods.md#milp-encoding``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lipopt.bounds.interval import maxpool_can_win
from lipopt.bounds.types import BackwardBounds, ForwardBounds
from lipopt.formulations.encodings import (
    activation_output_bounds,
    activation_rows,
    slope_form,
    switch_bounds,
    switch_rows,
)
from lipopt.formulations.forms import (  # re-exported: the MILP module reads them from here
    ZERO,
    Form,
    FormVector,
    Rows,
    combine,
    const_form,
    constraint_list,
    form_bounds,
    form_value,
    is_const,
    new_vars,
    stage_block,
    to_expr,
    var_form,
)
from lipopt.formulations.switches import Switches, make_switches  # re-exported
from lipopt.network.stages import (
    ActivationStage,
    AffineStage,
    LeakyReLUStage,
    MaxPoolStage,
    ReLUStage,
    dispatch,
    is_activation,
)

__all__ = [
    "ZERO", "BackwardEncoding", "Form", "ForwardEncoding", "Rows", "Switches", "TangentEncoding", "combine",
    "const_form", "constraint_list", "encode_backward", "encode_forward", "encode_tangent", "form_bounds",
    "form_value", "is_const", "make_switches", "new_vars", "read_input", "read_pattern", "to_expr",
    "var_form",
]


def _sub(a: Form, b: Form) -> Form:
    return combine([a, b], np.array([1.0, -1.0]))


def _scaled(f: Form, a: float) -> Form:
    """a * f (ZERO for a = 0)."""
    return ZERO if a == 0.0 or f is ZERO else combine([f], np.array([float(a)]))


@dataclass
class _Ctx:
    """What a stage's encoder needs: the model, bounds, switches, name prefix and the row count."""

    model: Any
    fb: ForwardBounds
    sw: Switches
    prefix: str
    rows: int = 0

    def block(self, s: int) -> Any:
        """The Block of stage s, where every pass writes that stage's variables and rows."""
        return stage_block(self.model, s, self.prefix)


# ------------------------------------------------------------------------------------------ forward


@dataclass
class ForwardEncoding:
    x: Any  # indexed input Var
    values: list[list[Form]]  # values[s][i]: output i of stage s (forms; ZERO where identically 0)
    n_rows: int = 0


def _read_by_next(ctx: _Ctx, s: int) -> np.ndarray:
    """Which outputs of affine stage s a later stage reads (an inactive ReLU's input is never read)."""
    nxt = ctx.fb.stages[s + 1]
    lo, hi = ctx.fb.stage_bounds[s]
    if is_activation(nxt):
        return ~ctx.sw.masks[s + 1][1] if nxt.alpha == 0.0 else np.ones(lo.size, dtype=bool)
    can = maxpool_can_win(nxt, lo, hi)
    need = np.zeros(lo.size, dtype=bool)
    need[nxt.windows[can]] = True
    return need


def _fwd_affine(ctx: _Ctx, s: int, stage: AffineStage, cur: list[Form]) -> list[Form]:
    lo, hi = ctx.fb.stage_bounds[s]
    idx = np.nonzero(_read_by_next(ctx, s))[0]
    z = new_vars(ctx.block(s), "z", idx.size, lo[idx], hi[idx], index=idx.tolist())
    cons = constraint_list(ctx.block(s), "z_def")
    rows = FormVector(cur).rows(stage.weight, idx, stage.bias[idx])
    out: list[Form] = [ZERO] * lo.size
    for k, i in enumerate(idx.tolist()):
        cons.add(rows.definition(k, z[i]), i)
        out[i] = var_form(z[i])
    ctx.rows += idx.size
    return out


def _fwd_activation(ctx: _Ctx, s: int, stage: ActivationStage, cur: list[Form]) -> list[Form]:
    lo, hi = ctx.fb.pre_activation(s)
    act, inact, amb = ctx.sw.masks[s]
    a = stage.alpha
    out = [ZERO] * stage.size
    for i in np.nonzero(act)[0]:
        out[i] = cur[i]
    for i in np.nonzero(inact)[0]:
        out[i] = _scaled(cur[i], a)
    idx = np.nonzero(amb)[0]
    if idx.size:
        h_lo, h_hi = activation_output_bounds(lo[idx], hi[idx], a)
        h = new_vars(ctx.block(s), "h", idx.size, h_lo, h_hi, index=idx.tolist())
        cons = constraint_list(ctx.block(s), "relu")
        for i in idx.tolist():
            ctx.rows += activation_rows(cons, (i,), h[i], to_expr(cur[i]), ctx.sw.relu[s][i],
                                        float(lo[i]), float(hi[i]), a)
            out[i] = var_form(h[i])
    return out


def _fwd_maxpool(ctx: _Ctx, s: int, stage: MaxPoolStage, cur: list[Form]) -> list[Form]:
    lo, hi = ctx.fb.pre_activation(s)
    plo, phi = ctx.fb.stage_bounds[s]
    windows = ctx.sw.pool[s]
    out = [ZERO] * stage.out_size
    multi = [j for j, lst in enumerate(windows) if lst[0][1] is not None]
    for j, lst in enumerate(windows):
        if lst[0][1] is None:
            out[j] = cur[lst[0][0]]
    if multi:
        p = new_vars(ctx.block(s), "p", len(multi), plo[multi], phi[multi], index=multi)
        cons = constraint_list(ctx.block(s), "max")
        for j in multi:
            u_max = max(float(hi[i]) for i, _ in windows[j])
            for i, d in windows[j]:
                xe = to_expr(cur[i])
                cons.add(p[j] >= xe, j, int(i), "ge")
                cons.add(p[j] <= xe + (u_max - float(lo[i])) * (1 - d), j, int(i), "le")
                ctx.rows += 2
            out[j] = var_form(p[j])
    return out


#: stage type -> forward encoder (ctx, stage index, stage, input forms) -> output forms
FORWARD: dict[type, Callable[..., list[Form]]] = {
    AffineStage: _fwd_affine, ReLUStage: _fwd_activation, LeakyReLUStage: _fwd_activation,
    MaxPoolStage: _fwd_maxpool,
}


def encode_forward(model: Any, fb: ForwardBounds, sw: Switches, *, prefix: str = "",
                   inputs: list[Form] | None = None) -> ForwardEncoding:
    """Input variables in [input_lo, input_hi] and the big-M forward pass up to the last hidden stage.

    The last affine stage (the network output) is not encoded: the Lipschitz objective needs only the
    pattern. Pre-activation variables are created only where a later stage reads them. ``inputs``: forms
    of input variables the caller made (the MIQCQP's input set); then no ``x`` is created (``.x`` None)."""
    ctx = _Ctx(model, fb, sw, prefix)
    n0 = fb.input_lo.size
    x = None
    if inputs is None:
        x = new_vars(model, f"{prefix}x", n0, fb.input_lo, fb.input_hi)
        inputs = [var_form(x[i]) for i in range(n0)]
    cur: list[Form] = list(inputs)
    values: list[list[Form]] = []
    for s, stage in enumerate(fb.stages[:-1]):
        cur = dispatch(FORWARD, stage, "the MIP forward pass")(ctx, s, stage, cur)
        values.append(cur)
    return ForwardEncoding(x, values, ctx.rows)


# ------------------------------------------------------------------------------------------ backward


@dataclass
class BackwardEncoding:
    grad_input: list[Form]  # the gradient of c^T f with respect to the input
    grads: dict[int, list[Form]]  # grads[s]: derivative w.r.t. the output of stage s
    n_rows: int = 0


def _linear_map(ctx: _Ctx, s: int, w: Any, g: list[Form], need: np.ndarray,
                bounds: Callable[[np.ndarray, list[Form]], tuple], name: str, keep_last: bool = False
                ) -> list[Form]:
    """Forms of the rows ``need`` of w @ g, built in bulk (:meth:`FormVector.rows`); a row of several
    variables gets its own variable (bounds from ``bounds(its row indices, its forms)``) and a definition
    row, unless ``keep_last``."""
    idx = np.nonzero(need)[0]
    rows = FormVector(g).rows(w, idx)
    new: list[Form] = [ZERO] * w.shape[0]
    as_var = np.zeros(idx.size, dtype=bool) if keep_last else rows.counts > 1
    for k in np.nonzero(~as_var)[0].tolist():
        new[int(idx[k])] = rows.form(k)
    ks = np.nonzero(as_var)[0]
    if ks.size:
        lo, hi = bounds(idx[ks], [rows.form(k) for k in ks.tolist()])
        y = new_vars(ctx.block(s), name, ks.size, lo, hi, index=idx[ks].tolist())
        cons = constraint_list(ctx.block(s), f"{name}_def")
        for k, i in zip(ks.tolist(), idx[ks].tolist(), strict=True):
            cons.add(rows.definition(k, y[i]), i)
            new[i] = var_form(y[i])
        ctx.rows += ks.size
    return new


def _switched(ctx: _Ctx, s: int, stage: ActivationStage, g: list[Form], bounds: list[tuple[float, float]],
              name: str) -> list[Form]:
    """Forms of slope * g through activation stage s (slope 1 active, alpha inactive, alpha + (1 - alpha)
    a ambiguous); ``bounds[i]`` bounds g_i (used for the ambiguous, non-constant ones)."""
    act, inact, amb = ctx.sw.masks[s]
    a = stage.alpha
    new = [ZERO] * stage.size
    for i in np.nonzero(act)[0]:
        new[i] = g[i]
    for i in np.nonzero(inact)[0]:
        new[i] = _scaled(g[i], a)
    for i in np.nonzero(amb)[0]:
        if is_const(g[i]) and g[i][0] != 0:  # a * k + (1 - a) k d
            new[i] = (a * g[i][0], (ctx.sw.relu[s][int(i)],), ((1.0 - a) * g[i][0],))
    need = [int(i) for i in np.nonzero(amb)[0] if not is_const(g[i])]
    if need:
        lam = np.array([bounds[i][0] for i in need])
        mu = np.array([bounds[i][1] for i in need])
        hat = new_vars(ctx.block(s), name, len(need), *switch_bounds(lam, mu), index=need)
        cons = constraint_list(ctx.block(s), f"{name}_switch")
        for k, i in enumerate(need):
            ctx.rows += switch_rows(cons, (i,), hat[i], to_expr(g[i]), ctx.sw.relu[s][i], float(lam[k]),
                                    float(mu[k]))
            new[i] = slope_form(g[i], var_form(hat[i]), a)
    return new


def _back_affine(ctx: _Ctx, s: int, stage: AffineStage, g: list[Form], bb: BackwardBounds) -> list[Form]:
    glo, ghi = bb.grad_out[s - 1] if s > 0 else bb.grad_input
    wt = stage.weight.T

    def bounds(ii: np.ndarray, _forms: list[Form]) -> tuple:
        return glo[ii], ghi[ii]

    return _linear_map(ctx, s, wt, g, np.ones(wt.shape[0], dtype=bool), bounds, "y")


def _back_activation(ctx: _Ctx, s: int, stage: ActivationStage, g: list[Form], bb: BackwardBounds
                     ) -> list[Form]:
    ylo, yhi = bb.grad_out[s]
    # both are sound: the backward interval bounds and the form's own interval
    bnds = [(max(ylo[i], fb[0]), min(yhi[i], fb[1])) if not is_const(g[i]) else (0.0, 0.0)
            for i, fb in ((i, form_bounds(g[i])) for i in range(stage.size))]
    return _switched(ctx, s, stage, g, bnds, "yh")


def _back_maxpool(ctx: _Ctx, s: int, stage: MaxPoolStage, g: list[Form], bb: BackwardBounds) -> list[Form]:
    windows = ctx.sw.pool[s]
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
        keys = [(j, int(i)) for j, i, _ in need]
        hat = new_vars(ctx.block(s), "yp", len(need), *switch_bounds(lam, mu), index=keys)
        cons = constraint_list(ctx.block(s), "yp_route")
        for k, ((j, i), (_, _, d)) in enumerate(zip(keys, need, strict=True)):
            ctx.rows += switch_rows(cons, (j, i), hat[j, i], to_expr(g[j]), d, float(lam[k]), float(mu[k]))
            routed[i].append(var_form(hat[j, i]))
    return [combine(lst, np.ones(len(lst))) if lst else ZERO for lst in routed]


#: stage type -> backward encoder (ctx, stage index, stage, output covector forms, bounds) -> input forms
BACKWARD: dict[type, Callable[..., list[Form]]] = {
    AffineStage: _back_affine, ReLUStage: _back_activation, LeakyReLUStage: _back_activation,
    MaxPoolStage: _back_maxpool,
}


def encode_backward(model: Any, fb: ForwardBounds, bb: BackwardBounds, sw: Switches, c: list[Form], *,
                    prefix: str = "") -> BackwardEncoding:
    """Switched back-propagation of the output covector ``c`` (forms: constants or variables).

    ``bb`` must bound the gradients for every c the forms allow (``backward_interval`` with the box
    hull of the c set). Gradient variables get these sound bounds."""
    ctx = _Ctx(model, fb, sw, prefix)
    stages = fb.stages
    g = list(c)
    grads: dict[int, list[Form]] = {len(stages) - 1: g}
    for s in range(len(stages) - 1, -1, -1):
        stage = stages[s]
        g = dispatch(BACKWARD, stage, "the MIP backward pass")(ctx, s, stage, g, bb)
        if s > 0:
            grads[s - 1] = g
    return BackwardEncoding(g, grads, ctx.rows)


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


def _tan_affine(ctx: _Ctx, st: int, stage: AffineStage, t: list[Form]) -> list[Form]:
    n_out = stage.shape[0]
    nxt = ctx.fb.stages[st + 1] if st + 1 < len(ctx.fb.stages) else None
    need = np.ones(n_out, dtype=bool)
    if nxt is not None and is_activation(nxt) and nxt.alpha == 0.0:
        need = ~ctx.sw.masks[st + 1][1]

    def bounds(_ii: np.ndarray, forms: list[Form]) -> tuple:
        bnds = [_widened(f) for f in forms]
        return np.array([b[0] for b in bnds]), np.array([b[1] for b in bnds])

    return _linear_map(ctx, st, stage.weight, t, need, bounds, "tz", keep_last=nxt is None)


def _tan_activation(ctx: _Ctx, st: int, stage: ActivationStage, t: list[Form]) -> list[Form]:
    bnds = [_widened(f) if not is_const(f) else (0.0, 0.0) for f in t]
    return _switched(ctx, st, stage, t, bnds, "th")


def _tan_maxpool(ctx: _Ctx, st: int, stage: MaxPoolStage, t: list[Form]) -> list[Form]:
    windows = ctx.sw.pool[st]
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
        keys = [(j, int(i)) for j, i, _ in need]
        hat = new_vars(ctx.block(st), "tp", len(need), *switch_bounds(lam, mu), index=keys)
        cons = constraint_list(ctx.block(st), "tp_route")
        parts: dict[int, list[Form]] = {}
        for k, ((j, i), (_, _, d)) in enumerate(zip(keys, need, strict=True)):
            ctx.rows += switch_rows(cons, (j, i), hat[j, i], to_expr(t[i]), d, float(lam[k]), float(mu[k]))
            parts.setdefault(j, []).append(var_form(hat[j, i]))
        for j, lst in parts.items():
            new[j] = combine(lst, np.ones(len(lst)))
    return new


#: stage type -> forward-mode encoder (ctx, stage index, stage, tangent forms) -> output tangent forms
TANGENT: dict[type, Callable[..., list[Form]]] = {
    AffineStage: _tan_affine, ReLUStage: _tan_activation, LeakyReLUStage: _tan_activation,
    MaxPoolStage: _tan_maxpool,
}


def encode_tangent(model: Any, fb: ForwardBounds, sw: Switches, s: list[Form], *,
                   prefix: str = "") -> TangentEncoding:
    """Forward-mode (directional) derivative J(x) s by switched propagation of the direction ``s``
    (forms over variables with finite bounds): t = W t' through affine stages (no bias), the switched
    slope through activations (the big-M switch of formulations.md 2.2 with the interval of t as big-M),
    and the winner's entry through a max-pool. For fixed binaries the output is linear in s."""
    ctx = _Ctx(model, fb, sw, prefix)
    t = list(s)
    for st, stage in enumerate(fb.stages):
        t = dispatch(TANGENT, stage, "the MIP tangent pass")(ctx, st, stage, t)
    return TangentEncoding(list(s), t, ctx.rows)


# ------------------------------------------------------------------------------------------ readout


def read_pattern(fb: ForwardBounds, sw: Switches) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Activation states (binary > 0.5, stable neurons from the bounds) and max-pool winners (largest
    selector) at the variables' current values."""
    relu, pools = [], []
    for s, stage in enumerate(fb.stages):
        if is_activation(stage):
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
