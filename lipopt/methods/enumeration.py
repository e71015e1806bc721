"""Method "enumeration" (EXACT): the Lipschitz constant of a tiny network by enumerating its linear regions.

formulations.md section 6 (Fact A): L = max ||J_s|| over the activation patterns whose region has interior in
the domain (global, box, l-inf or l2 ball). Regions are found depth-first with a margin LP (HiGHS through
scipy) or, for an l2 ball, a margin SOCP (Clarabel through cvxpy); see :mod:`lipopt.exact.regions`.
The convention is the strict one (full-dimensional regions): at degenerate parameters (formulations.md
section 6, subtlety 6) boundary-only patterns are not counted; ``enumerate_regions(..., strict=False)`` gives
the weak (closed-region) maximum for comparison.

Self-checks: the witness (the margin-problem centre of the maximising region) is in the domain and in the
region's interior, and the float64 Jacobian of the network there equals J_s and has the reported norm.

The mathematics as implemented: ``docs/methods.md#enumeration``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from lipopt.certify.witness import in_domain, point_witness
from lipopt.errors import NotApplicableError
from lipopt.exact.regions import (
    EnumerationOptions,
    EnumerationStoppedError,
    Region,
    _Search,
    check_budget,
    enumerate_regions,
    enumeration_value,
    pattern_budget,
)
from lipopt.network.network import Network
from lipopt.norms import MAX_ENUM_DIM, has_closed_form
from lipopt.options import MethodOptions, RunOptions
from lipopt.result import BoundKind, LipschitzResult, Status
from lipopt.spec import Norm, Question

__all__ = ["EnumerationOptions", "Region", "applicable", "enumerate_regions", "enumeration_value", "run"]

#: default limit on ambiguous ReLUs + log2(max-pool choices)
DEFAULT_MAX_RELUS = 20
#: applicable() refuses above this even before options are known (hopeless sizes)
HARD_MAX_BITS = 64



@dataclass(frozen=True)
class Options(MethodOptions):
    weak: bool = False  # closed regions meeting the domain (S_weak) instead of full-dimensional ones
    tau: float = 1e-9  # interior tolerance on the margin in unit-domain coordinates
    max_relus: float = DEFAULT_MAX_RELUS  # refuse beyond this many ambiguous ReLUs (+ max-pool bits)
    max_regions: int | None = None

def applicable(network: Network, question: Question) -> str | None:
    if question.constant == "nominal":
        return ("enumeration computes pairwise (global or local) constants from region Jacobians; the "
                "nominal-point constant sup |f(x)-f(x0)|/|x-x0| is not a maximum of Jacobian norms")
    if not question.scalar_output and not has_closed_form(question.input_norm, question.output_norm):
        p, q = question.input_norm, question.output_norm
        dim = network.output_size if (p is Norm.L2 and q is Norm.L1) else network.input_size
        if dim > MAX_ENUM_DIM:
            return (f"the {p.label}->{q.label} operator norm needs sign enumeration over {dim} > "
                    f"{MAX_ENUM_DIM} coordinates; use a scalar output or another norm pair")
    try:
        amb, bits, _ = pattern_budget(network, question.bind(network))
    except Exception as exc:  # pragma: no cover - a malformed question is reported by bind elsewhere
        return f"cannot compute interval bounds: {exc}"
    if amb + bits > HARD_MAX_BITS:
        return (f"{amb} ambiguous ReLUs + {bits:.3g} bits of max-pool choices: far beyond region enumeration "
                f"(limit {DEFAULT_MAX_RELUS} by default); use a MIP method")
    return None


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    q = question.bind(network)
    reason = applicable(network, q)
    if reason is not None:
        raise NotApplicableError(reason)
    from lipopt.exact.affine import affine_result

    if (affine := affine_result(network, q, "enumeration")) is not None:  # one region: R^n itself
        return affine
    o = Options.from_run(options, "enumeration")
    opts = EnumerationOptions(strict=not bool(o.weak), tau=float(o.tau), max_bits=float(o.max_relus),
                              time_limit=options.time_limit, max_regions=o.max_regions)
    t0 = time.perf_counter()
    amb, bits, fixed = check_budget(network, q, opts.max_bits)
    srch = _Search(network, q, opts)
    srch.keep_all = False
    srch.stats.ambiguous_relus, srch.stats.maxpool_bits, srch.stats.fixed_relus = amb, bits, fixed
    stopped = None
    try:
        srch.run()
    except EnumerationStoppedError as exc:
        stopped = str(exc)
    best = srch.recentre_best()
    srch.stats.time = time.perf_counter() - t0
    stats = srch.stats.as_dict()
    stats["regions"] = srch.n_leaves
    from lipopt_solvers import Capability, default_solver

    solver = default_solver(Capability.SOCP if srch.dom.kind == "ball" else Capability.LP)
    opt_record = {"strict": opts.strict, "tau": opts.tau, "max_relus": opts.max_bits,
                  "time_limit": opts.time_limit, "max_regions": opts.max_regions}
    if best is None:
        return LipschitzResult("enumeration", BoundKind.EXACT, None, Status.ERROR, solver=solver,
                               stats=stats, options=opt_record,
                               message=stopped or "no region with interior found (numerical trouble)")
    witness = {"x": best.x.tolist(), "margin": best.margin,
               "pattern": [p.astype(int).tolist() for p in best.pattern], "value": best.value}
    convention = ("strict: full-dimensional regions only (S_full, formulations.md Fact A)" if opts.strict
                  else "WEAK: closed regions (S_weak); an over-estimate at degenerate parameters (Fact B)")
    if stopped is not None:
        res = LipschitzResult("enumeration", BoundKind.EXACT, None, Status.TIME_LIMIT, lower=best.value,
                              solver=solver, witness=witness, stats=stats, options=opt_record,
                              message=f"stopped: {stopped}; the best region found gives a lower bound",
                              notes=[convention])
    else:
        kind = BoundKind.EXACT if opts.strict else BoundKind.UPPER
        res = LipschitzResult("enumeration", kind, best.value, Status.SOLVED, solver=solver,
                              witness=witness, stats=stats, options=opt_record, notes=[convention])
        if not opts.strict:
            res.lower = None
    if srch.stats.n_solver_disagree:
        res.notes.append(f"{srch.stats.n_solver_disagree} margin problems where the solver's t and the "
                         "float64 margin of its point disagreed about the interior test "
                         "(decided by the latter)")
    _self_checks(res, network, q, best, opts)
    res.wall_time = time.perf_counter() - t0
    res.solve_time = srch.stats.time
    return res


def _self_checks(res: LipschitzResult, network: Network, q: Question, best: Region,
                 opts: EnumerationOptions) -> None:
    x = best.x
    res.add_check("witness in domain", in_domain(x, q), "")
    if opts.strict:
        res.add_check("witness in region interior", best.margin > opts.tau,
                      f"unit-domain margin {best.margin:.3g} > tau {opts.tau:g}")
    jac = network.jacobian(x)
    scale = max(1.0, float(np.max(np.abs(best.jacobian))))
    same = bool(np.allclose(jac, best.jacobian, rtol=1e-9, atol=1e-11 * scale))
    res.add_check("network Jacobian at witness = J_s", same or not opts.strict,
                  f"max abs diff {float(np.max(np.abs(jac - best.jacobian))):.3g}")
    pw = point_witness(network, x, q)
    ok = abs(pw.value - best.value) <= 1e-9 * max(1.0, best.value)
    res.add_check("norm at witness = value", ok or not opts.strict,
                  f"{pw.value:.12g} vs {best.value:.12g}; relative ReLU margin {pw.margin:.3g}")
