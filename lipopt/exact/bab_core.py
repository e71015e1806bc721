"""Shared pieces of the branch and bound (:mod:`lipopt.exact.bab`): the network as dense layers, the
norms of non-negative matrices, interval arithmetic, the search node and the step throttle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lipopt.bounds.interval import affine_interval_arrays, widen
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, LeakyReLUStage, MaxPoolStage, ReLUStage, dispatch
from lipopt.spec import Norm, Question

#: relative widening of every interval bound (float64 rounding of the products)
BOUND_RTOL = 1e-10
#: an LP margin below -PRUNE_TOL proves a node infeasible
PRUNE_TOL = 1e-7
#: the forward directional bound keeps (first width x directions) matrices; beyond this many entries it is off
MAX_TANGENT_ENTRIES = 1 << 23
#: a pre-activation row counts as zero below this fraction of the terms that built it (as enumeration)
ZERO_RTOL = 1e-12

# ------------------------------------------------------------------------------------------------ network


@dataclass
class Layers:
    """The network as hidden layers z_k = W_k h_{k-1} + b_k, h_k = max(z_k, alpha_k z_k), and the output
    affine map W_out h_{K-1} + b_out (dense float64)."""

    w: list[np.ndarray]
    b: list[np.ndarray]
    alpha: list[float]
    w_out: np.ndarray
    b_out: np.ndarray

    @property
    def sizes(self) -> list[int]:
        return [int(w.shape[0]) for w in self.w]


def _add_affine(acc: dict[str, Any], stage: AffineStage) -> None:
    w, b = np.asarray(stage.dense(), dtype=np.float64), np.asarray(stage.bias, dtype=np.float64)
    if acc["pending"] is None:
        acc["pending"] = (w, b)
    else:  # two affine stages in a row (lower() merges them; kept safe)
        w0, b0 = acc["pending"]
        acc["pending"] = (w @ w0, w @ b0 + b)


def _add_activation(acc: dict[str, Any], stage: ReLUStage | LeakyReLUStage) -> None:
    if acc["pending"] is None:  # two activations in a row: an identity map between them
        acc["pending"] = (np.eye(stage.size), np.zeros(stage.size))
    w, b = acc["pending"]
    acc["w"].append(w)
    acc["b"].append(b)
    acc["alpha"].append(float(stage.alpha))
    acc["pending"] = None


#: per-stage handlers of the lowering (ReLU and LeakyReLU share one, through stage.alpha)
_STAGE_TABLE = {AffineStage: _add_affine, ReLUStage: _add_activation, LeakyReLUStage: _add_activation}


def bab_layers(network: Network) -> Layers:
    """The lowered network as dense layers; max-pool stages are refused (UnsupportedLayerError)."""
    acc: dict[str, Any] = {"w": [], "b": [], "alpha": [], "pending": None}
    for stage in network.lower():
        dispatch(_STAGE_TABLE, stage, "the bab method")(acc, stage)
    if acc["pending"] is None:
        n = acc["w"][-1].shape[0] if acc["w"] else network.input_size
        acc["pending"] = (np.eye(n), np.zeros(n))
    w_out, b_out = acc["pending"]
    return Layers(acc["w"], acc["b"], acc["alpha"], w_out, b_out)


def has_maxpool(network: Network) -> bool:
    return any(isinstance(s, MaxPoolStage) for s in network.lower())


# ------------------------------------------------------------------------------------------------ norms


def nonneg_norm(m: np.ndarray, question: Question) -> float:
    """The question's norm of a non-negative matrix M (rows: outputs, or one row c^T J for a scalar
    output). Every norm here is monotone on non-negative matrices, so it bounds ||J|| for all |J| <= M;
    on M >= 0 the NP-hard pairs have closed forms (the maximising sign vector is all ones)."""
    p, q = question.input_norm, question.output_norm
    if question.scalar_output:
        return float(np.linalg.norm(m[0], ord=p.dual.p))
    if p is Norm.L1:
        return float(np.max(np.linalg.norm(m, ord=q.p, axis=0)))
    if q is Norm.LINF:
        return float(np.max(np.linalg.norm(m, ord=p.dual.p, axis=1)))
    if p is Norm.L2 and q is Norm.L2:
        return float(np.linalg.norm(m, ord=2))
    if p is Norm.LINF:  # inf -> 1 or inf -> 2: v = 1
        return float(np.linalg.norm(m.sum(axis=1), ord=q.p))
    # 2 -> 1 = ||M^T||_{inf->2}
    return float(np.linalg.norm(m.sum(axis=0), ord=2))


def _act(z: np.ndarray, alpha: float) -> np.ndarray:
    return np.maximum(z, 0.0) if alpha == 0.0 else np.maximum(z, alpha * z)


def _widen(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return widen(lo, hi, BOUND_RTOL)


def _affine_interval(w: np.ndarray, w_abs: np.ndarray, b: np.ndarray, lo: np.ndarray,
                     hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return affine_interval_arrays(w, w_abs, b, lo, hi, BOUND_RTOL)


# ------------------------------------------------------------------------------------------------ search


@dataclass
class _Node:
    states: list[np.ndarray]  # int8 per hidden layer: +1 fixed active, -1 fixed inactive, 0 free
    upper: float
    point: np.ndarray | None  # a true point of the node (fixed signs strictly satisfied), if known
    depth: int
    # filled by _bound
    eff: list[np.ndarray] | None = None  # effective states (fixed or stable; 0 = free ambiguous)
    zb: list[tuple[np.ndarray, np.ndarray]] | None = None
    scores: list[np.ndarray] | None = None
    back: list[tuple[np.ndarray, np.ndarray]] | None = None  # backward intervals before each slope
    fwd: dict[str, Any] | None = None  # the forward bound's maximising direction (see _forward_bound)
    fcache: tuple[np.ndarray, ...] | None = None  # slopes and per-direction bounds (incremental update)
    live: np.ndarray | None = None  # the directions still above the lower bound (None: all)
    row: int | None = None  # the output row the node bounds (joint row search), else None


class _Throttle:
    """Runs an optional step (an LP that may prune, a completion that may raise the lower side) always
    for the first ``warm`` tries, then only while it succeeds at least ``rate`` of the time, and every
    ``every``-th time otherwise (so the rate keeps being measured). Skipping a step is always sound."""

    def __init__(self, warm: int = 30, rate: float = 0.05, every: int = 16) -> None:
        self.warm, self.rate, self.every = warm, rate, every
        self.tries = self.hits = self.asked = 0

    def go(self) -> bool:
        self.asked += 1
        if self.tries < self.warm or self.hits >= self.rate * self.tries:
            return True
        return self.asked % self.every == 0

    def record(self, hit: bool) -> None:
        self.tries += 1
        self.hits += int(bool(hit))
