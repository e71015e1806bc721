"""Operator norms ||M||_{p->q} of matrices and norms of Jacobians for a question.

Closed forms: 2->2 (largest singular value), inf->inf (max row l1 sum), 1->1 (max column l1 sum),
1->q (max column q-norm), p->inf (max row dual-norm). inf->1 and inf->2 are NP-hard in general and are
computed exactly by enumerating the sign vectors of the input (small inputs only). 2->1 and 2->inf
follow by duality (||M||_{2->1} = ||M^T||_{inf->2}).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from lipopt.errors import NotApplicableError
from lipopt.spec import Norm, Question

MAX_ENUM_DIM = 20


def has_closed_form(p: Norm, q: Norm) -> bool:
    return p is Norm.L1 or q is Norm.LINF or (p, q) == (Norm.L2, Norm.L2)


def operator_norm(m: np.ndarray, p: Norm, q: Norm, max_enum_dim: int = MAX_ENUM_DIM) -> float:
    """||m||_{p->q} in float64 (exact; sign-vector enumeration for inf->1 / inf->2 / 2->1)."""
    m = np.atleast_2d(np.asarray(m, dtype=np.float64))
    if m.size == 0:
        return 0.0
    if p is Norm.L1:  # max over the vertices +-e_j of the l1 ball
        return float(np.max(np.linalg.norm(m, ord=q.p, axis=0)))
    if q is Norm.LINF:  # max over rows of the dual norm of the row
        return float(np.max(np.linalg.norm(m, ord=p.dual.p, axis=1)))
    if p is Norm.L2 and q is Norm.L2:
        return float(np.linalg.norm(m, ord=2))
    if p is Norm.L2 and q is Norm.L1:  # ||M||_{2->1} = ||M^T||_{inf->2}
        return operator_norm(m.T, Norm.LINF, Norm.L2, max_enum_dim)
    # p = inf, q in {1, 2}: maximise the convex function ||M v||_q over the vertices of the cube
    n = m.shape[1]
    if n > max_enum_dim:
        raise NotApplicableError(
            f"the {p.label}->{q.label} operator norm is NP-hard; exact enumeration is limited to "
            f"{max_enum_dim} inputs, this matrix has {n}"
        )
    best = 0.0
    # v and -v give the same norm: fix the first sign
    for signs in itertools.product((1.0, -1.0), repeat=n - 1):
        v = np.array((1.0, *signs))
        best = max(best, float(np.linalg.norm(m @ v, ord=q.p)))
    return best


def jacobian_norm(jac: np.ndarray, question: Question) -> float:
    """The norm the question asks for, of a Jacobian (out, in): the operator norm p->q for all outputs,
    the dual norm of c^T J for a scalar output."""
    c = question.output_vector(jac.shape[0])
    if c is not None:
        return float(np.linalg.norm(c @ jac, ord=question.input_norm.dual.p))
    return operator_norm(jac, question.input_norm, question.output_norm)


def vector_norm(v: np.ndarray, norm: Norm) -> float:
    return float(np.linalg.norm(np.ravel(v), ord=norm.p))


def output_distance(fx: np.ndarray, fy: np.ndarray, question: Question) -> float:
    """|f(x) - f(y)| measured as the question asks (|c^T (f(x)-f(y))| for scalar outputs)."""
    d = np.ravel(fx) - np.ravel(fy)
    c = question.output_vector(d.size)
    if c is not None:
        return float(abs(c @ d))
    return vector_norm(d, question.output_norm)


def is_finite(v: float) -> bool:
    return v is not None and math.isfinite(v)
