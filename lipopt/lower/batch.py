"""Batched float64 Jacobians and Jacobian norms (numpy, reverse mode over ``network.lower()``).

Conventions match ``Network.jacobian``: ReLU'(0) = 0 (LeakyReLU'(0) = alpha) and max-pool ties go to
the first window entry. For a scalar output c^T f only the row c^T J is propagated. These values are
only *candidates*: a lower bound is certified afterwards at single points (``lipopt.certify.points``).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from lipopt.deadline import Deadline
from lipopt.network.network import Network, stage_forward
from lipopt.network.stages import AffineStage, LeakyReLUStage, MaxPoolStage, ReLUStage, dispatch
from lipopt.norms import operator_norm
from lipopt.spec import Norm, Question

#: floats held by one chunk of backward covectors (B * rows * width)
CHUNK_FLOATS = 20_000_000


def _forward_states(stages, x: np.ndarray) -> list[np.ndarray | None]:
    """Per stage: ReLU masks (B, n), max-pool winners (B, n_out) as flat input indices, or None."""
    return stage_forward(stages, x)[1]


def _back_affine(s: AffineStage, st: None, g: np.ndarray) -> np.ndarray:
    w = s.weight
    if hasattr(w, "toarray"):
        b, r, _ = g.shape
        flat = g.reshape(b * r, -1)
        return np.asarray((w.T @ flat.T).T).reshape(b, r, -1)  # type: ignore[union-attr]
    return g @ w


def _back_activation(s: ReLUStage | LeakyReLUStage, st: np.ndarray, g: np.ndarray) -> np.ndarray:
    if s.alpha == 0.0:
        return g * st[:, None, :]
    return g * np.where(st, 1.0, s.alpha)[:, None, :]


def _back_maxpool(s: MaxPoolStage, st: np.ndarray, g: np.ndarray) -> np.ndarray:
    b, r, _ = g.shape
    n_in = s.in_size
    out = np.zeros((b, n_in, r))
    flat = out.reshape(b * n_in, r)
    rows = (np.arange(b)[:, None] * n_in + st).reshape(-1)
    np.add.at(flat, rows, g.transpose(0, 2, 1).reshape(-1, r))
    return out.transpose(0, 2, 1)


#: stage type -> reverse-mode step (stage, forward state, covectors (B, r, out)) -> (B, r, in)
BACKWARD = {AffineStage: _back_affine, ReLUStage: _back_activation, LeakyReLUStage: _back_activation,
            MaxPoolStage: _back_maxpool}


def _backward(stages, states, g: np.ndarray) -> np.ndarray:
    """g: (B, r, out) covectors at the output; returns (B, r, in)."""
    for s, st in zip(reversed(stages), reversed(states), strict=True):
        g = dispatch(BACKWARD, s, "batched Jacobians")(s, st, g)
    return g


def reverse_jacobian(network: Network, x: np.ndarray) -> np.ndarray:
    """The Jacobian (out, in_flat) at one input by reverse mode over the lowered stages (the conventions
    of ``Network.jacobian``); cheaper than forward mode when there are fewer outputs than inputs."""
    stages = network.lower()
    xb = np.asarray(x, dtype=np.float64).reshape(1, network.input_size)
    states = _forward_states(stages, xb)
    m = network.output_size
    return _backward(stages, states, np.eye(m)[None])[0]


def batch_jacobians(network: Network, x: np.ndarray, question: Question) -> np.ndarray:
    """(B, r, n) Jacobians at the rows of x: r = 1 (the row c^T J) for scalar outputs, else all outputs."""
    x = np.asarray(x, dtype=np.float64).reshape(-1, network.input_size)
    stages = network.lower()
    m = network.output_size
    c = question.output_vector(m)
    seed = np.eye(m) if c is None else c.reshape(1, m)
    widths = [s.shape[0] for s in stages if isinstance(s, AffineStage)] + [network.input_size]
    chunk = max(1, CHUNK_FLOATS // (seed.shape[0] * max(widths)))
    out = []
    for i in range(0, x.shape[0], chunk):
        xb = x[i : i + chunk]
        states = _forward_states(stages, xb)
        g = np.broadcast_to(seed, (xb.shape[0], *seed.shape)).copy()
        out.append(_backward(stages, states, g))
    return np.concatenate(out, axis=0) if out else np.zeros((0, seed.shape[0], network.input_size))


def batch_norms(jacs: np.ndarray, question: Question) -> np.ndarray:
    """The question's norm of each Jacobian (B, r, n) from ``batch_jacobians``."""
    if question.scalar_output:
        return np.linalg.norm(jacs[:, 0, :], ord=question.input_norm.dual.p, axis=1)
    p, q = question.input_norm, question.output_norm
    if p is Norm.L1:
        return np.max(np.linalg.norm(jacs, ord=q.p, axis=1), axis=1)
    if q is Norm.LINF:
        return np.max(np.linalg.norm(jacs, ord=p.dual.p, axis=2), axis=1)
    if p is Norm.L2 and q is Norm.L2:
        return np.linalg.svd(jacs, compute_uv=False)[:, 0] if jacs.size else np.zeros(jacs.shape[0])
    return np.array([operator_norm(j, p, q) for j in jacs])


def batch_jacobian_norms(network: Network, x: np.ndarray, question: Question) -> np.ndarray:
    return batch_norms(batch_jacobians(network, x, question), question)


def evaluate_until(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, deadline: Deadline | None,
                   phase: str, min_rows: int = 1) -> np.ndarray:
    """``fn`` (one value per row, rows independent) on the rows of x, in chunks until ``deadline``: the
    values of the first k rows, k >= min(min_rows, len(x)) (all of them without a limit, in one call).

    Chunks grow with the measured time per row so that the next one fits in what is left; a stop before
    the last row is recorded on the deadline as ``phase``."""
    n = len(x)
    if deadline is None or not deadline.limited or n == 0:
        return fn(x)
    need = min(max(1, min_rows), n)
    out: list[np.ndarray] = []
    done, chunk, per_row = 0, min(n, max(need, 8)), None
    while done < n:
        if done >= need:
            left = deadline.remaining()
            if left <= 0:
                break
            if per_row is not None:
                chunk = min(4 * chunk, int(0.8 * left / max(per_row, 1e-12)))
                if chunk < 1:
                    break
        chunk = min(chunk, n - done)
        t = time.perf_counter()
        out.append(np.asarray(fn(x[done:done + chunk])))
        per_row = (time.perf_counter() - t) / chunk
        done += chunk
    if done < n:
        deadline.stopped(f"{phase} ({done} of {n} points)")
    return np.concatenate(out)
