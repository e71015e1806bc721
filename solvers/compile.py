"""Compile a Pyomo model to an :class:`ArrayModel` and load a solution back into its variables.

Pyomo stays the modelling layer users see (print it, write it to .lp/.mps, change it); the backends
receive arrays. Each active constraint and the objective are read once:

* a linear sum (``LinearExpression`` or ``SumExpression`` of numbers, variables and monomials: what
  lipopt's formulations build) is read term by term without walking a general expression tree;
* anything else goes through ``pyomo.repn.standard_repn.generate_standard_repn`` (quadratic terms
  kept apart; anything beyond degree 2 is refused with the constraint's name).

Fixed variables are constants. Columns are the unfixed variables that appear, in order of appearance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .arrays import ArrayModel, QuadTerms

__all__ = ["CompiledModel", "compile_pyomo", "load_solution"]


@dataclass
class CompiledModel:
    arrays: ArrayModel
    columns: list[Any]  # Pyomo VarData per column


class _Reader:
    """Reads expressions into (constant, [(col, coef)], quadratic) with a shared column index."""

    def __init__(self) -> None:
        from pyomo.core.expr.numeric_expr import LinearExpression, MonomialTermExpression, SumExpression
        from pyomo.core.expr.numvalue import native_numeric_types

        self.columns: list[Any] = []
        self.index: dict[int, int] = {}
        self._sums = (LinearExpression, SumExpression)
        self._mono = MonomialTermExpression
        self._native = native_numeric_types

    def col(self, v: Any) -> int:
        k = self.index.get(id(v))
        if k is None:
            k = self.index[id(v)] = len(self.columns)
            self.columns.append(v)
        return k

    def _linear_sum(self, expr: Any) -> tuple[float, list[int], list[float]] | None:
        """The terms of a flat linear sum, or None when it is anything else."""
        const, idx, val = 0.0, [], []
        native, mono = self._native, self._mono
        for arg in expr.args:
            t = type(arg)
            if t in native:
                const += arg
                continue
            if t is mono:
                coef, v = arg.args
                if type(coef) not in native:
                    if not coef.is_constant() and not coef.is_fixed():
                        return None
                    coef = float(coef())
            elif getattr(arg, "is_variable_type", lambda: False)():
                coef, v = 1.0, arg
            else:
                return None
            if v.fixed:
                const += coef * v.value
            elif coef != 0:
                idx.append(self.col(v))
                val.append(coef)
        return const, idx, val

    def read(self, expr: Any, where: str) -> tuple[float, list[int], list[float], tuple | None]:
        """(constant, linear columns, linear coefficients, quadratic (qi, qj, qv) or None)."""
        from pyomo.repn.standard_repn import generate_standard_repn

        if type(expr) in self._native:
            return float(expr), [], [], None
        if type(expr) in self._sums:
            got = self._linear_sum(expr)
            if got is not None:
                return (*got, None)
        repn = generate_standard_repn(expr, quadratic=True, compute_values=True)
        if repn.nonlinear_expr is not None:
            raise ValueError(f"{where} is not linear or quadratic; the solver layer handles degree <= 2 only")
        idx = [self.col(v) for v in repn.linear_vars]
        val = [float(c) for c in repn.linear_coefs]
        quad = None
        if repn.quadratic_vars:
            pairs = repn.quadratic_vars
            quad = ([self.col(a) for a, _ in pairs], [self.col(b) for _, b in pairs],
                    [float(c) for c in repn.quadratic_coefs])
        return float(repn.constant), idx, val, quad


def _bound(v: Any) -> float | None:
    from pyomo.core.expr.numvalue import value

    return None if v is None else float(value(v))


def _objective(model: Any, sense: str) -> Any:
    """The one active objective of ``model``; its sense must be ``sense``."""
    from pyomo.environ import Objective, maximize

    objs = list(model.component_data_objects(Objective, active=True, descend_into=True))
    if len(objs) != 1:
        raise ValueError(f"the model must have exactly one active objective, found {len(objs)}")
    obj = objs[0]
    actual = "max" if obj.sense == maximize else "min"
    if actual != sense:
        raise ValueError(f"sense={sense!r} was given but the model's objective is a {actual}imisation")
    return obj


@dataclass
class _Rows:
    """The constraint rows read so far: linear rows as COO triplets, quadratic rows apart."""

    rows_r: list[int] = field(default_factory=list)
    rows_c: list[int] = field(default_factory=list)
    rows_v: list[float] = field(default_factory=list)
    lo: list[float] = field(default_factory=list)
    hi: list[float] = field(default_factory=list)
    quad_rows: list[QuadTerms] = field(default_factory=list)
    qlo: list[float] = field(default_factory=list)
    qhi: list[float] = field(default_factory=list)
    row_names: list[str] = field(default_factory=list)
    quad_names: list[str] = field(default_factory=list)

    def add(self, name: str, read: tuple, row_lo: float, row_hi: float) -> None:
        """Add one row ``row_lo <= body - const <= row_hi`` from ``read = (const, idx, val, quad)``."""
        _, idx, val, quad = read
        if quad is not None:
            qi, qj, qv = quad
            self.quad_rows.append(QuadTerms(np.array(idx, dtype=np.int64), np.array(val, dtype=np.float64),
                                            np.array(qi, dtype=np.int64), np.array(qj, dtype=np.int64),
                                            np.array(qv, dtype=np.float64)))
            self.qlo.append(row_lo)
            self.qhi.append(row_hi)
            self.quad_names.append(name)
            return
        if not idx:  # a constant row: check it, do not send it
            tol = 1e-9 * max(1.0, abs(row_lo) if np.isfinite(row_lo) else 0.0,
                             abs(row_hi) if np.isfinite(row_hi) else 0.0)
            if row_lo > tol or row_hi < -tol:
                raise ValueError(f"constraint {name} is a constant that is infeasible "
                                 f"({row_lo:.6g} <= 0 <= {row_hi:.6g} fails)")
            return
        r = len(self.lo)
        self.rows_r.extend([r] * len(idx))
        self.rows_c.extend(idx)
        self.rows_v.extend(val)
        self.lo.append(row_lo)
        self.hi.append(row_hi)
        self.row_names.append(name)


def _read_constraints(model: Any, rd: _Reader) -> _Rows:
    """Every active constraint with at least one finite bound, in order."""
    from pyomo.environ import Constraint

    rows = _Rows()
    for con in model.component_data_objects(Constraint, active=True, descend_into=True):
        lb, body, ub = con.to_bounded_expression()
        lb, ub = _bound(lb), _bound(ub)
        if lb is None and ub is None:
            continue
        read = rd.read(body, f"constraint {con.name}")
        const = read[0]
        row_lo = -np.inf if lb is None else lb - const
        row_hi = np.inf if ub is None else ub - const
        rows.add(con.name, read, row_lo, row_hi)
    return rows


def _assemble(sense: str, objective: tuple, rows: _Rows, columns: list[Any]) -> ArrayModel:
    """The ArrayModel of a read objective ``(const, idx, val, quad)``, rows and columns."""
    import scipy.sparse as sp

    o_const, o_idx, o_val, o_quad = objective
    n = len(columns)
    coo = (np.array(rows.rows_v, dtype=np.float64),
           (np.array(rows.rows_r, dtype=np.int64), np.array(rows.rows_c, dtype=np.int64)))
    A = sp.csr_array(coo, shape=(len(rows.lo), n))
    A.sum_duplicates()
    c = np.zeros(n)
    np.add.at(c, np.array(o_idx, dtype=np.int64), np.array(o_val, dtype=np.float64))
    objective_quad = None
    if o_quad is not None:
        e = np.zeros(0, dtype=np.int64)
        objective_quad = QuadTerms(e, np.zeros(0), np.array(o_quad[0], dtype=np.int64),
                                   np.array(o_quad[1], dtype=np.int64), np.array(o_quad[2], dtype=np.float64))
    col_lo = np.array([-np.inf if v.lb is None else float(v.lb) for v in columns], dtype=np.float64)
    col_hi = np.array([np.inf if v.ub is None else float(v.ub) for v in columns], dtype=np.float64)
    integ = np.array([v.is_integer() or v.is_binary() for v in columns], dtype=bool)
    arrays = ArrayModel(sense, c, float(o_const), A, np.array(rows.lo, dtype=np.float64),
                        np.array(rows.hi, dtype=np.float64), col_lo, col_hi, integ, rows.quad_rows,
                        np.array(rows.qlo, dtype=np.float64), np.array(rows.qhi, dtype=np.float64),
                        objective_quad)
    arrays.col_names = [v.name for v in columns]
    arrays.row_names, arrays.quad_names = rows.row_names, rows.quad_names
    return arrays


def compile_pyomo(model: Any, sense: str) -> CompiledModel:
    """The arrays of ``model`` (one active objective of the given ``sense``)."""
    t0 = time.perf_counter()
    obj = _objective(model, sense)
    rd = _Reader()
    objective = rd.read(obj.expr, f"objective {obj.name}")
    rows = _read_constraints(model, rd)
    arrays = _assemble(sense, objective, rows, rd.columns)
    arrays.translate_time = time.perf_counter() - t0
    return CompiledModel(arrays, rd.columns)


def load_solution(compiled: CompiledModel, x: np.ndarray) -> None:
    """Set the model's variables to ``x`` (integer columns rounded, as solvers report them within
    their integrality tolerance)."""
    x = np.asarray(x, dtype=np.float64)
    integ = compiled.arrays.integrality
    for k, v in enumerate(compiled.columns):
        v.set_value(float(np.round(x[k])) if integ[k] else float(x[k]), skip_validation=True)
