"""The LipMIP-family MILP (formulations.md section 2.2) as a Pyomo model.

    maximise  || J(x)^T c ||_{p*}   over x in the box, the activation pattern, and c in the output set,

with the forward pass, the switched backward pass (:mod:`lipopt.formulations.common`) and an objective
for the input norm:

* input l-inf (gradient l1-norm): sum_i t_i with t_i = |g_i|, a sign binary sigma_i only where the sign of
  g_i is not fixed by its bounds: t >= g, t >= -g, t <= g - 2 lo (1 - sigma), t <= -g + 2 hi sigma;
* input l1 (gradient l-inf norm): m with a selector kappa over the pairs (i, s), s = +-1, sum kappa = 1,
  m <= s g_i + M_{i,s} (1 - kappa_{i,s}), M from the bounds (pairs whose s g_i cannot be positive dropped).

Output sets (the dual ball of the output norm, or one fixed c for a scalar output), see :class:`Piece`:
* ``Piece("const", c)``: c fixed (logit, margin, direction; one row e_j of a split l-inf output);
* ``Piece("box")``: c in [-1, 1]^m (output l1 norm: ||J||_{p->1} = sup over the box of ||J^T c||_{p*});
* ``Piece("selector")``: c in {e_1, ..., e_m} with binaries (output l-inf in one model; by the symmetry
  of |.| the signs -e_j are not needed).
For fixed binaries the objective is linear in c, so an LP over a polytope of c reaches its vertices: the
MILP is exact for the closed-region convention (formulations.md 2.3).

``forward=False`` drops the forward pass (all patterns allowed by the bounds: the "naive MIP", an UPPER
bound for the global constant with biases). ``relax=True`` makes every binary continuous in [0, 1]
(the LP relaxation, an UPPER bound).

The mathematics as implemented: ``docs/methods.md#milp``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.bounds.interval import backward_interval
from lipopt.bounds.types import BackwardBounds, ForwardBounds
from lipopt.certify.candidates import Candidate
from lipopt.formulations.common import (
    BackwardEncoding,
    Form,
    ForwardEncoding,
    Switches,
    combine,
    const_form,
    constraint_list,
    encode_backward,
    encode_forward,
    encode_tangent,
    form_bounds,
    make_switches,
    new_vars,
    read_input,
    read_pattern,
    to_expr,
    var_form,
)
from lipopt.spec import Norm


@dataclass(frozen=True, eq=False)
class Piece:
    """The output set of one MILP: "const" (with ``c``), "box" or "selector"."""

    kind: str
    c: np.ndarray | None = None
    label: str = ""


@dataclass
class MilpModel:
    model: Any
    fb: ForwardBounds
    bb: BackwardBounds
    switches: Switches
    forward: ForwardEncoding | None
    backward: BackwardEncoding
    c_vars: Any | None
    objective_upper: float  # a sound upper bound on the objective from the variables' bounds
    piece: Piece
    stats: dict[str, Any] = field(default_factory=dict)
    _cuts: Any = None

    def candidate(self, objective: float | None, label: str = "") -> Candidate:
        """The incumbent currently loaded in the variables, for certification."""
        relu, pools = read_pattern(self.fb, self.switches)
        x = read_input(self.forward) if self.forward is not None else None
        return Candidate(relu, pools, x, objective, label)

    def fix_input(self, x: np.ndarray) -> None:
        """Fix the input variables (formulation-fidelity tests)."""
        assert self.forward is not None
        for i, v in enumerate(np.ravel(x)):
            self.forward.x[i].fix(float(v))

    def add_no_good_cut(self) -> bool:
        """Exclude the current binary assignment of the ReLU / max-pool switches (one linear row).
        Returns False when there are no switches to cut."""
        bins = self.switches.all_binaries()
        if not bins:
            return False
        if self._cuts is None:
            self._cuts = constraint_list(self.model, "no_good_cuts")
        ones = [b for b in bins if (b.value or 0.0) > 0.5]
        zeros = [b for b in bins if (b.value or 0.0) <= 0.5]
        self._cuts.add(sum(1 - b for b in ones) + sum(zeros) >= 1)
        return True


def output_pieces(question: Any, n_out: int, vector_encoding: str = "split") -> list[Piece]:
    """The MILPs that together answer the question (their maximum is the constant)."""
    c = question.output_vector(n_out)
    if c is not None:
        return [Piece("const", c, question.output.describe())]
    if question.output_norm is Norm.L1:
        return [Piece("box", None, "c in [-1,1]^m")]
    if question.output_norm is Norm.LINF:
        if vector_encoding == "selector":
            return [Piece("selector", None, "c in {e_j}")]
        return [Piece("const", np.eye(n_out)[j], f"row {j}") for j in range(n_out)]
    raise ValueError(f"output norm {question.output_norm.label} has no polyhedral dual ball")


def backward_bounds_for(fb: ForwardBounds, piece: Piece) -> BackwardBounds:
    if piece.kind == "const":
        return backward_interval(fb, piece.c, piece.c)
    m = fb.stages[-1].shape[0]
    lo = -np.ones(m) if piece.kind == "box" else np.zeros(m)
    return backward_interval(fb, lo, np.ones(m))


def cheap_upper(fb: ForwardBounds, piece: Piece, input_norm: Norm) -> float:
    """The interval bound on the objective of a piece (sound; no model built)."""
    lo, hi = backward_bounds_for(fb, piece).grad_input
    mag = np.maximum(np.abs(lo), np.abs(hi))
    return float(mag.sum() if input_norm is Norm.LINF else mag.max())


def _objective_linf(model: Any, g: list[Form], relax: bool) -> tuple[Any, float, int]:
    """sum_i |g_i| (input l-inf); returns (expression, sound upper bound, number of sign binaries)."""
    terms: list[Any] = []
    upper = 0.0
    amb = []
    for i, f in enumerate(g):
        lo, hi = form_bounds(f)
        upper += max(abs(lo), abs(hi))
        if lo >= 0:
            terms.append(to_expr(f))
        elif hi <= 0:
            terms.append(-to_expr(f))
        else:
            amb.append((i, lo, hi))
    if amb:
        t = new_vars(model, "t_abs", len(amb), 0.0, [max(-lo, hi) for _, lo, hi in amb])
        sig = new_vars(model, "sigma", len(amb), 0.0, 1.0, binary=not relax)
        cons = constraint_list(model, "abs_rows")
        for k, (i, lo, hi) in enumerate(amb):
            e = to_expr(g[i])
            cons.add(t[k] >= e, i, "ge_g")
            cons.add(t[k] >= -e, i, "ge_minus_g")
            cons.add(t[k] <= e - 2 * lo * (1 - sig[k]), i, "le_g_sig")
            cons.add(t[k] <= -e + 2 * hi * sig[k], i, "le_minus_g_sig")
            terms.append(t[k])
    return sum(terms) if terms else 0.0, upper, len(amb)


def _objective_l1(model: Any, g: list[Form], relax: bool) -> tuple[Any, float, int]:
    """max_i |g_i| (input l1) with a selector over (i, sign)."""
    pairs = []
    for i, f in enumerate(g):
        lo, hi = form_bounds(f)
        if hi > 0:
            pairs.append((i, 1.0, lo, hi))
        if lo < 0:
            pairs.append((i, -1.0, -hi, -lo))
    if not pairs:
        return 0.0, 0.0, 0
    m_ub = max(p[3] for p in pairs)
    mvar = new_vars(model, "m_max", 1, 0.0, m_ub)
    kap = new_vars(model, "kappa", len(pairs), 0.0, 1.0, binary=not relax)
    cons = constraint_list(model, "max_rows")
    cons.add(sum(kap[k] for k in range(len(pairs))) == 1, "one_selected")
    for k, (i, s, slo, _) in enumerate(pairs):
        cons.add(mvar[0] <= s * to_expr(g[i]) + (m_ub - slo) * (1 - kap[k]), i, "pos" if s > 0 else "neg")
    return mvar[0], m_ub, len(pairs)


@dataclass
class _Parts:
    """What every MILP of a piece shares: the model, bounds, switches, the forward encoding."""

    model: Any
    fb: ForwardBounds
    bb: BackwardBounds
    sw: Switches
    fwd: ForwardEncoding | None
    relax: bool
    forward: bool
    t0: float

    def stats(self, piece: Piece, objective_binaries: int, output_binaries: int, **extra: Any) -> dict:
        st = {"piece": piece.label or piece.kind, **extra, "relu_binaries": self.sw.n_relu_binaries,
              "pool_binaries": self.sw.n_pool_binaries, "objective_binaries": objective_binaries,
              "output_binaries": output_binaries, "variables": self.model.nvariables(),
              "constraints": self.model.nconstraints(), "build_time": time.perf_counter() - self.t0,
              "relaxed": self.relax, "forward": self.forward}
        st["binaries"] = 0 if self.relax else (st["relu_binaries"] + st["pool_binaries"] + objective_binaries
                                               + output_binaries)
        return st


def build_milp(fb: ForwardBounds, input_norm: Norm, piece: Piece, *, relax: bool = False,
               forward: bool = True, gradient: str = "backward",
               direction: np.ndarray | None = None) -> MilpModel:
    """The Pyomo model of one piece (see the module docstring). ``fb``: sound forward bounds on the
    domain box (infinite input bounds only with ``forward=False``).

    The cyclic garbage collector is paused during the build (Pyomo's ``PauseGC``): the build allocates
    one expression node per weight and frees nothing, so every collection pass would only re-scan the
    growing model (it was more than half of the build time of a 784-256-256-10 MILP)."""
    from pyomo.common.gc_manager import PauseGC

    if input_norm not in (Norm.L1, Norm.LINF):
        raise ValueError(f"the MILP handles input norms l1 and l-inf, not {input_norm.label}")
    with PauseGC():
        return _build_milp(fb, input_norm, piece, relax, forward, gradient, direction)


def _build_milp(fb: ForwardBounds, input_norm: Norm, piece: Piece, relax: bool, forward: bool, gradient: str,
                direction: np.ndarray | None) -> MilpModel:
    import pyomo.environ as pyo

    t0 = time.perf_counter()
    model = pyo.ConcreteModel(name="lipschitz_milp")
    bb = backward_bounds_for(fb, piece)
    sw = make_switches(model, fb, relax=relax)
    fwd = encode_forward(model, fb, sw) if forward else None
    parts = _Parts(model, fb, bb, sw, fwd, relax, forward, t0)
    m = fb.stages[-1].shape[0]
    if gradient == "tangent":
        return _build_tangent(parts, input_norm, piece, direction)
    if gradient != "backward":
        raise ValueError(f"gradient must be 'backward' or 'tangent', not {gradient!r}")
    c_vars = None
    if piece.kind == "const":
        c_forms = [const_form(v) for v in piece.c]
    elif piece.kind == "box":
        c_vars = new_vars(model, "c_out", m, -1.0, 1.0)
        c_forms = [var_form(c_vars[j]) for j in range(m)]
    elif piece.kind == "selector":
        c_vars = new_vars(model, "c_out", m, 0.0, 1.0, binary=not relax)
        model.c_one = pyo.Constraint(expr=sum(c_vars[j] for j in range(m)) == 1)
        c_forms = [var_form(c_vars[j]) for j in range(m)]
    else:
        raise ValueError(f"unknown piece kind {piece.kind!r}")
    bwd = encode_backward(model, fb, bb, sw, c_forms)
    if input_norm is Norm.LINF:
        obj, upper, n_obj_bin = _objective_linf(model, bwd.grad_input, relax)
    else:
        obj, upper, n_obj_bin = _objective_l1(model, bwd.grad_input, relax)
    model.obj = pyo.Objective(expr=obj, sense=pyo.maximize)
    stats = parts.stats(piece, n_obj_bin, m if piece.kind == "selector" else 0)
    return MilpModel(model, fb, bb, sw, fwd, bwd, c_vars, upper, piece, stats)


def _build_tangent(parts: _Parts, input_norm: Norm, piece: Piece, direction: np.ndarray | None) -> MilpModel:
    """maximise the directional derivative c^T J(x) s for a fixed c and a fixed direction s (forward-mode
    switches, no sign or selector binaries). The constant is the max of this over the vertices s of the
    unit ball of the input norm (lipopt.mip.milp_directions)."""
    import pyomo.environ as pyo

    if piece.kind != "const":
        raise ValueError("the tangent encoding needs a fixed output vector c (a 'const' piece)")
    if direction is None:
        raise ValueError("the tangent encoding needs a fixed direction s")
    s_forms = [const_form(v) for v in np.ravel(direction)]
    tan = encode_tangent(parts.model, parts.fb, parts.sw, s_forms)
    obj = combine(tan.output, np.asarray(piece.c, dtype=np.float64))
    lo, hi = backward_bounds_for(parts.fb, piece).grad_input
    mag = np.maximum(np.abs(lo), np.abs(hi))
    upper = float(mag.sum() if input_norm is Norm.LINF else mag.max())
    parts.model.obj = pyo.Objective(expr=to_expr(obj), sense=pyo.maximize)
    stats = parts.stats(piece, 0, 0, gradient="tangent")
    bwd = BackwardEncoding([], {}, 0)
    return MilpModel(parts.model, parts.fb, parts.bb, parts.sw, parts.fwd, bwd, None, upper, piece, stats)
