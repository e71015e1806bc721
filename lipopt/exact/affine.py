"""The Lipschitz constant of a network without ReLU or max-pool stages: an affine map f(x) = W x + b.

Its Jacobian is W everywhere, so every constant a question can ask for (global, local on a box or ball
with interior, nominal-point) is the norm of W the question names: the p->q operator norm for all
outputs, the dual norm of c^T W for a scalar output c^T f (``lipopt.norms.jacobian_norm``: closed forms,
or exact sign-vector enumeration for l-inf->l1, l-inf->l2, l2->l1 up to ``MAX_ENUM_DIM`` coordinates).

The exact methods call :func:`affine_result` first: a MIP or region enumeration of a map without
switches is at best a detour (HiGHS reports an "Empty" model, the MIQCQP has no layer to encode). The
record is EXACT with ``lower = upper = value`` and a witness: the domain centre, where the float64
Jacobian of the network is re-evaluated and must equal W and have the reported norm.

The mathematics as implemented: ``docs/methods.md#affine``.
"""

from __future__ import annotations

import numpy as np

from lipopt.certify.witness import point_witness
from lipopt.errors import NotApplicableError
from lipopt.network.network import AffineStage, Network
from lipopt.norms import jacobian_norm
from lipopt.result import BoundKind, LipschitzResult, StopReason, Verdict
from lipopt.spec import Ball, Box, Question

__all__ = ["affine_matrix", "affine_result"]

#: relative agreement required between the norm of W and the norm at the witness
WITNESS_RTOL = 1e-9


def affine_matrix(network: Network) -> np.ndarray | None:
    """W (out, in_flat) if the network lowers to a single affine stage (no ReLU, no max-pool), else None."""
    stages = network.lower()
    if len(stages) != 1 or not isinstance(stages[0], AffineStage):
        return None
    return np.asarray(stages[0].dense(), dtype=np.float64)


def _centre(network: Network, q: Question) -> np.ndarray:
    dom = q.domain
    if isinstance(dom, Box):
        return np.broadcast_to((dom.lo + dom.hi) / 2, (network.input_size,)).astype(np.float64)
    if isinstance(dom, Ball):
        return np.asarray(dom.center, dtype=np.float64).reshape(-1).copy()
    return np.zeros(network.input_size)


def affine_result(network: Network, question: Question, method: str) -> LipschitzResult | None:
    """The EXACT record of an affine network (None when the network has a ReLU or max-pool stage).

    Raises NotApplicableError when the norm needs a sign enumeration beyond ``MAX_ENUM_DIM``
    coordinates (an NP-hard operator norm of a large matrix)."""
    w = affine_matrix(network)
    if w is None:
        return None
    q = question.bind(network)
    try:
        value = jacobian_norm(w, q)
    except NotApplicableError as exc:
        raise NotApplicableError(f"the network is affine (no ReLU): its constant is a norm of W, but {exc}") \
            from None
    x = _centre(network, q)
    pw = point_witness(network, x, q)
    jac = network.jacobian(x)
    scale = max(1.0, float(np.max(np.abs(w)))) if w.size else 1.0
    res = LipschitzResult(
        method, BoundKind.EXACT, value, lower=value, upper=value, verdict=Verdict.OK,
        stop=StopReason.COMPLETED,
        solver="closed form (numpy)",
        witness={"x": x.tolist(), "value": pw.value, "margin": None},
        stats={"affine": True, "shape": list(w.shape)},
        notes=["the network has no ReLU or max-pool stage: it is affine, f(x) = W x + b, and its Lipschitz "
               f"constant is the {_norm_label(q)} of W (exact, independent of the domain)"],
    )
    res.add_check("witness in domain", pw.in_domain, "the domain centre")
    same = bool(np.allclose(jac, w, rtol=1e-12, atol=1e-13 * scale))
    res.add_check("network Jacobian at witness = W", same,
                  f"max abs diff {float(np.max(np.abs(jac - w))) if w.size else 0.0:.3g}")
    ok = abs(pw.value - value) <= WITNESS_RTOL * max(abs(value), np.finfo(float).tiny)
    res.add_check("norm at witness = value", ok, f"{pw.value:.12g} vs {value:.12g}")
    return res


def _norm_label(q: Question) -> str:
    if q.scalar_output:
        return f"{q.input_norm.dual.label} norm of c^T W (dual of the input norm {q.input_norm.label})"
    return f"{q.input_norm.label}->{q.output_norm.label} operator norm"
