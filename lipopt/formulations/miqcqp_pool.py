"""The MIQCQP problems of :mod:`lipopt.formulations.miqcqp` on networks with max-pool (conv / dense affine
stages, activations, max-pool in any order), built stage by stage on ``network.lower()``.

The input set, the direction ball and the objective are those of the dense model; the network passes are
the MILP's stage encoders (:mod:`lipopt.formulations.common`), so a max-pool is encoded in one place:

* forward (closed regions, P_UB): one binary per ambiguous activation (the activation rows of
  :mod:`.encodings`) and, per window j with several possible winners, selectors d_ji with sum_i d_ji = 1,
  p_j >= x_i, p_j <= x_i + (U_j - l_i)(1 - d_ji) (U_j the largest upper bound in the window);
* direction: w = W w' through affine stages, the switched slope through activations, and
  w_j = sum_i d_ji w_i through a max-pool (each product d_ji w_i by the switch rows with the interval of
  w_i as big-M), all with the same binaries as the forward pass;
* P_LB,eps: the margins of the dense model on every activation, and x_i <= p_j - eps_j (1 - d_ji) on
  every loser of a window (the winner leads by eps_j = max(epsilon_rel x the window's range,
  epsilon_min), so the pattern is strict);
* tie cuts (both problems, :func:`_tie_cuts`): two windows never select two different entries that are
  possible winners of both (that needs a tie, which no interior point of a region has).

Global questions with biases use the lifted chain (z = W h + b t, t carried through every stage by one
extra neuron / window; :func:`lifted_stages`). Sound bounds: :func:`stage_bounds` (forward bounds of
:mod:`lipopt.bounds` on the (lifted) stages; direction bounds by interval propagation, the first affine
stage exactly over the unit ball). Stable activations are always fixed from the bounds.

The mathematics as implemented: ``docs/methods.md#miqcqp-pool``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.bounds.interval import maxpool_can_win
from lipopt.bounds.types import ForwardBounds
from lipopt.errors import NotApplicableError
from lipopt.formulations.common import (
    ZERO,
    FormVector,
    Rows,
    combine,
    encode_forward,
    encode_tangent,
    make_switches,
    read_pattern,
    to_expr,
    var_form,
)
from lipopt.formulations.encodings import margin_rows
from lipopt.formulations.forms import stage_block
from lipopt.formulations.miqcqp import (
    MiqcqpConfig,
    MiqcqpModel,
    _direction_input,
    _input_rows,
    _objective,
    objective_cutoff,
    objective_kind,
)
from lipopt.formulations.miqcqp_geometry import (
    InputSet,
    _forward,
    _gate,
    _rounding_pad,
    fallback_upper,
    input_set,
    margin_epsilons,
)
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, LeakyReLUStage, MaxPoolStage, ReLUStage, is_activation
from lipopt.spec import Question


class StageChain:
    """A lowered stage chain seen as a network by :mod:`lipopt.bounds` (which reads only ``lower()`` and
    ``input_size``): the lifted chain has no layer form."""

    def __init__(self, stages: tuple) -> None:
        self.stages = tuple(stages)

    def lower(self) -> tuple:
        return self.stages

    @property
    def input_size(self) -> int:
        return int(self.stages[0].shape[1])


def _lift_affine(stage: AffineStage, last: bool) -> AffineStage:
    """[W, b] (bias-free), plus the row carrying t unless ``last``."""
    w, b = stage.weight, np.asarray(stage.bias, dtype=np.float64)[:, None]
    n_in = stage.shape[1]
    if hasattr(w, "tocsr"):
        import scipy.sparse as sp

        top = sp.hstack([w, sp.csr_matrix(b)])
        if not last:
            top = sp.vstack([top, sp.csr_matrix(([1.0], ([0], [n_in])), shape=(1, n_in + 1))])
        lifted: Any = top.tocsr()
    else:
        lifted = np.hstack([np.asarray(w, dtype=np.float64), b])
        if not last:
            carry = np.zeros((1, n_in + 1))
            carry[0, -1] = 1.0
            lifted = np.vstack([lifted, carry])
    return AffineStage(lifted, np.zeros(lifted.shape[0]))


def lifted_stages(stages: tuple) -> tuple:
    """The positively homogeneous chain of (x, t): affine stages [[W, b], [0, 1]], every activation and
    max-pool one neuron / one window longer (t >= 0 passes both unchanged); t is the last entry."""
    out: list[Any] = []
    for k, s in enumerate(stages):
        if isinstance(s, AffineStage):
            out.append(_lift_affine(s, k == len(stages) - 1))
        elif isinstance(s, ReLUStage):
            out.append(ReLUStage(s.size + 1))
        elif isinstance(s, LeakyReLUStage):
            out.append(LeakyReLUStage(s.size + 1, s.alpha))
        elif isinstance(s, MaxPoolStage):
            row = -np.ones((1, s.windows.shape[1]), dtype=s.windows.dtype)
            row[0, 0] = s.in_size
            out.append(MaxPoolStage(np.vstack([s.windows, row]), s.in_size + 1))
        else:
            raise NotApplicableError(f"the MIQCQP formulations do not handle the stage {type(s).__name__}")
    return tuple(out)


@dataclass
class StageBounds:
    """Sound bounds of the stage-by-stage model: forward bounds on the (lifted) chain and bounds of the
    output direction (J v, or c^T J v for a scalar output). ``lifted``: the last neuron of every
    activation stage and the last window of every max-pool carry t."""

    fb: ForwardBounds
    out_lo: np.ndarray
    out_hi: np.ndarray
    lifted: bool
    method: str = "interval"
    stats: dict = field(default_factory=dict)

    def _trim(self, n: int) -> int:
        return n - 1 if self.lifted else n

    @property
    def activation_stages(self) -> list[int]:
        return self.fb.relu_stage_indices()

    @property
    def z_lo(self) -> list[np.ndarray]:
        return [self.fb.pre_activation(s)[0][: self._trim(self.fb.stages[s].size)] for s in
                self.activation_stages]

    @property
    def z_hi(self) -> list[np.ndarray]:
        return [self.fb.pre_activation(s)[1][: self._trim(self.fb.stages[s].size)] for s in
                self.activation_stages]

    @property
    def n_ambiguous(self) -> int:
        return int(sum(int(((lo < 0) & (hi > 0)).sum()) for lo, hi in zip(self.z_lo, self.z_hi, strict=True)))


def _direction_interval(fb: ForwardBounds, question: Question, n_x: int) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of the output direction: the first affine stage exactly over the unit ball of the input
    norm (the t column has direction 0), then interval propagation (activations: slope 1 / alpha / the
    hull; max-pool: the hull of the possible winners), padded against rounding."""
    p = question.input_norm
    lo = hi = np.zeros(0)
    last = len(fb.stages) - 1
    for s, st in enumerate(fb.stages):
        if isinstance(st, AffineStage):
            w: Any = st.weight
            c = question.output_vector(st.shape[0]) if s == last else None
            if s == 0:
                wd = np.asarray(st.dense(), dtype=np.float64)[:, :n_x]
                wd = wd if c is None else (c @ wd)[None, :]
                b = np.linalg.norm(np.abs(wd), ord=p.dual.p, axis=1)
                lo, hi, mag = -b, b, b
            else:
                if c is not None:
                    w = np.asarray(c @ st.dense())[None, :]
                w_abs = abs(w)
                mid, rad = (lo + hi) / 2, (hi - lo) / 2
                cen, r = np.asarray(w @ mid).ravel(), np.asarray(w_abs @ rad).ravel()
                mag = np.asarray(w_abs @ np.maximum(np.abs(lo), np.abs(hi))).ravel()
                lo, hi = cen - r, cen + r
            pad = _rounding_pad(mag, lo, hi)
            lo, hi = lo - pad, hi + pad
        elif is_activation(st):
            act, ina, _ = fb.relu_masks(s)
            lo, hi = _gate(act, ina, lo, st.alpha, np.minimum), _gate(act, ina, hi, st.alpha, np.maximum)
        elif isinstance(st, MaxPoolStage):
            can = maxpool_can_win(st, *fb.pre_activation(s))
            idx = np.maximum(st.windows, 0)
            lo = np.where(can, lo[idx], np.inf).min(axis=1)
            hi = np.where(can, hi[idx], -np.inf).max(axis=1)
        else:
            raise NotApplicableError(f"the MIQCQP formulations do not handle the stage {type(st).__name__}")
    return lo, hi


def stage_bounds(network: Network, question: Question, iset: InputSet, *, method: str = "auto",
                 time_limit: float | None = None) -> StageBounds:
    """Forward bounds over the (lifted) input set and output direction bounds (see the module doc)."""
    stages = network.lower()
    chain = StageChain(lifted_stages(stages) if iset.lifted else stages)
    fb, used = _forward(chain, iset.lo, iset.hi, method, time_limit)
    out_lo, out_hi = _direction_interval(fb, question, iset.n_x)
    sb = StageBounds(fb, out_lo, out_hi, iset.lifted, method=used)
    sb.stats = {"bound_method": used, "relus": int(sum(z.size for z in sb.z_lo)),
                "ambiguous_relus": sb.n_ambiguous, "direction_bounds": "interval"}
    return sb


@dataclass
class StageMiqcqpModel(MiqcqpModel):
    """The model of a network with max-pool; the pattern is read from the MILP's switches."""

    fb: Any = None
    sw: Any = None
    lifted: bool = False

    def _pattern(self) -> tuple[list[np.ndarray], list[np.ndarray]]:
        relu, pools = read_pattern(self.fb, self.sw)
        if self.lifted:  # drop the neuron / window carrying t
            relu, pools = [s[:-1] for s in relu], [w[:-1] for w in pools]
        return relu, pools

    def relu_states(self) -> list[np.ndarray]:
        return self._pattern()[0]

    def pool_winners(self) -> list[np.ndarray] | None:
        return self._pattern()[1]


def _pre_activation_expr(fb: ForwardBounds, values: list[list[Any]], inputs: list[Any], s: int, i: int
                         ) -> Any:
    """The pre-activation of neuron i of activation stage s as an expression; where the forward pass made
    no variable (a stably inactive neuron after an affine stage) the affine row itself."""
    f = values[s - 1][i]
    aff = fb.stages[s - 1]
    if f is not ZERO or not isinstance(aff, AffineStage):
        return to_expr(f)
    prev = values[s - 2] if s >= 2 else inputs
    return FormVector(prev).rows(aff.weight, np.array([i]), aff.bias[[i]]).expr(0)


def _margins(m: Any, sb: StageBounds, sw: Any, values: list[list[Any]], inputs: list[Any],
             eps: list[np.ndarray], cfg: MiqcqpConfig) -> int:
    """The rows of P_LB,eps: (2 g - 1) z >= eps on every activation (stable ones only where the bounds
    do not imply it) and the lead eps_j of every window's winner. Returns the number of rows."""
    fb, n = sb.fb, 0
    for k, s in enumerate(sb.activation_stages):
        rows = Rows(stage_block(m, s), "margin")
        lo, hi = fb.pre_activation(s)
        act, ina, _ = sw.masks[s]
        for i in range(eps[k].size):
            e, li, ui = float(eps[k][i]), float(lo[i]), float(hi[i])
            if act[i] and li < e:
                rows.add(_pre_activation_expr(fb, values, inputs, s, i) >= e, i, "on")
                n += 1
            elif ina[i] and ui > -e:
                rows.add(_pre_activation_expr(fb, values, inputs, s, i) <= -e, i, "off")
                n += 1
            elif i in sw.relu[s]:
                n += margin_rows(rows, (i,), _pre_activation_expr(fb, values, inputs, s, i), sw.relu[s][i],
                                 li, ui, e)
    for s, windows in sw.pool.items():
        rows = Rows(stage_block(m, s), "margin")
        lo, hi = fb.pre_activation(s)
        for j, lst in enumerate(windows):
            if lst[0][1] is None:
                continue
            rng = max(float(hi[i]) for i, _ in lst) - min(float(lo[i]) for i, _ in lst)
            e = max(cfg.epsilon_rel * rng, cfg.epsilon_min)
            p = to_expr(values[s][j])
            for i, d in lst:
                rows.add(to_expr(values[s - 1][i]) <= p - e * (1 - d), j, int(i), "lead")
                n += 1
    return n


def _tie_cuts(m: Any, sw: Any) -> int:
    """d_{j,i} + d_{j',k} <= 1 for two windows j != j' and two entries i != k both possible winners of
    both: that choice needs x_i >= x_k and x_k >= x_i, a tie, which no interior point of a linear region
    has (valid for both problems; overlapping windows otherwise inflate P_UB by such degenerate
    patterns). Returns the number of rows."""
    n = 0
    for s, windows in sw.pool.items():
        sel = [{i: d for i, d in lst if d is not None} for lst in windows]
        rows = None
        for j, a in enumerate(sel):
            for jj in range(j + 1, len(sel)):
                both = sorted(set(a) & set(sel[jj]))
                for i in both:
                    for k in both:
                        if i != k:
                            rows = rows or Rows(stage_block(m, s), "tie_cuts")
                            rows.add(a[i] + sel[jj][k] <= 1, j, jj, int(i), int(k))
                            n += 1
    return n


def build_stage_model(network: Network, question: Question, cfg: MiqcqpConfig,
                      bounds: StageBounds | None = None, iset: InputSet | None = None) -> StageMiqcqpModel:
    """P_UB / P_LB,eps of a network with max-pool (see the module docstring); the arguments are those of
    :func:`lipopt.formulations.miqcqp.build_model`."""
    import pyomo.environ as pe

    t0 = time.perf_counter()
    obj_kind = objective_kind(question, network.output_size)
    iset = iset or input_set(network, question, cfg.global_radius)
    sb = bounds or stage_bounds(network, question, iset, method=cfg.bounds)
    fb = sb.fb
    if not all(np.all(np.isfinite(b)) for pair in fb.stage_bounds[:-1] for b in pair):
        raise NotApplicableError("the forward bounds are not finite (big-M values need a bounded input set)")
    z_scales = None if cfg.z_scales is None else list(cfg.z_scales)
    eps = (margin_epsilons(sb, cfg.epsilon, cfg.epsilon_rel, cfg.epsilon_min, z_scales)
           if cfg.problem == "lb" else None)

    m = pe.ConcreteModel(name=f"miqcqp-{cfg.problem}")
    n_bin_facets = _input_rows(m, iset)
    inputs = [var_form(m.x[j]) for j in range(iset.n_x)] + ([var_form(m.t)] if iset.lifted else [])
    sw = make_switches(m, fb)
    fwd = encode_forward(m, fb, sw, inputs=inputs)
    n_tie = _tie_cuts(m, sw)
    n_margin = _margins(m, sb, sw, fwd.values, inputs, eps, cfg) if eps is not None else 0

    w1 = np.asarray(fb.stages[0].dense())[:, : iset.n_x]
    j_sym = int(np.argmax(np.linalg.norm(w1, axis=0))) if iset.n_x else 0
    use_sym = cfg.symmetry and obj_kind == "quadratic" and not cfg.sign_split
    v = _direction_input(m, question.input_norm, iset.n_x, j_sym if use_sym else None)
    tan = encode_tangent(m, fb, sw, [var_form(vj) for vj in v] + ([ZERO] if iset.lifted else []))
    out = tan.output
    c = question.output_vector(len(out))
    if c is not None:
        out = [combine(out, np.asarray(c, dtype=np.float64))]
    fb_up = fallback_upper(sb, question)
    obj_ub = fb_up ** 2 if obj_kind == "quadratic" else fb_up
    _objective(m, obj_kind, [to_expr(f) for f in out], sb, obj_ub, objective_cutoff(cfg, obj_kind), cfg)

    res = StageMiqcqpModel(m, cfg, iset, sb, obj_kind, eps, fb_up, build_time=time.perf_counter() - t0,
                           fb=fb, sw=sw, lifted=iset.lifted)
    n_relu = sw.n_relu_binaries
    res.stats = {
        **sb.stats, "problem": cfg.problem, "input_set": iset.kind, "global_radius": iset.radius,
        "binaries": n_relu + sw.n_pool_binaries + n_bin_facets + (len(out) if obj_kind == "max-row" else 0),
        "relu_binaries": n_relu, "pool_binaries": sw.n_pool_binaries, "facet_binaries": n_bin_facets,
        "objective": obj_kind, "encoding": "stages (max-pool)",
        "symmetry": ("v_j >= 0, j = " + str(j_sym)) if use_sym else (
            "out_0 >= 0" if (cfg.symmetry and obj_kind == "quadratic") else None),
        "sign_split": bool(cfg.sign_split and obj_kind == "quadratic"), "margin_rows": n_margin,
        "tie_cuts": n_tie, "cutoff": cfg.cutoff, "fallback_upper": fb_up,
    }
    if eps is not None:
        allv = np.concatenate(eps) if eps else np.zeros(0)
        res.stats["epsilon_min_used"] = float(allv.min()) if allv.size else None
        res.stats["epsilon_max_used"] = float(allv.max()) if allv.size else None
    return res
