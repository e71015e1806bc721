"""Affine forms and indexed Pyomo components: the vocabulary of the MIP encodings.

Values are handled as *affine forms* ``Form = (const, vars, coefs)`` (``ZERO`` for an identically zero
value), so constants (a fixed output vector c) propagate without creating variables. ``to_expr`` turns a
form into a Pyomo ``LinearExpression``; ``form_bounds`` gives its interval from the variables' bounds.
``new_vars`` creates an indexed Var with per-entry bounds and :class:`Rows` the constraints of one
stage indexed by neuron and role. Pyomo is imported inside the functions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Form = tuple[float, tuple, tuple]  # (constant, vars, coefs)
ZERO: Form = (0.0, (), ())


def const_form(v: float) -> Form:
    return (float(v), (), ())


def var_form(v: Any, coef: float = 1.0) -> Form:
    return (0.0, (v,), (float(coef),))


def is_const(f: Form) -> bool:
    return len(f[1]) == 0


def combine(forms: list[Form], weights: np.ndarray, const: float = 0.0) -> Form:
    """sum_k weights[k] * forms[k] + const, merging repeated variables."""
    c0 = float(const)
    acc: dict[int, list] = {}
    for f, w in zip(forms, weights, strict=True):
        if w == 0:
            continue
        c0 += w * f[0]
        for v, a in zip(f[1], f[2], strict=True):
            e = acc.get(id(v))
            if e is None:
                acc[id(v)] = [v, w * a]
            else:
                e[1] += w * a
    items = [(v, a) for v, a in acc.values() if a != 0]
    return (c0, tuple(v for v, _ in items), tuple(float(a) for _, a in items))


class AffineRows:
    """The rows ``W[idx] @ forms + bias`` of an affine map, built in bulk from the weight array: row k is
    ``const[k] + sum coefs[t] * vars[t]`` over ``t in ptr[k]:ptr[k + 1]`` (zero coefficients dropped,
    repeated variables merged). Made by :meth:`FormVector.rows`."""

    def __init__(self, const: np.ndarray, ptr: np.ndarray, coefs: list[float], variables: list[Any]) -> None:
        self.const = [float(c) for c in const]
        self.ptr = [int(p) for p in ptr]
        self.counts = np.diff(ptr)
        self.coefs = coefs
        self.vars = variables

    def form(self, k: int) -> Form:
        a, b = self.ptr[k], self.ptr[k + 1]
        return (self.const[k], tuple(self.vars[a:b]), tuple(self.coefs[a:b]))

    def _args(self, k: int) -> list[Any]:
        """The terms of row k: its constant (if nonzero) and one monomial per variable, made directly (no
        operator overloading, no per-term conversions)."""
        from pyomo.core.expr.numeric_expr import MonomialTermExpression

        a, b = self.ptr[k], self.ptr[k + 1]
        c0 = self.const[k]
        args = [c0] if c0 else []
        args.extend(map(MonomialTermExpression, zip(self.coefs[a:b], self.vars[a:b], strict=True)))
        return args

    def expr(self, k: int) -> Any:
        """Row k as a Pyomo LinearExpression."""
        from pyomo.core.expr.numeric_expr import LinearExpression

        return LinearExpression(self._args(k))

    def definition(self, k: int, v: Any) -> Any:
        """The row ``f_k - v == 0`` defining a fresh variable ``v`` as row k."""
        from pyomo.core.expr.numeric_expr import LinearExpression, MonomialTermExpression

        args = self._args(k)
        args.append(MonomialTermExpression((-1.0, v)))
        return LinearExpression(args) == 0


def _selected_entries(w: Any, idx: np.ndarray) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The rows ``idx`` of a dense or sparse matrix: (that submatrix, and the row, column and value of
    each of its nonzeros, row-major)."""
    if hasattr(w, "tocsr"):
        sub = w.tocsr()[idx]
        sub.sort_indices()
        return sub, np.repeat(np.arange(len(idx)), np.diff(sub.indptr)), sub.indices, sub.data
    sub = np.asarray(w)[idx]
    rows, cols = np.nonzero(sub)
    return sub, rows, cols, sub[rows, cols]


class FormVector:
    """A list of forms prepared for the rows ``W[idx] @ forms + bias`` of an affine stage, built in bulk with
    numpy when every form has at most one variable and no variable appears twice (the usual case: the
    previous stage's variables); otherwise row by row with :func:`combine`."""

    def __init__(self, forms: list[Form]) -> None:
        self.forms = forms
        with_var = [f for f in forms if f[1]]
        self.simple = all(len(f[1]) == 1 for f in with_var) and len({id(f[1][0]) for f in with_var}) == len(
            with_var)
        if self.simple:
            self.const = np.array([f[0] for f in forms], dtype=np.float64)
            self.coef = np.array([f[2][0] if f[1] else 0.0 for f in forms], dtype=np.float64)
            self.var = np.empty(len(forms), dtype=object)
            for j, f in enumerate(forms):
                self.var[j] = f[1][0] if f[1] else None

    def rows(self, w: Any, idx: np.ndarray, bias: np.ndarray | None = None) -> AffineRows:
        """The rows ``idx`` of ``w @ forms + bias`` (``bias`` given for the selected rows)."""
        idx = np.asarray(idx, dtype=np.int64)
        n = idx.size
        b = np.zeros(n) if bias is None else np.asarray(bias, dtype=np.float64)
        sub, r, cols, vals = _selected_entries(w, idx)
        if not self.simple:
            starts = np.searchsorted(r, np.arange(n + 1))
            forms = [combine([self.forms[c] for c in cols[starts[k]:starts[k + 1]]],
                             vals[starts[k]:starts[k + 1]], b[k]) for k in range(n)]
            ptr = np.concatenate([[0], np.cumsum([len(f[1]) for f in forms], dtype=np.int64)])
            return AffineRows(np.array([f[0] for f in forms]), ptr, [a for f in forms for a in f[2]],
                              [v for f in forms for v in f[1]])
        const = b + np.asarray(sub @ self.const, dtype=np.float64).ravel()
        coefs = vals * self.coef[cols]
        keep = coefs != 0
        ptr = np.concatenate([[0], np.cumsum(np.bincount(r[keep], minlength=n))])
        return AffineRows(const, ptr, coefs[keep].tolist(), self.var[cols[keep]].tolist())


def to_expr(f: Form) -> Any:
    """A Pyomo expression (or float) for a form."""
    from pyomo.core.expr.numeric_expr import LinearExpression

    if is_const(f):
        return f[0]
    return LinearExpression(constant=f[0], linear_coefs=list(f[2]), linear_vars=list(f[1]))


def form_bounds(f: Form) -> tuple[float, float]:
    """Interval of a form from its variables' bounds (None bounds read as infinite)."""
    lo = hi = f[0]
    for v, a in zip(f[1], f[2], strict=True):
        vl = -np.inf if v.lb is None else v.lb
        vu = np.inf if v.ub is None else v.ub
        if a >= 0:
            lo, hi = lo + a * vl, hi + a * vu
        else:
            lo, hi = lo + a * vu, hi + a * vl
    return float(lo), float(hi)


def form_value(f: Form) -> float:
    """Value of a form at the variables' current values."""
    return f[0] + sum(a * (v.value if v.value is not None else 0.0) for v, a in zip(f[1], f[2], strict=True))


def new_vars(model: Any, name: str, n: int, lo: np.ndarray, hi: np.ndarray, binary: bool = False,
             index: list | None = None) -> Any:
    """An indexed Var of size n with per-entry bounds (infinite entries become None), indexed by 0..n-1 or
    by the n keys of ``index`` (neurons, (window, input) pairs: a written column says which it is)."""
    import pyomo.environ as pyo

    keys = list(range(n)) if index is None else list(index)
    if len(keys) != n:
        raise ValueError(f"{name}: {len(keys)} index keys for {n} variables")
    if binary:
        var = pyo.Var(keys, within=pyo.Binary)
    else:
        lo = np.broadcast_to(np.asarray(lo, dtype=np.float64), (n,))
        hi = np.broadcast_to(np.asarray(hi, dtype=np.float64), (n,))
        lo_b = [float(v) if np.isfinite(v) else None for v in lo.tolist()]
        hi_b = [float(v) if np.isfinite(v) else None for v in hi.tolist()]
        bounds = dict(zip(keys, zip(lo_b, hi_b, strict=True), strict=True))

        def rule(_m: Any, *key: Any) -> tuple:
            return bounds[key[0] if len(key) == 1 else key]
        var = pyo.Var(keys, bounds=rule)
    model.add_component(name, var)
    return var


def stage_block(model: Any, s: int, prefix: str = "") -> Any:
    """The Pyomo Block ``stage<s>`` of a lowered network's stage s (created on first use): the forward,
    backward and tangent passes put that stage's variables and rows in it, indexed by neuron, so a written
    row ``stage2.relu(5,le_ua)`` says which stage, which neuron and which of its rows it is."""
    import pyomo.environ as pyo

    name = f"{prefix}stage{s}"
    blk = model.component(name)
    if blk is None:
        blk = pyo.Block()
        model.add_component(name, blk)
    return blk


class Rows:
    """The constraints of one stage, indexed by neuron (or window) and role: a written model's row
    ``stage2.relu(5,le_ua)`` says which stage, which neuron and which of its big-M rows it is."""

    def __init__(self, model: Any, name: str) -> None:
        import pyomo.environ as pyo

        self.con = pyo.Constraint(pyo.Any)
        model.add_component(name, self.con)
        self._count = 0

    def add(self, expr: Any, *key: Any) -> Any:
        """Add ``expr`` under ``key`` (rows without a natural key, e.g. cuts, are numbered)."""
        if not key:
            self._count += 1
            key = (self._count,)
        k = key[0] if len(key) == 1 else key
        if k in self.con:
            raise KeyError(f"row {self.con.name}[{k}] written twice")
        self.con[k] = expr
        return self.con[k]


def constraint_list(model: Any, name: str) -> Rows:
    return Rows(model, name)


def _sub(a: Form, b: Form) -> Form:
    return combine([a, b], np.array([1.0, -1.0]))
