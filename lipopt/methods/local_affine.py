"""Method "local-affine": the Avant & Morgansen local bound (UPPER) on the l2 nominal-point constant.

Question: ``Question(L2, L2, domain=Ball(x0, eps, L2), nominal=True)`` (any scalar output c^T f is also
fine). The value bounds sup_{0 < |x-x0|_2 <= eps} |f(x)-f(x0)| / |x-x0|_2 — the nominal-point constant,
NOT the pairwise local constant. The global product bound of the same blocks is reported in the stats.
Options (``RunOptions.extra``): ``spectral`` (a SpectralOptions), ``restrict_maxpool`` (bool),
``cholesky_limit`` (int: masked layers up to this smaller side get the tight certified norm, larger ones a
looser sound bound; default SpectralOptions' 6000, ``-o cholesky_limit=30000`` makes the CIFAR-10 net's
layers all tight, up to 1.55x tighter at about 70x the time, docs/methods.md#spectral).

The mathematics as implemented: ``docs/methods.md#local-affine``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lipopt.errors import InvalidQuestionError
from lipopt.network.network import Network
from lipopt.options import MethodOptions, RunOptions
from lipopt.result import BoundKind, LipschitzResult, Status
from lipopt.spec import Ball, Norm, Question

SEMANTICS = ("nominal-point constant: bounds |f(x)-f(x0)|/|x-x0| over the l2 ball around x0, "
             "not the pairwise local constant")


@dataclass(frozen=True)
class Options(MethodOptions):
    spectral: Any = None  # a lipopt.analytic.spectral.SpectralOptions (default: certified, seeded)
    restrict_maxpool: bool = True
    cholesky_limit: int | None = None  # overrides spectral.cholesky_limit (a positive integer)


def applicable(network: Network, question: Question) -> str | None:
    dom = question.domain
    if not isinstance(dom, Ball):
        return ("local-affine bounds the nominal-point constant on an l2 ball around x0; "
                f"this question's domain is {dom.describe()}")
    if dom.norm is not Norm.L2 or question.input_norm is not Norm.L2:
        return "local-affine is an l2 bound: it needs an l2 ball and l2 input norm"
    if not question.scalar_output and question.output_norm is not Norm.L2:
        return "local-affine bounds the l2 output norm (or a scalar output c^T f)"
    if not question.nominal:
        return ("local-affine bounds the nominal-point constant (Question(..., nominal=True)), "
                "not the pairwise local constant asked here")
    return None


def _nominal_lower(network: Network, question: Question, x0: np.ndarray, eps: float,
                   c: np.ndarray | None) -> float | None:
    """A certified lower bound on the nominal constant: |f(x)-f(x0)|/|x-x0| at points of the ball along
    the top singular direction of J(x0) (both signs, a few step sizes). Small inputs only."""
    if network.input_size > 4096:
        return None
    jac = network.jacobian(x0)
    if c is not None:
        jac = c.reshape(1, -1) @ jac
    try:
        _, _, vt = np.linalg.svd(jac, full_matrices=False)
    except np.linalg.LinAlgError:
        return None
    v = vt[0]
    from lipopt.certify.witness import certified_pair_ratio

    best = 0.0
    for t in (eps, eps / 2, eps / 10, eps * 1e-3, eps * 1e-6):
        for sgn in (1.0, -1.0):
            x = x0 + sgn * t * v
            dx = float(np.linalg.norm(x - x0))
            if dx == 0 or dx > eps:
                continue
            best = max(best, certified_pair_ratio(network, x, x0, question))
    return best


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    from lipopt.analytic._threads import limit_threads

    with limit_threads(options.threads):
        return _run(network, question, options)


def with_cholesky_limit(spec: Any, limit: Any, where: str) -> Any:
    """``spec`` (a SpectralOptions) with ``cholesky_limit`` replaced; a clear error for a bad value."""
    from dataclasses import replace

    if isinstance(limit, bool) or not isinstance(limit, int | float) or limit != int(limit) or limit < 1:
        raise InvalidQuestionError(f"{where}: a positive integer (the largest smaller side of a masked layer "
                                   f"given the tight certified norm; default 6000), got {limit!r}")
    return replace(spec, cholesky_limit=int(limit))


def _run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    from lipopt.analytic.local_bound import LocalBoundComputer, LocalOptions
    from lipopt.analytic.spectral import SpectralOptions

    t0 = time.perf_counter()
    dom = question.domain
    assert isinstance(dom, Ball)
    x0, eps = np.asarray(dom.center, dtype=np.float64), float(dom.radius)
    c = question.output_vector(network.output_size)
    o = Options.from_run(options, "local-affine")
    spec = o.spectral or SpectralOptions(seed=options.seed)
    if o.cholesky_limit is not None:
        spec = with_cholesky_limit(spec, o.cholesky_limit, "-o cholesky_limit")
    lo = LocalOptions(device=options.device, spectral=spec, restrict_maxpool=bool(o.restrict_maxpool))
    comp = LocalBoundComputer(network, x0, c, lo)
    t_build = time.perf_counter() - t0
    lb = comp.bound(eps)
    solve = time.perf_counter() - t0 - t_build
    res = LipschitzResult("local-affine", BoundKind.UPPER, lb.value, Status.SOLVED, build_time=t_build,
                          solve_time=solve, options={"device": options.device})
    res.stats = {"global_bound": lb.global_bound, "estimate_power_iteration": lb.estimate,
                 "layers": [b.to_dict() for b in lb.blocks], "all_layers_exact": lb.all_exact,
                 "eps": eps, "device": str(comp.device)}
    res.notes.append(SEMANTICS)
    res.notes.append(f"global product bound of the same layers: {lb.global_bound:.9g} (stats.global_bound)")
    res.notes.extend(lb.notes)
    if not lb.all_exact:
        loose = [f"block {b.index} ({b.method})" for b in lb.blocks if not b.exact]
        res.notes.append("per-layer spectral norms bounded rigorously but not exactly for: "
                         + ", ".join(loose)
                         + "; stats.estimate_power_iteration is the paper-style (uncertified) value")
    if comp.device_warning:
        res.notes.append(comp.device_warning)
    # self-checks
    f_ir = network.forward(x0)
    err = float(np.max(np.abs(f_ir - comp.nominal_output))) if c is None else abs(
        float(c @ f_ir) - float(comp.nominal_output[0]))
    scale = max(1.0, float(np.max(np.abs(f_ir))))
    res.add_check("nominal torch pass matches the IR", err <= 1e-9 * scale, f"max abs diff {err:.3g}")
    res.add_check("bound finite", math.isfinite(lb.value), f"{lb.value!r}")
    low = _nominal_lower(network, question, x0, eps, c)
    if low is not None:
        res.lower = low
        res.witness = {"kind": "nominal pair along the top singular direction of J(x0)", "ratio": low}
    return res
