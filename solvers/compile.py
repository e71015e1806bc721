"""Compile a Pyomo model to an :class:`ArrayModel` and load a solution back into its variables.

Pyomo stays the modelling layer users see (print it, write it to .lp/.mps, change it); the backends
receive arrays. The linear part goes through Pyomo's own matrix compiler
(``pyomo.repn.plugins.standard_form.LinearStandardFormCompiler``, mixed form: rows keep their ``<=``,
``>=`` and ``==``); quadratic constraints and a quadratic objective are read with
``pyomo.repn.standard_repn.generate_standard_repn`` over the same columns. Fixed variables are
constants. Anything beyond degree 2 is refused with the name of the constraint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .arrays import ArrayModel, QuadTerms

__all__ = ["CompiledModel", "compile_pyomo", "load_solution"]


@dataclass
class CompiledModel:
    arrays: ArrayModel
    columns: list[Any]  # Pyomo VarData per column


def _active_objective(model: Any) -> Any:
    from pyomo.environ import Objective

    objs = list(model.component_data_objects(Objective, active=True, descend_into=True))
    if len(objs) != 1:
        raise ValueError(f"the model must have exactly one active objective, found {len(objs)}")
    return objs[0]


def _terms(repn: Any, index: dict[int, int], where: str) -> tuple[QuadTerms, float]:
    if repn.nonlinear_expr is not None:
        raise ValueError(f"{where} is not linear or quadratic; the solver layer handles degree <= 2 only")
    idx = np.array([index[id(v)] for v in repn.linear_vars], dtype=np.int64)
    val = np.array([float(c) for c in repn.linear_coefs], dtype=np.float64)
    qi = np.array([index[id(a)] for a, _ in repn.quadratic_vars], dtype=np.int64)
    qj = np.array([index[id(b)] for _, b in repn.quadratic_vars], dtype=np.int64)
    qv = np.array([float(c) for c in repn.quadratic_coefs], dtype=np.float64)
    return QuadTerms(idx, val, qi, qj, qv), float(repn.constant)


def compile_pyomo(model: Any, sense: str) -> CompiledModel:
    """The arrays of ``model`` (one active objective of the given ``sense``)."""
    import scipy.sparse as sp
    from pyomo.core.expr.numvalue import value
    from pyomo.environ import Constraint, Var, maximize
    from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler
    from pyomo.repn.standard_repn import generate_standard_repn

    t0 = time.perf_counter()
    obj = _active_objective(model)
    actual = "max" if obj.sense == maximize else "min"
    if actual != sense:
        raise ValueError(f"sense={sense!r} was given but the model's objective is a {actual}imisation")

    columns = [v for v in model.component_data_objects(Var, descend_into=True) if not v.fixed]
    index = {id(v): k for k, v in enumerate(columns)}

    quad_cons = [c for c in model.component_data_objects(Constraint, active=True, descend_into=True)
                 if c.body.polynomial_degree() not in (0, 1)]
    quad_obj = obj.expr.polynomial_degree() not in (0, 1)
    for c in quad_cons:
        c.deactivate()
    if quad_obj:
        obj.deactivate()
    try:
        # (no column_order: with fixed variables Pyomo 6.10 then misaligns the columns)
        info = LinearStandardFormCompiler().write(model, mixed_form=True, set_sense=None)
    finally:
        for c in quad_cons:
            c.activate()
        if quad_obj:
            obj.activate()

    n = len(columns)
    order = np.array([index[id(v)] for v in info.columns], dtype=np.int64)
    A = sp.csc_array(info.A)
    if A.shape[1] != n or not np.array_equal(order, np.arange(n)):  # map the compiler's columns to ours
        perm = sp.csr_array((np.ones(len(order)), (order, np.arange(len(order)))), shape=(n, len(order)))
        A = sp.csc_array(A @ perm.T)
    A = sp.csr_array(A)
    rhs = np.asarray(info.rhs, dtype=np.float64)
    mult = np.array([r[1] for r in info.rows], dtype=np.int64)
    row_lo = np.where(mult == 1, -np.inf, rhs)
    row_hi = np.where(mult == -1, np.inf, rhs)

    col_lo = np.array([-np.inf if v.lb is None else float(value(v.lb)) for v in columns], dtype=np.float64)
    col_hi = np.array([np.inf if v.ub is None else float(value(v.ub)) for v in columns], dtype=np.float64)
    integ = np.array([v.is_integer() or v.is_binary() for v in columns], dtype=bool)

    c = np.zeros(n)
    offset = 0.0
    objective_quad = None
    if quad_obj:
        terms, offset = _terms(generate_standard_repn(obj.expr, quadratic=True, compute_values=True), index,
                               f"objective {obj.name}")
        np.add.at(c, terms.idx, terms.val)
        objective_quad = QuadTerms(np.zeros(0, dtype=np.int64), np.zeros(0), terms.qi, terms.qj, terms.qv)
    else:
        if info.c.shape[0]:
            crow = sp.csr_array(info.c)
            cvec = np.zeros(len(info.columns))
            cvec[crow.indices] = crow.data
            np.add.at(c, order, cvec)
            offset = float(info.c_offset[0])
        else:
            offset = float(value(obj.expr))

    quad_rows, qlo, qhi = [], [], []
    for con in quad_cons:
        terms, const = _terms(generate_standard_repn(con.body, quadratic=True, compute_values=True), index,
                              f"constraint {con.name}")
        quad_rows.append(terms)
        qlo.append(-np.inf if con.lower is None else float(value(con.lower)) - const)
        qhi.append(np.inf if con.upper is None else float(value(con.upper)) - const)
    arrays = ArrayModel(sense, c, offset, A, row_lo, row_hi, col_lo, col_hi, integ, quad_rows,
                        np.array(qlo, dtype=np.float64), np.array(qhi, dtype=np.float64), objective_quad)
    arrays.translate_time = time.perf_counter() - t0
    return CompiledModel(arrays, columns)


def load_solution(compiled: CompiledModel, x: np.ndarray) -> None:
    """Set the model's variables to ``x`` (integer columns rounded, as solvers report them within
    their integrality tolerance)."""
    x = np.asarray(x, dtype=np.float64)
    integ = compiled.arrays.integrality
    for k, v in enumerate(compiled.columns):
        v.set_value(float(np.round(x[k])) if integ[k] else float(x[k]), skip_validation=True)
