"""Method "miqcqp": the MIQCQP upper- and lower-bound problems of Sbihi, Jan & Couellan (formulations.md 1).

Pipeline (one call, one time budget):

0. Prior bounds (option ``prior_bounds``): the cheap methods' certified bracket (see below).
1. Input set and sound bounds (:mod:`lipopt.formulations.miqcqp_geometry`): box / l2 ball for local
   questions, the projective compactification for the global one (exact, bounded, no indicator
   constraints needed); forward bounds (LP tightening / CROWN when available, else intervals), stable
   neurons fixed, direction bounds by interval matrices.
2. Warm start: sampled points of the domain, then hill climbing over neighbouring linear regions (one
   neuron flipped at a time, each region certified by its margin LP); the best certified Jacobian norm is a
   LOWER bound and the objective cut-off tau >= LB of the upper-bound problem (valid: UB >= L >= LB).
3. Upper-bound problem P_UB (closed regions), solved by SCIP (or Gurobi, ``RunOptions.solver``): its dual
   bound is the certified UPPER bound (even on a time limit), intersected with the bound-propagation bound.
   The incumbent's activation pattern is certified by an interior point of its region
   (:func:`lipopt.certify.regions.certify_pattern`): when it has interior, the two bounds meet and nothing
   else is solved.
4. Otherwise the lower-bound problem P_LB,eps (margin eps) with the remaining time; its incumbent pattern is
   certified the same way. eps is per neuron: ``epsilon_rel`` x the neuron's pre-activation range unless an
   absolute ``epsilon`` is given; the value used is in ``stats``.
5. :func:`lipopt.certify.bracket.make_bracket_result`: EXACT when the certified lower bound meets the dual
   bound.

Options (``RunOptions.extra``, top level or under the key "miqcqp"): problem ("both" | "ub" | "lb"),
epsilon, epsilon_rel (1e-4), epsilon_min (1e-5), bounds ("auto" = LP tightening when available, "interval",
"crown", "lp"), fix_stable (True), symmetry (True), sign_split (True), direction_bounds ("matrix" |
"interval"), warm_start (True), n_samples (2000), local_search (True: hill climbing over neighbouring
regions from the best samples), local_search_time (20 s, at most 10 % of the budget), cutoff (True),
global_radius (None: automatic), lb_time_fraction (0.3: share of the budget kept for P_LB when P_UB does
not close), normalise (True), solver_extra (dict of raw solver parameters), prior_bounds (True: the
cheap methods' certified bounds, :mod:`lipopt.exact.prior`, first), prior_time (0.1: their time box as a
fraction of the time limit, at most 10 s).

Prior bounds (``prior_bounds``): before the warm start, naive, lipsdp-fast (and lipsdp-neuron when time is
left in the box) give a certified UPPER bound and region-climb and grad-ascent a certified LOWER bound with a
witness re-evaluated in float64. The lower one joins the warm start (a candidate and the cut-off tau); when
the certified lower bound already meets the prior upper bound no MIQCQP is solved; the reported bracket is
[max(own lower, prior lower), min(own upper, prior upper)] with ``stats["bracket_sources"]`` naming the method
of each side, and crossing bounds are a failed check (:func:`lipopt.exact.prior.merge`).

Scale: the models are built on the normalised network (:func:`lipopt.formulations.scaling.normalised`:
unit-scale weights, exactly f / factor with the same activation patterns); the solver's values are
multiplied back by the factor, warm starts and witnesses run on the original network in float64 (an
absolute ``epsilon`` is in the original units; ``epsilon_min`` in the normalised ones). Global domain with
biases: the compactification radius is capped (:func:`lipopt.formulations.miqcqp_geometry.
default_global_radius`); with a radius above RADIUS_SAFE x the typical hyperplane distance (only possible
through ``global_radius``) the solver's dual bound is not trusted, and the upper bound is the
bound-propagation bound (an honest bracket, never EXACT from that dual bound).

Networks with max-pool (conv layers are affine stages) are encoded stage by stage with the MILP's
max-pool rows (:mod:`lipopt.formulations.miqcqp_pool`); their warm start skips the region local search.

The mathematics as implemented: ``docs/methods.md#miqcqp``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from lipopt.errors import NotApplicableError
from lipopt.lower.region_search import WarmStart, local_search, pattern_jacobian, warm_start  # noqa: F401
from lipopt.network.network import Network
from lipopt.options import MethodOptions, RunOptions
from lipopt.result import BoundKind, LipschitzResult, Status
from lipopt.spec import Global, Question


@dataclasses.dataclass(frozen=True)
class Options(MethodOptions):
    """Options of "miqcqp" (and of "miqcqp-ub" / "miqcqp-lb", which fix ``problem``)."""

    problem: str = "both"  # "both", "ub" (closed regions) or "lb" (epsilon-margin regions)
    epsilon: float | None = None  # absolute margin of P_LB (default: relative, epsilon_rel)
    epsilon_rel: float = 1e-4
    epsilon_min: float = 1e-5
    bounds: str = "auto"  # neuron bounds
    fix_stable: bool = True
    symmetry: bool = True
    sign_split: bool = True
    direction_bounds: str = "matrix"
    warm_start: bool = True
    local_search: bool = True
    local_search_time: float = 20.0
    n_samples: int = 2000
    cutoff: bool = True
    global_radius: float | None = None  # compactification radius of the global domain (default: capped)
    lb_time_fraction: float = 0.3
    normalise: bool = True
    solver_extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # verbatim solver options
    #: the cheap methods' certified bounds (lipopt.exact.prior) as cut-off, start and bracket cap
    prior_bounds: bool = True
    prior_time: float = 0.1  # their time box: this fraction of the time limit (at most 10 s)


WHY_DIFFERENT = (
    "P_UB maximises over closed activation regions (every pattern whose region meets the input set, even "
    "only on a face), P_LB,eps over points with every |pre-activation| >= eps. They bracket L and coincide "
    "with it unless (a) the maximising closed-region pattern is degenerate (no interior: network not in "
    "general position, e.g. T4/T7 with beta = 0) or touches a local domain only on its boundary, which "
    "inflates P_UB; or (b) eps exceeds eps*, the largest margin available in the maximising region, which "
    "deflates P_LB (formulations.md 1.2, item 3)."
)


def options_from(options: RunOptions) -> dict[str, Any]:
    cfg = dataclasses.asdict(Options.from_run(options, "miqcqp"))
    if cfg["problem"] not in ("both", "ub", "lb"):
        raise ValueError(f"miqcqp problem must be 'both', 'ub' or 'lb', got {cfg['problem']!r}")
    return cfg


def applicable(network: Network, question: Question) -> str | None:
    from lipopt.formulations.miqcqp import check_supported

    try:
        check_supported(network, question)
    except NotApplicableError as exc:
        return str(exc)
    return None


# ------------------------------------------------------------------------------------------ solving


def _solve(mm: Any, solver: str, time_limit: float | None, options: RunOptions, extra: dict,
           factor: float = 1.0, t0: float | None = None) -> Any:
    """One MIQCQP solve; with ``options.progress`` its incumbent and bound are reported as they move, in
    the original network's units (``factor`` times the model's); they are recorded as the outcome's
    ``history`` ([seconds since ``t0``, incumbent, bound] rows, :class:`lipopt.progress.History`)."""
    from lipopt_solvers import solve_pyomo

    from lipopt.progress import History, chain

    so = options.solver_options(None if time_limit is None else max(time_limit, 0.05),
                                rel_gap=min(options.rel_gap, 1e-6), extra=extra)
    report = None
    if options.progress:
        from lipopt.progress import solve_reporter

        kind = "UPPER" if mm.model.name.endswith("-ub") else "bound of P_LB only, not of L"
        report = solve_reporter(f"miqcqp {mm.model.name}", lambda v: factor * (mm.to_norm(v) or 0.0),
                                bound_kind=kind)
    hist = History(lambda v: factor * (mm.to_norm(v) or 0.0), t0)
    out = solve_pyomo(mm.model, solver, so, sense="max", progress=chain(hist, report))
    out.build_time = mm.build_time
    out.history = hist.rows
    return out


def _in_norm_units(out: Any, mm: Any, factor: float = 1.0) -> Any:
    """The outcome with objective and bound converted to Lipschitz units of the original network (sqrt
    for the squared objective, times the normalisation factor)."""
    from lipopt.formulations.scaling import scaled_outcome

    out = dataclasses.replace(out, objective=mm.to_norm(out.objective), bound=mm.to_norm(out.bound))
    return scaled_outcome(out, factor)


def _candidate(mm: Any, label: str, objective: float | None) -> Any:
    from lipopt.certify.candidates import Candidate

    return Candidate(relu_states=mm.relu_states(), pool_winners=mm.pool_winners(), x=mm.input_point(),
                     objective=objective, label=label)


def _remaining(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.perf_counter()


@dataclasses.dataclass
class Setup:
    """What both MIQCQP problems are built from: the normalised network, the input set, sound layer
    bounds, and the model configuration (see :func:`prepare`)."""

    net_m: Network
    factor: float
    iset: Any
    bounds: Any
    config: Any  # lipopt.formulations.miqcqp.MiqcqpConfig (problem set per model)
    trust_dual: bool
    notes: list[str]
    stats: dict[str, Any]


def prepare(network: Network, q: Question, cfg: dict[str, Any], deadline: float | None = None) -> Setup:
    """Input set and bounds on the normalised network (f = factor * f_n, same patterns), and the
    configuration of the models; the LP tightening stops at 30 % of what is left before ``deadline``."""
    from lipopt.formulations.miqcqp import MiqcqpConfig
    from lipopt.formulations.miqcqp_geometry import RADIUS_SAFE, first_layer, input_set, radius_conditioning
    from lipopt.formulations.scaling import normalised

    notes: list[str] = []
    stats: dict[str, Any] = {}
    t0 = time.perf_counter()
    norm = normalised(network, bool(cfg["normalise"]))
    net_m, factor = norm.network, norm.factor
    stats["scale"] = norm.stats()
    iset = input_set(net_m, q, cfg["global_radius"])
    rem = _remaining(deadline)  # the LP tightening stops at 30 % of the budget (CROWN bounds kept)
    lb = _bounds(net_m, q, iset, cfg, None if rem is None else max(0.0, 0.3 * rem))
    stats["bounds_time"] = time.perf_counter() - t0
    stats.update(lb.stats)
    stats["input_set"] = iset.kind
    stats["global_radius"] = iset.radius
    notes.append(f"input set: {iset.describe()}")
    conditioning = radius_conditioning(iset, *first_layer(net_m))
    trust_dual = conditioning <= RADIUS_SAFE
    if iset.surface:
        stats["radius_conditioning"] = conditioning
    if not trust_dual:
        notes.append(f"the compactification radius R = {iset.radius:g} is {conditioning:.3g} x the typical "
                     f"hyperplane distance (> {RADIUS_SAFE:g}): at that scale the solver's tolerances can "
                     "lose the maximising region, so its dual bound is not used; the upper bound is the "
                     "bound-propagation bound (choose a smaller global_radius for a tighter bracket)")
    if isinstance(q.domain, Global):
        notes.append("global domain: the compactified input set is exact (every linear region with interior "
                     "meets it), so the bracket is the global constant's (see lipopt.formulations."
                     "miqcqp_geometry)")

    mcfg = MiqcqpConfig(
        epsilon=cfg["epsilon"], epsilon_rel=float(cfg["epsilon_rel"]), epsilon_min=float(cfg["epsilon_min"]),
        bounds=cfg["bounds"], fix_stable=bool(cfg["fix_stable"]), symmetry=bool(cfg["symmetry"]),
        sign_split=bool(cfg["sign_split"]),
        direction_bounds=cfg["direction_bounds"], global_radius=iset.radius,
        z_scales=tuple(norm.relu_factors) if norm.relu_factors else None,
    )
    return Setup(net_m, factor, iset, lb, mcfg, trust_dual, notes, stats)


def _bounds(net: Network, q: Question, iset: Any, cfg: dict[str, Any], time_limit: float | None) -> Any:
    """Sound bounds of the models: per dense layer (``layer_bounds``), or per stage with max-pool
    (``stage_bounds``: stable neurons always fixed, direction bounds by intervals)."""
    if net.has_maxpool:
        from lipopt.formulations.miqcqp_pool import stage_bounds

        return stage_bounds(net, q, iset, method=cfg["bounds"], time_limit=time_limit)
    from lipopt.formulations.miqcqp_geometry import layer_bounds

    return layer_bounds(net, q, iset, method=cfg["bounds"], fix_stable=cfg["fix_stable"],
                        direction=cfg["direction_bounds"], time_limit=time_limit)


@dataclasses.dataclass
class _Run:
    """The state one ``miqcqp`` run carries from phase to phase."""

    network: Network
    q: Question
    options: RunOptions
    cfg: dict[str, Any]
    setup: Setup
    solver: str
    deadline: float | None
    rel_gap: float
    candidates: list[Any] = dataclasses.field(default_factory=list)
    best_lower: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    stats: dict[str, Any] = dataclasses.field(default_factory=dict)
    build_time: float = 0.0
    ub_out: Any = None
    lb_out: Any = None
    ub_history: list = dataclasses.field(default_factory=list)
    t_start: float = 0.0
    closed: bool = False
    overran: bool = False
    prior: Any = None  # lipopt.exact.prior.Prior, or None (option prior_bounds off)

    def cut(self) -> float | None:
        """The objective cut-off tau >= the best certified lower bound, in model units."""
        return self.best_lower / self.setup.factor if (self.cfg["cutoff"] and self.best_lower) else None


def _warm_phase(r: _Run) -> None:
    """Sampling, then hill climbing over regions from the best samples: certified candidates and the
    best lower bound (the cut-off of the models)."""
    from lipopt.certify.candidates import Candidate

    cfg, ws = r.cfg, WarmStart(None, None, 0, 0.0)
    if cfg["warm_start"]:
        rem = _remaining(r.deadline)  # sampling stops at 10 % of what is left
        ws = warm_start(r.network, r.q, int(cfg["n_samples"]), r.options.seed,
                        r.setup.iset.radius if r.setup.iset.lifted else None,
                        None if rem is None else time.perf_counter() + max(0.0, 0.1 * rem))
        if ws.x is not None:
            r.candidates.append(Candidate(x=ws.x, label="warm start (sampling)"))
    r.stats["warm_start"] = {"value": ws.value, "samples": ws.n_samples, "time": ws.time}
    r.best_lower = ws.value
    _take_prior_lower(r)
    if not (cfg["warm_start"] and cfg["local_search"] and ws.x is not None):
        return
    if r.network.has_maxpool:  # the neighbour flips of local_search are written for dense layers
        r.stats["local_search"] = {"skipped": "max-pool network (region local search is dense-only)"}
        return
    t1 = time.perf_counter()
    rem = _remaining(r.deadline)
    budget = float(cfg["local_search_time"])
    budget = budget if rem is None else min(budget, 0.1 * rem)
    v_ls, x_ls, n_lp = None, None, 0
    for x_start in ws.starts or [ws.x]:
        left = budget - (time.perf_counter() - t1)
        if left <= 0:
            break
        v1, x1, n1 = local_search(r.network, r.q, x_start, left)
        n_lp += n1
        if v1 is not None and (v_ls is None or v1 > v_ls):
            v_ls, x_ls = v1, x1
    r.stats["local_search"] = {"value": v_ls, "lps": n_lp, "starts": len(ws.starts),
                               "time": time.perf_counter() - t1}
    if x_ls is not None and v_ls is not None and v_ls > (r.best_lower or 0.0):
        r.candidates.append(Candidate(x=x_ls, label="warm start (region local search)"))
        r.best_lower = v_ls


def _take_prior_lower(r: _Run) -> None:
    """The prior's certified lower bound (grad-ascent, re-evaluated) as a candidate and cut-off."""
    import numpy as np

    from lipopt.certify.candidates import Candidate

    p_lo = None if r.prior is None else r.prior.lower_value()
    if p_lo is None:
        return
    w = r.prior.lower.witness or {}
    if w.get("kind") == "point":
        r.candidates.append(Candidate(x=np.asarray(w["x"], dtype=np.float64),
                                      label=f"prior lower ({r.prior.lower.method})"))
    if r.best_lower is None or p_lo > r.best_lower:
        r.best_lower = p_lo


def _prior_closed(r: _Run) -> bool:
    """Whether the certified lower bound already meets the prior upper bound (nothing to solve)."""
    if r.prior is None or not r.prior.closes(r.best_lower, r.rel_gap):
        return False
    r.closed = True
    r.notes.append(f"the certified lower bound {r.best_lower:.9g} meets the prior upper bound "
                   f"{r.prior.upper.value:.9g} ({r.prior.upper.method}) within the relative gap "
                   f"{r.rel_gap:g}: no MIQCQP was solved")
    return True


def _ub_phase(r: _Run) -> None:
    """P_UB (closed regions): its dual bound (when trusted) and incumbent; closes the run when the
    certified lower bound meets the upper bound."""
    from lipopt.certify.candidates import certify_candidates
    from lipopt.formulations.miqcqp import build_model

    su, cfg = r.setup, r.cfg
    cut = r.cut()
    mm = build_model(su.net_m, r.q, dataclasses.replace(su.config, problem="ub", cutoff=cut),
                     bounds=su.bounds, iset=su.iset)
    r.build_time += mm.build_time
    r.stats["ub_model"] = dict(mm.stats)
    rem = _remaining(r.deadline)
    budget = None if rem is None else (rem * (1 - float(cfg["lb_time_fraction"])) if cfg["problem"] == "both"
                                       else rem)
    out = _solve(mm, r.solver, budget, r.options, cfg["solver_extra"], su.factor, r.t_start)
    if out.termination.value == "infeasible" and cut is not None:
        r.notes.append("P_UB with the cut-off tau >= warm-start value was reported infeasible (solver "
                       "tolerances); re-solved without the cut-off")
        mm = build_model(su.net_m, r.q, dataclasses.replace(su.config, problem="ub"), bounds=su.bounds,
                         iset=su.iset)
        out = _solve(mm, r.solver, _remaining(r.deadline), r.options, cfg["solver_extra"], su.factor,
                     r.t_start)
    r.ub_history = out.history if su.trust_dual else []
    r.ub_out = _in_norm_units(out, mm, su.factor)
    r.stats["ub_model"]["fallback_upper"] = su.factor * float(mm.fallback_upper)
    r.stats["ub"] = {"termination": out.termination.value, "objective": r.ub_out.objective,
                     "bound": r.ub_out.bound, "solve_time": out.solve_time}
    if out.has_incumbent:
        cand = _candidate(mm, "P_UB incumbent", r.ub_out.objective)
        r.candidates.append(cand)
        rep = certify_candidates(r.network, r.q, [cand], seed=r.options.seed)
        if rep.best is not None:
            r.best_lower = max(r.best_lower or 0.0, rep.best.value)
        obj = r.ub_out.objective
        t_var = getattr(mm.model, "t", None) if su.iset.lifted else None
        r.stats["ub"].update({
            "incumbent_t": None if t_var is None or t_var.value is None else float(t_var.value),
            "incumbent_certified": bool(rep.best is not None and obj is not None
                                        and rep.best.value >= obj * (1 - max(r.rel_gap, 1e-6))),
            "incumbent_degenerate": bool(rep.degenerate)})
    ups = [v for v in (r.ub_out.bound if su.trust_dual else None, r.stats["ub_model"]["fallback_upper"])
           if v is not None and math.isfinite(v)]
    up = min(ups) if ups else None
    if up is not None and r.best_lower is not None and r.best_lower >= up - r.rel_gap * abs(up):  # relative
        r.closed = True


def _lb_phase(r: _Run) -> None:
    """P_LB,eps (margin eps) with the time left: its incumbent is one more certified candidate (its dual
    bound bounds LB_eps only, never L)."""
    from lipopt.formulations.miqcqp import build_model

    su, cfg = r.setup, r.cfg
    rem = _remaining(r.deadline)
    if rem is not None and rem <= max(0.2, r.build_time):  # building P_LB takes about as long as P_UB did
        r.notes.append("no time left for P_LB,eps")
        r.overran = True
        return
    cut = r.cut()
    mm_lb = build_model(su.net_m, r.q, dataclasses.replace(su.config, problem="lb", cutoff=cut),
                        bounds=su.bounds, iset=su.iset)
    r.build_time += mm_lb.build_time
    r.stats["lb_model"] = dict(mm_lb.stats)
    out = _solve(mm_lb, r.solver, _remaining(r.deadline), r.options, cfg["solver_extra"], su.factor)
    r.lb_out = _in_norm_units(out, mm_lb, su.factor)
    r.stats["lb"] = {"termination": out.termination.value, "objective": r.lb_out.objective,
                     "bound": r.lb_out.bound, "solve_time": out.solve_time}
    eps_desc = (f"absolute {cfg['epsilon']:g}" if cfg["epsilon"] is not None else
                f"{float(cfg['epsilon_rel']):g} x each neuron's pre-activation range, at least "
                f"{float(cfg['epsilon_min']):g} (used: {mm_lb.stats.get('epsilon_min_used')!s:.6} .. "
                f"{mm_lb.stats.get('epsilon_max_used')!s:.6})")
    r.notes.append(f"P_LB,eps margin eps: {eps_desc}")
    if out.has_incumbent:
        r.candidates.append(_candidate(mm_lb, "P_LB incumbent", r.lb_out.objective))
    elif out.termination.value == "infeasible":
        r.notes.append("P_LB,eps " + ("with the cut-off tau >= the best lower bound " if cut else "")
                       + "is infeasible: no eps-margin pattern improves the lower bound")
    if cfg["problem"] == "both" and r.lb_out.bound is not None:
        r.stats["lb"]["note"] = "P_LB's dual bound bounds LB_eps only (not L): not an upper bound"


def _bracket(r: _Run) -> LipschitzResult:
    """The certified bracket of the run (:func:`lipopt.certify.bracket.make_bracket_result`)."""
    from lipopt.certify.bracket import make_bracket_result

    su = r.setup
    if r.ub_out is not None and su.trust_dual:
        outcomes, fallbacks = [r.ub_out], [r.stats["ub_model"]["fallback_upper"]]
    else:  # no P_UB, or its dual bound is not trusted (ill-conditioned compactification)
        outcomes, fallbacks = [None], [su.factor * _fallback(su.bounds, r.q)]
    res = make_bracket_result(
        "miqcqp", r.network, r.q, outcomes, r.candidates, fallback_uppers=fallbacks, upper_valid=True,
        rel_gap=r.rel_gap, build_time=r.build_time + r.stats["bounds_time"], notes=r.notes, stats=r.stats,
        options={**{k: v for k, v in r.cfg.items() if k != "solver_extra"},
                 "time_limit": r.options.time_limit},
        seed=r.options.seed,
    )
    ub_out, lb_out = r.ub_out, r.lb_out
    if ub_out is None and lb_out is not None:
        res.solver, res.solver_version = lb_out.solver, lb_out.solver_version
        res.raw_status = lb_out.raw_status
        res.solve_time = lb_out.solve_time
        if lb_out.termination.value == "time_limit" and res.status is Status.SOLVED:
            res.status = Status.TIME_LIMIT
    elif lb_out is not None:
        res.solve_time += lb_out.solve_time
        if lb_out.termination.value == "license_limit" and res.status is Status.SOLVED:
            res.status = Status.LICENSE_LIMIT
    if r.overran and not r.closed and res.status is Status.SOLVED:  # stopped by the limit, not done
        res.status = Status.TIME_LIMIT
    if res.kind.value != "EXACT":
        res.notes.append(WHY_DIFFERENT)
    return res


def _phases(r: _Run) -> None:
    """Warm start, P_UB, then P_LB,eps when P_UB did not close (and no Ctrl-C stopped the run)."""
    from lipopt_solvers import interrupts

    cfg = r.cfg
    _warm_phase(r)
    rem = _remaining(r.deadline)
    r.overran = rem is not None and rem <= 0
    if _prior_closed(r):
        pass
    elif r.overran and cfg["problem"] in ("both", "ub"):  # not even built once the set-up used the limit
        r.notes.append("the time limit was used up by the bounds and the warm start before P_UB was built: "
                       "the bracket is the warm start's certified value and the bound-propagation bound")
    elif cfg["problem"] in ("both", "ub"):
        _ub_phase(r)
    if interrupts.requested():  # one Ctrl-C stops the whole run, not just the upper-bound problem
        r.notes.append("interrupted (Ctrl-C): the lower-bound problem was not started")
    elif not r.closed and cfg["problem"] in ("lb", "both"):
        _lb_phase(r)


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    """Set-up, warm start, P_UB, P_LB,eps (when P_UB did not close), bracket: see the module docstring."""
    from lipopt.exact.affine import affine_result

    affine = affine_result(network, question, "miqcqp") if applicable(network, question) is None else None
    if affine is not None:
        return affine  # no ReLU: the norm of W, exactly (no layer to encode)
    from lipopt_solvers import Capability, default_solver, interrupts

    t_start = time.perf_counter()
    q = question.bind(network)
    reason = applicable(network, q)
    if reason is not None:
        raise NotApplicableError(reason)
    cfg = options_from(options)
    solver = options.solver or default_solver(Capability.MIQCQP)
    deadline = None if options.time_limit is None else t_start + float(options.time_limit)
    prior = None
    if cfg["prior_bounds"]:  # the cheap methods' certified bounds, in a small time box
        from lipopt.exact.prior import gather

        prior = gather(network, q, options, float(cfg["prior_time"]), deadline)
    setup = prepare(network, q, cfg, deadline)  # input set, bounds, the models' configuration
    r = _Run(network, q, options, cfg, setup, solver, deadline, max(float(options.rel_gap), 1e-6),
             notes=list(setup.notes), stats={"solver": solver, **setup.stats}, t_start=t_start)
    r.prior = prior
    if interrupts.requested():  # a Ctrl-C during the prior phase: no model is built or solved
        r.notes.append("interrupted (Ctrl-C) during the prior bounds: P_UB and P_LB were not started")
    else:
        _phases(r)
    res = _bracket(r)
    res.wall_time = time.perf_counter() - t_start
    from lipopt.progress import anytime

    res.stats["history"] = anytime(r.ub_history, res, r.stats.get("ub_model", {}).get("fallback_upper"))
    from lipopt.exact.prior import merge

    res = merge(res, prior, {"both": "miqcqp", "ub": "miqcqp-ub", "lb": "miqcqp-lb"}[cfg["problem"]])
    res.stats["closure"] = closure(res, r.stats, r.prior is not None and r.closed and "ub" not in r.stats)
    return res


def closure(res: LipschitzResult, stats: dict, by_prior: bool) -> dict:
    """Which side closed the run and why, or why it stayed open (issue 13: recorded for every run):
    ``{"closed", "upper_from", "lower_from", "why"}``. The upper side is the prior's method, P_UB's dual
    bound or the bound propagation; the lower side the certified witness's candidate; an open run names
    P_UB's stop, and when P_UB was solved to optimality above every certified region, whether its
    incumbent was degenerate or on the far-field face t = 0 of the compactification (a closed-region
    optimum that no full-dimensional region attains: the spurious optimum that keeps such runs open)."""
    src = dict(stats.get("bracket_sources") or res.stats.get("bracket_sources") or {})
    ub = stats.get("ub") or {}
    lower_from = (res.witness or {}).get("candidate") or (res.witness or {}).get("source") or src.get("lower")
    if src.get("upper") not in (None, res.method, "miqcqp", "miqcqp-ub", "miqcqp-lb"):
        upper_from = f"prior ({src['upper']})"
    elif ub.get("bound") is not None and res.upper is not None and ub["bound"] <= res.upper * (1 + 1e-9):
        upper_from = "P_UB dual bound"
    else:
        upper_from = "bound propagation"
    closed = res.kind is BoundKind.EXACT and res.value is not None
    if closed:
        why = ("the certified lower bound met the prior upper bound before any MIQCQP" if by_prior else
               f"the certified lower bound ({lower_from}) met the upper bound ({upper_from})")
    elif not ub:
        why = "P_UB was not solved (the time limit, or problem 'lb')"
    elif ub.get("termination") != "optimal":
        why = f"P_UB stopped by {ub.get('termination')} with dual bound {ub.get('bound')}"
    else:
        t = ub.get("incumbent_t")
        where = ("on the far-field face t = 0 of the compactification" if t is not None and t <= 1e-7
                 else "in a degenerate (lower-dimensional) region" if ub.get("incumbent_degenerate")
                 else "at a pattern whose region the certification could not confirm")
        why = (f"P_UB was solved to optimality at {ub.get('objective')}, above every certified region: its "
               f"optimum lies {where}, a closed-region optimum that no full-dimensional region attains")
    return {"closed": closed, "upper_from": upper_from, "lower_from": lower_from, "why": why}


def _fallback(lb: Any, q: Question) -> float:
    from lipopt.formulations.miqcqp_geometry import fallback_upper

    return fallback_upper(lb, q)


def run_ub(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    """Only the upper-bound problem (plus the warm start and the certification of its incumbent)."""
    return _with_problem(network, question, options, "ub", "miqcqp-ub")


def run_lb(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    """Only the lower-bound problem (the upper bound is then the bound-propagation bound)."""
    return _with_problem(network, question, options, "lb", "miqcqp-lb")


def _with_problem(network: Network, question: Question, options: RunOptions, problem: str,
                  name: str) -> LipschitzResult:
    extra = dict(options.extra)
    nested = {**dict(extra.get("miqcqp", {})), **dict(extra.pop(name, {}) or {})}
    nested["problem"] = problem
    extra["miqcqp"] = nested
    extra.pop("problem", None)
    res = run(network, question, dataclasses.replace(options, extra=extra))
    res.method = name
    return res
