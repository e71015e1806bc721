"""Method "miqcqp": the MIQCQP upper- and lower-bound problems of Sbihi, Jan & Couellan (formulations.md 1).

Pipeline (one call, one time budget):

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
not close), normalise (True), solver_extra (dict of raw solver parameters).

Scale: the models are built on the normalised network (:func:`lipopt.formulations.scaling.normalised`:
unit-scale weights, exactly f / factor with the same activation patterns); the solver's values are
multiplied back by the factor, warm starts and witnesses run on the original network in float64 (an
absolute ``epsilon`` is in the original units; ``epsilon_min`` in the normalised ones). Global domain with
biases: the compactification radius is capped (:func:`lipopt.formulations.miqcqp_geometry.
default_global_radius`); with a radius above RADIUS_SAFE x the typical hyperplane distance (only possible
through ``global_radius``) the solver's dual bound is not trusted, and the upper bound is the
bound-propagation bound (an honest bracket, never EXACT from that dual bound).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import numpy as np

from lipopt.errors import NotApplicableError
from lipopt.network.network import Network
from lipopt.options import MethodOptions, RunOptions
from lipopt.result import LipschitzResult, Status
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


# ------------------------------------------------------------------------------------------ warm start


@dataclasses.dataclass
class WarmStart:
    value: float | None
    x: np.ndarray | None
    n_samples: int
    time: float
    starts: list[np.ndarray] = dataclasses.field(default_factory=list)  # best samples, distinct patterns


def warm_start(network: Network, question: Question, n_samples: int, seed: int,
               global_radius: float | None = None, deadline: float | None = None) -> WarmStart:
    """The best certified Jacobian norm over sampled points (a LOWER bound), or None. ``deadline`` (a
    ``time.perf_counter()`` instant): the samples are evaluated until then (at least one)."""
    from lipopt.certify.points import sample_domain
    from lipopt.certify.witness import point_witness
    from lipopt.deadline import Deadline
    from lipopt.lower.batch import batch_jacobian_norms, evaluate_until

    t0 = time.perf_counter()
    if n_samples <= 0:
        return WarmStart(None, None, 0, 0.0)
    dl = Deadline(deadline)
    rng = np.random.default_rng(seed)
    xs = sample_domain(network, question, n_samples, rng, global_radius)
    vals = evaluate_until(lambda x: batch_jacobian_norms(network, x, question), xs, dl, "warm start")
    xs = xs[: len(vals)]
    best_v, best_x = None, None
    order = np.argsort(-vals, kind="stable")
    for i in order[:10]:
        if best_v is not None and (vals[i] <= best_v or dl.expired()):
            break
        pw = point_witness(network, xs[i], question)
        if pw.certified and (best_v is None or pw.value > best_v):
            best_v, best_x = pw.value, xs[i]
    starts, seen = [], set()
    for i in order[:200]:
        key = round(float(vals[i]), 9)
        if key not in seen:
            seen.add(key)
            starts.append(xs[i])
        if len(starts) >= 5:
            break
    return WarmStart(best_v, best_x, len(xs), time.perf_counter() - t0, starts)


def pattern_jacobian(weights: list[np.ndarray], states: list[np.ndarray],
                     alphas: list[float] | None = None) -> np.ndarray:
    """The Jacobian of the region with activation states ``states`` (slope 1 where active, the layer's
    alpha where not; alpha = 0 for ReLU)."""
    jac = weights[0]
    for k, (w, s) in enumerate(zip(weights[1:], states, strict=True)):
        a = 0.0 if alphas is None else alphas[k]
        jac = w @ (jac * np.where(s, 1.0, a)[:, None])
    return jac


def local_search(network: Network, question: Question, x0: np.ndarray, budget: float,
                 max_rounds: int = 50) -> tuple[float | None, np.ndarray | None, int]:
    """Hill climbing over neighbouring linear regions from the region of x0: flip one neuron at a time,
    keep a flip when ||J_s|| grows and the new region has interior in the domain (margin LP + float64
    re-evaluation, :func:`lipopt.certify.regions.certify_pattern`). Returns (certified value, witness x,
    #LPs)."""
    from lipopt.certify.regions import certify_pattern, pattern_at
    from lipopt.formulations.miqcqp_geometry import mlp_chain
    from lipopt.norms import jacobian_norm

    t_end = time.perf_counter() + budget
    ws, _, alphas = mlp_chain(network)
    states = [s.copy() for s in pattern_at(network, x0)[0]]
    rw = certify_pattern(network, question, states)
    if rw is None or not rw.certified:
        return None, None, 1
    best_v, best_x, n_lp = rw.value, rw.x, 1
    for _ in range(max_rounds):
        # candidate flips ranked by their Jacobian norm (cheap), certified in that order
        cands = []
        for k, s in enumerate(states):
            for i in range(s.size):
                s[i] = ~s[i]
                v = jacobian_norm(pattern_jacobian(ws, states, alphas), question)
                s[i] = ~s[i]
                if v > best_v * (1 + 1e-9):
                    cands.append((v, k, i))
        improved = False
        for _v, k, i in sorted(cands, reverse=True):
            if time.perf_counter() > t_end:
                return best_v, best_x, n_lp
            states[k][i] = ~states[k][i]
            rw = certify_pattern(network, question, states)
            n_lp += 1
            if rw is not None and rw.certified and rw.value > best_v:
                best_v, best_x, improved = rw.value, rw.x, True
                break
            states[k][i] = ~states[k][i]
        if not improved:
            break
    return best_v, best_x, n_lp


# ------------------------------------------------------------------------------------------ solving


def _solve(mm: Any, solver: str, time_limit: float | None, options: RunOptions, extra: dict,
           factor: float = 1.0) -> Any:
    """One MIQCQP solve; with ``options.progress`` its incumbent and bound are reported as they move, in
    the original network's units (``factor`` times the model's)."""
    from lipopt_solvers import solve_pyomo

    so = options.solver_options(None if time_limit is None else max(time_limit, 0.05),
                                rel_gap=min(options.rel_gap, 1e-6), extra=extra)
    report = None
    if options.progress:
        from lipopt.progress import solve_reporter

        kind = "UPPER" if mm.model.name.endswith("-ub") else "bound of P_LB only, not of L"
        report = solve_reporter(f"miqcqp {mm.model.name}", lambda v: factor * (mm.to_norm(v) or 0.0),
                                bound_kind=kind)
    out = solve_pyomo(mm.model, solver, so, sense="max", progress=report)
    out.build_time = mm.build_time
    return out


def _in_norm_units(out: Any, mm: Any, factor: float = 1.0) -> Any:
    """The outcome with objective and bound converted to Lipschitz units of the original network (sqrt
    for the squared objective, times the normalisation factor)."""
    from lipopt.formulations.scaling import scaled_outcome

    out = dataclasses.replace(out, objective=mm.to_norm(out.objective), bound=mm.to_norm(out.bound))
    return scaled_outcome(out, factor)


def _candidate(mm: Any, label: str, objective: float | None) -> Any:
    from lipopt.certify.candidates import Candidate

    return Candidate(relu_states=mm.relu_states(), x=mm.input_point(), objective=objective, label=label)


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
    from lipopt.formulations.miqcqp_geometry import (
        RADIUS_SAFE,
        input_set,
        layer_bounds,
        mlp_weights,
        radius_conditioning,
    )
    from lipopt.formulations.scaling import normalised

    notes: list[str] = []
    stats: dict[str, Any] = {}
    t0 = time.perf_counter()
    norm = normalised(network, bool(cfg["normalise"]))
    net_m, factor = norm.network, norm.factor
    stats["scale"] = norm.stats()
    iset = input_set(net_m, q, cfg["global_radius"])
    rem = _remaining(deadline)  # the LP tightening stops at 30 % of the budget (CROWN bounds kept)
    lb = layer_bounds(net_m, q, iset, method=cfg["bounds"], fix_stable=cfg["fix_stable"],
                      direction=cfg["direction_bounds"],
                      time_limit=None if rem is None else max(0.0, 0.3 * rem))
    stats["bounds_time"] = time.perf_counter() - t0
    stats.update(lb.stats)
    stats["input_set"] = iset.kind
    stats["global_radius"] = iset.radius
    notes.append(f"input set: {iset.describe()}")
    conditioning = radius_conditioning(iset, *mlp_weights(net_m))
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


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    from lipopt.exact.affine import affine_result

    affine = affine_result(network, question, "miqcqp") if applicable(network, question) is None else None
    if affine is not None:
        return affine  # no ReLU: the norm of W, exactly (no layer to encode)
    from lipopt_solvers import Capability, default_solver

    from lipopt.certify.bracket import make_bracket_result
    from lipopt.certify.candidates import Candidate, certify_candidates
    from lipopt.formulations.miqcqp import build_model

    t_start = time.perf_counter()
    q = question.bind(network)
    reason = applicable(network, q)
    if reason is not None:
        raise NotApplicableError(reason)
    cfg = options_from(options)
    solver = options.solver or default_solver(Capability.MIQCQP)
    deadline = None if options.time_limit is None else t_start + float(options.time_limit)
    rel_gap = max(float(options.rel_gap), 1e-6)
    notes: list[str] = []
    stats: dict[str, Any] = {"solver": solver}

    # 1. input set and bounds, on the normalised network, and the models' configuration
    setup = prepare(network, q, cfg, deadline)
    net_m, factor, iset, lb, mcfg, trust_dual = (setup.net_m, setup.factor, setup.iset, setup.bounds,
                                                 setup.config, setup.trust_dual)
    notes.extend(setup.notes)
    stats.update(setup.stats)

    # 2. warm start
    candidates: list[Any] = []
    ws = WarmStart(None, None, 0, 0.0)
    if cfg["warm_start"]:
        rem = _remaining(deadline)  # sampling stops at 10 % of what is left
        ws = warm_start(network, q, int(cfg["n_samples"]), options.seed,
                        iset.radius if iset.lifted else None,
                        None if rem is None else time.perf_counter() + max(0.0, 0.1 * rem))
        if ws.x is not None:
            candidates.append(Candidate(x=ws.x, label="warm start (sampling)"))
    stats["warm_start"] = {"value": ws.value, "samples": ws.n_samples, "time": ws.time}
    best_lower = ws.value
    if cfg["warm_start"] and cfg["local_search"] and ws.x is not None:
        t1 = time.perf_counter()
        rem = _remaining(deadline)
        budget = float(cfg["local_search_time"]) if rem is None else min(float(cfg["local_search_time"]),
                                                                         0.1 * rem)
        v_ls, x_ls, n_lp = None, None, 0
        for x_start in ws.starts or [ws.x]:
            left = budget - (time.perf_counter() - t1)
            if left <= 0:
                break
            v1, x1, n1 = local_search(network, q, x_start, left)
            n_lp += n1
            if v1 is not None and (v_ls is None or v1 > v_ls):
                v_ls, x_ls = v1, x1
        stats["local_search"] = {"value": v_ls, "lps": n_lp, "starts": len(ws.starts),
                                 "time": time.perf_counter() - t1}
        if x_ls is not None and v_ls is not None and v_ls > (best_lower or 0.0):
            candidates.append(Candidate(x=x_ls, label="warm start (region local search)"))
            best_lower = v_ls

    ub_out = lb_out = None
    build_time = 0.0

    # 3. the upper-bound problem (not even built once the set-up has used the whole time limit)
    closed = False
    rem = _remaining(deadline)
    setup_overran = rem is not None and rem <= 0
    if setup_overran and cfg["problem"] in ("both", "ub"):
        notes.append("the time limit was used up by the bounds and the warm start before P_UB was built: "
                     "the bracket is the warm start's certified value and the bound-propagation bound")
    elif cfg["problem"] in ("both", "ub"):
        cut = best_lower / factor if (cfg["cutoff"] and best_lower) else None  # model units
        mm = build_model(net_m, q, dataclasses.replace(mcfg, problem="ub", cutoff=cut), bounds=lb,
                         iset=iset)
        build_time += mm.build_time
        stats["ub_model"] = dict(mm.stats)
        rem = _remaining(deadline)
        ub_budget = None if rem is None else (rem * (1 - float(cfg["lb_time_fraction"]))
                                              if cfg["problem"] == "both" else rem)
        out = _solve(mm, solver, ub_budget, options, cfg["solver_extra"], factor)
        if out.termination.value == "infeasible" and cut is not None:
            notes.append("P_UB with the cut-off tau >= warm-start value was reported infeasible (solver "
                         "tolerances); re-solved without the cut-off")
            mm = build_model(net_m, q, dataclasses.replace(mcfg, problem="ub"), bounds=lb, iset=iset)
            out = _solve(mm, solver, _remaining(deadline), options, cfg["solver_extra"], factor)
        ub_out = _in_norm_units(out, mm, factor)
        stats["ub_model"]["fallback_upper"] = factor * float(mm.fallback_upper)
        stats["ub"] = {"termination": out.termination.value, "objective": ub_out.objective,
                       "bound": ub_out.bound, "solve_time": out.solve_time}
        if out.has_incumbent:
            cand = _candidate(mm, "P_UB incumbent", ub_out.objective)
            candidates.append(cand)
            rep = certify_candidates(network, q, [cand], seed=options.seed)
            if rep.best is not None:
                best_lower = max(best_lower or 0.0, rep.best.value)
        ups = [v for v in (ub_out.bound if trust_dual else None, stats["ub_model"]["fallback_upper"])
               if v is not None and math.isfinite(v)]
        up = min(ups) if ups else None
        if up is not None and best_lower is not None and best_lower >= up - rel_gap * abs(up):  # relative
            closed = True

    # 4. the lower-bound problem
    from lipopt_solvers import interrupts

    if interrupts.requested():  # one Ctrl-C stops the whole run, not just the upper-bound problem
        notes.append("interrupted (Ctrl-C): the lower-bound problem was not started")
    elif cfg["problem"] == "lb" or (cfg["problem"] == "both" and not closed):
        rem = _remaining(deadline)
        if rem is None or rem > max(0.2, build_time):  # building P_LB takes about as long as P_UB did
            cut = best_lower / factor if (cfg["cutoff"] and best_lower) else None  # model units
            mm_lb = build_model(net_m, q, dataclasses.replace(mcfg, problem="lb", cutoff=cut), bounds=lb,
                                iset=iset)
            build_time += mm_lb.build_time
            stats["lb_model"] = dict(mm_lb.stats)
            out = _solve(mm_lb, solver, _remaining(deadline), options, cfg["solver_extra"], factor)
            lb_out = _in_norm_units(out, mm_lb, factor)
            stats["lb"] = {"termination": out.termination.value, "objective": lb_out.objective,
                           "bound": lb_out.bound, "solve_time": out.solve_time}
            eps_desc = (f"absolute {cfg['epsilon']:g}" if cfg["epsilon"] is not None else
                        f"{float(cfg['epsilon_rel']):g} x each neuron's pre-activation range, at least "
                        f"{float(cfg['epsilon_min']):g} (used: {mm_lb.stats.get('epsilon_min_used')!s:.6} .. "
                        f"{mm_lb.stats.get('epsilon_max_used')!s:.6})")
            notes.append(f"P_LB,eps margin eps: {eps_desc}")
            if out.has_incumbent:
                candidates.append(_candidate(mm_lb, "P_LB incumbent", lb_out.objective))
            elif out.termination.value == "infeasible":
                notes.append("P_LB,eps " + ("with the cut-off tau >= the best lower bound " if cut else "")
                             + "is infeasible: no eps-margin pattern improves the lower bound")
            if cfg["problem"] == "both" and lb_out.bound is not None:
                stats["lb"]["note"] = "P_LB's dual bound bounds LB_eps only (not L): not an upper bound"
        else:
            notes.append("no time left for P_LB,eps")
            setup_overran = True

    # 5. the bracket
    if ub_out is not None and trust_dual:
        outcomes, fallbacks = [ub_out], [stats["ub_model"]["fallback_upper"]]
    else:  # no P_UB, or its dual bound is not trusted (ill-conditioned compactification)
        outcomes, fallbacks = [None], [factor * _fallback(lb, q)]
    res = make_bracket_result(
        "miqcqp", network, q, outcomes, candidates, fallback_uppers=fallbacks, upper_valid=True,
        rel_gap=rel_gap, build_time=build_time + stats["bounds_time"], notes=notes, stats=stats,
        options={**{k: v for k, v in cfg.items() if k != "solver_extra"}, "time_limit": options.time_limit},
        seed=options.seed,
    )
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
    if setup_overran and not closed and res.status is Status.SOLVED:  # stopped by the limit, not done
        res.status = Status.TIME_LIMIT
    if res.kind.value != "EXACT":
        res.notes.append(WHY_DIFFERENT)
    res.wall_time = time.perf_counter() - t_start
    return res


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
