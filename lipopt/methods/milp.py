"""Method "milp": exact l-inf / l1 Lipschitz constants by the LipMIP-family MILP (formulations.md 2).

Pipeline: the domain box -> sound neuron bounds (``lipopt.bounds.compute_bounds``; default "lp":
interval, then CROWN, then LP tightening) -> one MILP per output piece (:mod:`lipopt.formulations.milp`)
solved with HiGHS (default), SCIP or Gurobi -> certified bracket (:mod:`lipopt.certify.bracket`).

Questions: input norm l1 or l-inf; a scalar output (logit, margin, direction) or all outputs with output
norm l-inf (one MILP per output row j, c = e_j: the sign of c is dropped by the symmetry of |.|) or l1
(c in [-1, 1]^m); domains: box, l-inf ball, global.

* Global, bias-free: the constant on [-1, 1]^n, which is the global one (formulations.md, Fact C).
* Global with biases: no solver reachable here supports indicator constraints through Pyomo, so the
  forward constraints are dropped (the "all-patterns relaxation" / naive MIP): an UPPER bound, said in
  the notes. Witnesses of its incumbent patterns are still certified on R^n (LOWER side).
* Pieces of a split l-inf output are solved in decreasing order of their interval bound; a piece whose
  interval bound is already below the certified lower bound is skipped (its interval bound counts as
  its upper bound). The l-inf output is split (m small MILPs) rather than encoded with a selector
  (``extra={"vector_encoding": "selector"}``): with c = e_j fixed the backward pass starts from constants,
  so the last layer's switches need no big-M and the gradient bounds are much tighter than for c in
  the hull of {e_j}; the benchmark (benchmarks/bench_milp.py) measures both.
* Degenerate patterns: the MIP works on closed regions and may reach a pattern whose region has no
  interior (not in general position; T4). Such a pattern does not count for the exact constant
  (formulations.md Fact A; the same convention as method "enumeration"), so when the incumbent's region
  has no interior (margin LP <= 1e-9) a no-good cut removes that binary assignment and the piece is
  solved again, up to ``degenerate_cuts`` rounds (default 8). Without rounds left the result is the
  honest bracket [certified lower, MIP bound] with kind UPPER, never EXACT at the MIP value.

Options (``RunOptions.extra``): ``bound_method`` ("interval" | "crown" | "lp", default "lp"),
``vector_encoding`` ("split" | "selector"), ``degenerate_cuts`` (int), ``obbt_max_neurons``,
``n_samples`` (domain points re-evaluated as extra LOWER candidates, default 16, the best by batched
Jacobian norm of ``sample_pool`` = 2000 seeded samples),
``direction_split`` (bool, default False: solve each fixed-c piece as max over the vertices s of the
input-norm ball of the directional-derivative MILP, :mod:`lipopt.mip.milp_directions`; used when the
number of directions is at most ``max_directions``, default 2^16; much tighter brackets on nets whose
neurons all switch inside the box, see benchmarks/bench_milp.py section B).
``prior_bounds`` (default True; "milp" only): first the cheap methods' certified bounds
(:mod:`lipopt.exact.prior`: naive and, for l2 questions, LipSDP as the UPPER side, region-climb's and
grad-ascent's re-evaluated witnesses as the LOWER side) in a time box of ``prior_time`` (0.1) x the time
limit, at most 10 s, counted against the limit; the lower one is a candidate and prunes pieces, no piece is
solved once the certified lower bound meets the prior upper one, and the reported bracket is [max(own, prior
lower), min(own, prior upper)] with ``stats["bracket_sources"]`` (:func:`lipopt.exact.prior.merge`).
``small_mip_tuning`` (default True): a MIP of at most :data:`SMALL_MIP_BINARIES` (32) binaries is solved by
HiGHS without its RINS / RENS sub-MIP heuristics (:data:`SMALL_MIP_HIGHS`; the user's ``--solver-option``
values win), which took most of such a solve; tolerances unchanged.
Scale: the model is built on :func:`lipopt.formulations.scaling.normalised` (every layer's weights of
unit scale, exactly f / factor with the same activation patterns); the solver's objective and dual bound
are multiplied back by the factor (a power of two, exact) and witnesses are certified on the original
network in float64, so the result is the same for a net and for c * net up to the factor c^depth
(``extra={"normalise": False}`` turns it off).
Stats: ambiguous neurons, bound method and time, binaries, rows, build and solve time per piece, "scale"
(factor and the per-layer power-of-two exponents).

The mathematics as implemented: ``docs/methods.md#milp``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.network.network import Network
from lipopt.options import MethodOptions, RunOptions
from lipopt.result import LipschitzResult, Status
from lipopt.spec import Ball, Box, Global, Norm, Question

METHOD = "milp"
DEFAULT_SOLVER = "highs"


@dataclass(frozen=True)
class Options(MethodOptions):
    """Options of "milp" and "lp-relax"."""

    bound_method: str = "lp"  # neuron bounds: "lp" (interval + CROWN + LP tightening), "crown", "interval"
    obbt_max_neurons: int = 4000  # LP tightening budget (neurons)
    vector_encoding: str = "split"  # all-outputs l-inf: one MILP per row ("split") or a "selector"
    degenerate_cuts: int = 8  # no-good cuts for incumbents whose pattern has no interior
    direction_split: bool | str = False  # one MILP per gradient-sign direction ("auto" decides)
    max_directions: int = 1 << 16
    normalise: bool = True  # build the model on the power-of-two normalised network
    n_samples: int = 16  # certified samples that seed the lower side
    sample_pool: int = 2000
    #: the cheap methods' certified bounds (lipopt.exact.prior) as start, piece cut-off and bracket cap
    #: ("milp" only; lp-relax reports its relaxation's bound alone)
    prior_bounds: bool = True
    prior_time: float = 0.1  # their time box: this fraction of the time limit (at most 10 s)
    #: HiGHS without RINS / RENS on MIPs of at most SMALL_MIP_BINARIES binaries (False: HiGHS' defaults)
    small_mip_tuning: bool = True


def mip_applicable(network: Network, question: Question) -> str | None:
    if question.constant == "nominal":
        return "the MILP computes pairwise (global/local) constants, not the nominal-point constant"
    if question.input_norm not in (Norm.L1, Norm.LINF):
        return (f"the MILP handles input norms l1 and l-inf (a polyhedral dual ball), not "
                f"{question.input_norm.label}; use miqcqp or lipsdp for l2")
    if not question.scalar_output and question.output_norm not in (Norm.L1, Norm.LINF):
        return (f"vector outputs need output norm l1 or l-inf (a polyhedral dual ball), not "
                f"{question.output_norm.label}; or ask about a scalar output")
    if isinstance(question.domain, Ball) and question.domain.norm is not Norm.LINF:
        return "the MILP handles boxes and l-inf balls; an l2-ball domain is not a polyhedron"
    return None


def applicable(network: Network, question: Question) -> str | None:
    return mip_applicable(network, question)


def domain_box(network: Network, question: Question) -> tuple[np.ndarray, np.ndarray, str]:
    """(lo, hi, mode): mode "box", "bias-free-global" or "all-patterns" (global with biases)."""
    n = network.input_size
    dom = question.domain
    if isinstance(dom, Box):
        return dom.lo.copy(), dom.hi.copy(), "box"
    if isinstance(dom, Ball):
        return dom.center - dom.radius, dom.center + dom.radius, "box"
    assert isinstance(dom, Global)
    if not network.has_bias:
        return -np.ones(n), np.ones(n), "bias-free-global"
    return np.full(n, -np.inf), np.full(n, np.inf), "all-patterns"


def _degenerate(network: Network, question: Question, cand: Any) -> bool:
    """True when the candidate's pattern has no interior in the domain (safe to cut)."""
    from lipopt.certify.regions import INTERIOR_TOL, interior_point

    try:
        found = interior_point(network, question, cand.relu_states, cand.pool_winners)
    except Exception:
        return False  # unsure: never cut
    return found is None or found[1] <= INTERIOR_TOL


def _sample_points(network: Network, question: Question, count: int, pool: int,
                   seed: int) -> list[np.ndarray]:
    """The centre of the (bounded) domain and the ``count - 1`` best of ``pool`` seeded uniform samples,
    ranked by their batched Jacobian norms (cheap; each is re-certified in float64 afterwards)."""
    n = network.input_size
    dom = question.domain
    if isinstance(dom, Box):
        lo, hi = dom.lo, dom.hi
    elif isinstance(dom, Ball):
        lo, hi = dom.center - dom.radius, dom.center + dom.radius
    else:
        lo, hi = -np.ones(n), np.ones(n)
    rng = np.random.default_rng(seed)
    k = max(count - 1, 0)
    xs = rng.uniform(lo, hi, size=(max(pool, k), n))
    if isinstance(dom, Ball) and dom.norm.p == 2:  # keep samples inside an l2 ball
        d = xs - dom.center
        r = np.linalg.norm(d, axis=1, keepdims=True)
        xs = dom.center + d * np.minimum(1.0, dom.radius / np.maximum(r, 1e-300))
    if k and len(xs) > k:
        from lipopt.lower.batch import batch_jacobian_norms

        norms = batch_jacobian_norms(network, xs, question)
        xs = xs[np.argsort(-norms)[:k]]
    return [(lo + hi) / 2, *list(xs[:k])]


def _use_direction_split(flag: Any, network: Network, question: Question, relax: bool, max_dirs: int) -> bool:
    """Direction splitting (lipopt.mip.milp_directions) for a fixed-c question: on request (True), or
    "auto"; never for the LP relaxation, and only when the number of directions is at most max_dirs."""
    if relax or not flag or question.input_norm not in (Norm.LINF, Norm.L1):
        return False
    n = network.input_size
    count = 2 ** n if question.input_norm is Norm.LINF else 2 * n
    return count <= max_dirs


@dataclass
class MilpSetup:
    """What the MILP pieces are built from (see :func:`prepare`)."""

    lo: np.ndarray
    hi: np.ndarray
    mode: str  # "box" | "bias-free-global" | "all-patterns"
    norm: Any  # lipopt.formulations.scaling.Normalisation: models on norm.network, f = factor * f_n
    cert_q: Question  # where witnesses are certified
    bounds: Any  # ForwardBounds of the normalised network on [lo, hi]
    notes: list[str]
    stats: dict[str, Any]


def prepare(network: Network, q: Question, o: Options, solver: str) -> MilpSetup:
    """The domain box, the normalised network (unit-scale weights, f = factor * f_n, same patterns:
    solver bounds are scaled back by the factor, witnesses certified on the original network) and its
    sound neuron bounds."""
    from lipopt.bounds import compute_bounds
    from lipopt.formulations.scaling import normalised

    lo, hi, mode = domain_box(network, q)
    notes: list[str] = []
    bound_method = o.bound_method
    norm = normalised(network, bool(o.normalise))
    net_m = norm.network
    cert_q = q
    if mode == "bias-free-global":
        cert_q = q.with_(domain=Box(lo, hi)).bind(network)
        notes.append("bias-free network: the global constant equals the constant on [-1, 1]^n (Fact C)")
    elif mode == "all-patterns":
        notes.append("global constant with biases: no available solver supports indicator constraints "
                     "through Pyomo, so the forward constraints are dropped (all-patterns relaxation); "
                     "the value is an UPPER bound on the global constant")
    fb = compute_bounds(net_m, lo, hi, bound_method if mode != "all-patterns" else "interval",
                        **({"max_neurons": o.obbt_max_neurons}
                           if bound_method == "lp" and mode != "all-patterns" else {}))
    bounds_time = float(fb.stats.get("time", 0.0))
    stats: dict[str, Any] = {"bound_method": fb.method, "bounds_time": bounds_time,
                             "ambiguous_neurons": fb.n_ambiguous, "relus": fb.n_relus, "mode": mode,
                             "solver": solver, "pieces": [], "scale": norm.stats()}
    if fb.stats:
        stats["bound_stats"] = {k: v for k, v in fb.stats.items() if k != "time"}
    return MilpSetup(lo, hi, mode, norm, cert_q, fb, notes, stats)


@dataclass
class _MilpRun:
    """The state of one ``milp`` / ``lp-relax`` run across its pieces."""

    network: Network
    q: Question
    options: RunOptions
    o: Any  # Options
    setup: MilpSetup
    solver: str
    method: str
    relax: bool
    t_start: float
    candidates: list[Any] = field(default_factory=list)
    best_lower: float = -math.inf
    notes: list[str] = field(default_factory=list)
    build_time: float = 0.0
    extra_outcomes: list[Any] = field(default_factory=list)
    extra_uppers: list[float] = field(default_factory=list)
    prior: Any = None  # lipopt.exact.prior.Prior, or None

    def certify(self, cand: Any) -> Any:
        from lipopt.certify.candidates import certify_candidates

        rep = certify_candidates(self.network, self.setup.cert_q, [cand], seed=self.options.seed)
        if rep.best is not None:
            self.best_lower = max(self.best_lower, rep.best.value)
        return rep


def _skip(r: _MilpRun, pstat: dict[str, Any], upper: float) -> bool:
    """Whether a piece is not solved (Ctrl-C earlier, no time left, or its interval bound is below the
    certified lower bound); its interval bound then stands in, with a note."""
    from lipopt_solvers import interrupts

    if interrupts.requested():
        pstat["skipped"] = "interrupted"
        r.notes.append(f"piece {pstat['piece']} not solved (interrupted); its interval bound is used")
        return True
    if r.options.time_limit is not None and r.options.time_limit - (time.perf_counter() - r.t_start) <= 0.05:
        pstat["skipped"] = "time limit reached before this piece"
        r.notes.append(f"piece {pstat['piece']} not solved (time limit); its interval bound is used")
        return True
    if upper <= r.best_lower:
        pstat["skipped"] = "interval bound below the certified lower bound"
        return True
    if r.prior is not None and r.prior.closes(r.best_lower, r.options.rel_gap):
        pstat["skipped"] = (f"the certified lower bound meets the prior upper bound ({r.prior.upper.method})")
        return True
    return False


def _solve_piece(r: _MilpRun, piece: Any, pstat: dict[str, Any]) -> Any:
    """Build and solve one piece's MIP; an incumbent on a degenerate pattern (no interior in the domain)
    is excluded by a no-good cut and the MIP re-solved, up to ``degenerate_cuts`` rounds. Returns the
    last outcome."""
    from lipopt.formulations.milp import build_milp
    from lipopt.formulations.scaling import scaled_outcome
    from lipopt.progress import History, chain, solve_reporter

    su, options = r.setup, r.options
    rounds_max = 0 if r.relax else int(r.o.degenerate_cuts)
    mm = build_milp(su.bounds, r.q.input_norm, piece, relax=r.relax, forward=(su.mode != "all-patterns"))
    r.build_time += mm.stats["build_time"]
    pstat.update({key: mm.stats[key] for key in ("binaries", "relu_binaries", "objective_binaries",
                                                 "variables", "constraints", "build_time")})
    pstat["solves"] = []
    rounds = 0
    while True:
        remaining = None
        if options.time_limit is not None:
            remaining = max(0.05, options.time_limit - (time.perf_counter() - r.t_start))
        report = solve_reporter(f"{r.method} {pstat['piece']}", su.norm.up) if options.progress else None
        hist = History(su.norm.up, r.t_start)
        out = solve_model(mm.model, r.solver, options, remaining, int(mm.stats["binaries"]),
                           progress=chain(hist, report), enabled=bool(r.o.small_mip_tuning) and not r.relax)
        out = scaled_outcome(out, su.norm)
        pstat.setdefault("history", []).extend(hist.rows)
        pstat["solves"].append({"termination": out.termination.value, "objective": out.objective,
                                "bound": out.bound, "solve_time": out.solve_time,
                                "translate_time": out.translate_time, "nodes": out.nodes,
                                "isolated": out.isolated})
        if not out.has_incumbent:
            break
        cand = mm.candidate(out.objective, f"{pstat['piece']}#{rounds}")
        if r.relax:
            cand.relu_states = None  # fractional switches are no pattern; only the point x is offered
            cand.objective = None
        r.candidates.append(cand)
        rep = r.certify(cand)
        # relative only (the values may be 1e-12 or 1e12)
        closed = out.bound is not None and r.best_lower >= out.bound - options.rel_gap * abs(out.bound)
        if (closed or r.relax or out.termination.value != "optimal" or rounds >= rounds_max
                or not rep.degenerate or not _degenerate(r.network, su.cert_q, cand)):
            break
        if not mm.add_no_good_cut():
            break
        rounds += 1
        r.notes.append(f"piece {pstat['piece']}: incumbent pattern (MIP value {out.objective:.9g}) has no "
                       "interior in the domain (degenerate); excluded by a no-good cut and re-solved")
    pstat["degenerate_cuts"] = rounds
    return out


#: MIPs with at most this many binaries are solved by HiGHS without its RINS and RENS sub-MIP heuristics:
#: on such a MIP the branch and bound proves the optimum in a few hundred nodes, and the sub-MIPs took most
#: of the solve (LipBaB 10-15-10-3, l1 on [0, 0.1]^10: 24 binaries, 0.31 s -> 0.13 s; no model of <= 30
#: binaries slower, benchmarks/bench_tiny.py). Same tolerances, so the same certified bracket up to the gap.
SMALL_MIP_BINARIES = 32
SMALL_MIP_HIGHS = {"mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False}


def small_mip_options(solver: str, binaries: int, enabled: bool = True) -> dict[str, Any]:
    """The solver options a MIP of ``binaries`` binaries gets from lipopt (the user's solver options win
    over them): :data:`SMALL_MIP_HIGHS` for HiGHS at most :data:`SMALL_MIP_BINARIES`, else none."""
    if not enabled or solver != "highs" or not 0 < binaries <= SMALL_MIP_BINARIES:
        return {}
    return dict(SMALL_MIP_HIGHS)


def solve_model(model: Any, solver: str, options: RunOptions, remaining: float | None, binaries: int,
                 progress: Any = None, enabled: bool | None = None) -> Any:
    """``solve_pyomo`` with :func:`small_mip_options`; a HiGHS that refuses those options (an older
    version without them) solves the model again with the user's options alone."""
    from lipopt_solvers import solve_pyomo

    if enabled is None:
        enabled = bool(Options.from_run(options, METHOD).small_mip_tuning)
    extra = small_mip_options(solver, binaries, enabled)
    out = solve_pyomo(model, solver, options.solver_options(remaining, extra=extra), sense="max",
                      progress=progress)
    if extra and out.raw_status == "option_error":
        out = solve_pyomo(model, solver, options.solver_options(remaining), sense="max", progress=progress)
    return out


def solve_mip(network: Network, question: Question, options: RunOptions, *, relax: bool = False,
              method: str = METHOD) -> LipschitzResult:
    """The shared driver of "milp" and "lp-relax" (``relax=True``): one MIP per output piece (largest
    interval bound first), direction splitting for constant pieces where it pays, then the bracket."""
    from lipopt.certify.bracket import make_bracket_result
    from lipopt.certify.candidates import Candidate, certify_candidates
    from lipopt.formulations.milp import cheap_upper, output_pieces

    solver = options.solver or DEFAULT_SOLVER
    o = Options.from_run(options, method)
    split_dirs = _use_direction_split(o.direction_split, network, question, relax, int(o.max_directions))
    prior = _prior(network, question, options, o) if (o.prior_bounds and not relax) else None
    r = _MilpRun(network, question, options, o, prepare(network, question, o, solver), solver, method, relax,
                 time.perf_counter(), prior=prior)
    if prior is not None:
        r.t_start -= prior.time  # the prior's time counts against the limit
    su = r.setup
    r.notes.extend(su.notes)
    stats = su.stats
    # certified points independent of the solver: the domain centre and a few seeded samples (a lower
    # bound even when the solver finds no incumbent in its time)
    samples = _sample_points(network, su.cert_q, o.n_samples, o.sample_pool, options.seed)
    r.candidates = [Candidate(x=x, label=f"sample {i}") for i, x in enumerate(samples)]
    if split_dirs:  # the samples' certified value prunes directions from the start
        rep0 = certify_candidates(network, su.cert_q, r.candidates, seed=options.seed)
        if rep0.best is not None:
            r.best_lower = rep0.best.value
    _take_prior_lower(r)
    pieces = output_pieces(question, network.output_size, o.vector_encoding)
    ups = [float(su.norm.up(cheap_upper(su.bounds, p, question.input_norm))) for p in pieces]
    outcomes = _solve_pieces(r, pieces, ups, split_dirs)
    stats["build_time"] = r.build_time
    stats["direction_split"] = split_dirs
    keep = [i for i, out in enumerate(outcomes) if not (isinstance(out, str) and out == "split")]
    outcomes = [outcomes[i] for i in keep] + r.extra_outcomes
    ups = [ups[i] for i in keep] + r.extra_uppers
    res = make_bracket_result(method, network, question, outcomes, r.candidates, fallback_uppers=ups,
                              rel_gap=options.rel_gap, certify_question=su.cert_q, build_time=r.build_time,
                              notes=r.notes, stats=stats, seed=options.seed,
                              options={"bound_method": o.bound_method, "vector_encoding": o.vector_encoding,
                                       "degenerate_cuts": 0 if relax else int(o.degenerate_cuts),
                                       "solver": solver, "direction_split": split_dirs,
                                       "time_limit": options.time_limit, "threads": options.threads})
    solved = [p for p in stats["pieces"] if p.get("history")]
    if len(pieces) == 1 and len(solved) == 1 and not split_dirs:  # one MIP: its dual bound bounds L
        from lipopt.progress import anytime

        res.wall_time = time.perf_counter() - r.t_start
        res.stats["history"] = anytime(solved[0]["history"], res, ups[0] if ups else None)
    if su.mode == "all-patterns" and res.kind.value == "EXACT":
        res.notes.append("the certified lower bound meets the relaxation's bound: the value is exact")
    if all(out is None for out in outcomes) and res.value is not None and res.status is Status.ERROR:
        res.status = Status.SOLVED
    res.solver = res.solver or solver
    from lipopt.exact.prior import merge

    if prior is not None:
        res.wall_time = time.perf_counter() - r.t_start
        res.stats.setdefault("history", [[res.wall_time, res.lower, res.upper]])
    return merge(res, prior, method)  # without a prior: only stats["bracket_sources"] / ["own_bracket"]


def _prior(network: Network, question: Question, options: RunOptions, o: Options) -> Any:
    """The cheap methods' certified bounds (:func:`lipopt.exact.prior.gather`) in a small time box."""
    from lipopt.exact.prior import gather

    deadline = None if options.time_limit is None else time.perf_counter() + float(options.time_limit)
    return gather(network, question, options, float(o.prior_time), deadline)


def _solve_pieces(r: _MilpRun, pieces: list[Any], ups: list[float], split_dirs: bool) -> list[Any]:
    """One MIP per output piece, largest interval bound first (a constant piece by direction splitting
    when ``split_dirs``: its outcomes go to ``r.extra_outcomes``, the piece's slot says "split")."""
    su, o = r.setup, r.o
    outcomes: list[Any] = [None] * len(pieces)
    for k in sorted(range(len(pieces)), key=lambda k: -ups[k]):
        piece = pieces[k]
        pstat: dict[str, Any] = {"piece": piece.label or piece.kind, "interval_upper": ups[k]}
        su.stats["pieces"].append(pstat)
        if _skip(r, pstat, ups[k]):
            continue
        if split_dirs and piece.kind == "const" and su.mode != "all-patterns":
            from lipopt.mip.milp_directions import DirectionProblem, solve_directions

            d_out, d_up, r.best_lower, dstat = solve_directions(
                DirectionProblem(r.network, r.q, su.cert_q, su.bounds, su.norm.factor), piece,
                r.options, t_start=r.t_start, best_lower=r.best_lower, candidates=r.candidates,
                max_directions=int(o.max_directions))
            pstat["direction_split"] = dstat
            r.build_time += dstat["direction_build_time"]
            r.extra_outcomes += d_out
            r.extra_uppers += d_up
            outcomes[k] = "split"
            continue
        outcomes[k] = _solve_piece(r, piece, pstat)
    return outcomes


def _take_prior_lower(r: _MilpRun) -> None:
    """The prior's certified lower bound: a candidate (its witness point, in the certification domain)
    and the piece cut-off."""
    from lipopt.certify.candidates import Candidate
    from lipopt.exact.prior import point_in

    p_lo = None if r.prior is None else r.prior.lower_value()
    if p_lo is None:
        return
    w = r.prior.lower.witness or {}
    if w.get("kind") == "point":
        x = point_in(r.network, r.setup.cert_q, np.asarray(w["x"], dtype=np.float64))
        if x is not None:
            r.candidates.append(Candidate(x=x, label=f"prior lower ({r.prior.lower.method})"))
    r.best_lower = max(r.best_lower, p_lo)


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    from lipopt.exact.affine import affine_result

    if (affine := affine_result(network, question, METHOD)) is not None:  # no ReLU: the norm of W, exactly
        return affine
    return solve_mip(network, question, options, relax=False, method=METHOD)
