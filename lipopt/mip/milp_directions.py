"""Direction splitting for the MILP (method "milp", ``extra={"direction_split": True}``).

For a fixed output vector c and input norm p in {l-inf, l1}, the constant is a maximum over the vertices
s of the unit ball of p (s in {-1, 1}^n for l-inf, s in {+-e_j} for l1):

    L = max_x ||J(x)^T c||_{p*} = max_s D(s),   D(s) = max_x c^T J(x) s   (closed-region convention),

because ||g||_{p*} = max_{s in ball} s^T g is attained at a vertex. Each D(s) is a MILP without sign or
selector binaries (the directional derivative propagated forwards, ``build_milp(..., gradient="tangent",
direction=s)``): the first layer's switches are linear (t = W_1 s is a constant), so its relaxation is far
tighter than the big-M sign encoding of sum_i |g_i| on nets whose neurons all switch inside the box.

Algorithm: a sound cheap bound U(s) >= D(s) for every s (forward-mode interval arithmetic of the tangent,
:func:`direction_bounds`, vectorised over s); directions in decreasing order of U; a direction with
U(s) <= the certified lower bound is pruned (U(s) is its upper bound); the others are solved with a time
slice (rounds with doubling slices for those still open). Every incumbent is certified as in the plain
MILP (its pattern's region interior: the full norm ||J_s^T c||, never the MIP value). The upper bound is
the max over directions of min(dual bound, U(s)); it is sound for every s, solved or not.

Used when 2^n (l-inf) is at most ``max_directions`` (default 2^16).

The mathematics as implemented: ``docs/methods.md#milp-directions``.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lipopt.bounds.interval import activation_slope_interval, maxpool_can_win
from lipopt.bounds.types import ForwardBounds
from lipopt.network.stages import AffineStage, is_activation
from lipopt.spec import Norm

_RTOL = 1e-12


def direction_set(n: int, input_norm: Norm) -> np.ndarray:
    """The vertices of the unit ball of the input norm, one per row."""
    if input_norm is Norm.LINF:
        return np.array(list(itertools.product((-1.0, 1.0), repeat=n)), dtype=np.float64).reshape(-1, n)
    if input_norm is Norm.L1:
        eye = np.eye(n)
        return np.vstack([eye, -eye])
    raise ValueError(f"direction splitting handles input norms l-inf and l1, not {input_norm.label}")


def direction_bounds(fb: ForwardBounds, c: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Sound upper bounds U(s) >= max_x c^T J(x) s for each row s of ``dirs`` (k, n): interval arithmetic
    of the forward tangent (an active ReLU passes it, an inactive one gives 0, an ambiguous one gives
    [min(lo, 0), max(hi, 0)]; a LeakyReLU scales by its slope interval, alpha or [alpha, 1]; a max-pool
    window with several possible winners the hull of theirs and 0)."""
    lo = np.asarray(dirs, dtype=np.float64).T.copy()  # (size, k)
    hi = lo.copy()
    for s, stage in enumerate(fb.stages):
        if isinstance(stage, AffineStage):
            w = stage.weight
            wd = w.toarray() if hasattr(w, "toarray") else np.asarray(w)
            if s == len(fb.stages) - 1:
                wd = np.asarray(c, dtype=np.float64).reshape(1, -1) @ wd
            mid, rad = (lo + hi) / 2, (hi - lo) / 2
            m, r = wd @ mid, np.abs(wd) @ rad
            pad = _RTOL * (np.abs(wd) @ np.maximum(np.abs(lo), np.abs(hi))) + 1e-300
            lo, hi = m - r - pad, m + r + pad
        elif is_activation(stage):  # slope in [s_lo, s_hi] (1, alpha, or [alpha, 1]) times [lo, hi]
            s_lo, s_hi = (v[:, None] for v in activation_slope_interval(fb, s))
            lo, hi = np.minimum(s_lo * lo, s_hi * lo), np.maximum(s_lo * hi, s_hi * hi)
        else:
            plo, phi = fb.pre_activation(s)
            can = maxpool_can_win(stage, plo, phi)
            win = np.maximum(stage.windows, 0)
            glo = np.where(can[:, :, None], lo[win], np.inf).min(axis=1)
            ghi = np.where(can[:, :, None], hi[win], -np.inf).max(axis=1)
            single = (can.sum(axis=1) == 1)[:, None]
            lo = np.where(single, glo, np.minimum(glo, 0.0))
            hi = np.where(single, ghi, np.maximum(ghi, 0.0))
    return hi.reshape(-1)


@dataclass(frozen=True)
class DirectionProblem:
    """What the direction splitting of a piece works on: the network and question (incumbents are
    certified on ``network`` with ``cert_q``, in its own units) and the bounds ``fb`` the models are built
    from. ``fb`` may belong to a normalised copy of ``network`` (:mod:`lipopt.formulations.scaling`) with
    f = scale * f_n: the models' bounds are then multiplied by ``scale``."""

    network: Any
    question: Any
    cert_q: Any
    fb: ForwardBounds
    scale: float = 1.0


def solve_directions(problem: DirectionProblem, piece: Any, options: Any, *, t_start: float,
                     best_lower: float, candidates: list, max_directions: int = 1 << 16,
                     min_slice: float = 0.5) -> tuple[list[Any], list[float], float, dict[str, Any]]:
    """Solve one "const" piece by direction splitting. Returns (outcomes, fallback uppers, best certified
    lower bound, stats); the outcomes/fallbacks are per solved direction plus one entry (outcome None)
    bounding every direction not solved by its U(s)."""
    from lipopt.certify.candidates import certify_candidates
    from lipopt.formulations.milp import build_milp
    from lipopt.formulations.scaling import scaled_outcome
    from lipopt.methods.milp import solve_model

    network, question, cert_q, fb, scale = (problem.network, problem.question, problem.cert_q, problem.fb,
                                            problem.scale)
    n = network.input_size
    count = 2 ** n if question.input_norm is Norm.LINF else 2 * n
    if count > max_directions:
        raise ValueError(f"{count} directions exceed max_directions={max_directions}")
    dirs = direction_set(n, question.input_norm)
    ub = direction_bounds(fb, piece.c, dirs) * float(scale)
    solver = options.solver or "highs"
    outcomes: list[Any] = []
    uppers: list[float] = []
    open_idx = [int(k) for k in np.argsort(-ub) if ub[k] > best_lower]
    cur_ub = ub.copy()
    stats: dict[str, Any] = {"directions": int(count), "above_lower_at_start": len(open_idx), "solved": 0,
                             "milps": 0, "rounds": 0, "direction_build_time": 0.0}
    factor = 1.0
    last: dict[int, Any] = {}
    while open_idx:
        stats["rounds"] += 1
        still_open = []
        for pos, k in enumerate(open_idx):
            if cur_ub[k] <= best_lower:
                continue
            remaining = None
            if options.time_limit is not None:
                remaining = options.time_limit - (time.perf_counter() - t_start)
                if remaining <= 0.05:
                    still_open.extend(open_idx[pos:])
                    break
                left = sum(1 for j in open_idx[pos:] if cur_ub[j] > best_lower)
                remaining = min(remaining, max(min_slice, factor * remaining / max(left, 1)))
            mm = build_milp(fb, question.input_norm, piece, gradient="tangent", direction=dirs[k])
            stats["direction_build_time"] += mm.stats["build_time"]
            out = scaled_outcome(solve_model(mm.model, solver, options, remaining, int(mm.stats["binaries"])),
                                 scale)
            stats["milps"] += 1
            last[k] = out
            if out.has_incumbent:
                cand = mm.candidate(out.objective, f"direction {k}")
                candidates.append(cand)
                rep = certify_candidates(network, cert_q, [cand], seed=options.seed)
                if rep.best is not None:
                    best_lower = max(best_lower, rep.best.value)
            if out.bound is not None and math.isfinite(out.bound):
                cur_ub[k] = min(cur_ub[k], float(out.bound))
            if out.termination.value == "optimal":
                outcomes.append(out)
                uppers.append(float(ub[k]))
                stats["solved"] += 1
            elif cur_ub[k] > best_lower:
                still_open.append(k)
        open_idx = sorted((k for k in still_open if cur_ub[k] > best_lower), key=lambda j: -cur_ub[j])
        if options.time_limit is not None and options.time_limit - (time.perf_counter() - t_start) <= 0.05:
            break
        factor *= 2.0
    # directions still open report their last (time-limited) solve; one aggregate entry bounds every
    # direction by min(U(s), its best dual bound), which is sound whether it was solved or pruned
    for k in open_idx:
        if k in last:
            outcomes.append(last[k])
            uppers.append(float(ub[k]))
    outcomes.append(None)
    uppers.append(float(np.max(cur_ub)))
    stats["open_at_end"] = len(open_idx)
    return outcomes, uppers, best_lower, stats
