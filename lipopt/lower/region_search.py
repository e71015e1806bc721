"""Certified lower bounds from sampled points and from hill climbing over neighbouring linear regions:
the warm start of the exact methods (used by ``miqcqp``; no registry here).

* :func:`warm_start` - the best certified Jacobian norm over sampled points of the domain (a LOWER bound,
  each candidate re-evaluated by :func:`lipopt.certify.witness.point_witness`), and the best samples of
  distinct values as starts.
* :func:`local_search` - from the region of a point, flip one neuron at a time, keep a flip when the
  region's Jacobian norm grows and the new region has interior in the domain (margin LP and float64
  re-evaluation, :func:`lipopt.certify.regions.certify_pattern`).
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from lipopt.network.network import Network
from lipopt.spec import Question


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
