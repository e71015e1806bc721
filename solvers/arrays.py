"""A solver-neutral model in arrays: what every direct backend receives.

    max/min  c @ x + q(x) + offset
    s.t.     row_lower <= A @ x <= row_upper
             quad_lower[k] <= a_k @ x + x' Q_k x <= quad_upper[k]      (quadratic rows)
             col_lower <= x <= col_upper,   x[j] integer where integrality[j]

Infinite bounds are ``numpy.inf``. Quadratic terms are stored as coordinate triples (i, j, v) meaning
``v * x[i] * x[j]`` (each pair once, i <= j not required). ``ArrayModel`` is picklable, so an isolated
solve ships it to a child process as it is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["ArrayModel", "QuadTerms"]


@dataclass
class QuadTerms:
    """Linear part (idx, val) and quadratic part (qi, qj, qv) of one expression."""

    idx: np.ndarray
    val: np.ndarray
    qi: np.ndarray
    qj: np.ndarray
    qv: np.ndarray

    @classmethod
    def empty(cls) -> QuadTerms:
        e = np.zeros(0, dtype=np.int64)
        return cls(e, np.zeros(0), e, e, np.zeros(0))

    def evaluate(self, x: np.ndarray) -> float:
        return float(self.val @ x[self.idx] + np.sum(self.qv * x[self.qi] * x[self.qj]))


@dataclass
class ArrayModel:
    sense: str  # "max" | "min"
    c: np.ndarray
    offset: float
    A: object  # scipy.sparse.csr_array (n_rows x n_cols)
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integrality: np.ndarray  # bool per column
    quad_rows: list[QuadTerms] = field(default_factory=list)
    quad_lower: np.ndarray = field(default_factory=lambda: np.zeros(0))
    quad_upper: np.ndarray = field(default_factory=lambda: np.zeros(0))
    objective_quad: QuadTerms | None = None
    translate_time: float = 0.0
    # names for written model files (a Pyomo model's component names: layer and neuron of each row)
    col_names: list[str] | None = None
    row_names: list[str] | None = None
    quad_names: list[str] | None = None

    @property
    def n_cols(self) -> int:
        return int(self.c.shape[0])

    @property
    def n_rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def n_integer(self) -> int:
        return int(np.count_nonzero(self.integrality))

    @property
    def is_quadratic(self) -> bool:
        return bool(self.quad_rows) or (self.objective_quad is not None and self.objective_quad.qv.size > 0)

    @property
    def is_mip(self) -> bool:
        return self.n_integer > 0

    def objective_value(self, x: np.ndarray) -> float:
        v = float(self.c @ x) + self.offset
        if self.objective_quad is not None:
            v += self.objective_quad.evaluate(x)
        return v

    def max_violation(self, x: np.ndarray) -> float:
        """Largest violation of any row, quadratic row, bound or integrality at ``x``."""
        x = np.asarray(x, dtype=np.float64)
        viol = [0.0]
        if self.n_rows:
            ax = self.A @ x
            viol += [float(np.max(self.row_lower - ax, initial=0.0)), float(np.max(ax - self.row_upper,
                                                                                   initial=0.0))]
        for k, q in enumerate(self.quad_rows):
            v = q.evaluate(x)
            viol += [self.quad_lower[k] - v, v - self.quad_upper[k]]
        viol += [float(np.max(self.col_lower - x, initial=0.0)),
                 float(np.max(x - self.col_upper, initial=0.0))]
        xi = x[self.integrality]
        if xi.size:
            viol.append(float(np.max(np.abs(xi - np.round(xi)))))
        return max(viol)

    @classmethod
    def from_lp(cls, c: np.ndarray, *, A_ub=None, b_ub=None, A_eq=None, b_eq=None, bounds=None,
                integrality=None, sense: str = "min") -> ArrayModel:
        """The arrays of ``min/max c @ x, A_ub x <= b_ub, A_eq x = b_eq, bounds`` (scipy ``linprog``
        conventions: ``bounds`` a (lo, hi) pair for all columns or one pair per column, None = infinite;
        default bounds are (0, inf) as in linprog)."""
        import scipy.sparse as sp

        c = np.asarray(c, dtype=np.float64).reshape(-1)
        n = c.shape[0]
        blocks, lo, hi = [], [], []
        if A_ub is not None and np.shape(A_ub)[0]:
            blocks.append(sp.csr_array(A_ub, dtype=np.float64))
            b = np.asarray(b_ub, dtype=np.float64).reshape(-1)
            lo.append(np.full(b.shape, -np.inf))
            hi.append(b)
        if A_eq is not None and np.shape(A_eq)[0]:
            blocks.append(sp.csr_array(A_eq, dtype=np.float64))
            b = np.asarray(b_eq, dtype=np.float64).reshape(-1)
            lo.append(b)
            hi.append(b)
        A = sp.vstack(blocks, format="csr") if blocks else sp.csr_array((0, n))
        if bounds is None:
            bounds = (0.0, None)
        b = np.array(bounds, dtype=object)  # one (lo, hi) pair for every column, or one pair per column
        if b.shape == (2,):
            b = np.tile(b, (n, 1))
        if b.shape != (n, 2):
            raise ValueError(f"bounds must be one (lo, hi) pair or {n} pairs, got shape {b.shape}")
        col_lo = np.array([-np.inf if v is None else float(v) for v in b[:, 0]])
        col_hi = np.array([np.inf if v is None else float(v) for v in b[:, 1]])
        integ = np.zeros(n, dtype=bool) if integrality is None else np.asarray(integrality, dtype=bool)
        return cls(sense, c, 0.0, sp.csr_array(A), np.concatenate(lo) if lo else np.zeros(0),
                   np.concatenate(hi) if hi else np.zeros(0), col_lo, col_hi, integ)
