"""Method "bab" (EXACT): branch and bound over activation patterns on the Jacobian (docs/bab.md).

The algorithm is :mod:`lipopt.exact.bab`: nodes are partial activation patterns, bounded by interval
propagation of the backward pass (fixed neurons with their slope, free unstable ones with a slope in
[alpha, 1]) under forward bounds re-tightened to the node; infeasible patterns are pruned by an LP
through the solver layer; complete patterns (leaves) count iff their region has interior in the domain,
and give exact values and float64-certified witnesses (the LOWER side). The bracket is certified at any
time; on a time limit or Ctrl-C the record is that bracket (stop TIME_LIMIT / INTERRUPTED), EXACT only
when it is closed within ``RunOptions.rel_gap``.

Questions: every pairwise (global / local) question on a network of affine and ReLU / LeakyReLU stages:
input and output norms l1, l2, l-inf, all outputs or a scalar output, domains box, l-inf or l2 ball,
global (bias-free: the box [-1, 1]^n, formulations.md Fact C; with biases the interval bounds are
infinite, the search branches on every neuron and prunes by LP feasibility on R^n only). Refused:
max-pooling, the nominal-point constant, and operator norms that need sign enumeration beyond
``lipopt.norms.MAX_ENUM_DIM`` coordinates (the exact value of a leaf is that norm).

Options (``RunOptions.extra``, top level or under "bab"): max_nodes, lp_prune, n_samples, root_bounds
("crown" | "interval"), branching ("influence" | "layer"), tau (leaf interior tolerance), max_directions
(forward directional bound up to this many input-ball vertices), climb_time, climb_starts, node_crown,
prior_bounds
(True: first the cheap methods' certified bounds, :mod:`lipopt.exact.prior`; the lower one's witness is
offered to the lower side, the search stops once its lower bound meets the upper one, and the reported
bracket is [max(own, prior lower), min(own, prior upper)] with ``stats["bracket_sources"]``), prior_time
(0.1: their time box as a fraction of the time limit, at most 10 s).
Stats: nodes, leaves (full-dimensional, empty), LP calls, pruned nodes by reason, root bound,
``history``: the anytime bracket as [seconds, lower, upper] rows.

The mathematics as implemented: ``docs/methods.md#bab``.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lipopt.errors import InvalidOptionsError, NotApplicableError
from lipopt.network.network import Network
from lipopt.options import MethodOptions, RunOptions
from lipopt.result import BoundKind, LipschitzResult, StopReason
from lipopt.spec import Ball, Norm, Question

METHOD = "bab"
#: history rows kept in the record (thinned evenly beyond this)
MAX_HISTORY = 500


@dataclass(frozen=True)
class Options(MethodOptions):
    max_nodes: int | None = None  # stop after this many nodes (the bracket reached is returned)
    lp_prune: bool = True  # prune nodes whose pattern the relaxed LP proves infeasible
    n_samples: int = 2000  # seeded domain samples; the best certified one is the first lower bound
    root_bounds: str = "crown"  # "crown" (ReLU nets, bounded domain) or "interval"
    branching: str = "influence"  # "influence" (largest effect on the bound) or "layer" (first free)
    tau: float = 1e-9  # interior tolerance of the leaf margin LP (unit-domain coordinates)
    max_directions: int = 1 << 15  # forward bound over the input-ball vertices up to this many (l-inf / l1)
    climb_time: float = 3.0  # hill climbing over regions from the best samples, s (<= 10 % of the limit)
    climb_starts: int = 32  # ... from this many samples of distinct regions, best first
    node_crown: bool = True  # CROWN bounds of the deeper layers' pre-activations in every node
    #: the cheap methods' certified bounds (lipopt.exact.prior): a start, a stop and the bracket's cap
    prior_bounds: bool = True
    prior_time: float = 0.1  # their time box: this fraction of the time limit (at most 10 s)

    def __post_init__(self) -> None:
        bad = []
        if not isinstance(self.prior_bounds, bool):
            bad.append(f"prior_bounds must be True or False, got {self.prior_bounds!r}")
        if (not isinstance(self.prior_time, int | float) or isinstance(self.prior_time, bool)
                or not 0 <= float(self.prior_time) <= 1):
            bad.append(f"prior_time must be a number in [0, 1], got {self.prior_time!r}")
        if self.max_nodes is not None and (not isinstance(self.max_nodes, int) or self.max_nodes < 1):
            bad.append(f"max_nodes must be a positive integer or None, got {self.max_nodes!r}")
        if not isinstance(self.lp_prune, bool):
            bad.append(f"lp_prune must be True or False, got {self.lp_prune!r}")
        if not isinstance(self.n_samples, int) or isinstance(self.n_samples, bool) or self.n_samples < 0:
            bad.append(f"n_samples must be an integer >= 0, got {self.n_samples!r}")
        if self.root_bounds not in ("crown", "interval"):
            bad.append(f"root_bounds must be 'crown' or 'interval', got {self.root_bounds!r}")
        if self.branching not in ("influence", "layer"):
            bad.append(f"branching must be 'influence' or 'layer', got {self.branching!r}")
        if not isinstance(self.tau, int | float) or not (0 <= float(self.tau) < 1):
            bad.append(f"tau must be a number in [0, 1), got {self.tau!r}")
        if not isinstance(self.max_directions, int) or self.max_directions < 0:
            bad.append(f"max_directions must be an integer >= 0, got {self.max_directions!r}")
        if not isinstance(self.climb_time, int | float) or not float(self.climb_time) >= 0:
            bad.append(f"climb_time must be a number >= 0, got {self.climb_time!r}")
        cs = self.climb_starts
        if isinstance(cs, bool) or not isinstance(cs, int) or cs < 0:
            bad.append(f"climb_starts must be an integer >= 0, got {self.climb_starts!r}")
        if not isinstance(self.node_crown, bool):
            bad.append(f"node_crown must be True or False, got {self.node_crown!r}")
        if bad:
            raise InvalidOptionsError(f"bad option(s) for method {METHOD!r}: " + "; ".join(bad))


def applicable(network: Network, question: Question) -> str | None:
    from lipopt.exact.bab import has_maxpool
    from lipopt.norms import MAX_ENUM_DIM, has_closed_form

    if question.constant == "nominal":
        return ("bab computes pairwise (global or local) constants as a maximum of region Jacobian norms; "
                "the nominal-point constant is not one")
    if has_maxpool(network):
        return ("bab branches on (leaky) ReLU slopes only; the network has max-pooling (use enumeration "
                "or milp)")
    if isinstance(question.domain, Ball) and question.domain.norm not in (Norm.L2, Norm.LINF):
        return f"bab handles l2 and l-inf balls, not an {question.domain.norm.label} ball"
    if not question.scalar_output and not has_closed_form(question.input_norm, question.output_norm):
        p, q = question.input_norm, question.output_norm
        dim = network.output_size if (p is Norm.L2 and q is Norm.L1) else network.input_size
        if dim > MAX_ENUM_DIM:
            return (f"the {p.label}->{q.label} operator norm of a leaf needs sign enumeration over {dim} > "
                    f"{MAX_ENUM_DIM} coordinates; use a scalar output or another norm pair")
    return None


_STOPS = {"completed": StopReason.COMPLETED, "gap": StopReason.COMPLETED, "time_limit": StopReason.TIME_LIMIT,
          "interrupted": StopReason.INTERRUPTED, "node_limit": StopReason.TIME_LIMIT}


def _thin(history: list[tuple[float, Any, Any]]) -> list[list[Any]]:
    rows = [[float(t), lo, up] for t, lo, up in history]
    if len(rows) <= MAX_HISTORY:
        return rows
    step = len(rows) / (MAX_HISTORY - 1)
    keep = sorted({int(i * step) for i in range(MAX_HISTORY - 1)} | {len(rows) - 1})
    return [rows[i] for i in keep]


def _reporter(options: RunOptions) -> Any:
    """Plain progress lines of the certified bracket every 5 s (``RunOptions.progress``), else None."""
    if not options.progress:
        return None
    from lipopt.progress import solve_reporter

    return solve_reporter("bab", incumbent_kind="LOWER")


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    from lipopt.exact.affine import affine_result

    q = question.bind(network)
    reason = applicable(network, q)
    if reason is not None:
        raise NotApplicableError(reason)
    if (affine := affine_result(network, q, METHOD)) is not None:  # no ReLU: the norm of W, exactly
        return affine
    o = Options.from_run(options, METHOD)
    from lipopt.exact.bab import BabSettings, run_bab

    t0 = time.perf_counter()
    prior = None
    time_limit = options.time_limit
    if o.prior_bounds:  # the cheap methods' certified bounds, in a small time box
        from lipopt.exact.prior import LOWER_METHODS, gather

        prior = gather(network, q, options, float(o.prior_time),
                       None if time_limit is None else t0 + float(time_limit),
                       lowers=tuple(m for m in LOWER_METHODS if m != "region-climb"))
        if time_limit is not None:
            time_limit = max(0.0, float(time_limit) - prior.time)
    st = BabSettings(time_limit=time_limit, rel_gap=float(options.rel_gap), tau=float(o.tau),
                     max_nodes=o.max_nodes, lp_prune=o.lp_prune, n_samples=o.n_samples, seed=options.seed,
                     root_bounds=o.root_bounds, branching=o.branching, solver=options.solver,
                     max_directions=o.max_directions, climb_time=float(o.climb_time),
                     climb_starts=o.climb_starts, node_crown=o.node_crown,
                     progress=_reporter(options),
                     upper_cap=None if prior is None else prior.upper_value(),
                     starts=() if prior is None else tuple(prior.start_points()))
    out = run_bab(network, q, st)
    stats = dict(out.stats)
    stats["history"] = _thin(out.history)
    notes = list(out.notes)
    if out.stats.get("mode") == "global":
        notes.append("global constant with biases: the interval bounds are infinite, so every neuron is "
                     "branched on and patterns are pruned by LP feasibility on R^n only")
    message = ""
    if out.stop == "node_limit":
        message = f"stopped at the node limit ({o.max_nodes}); the bracket reached is certified"
    elif out.stop in ("time_limit", "interrupted"):
        message = f"stopped ({out.stop.replace('_', ' ')}); the bracket reached is certified"
    from lipopt_solvers import Capability, default_solver

    solver = options.solver or default_solver(Capability.LP)
    res = LipschitzResult.from_bracket(
        METHOD, BoundKind.EXACT, out.lower, out.upper, stop=_STOPS[out.stop], rel_tol=float(options.rel_gap),
        solver=f"bab + {solver} (LP)", witness=out.witness, stats=stats, notes=notes, message=message,
        options={"max_nodes": o.max_nodes, "lp_prune": o.lp_prune, "n_samples": o.n_samples,
                 "root_bounds": o.root_bounds, "branching": o.branching, "tau": o.tau,
                 "max_directions": o.max_directions, "climb_time": o.climb_time,
                 "climb_starts": o.climb_starts, "node_crown": o.node_crown,
                 "prior_bounds": o.prior_bounds, "prior_time": o.prior_time,
                 "time_limit": options.time_limit, "rel_gap": options.rel_gap})
    _self_checks(res, network, out)
    res.solve_time = float(out.stats.get("time", 0.0))
    res.wall_time = time.perf_counter() - t0
    from lipopt.exact.prior import merge

    if prior is not None:
        off = prior.time  # the search's history clock starts after the prior
        res.stats["history"] = [[t + off, lo, up] for t, lo, up in res.stats["history"]]
    return merge(res, prior, METHOD)  # without a prior: only stats["bracket_sources"] / ["own_bracket"]


def _self_checks(res: LipschitzResult, network: Network, out: Any) -> None:
    from lipopt.certify.witness import point_witness

    if out.witness is not None and out.cert_question is not None:
        x = np.asarray(out.witness["x"], dtype=np.float64)
        pw = point_witness(network, x, out.cert_question)
        res.add_check("witness in domain", pw.in_domain, "")
        res.add_check("witness in a region interior", pw.certified, f"relative ReLU margin {pw.margin:.3g}")
        lo = out.lower if out.lower is not None else float("nan")
        same = abs(pw.value - lo) <= 1e-12 * max(1.0, abs(lo))
        res.add_check("norm at witness = lower bound", same, f"{pw.value:.12g} vs {lo:.12g}")
    elif out.lower is not None:
        res.add_check("lower bound has a witness", False, "a lower bound without a witness point")
    lows = [h[1] for h in out.history if h[1] is not None]
    ups = [h[2] for h in out.history if h[2] is not None]
    mono = (all(b >= a for a, b in itertools.pairwise(lows))
            and all(b <= a * (1 + 1e-12) for a, b in itertools.pairwise(ups)))
    res.add_check("anytime bracket monotone", mono, f"{len(out.history)} history rows")
