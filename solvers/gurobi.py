"""Gurobi (LP, MILP, nonconvex MIQCQP) called directly through ``gurobipy`` from arrays (optional).

The pip licence is size-limited (2000 variables and constraints; 200 variables once a quadratic term
appears): hitting it is ``Termination.LICENSE_LIMIT``, never a traceback. Silenced at the source
(``OutputFlag=0`` on the environment) unless verbose; ``log_file`` goes to Gurobi's ``LogFile``.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np

from .base import NO_LICENCE, Backend, Capability, Progress
from .outcome import SolveOutcome, Termination, failed_outcome, settle

GUROBI_PIP_LICENCE = "size-limited (pip licence: 2000 vars/cons, 200 vars with quadratic terms)"
_LICENCE_CODES = {10009, 10010}  # no licence / size-limited licence


def classify_error(exc: BaseException) -> Termination:
    """LICENSE_LIMIT for licence errors (size limit, missing licence), ERROR otherwise."""
    code = getattr(exc, "errno", None)
    text = str(exc).lower()
    if code in _LICENCE_CODES or "size-limited" in text or "license" in text or "licence" in text:
        return Termination.LICENSE_LIMIT
    return Termination.ERROR


class GurobiBackend(Backend):
    name = "gurobi"
    interface = "arrays"
    capabilities = frozenset({Capability.LP, Capability.MILP, Capability.MIQCQP, Capability.INDICATOR})
    package = "gurobipy"
    modules = ("gurobipy",)
    description = "Gurobi, called directly through gurobipy (the pip licence is size-limited)"
    commercial = True
    option_map: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "seed": "Seed", "time_limit": "TimeLimit", "rel_gap": "MIPGap", "abs_gap": "MIPGapAbs",
        "threads": "Threads", "feasibility_tol": "FeasibilityTol",
    }
    # gurobipy.GRB.Status codes
    status_map: ClassVar[dict[Any, Termination]] = {
        2: Termination.OPTIMAL, 3: Termination.INFEASIBLE, 4: Termination.UNBOUNDED, 5: Termination.UNBOUNDED,
        7: Termination.OTHER, 8: Termination.OTHER, 9: Termination.TIME_LIMIT, 10: Termination.OTHER,
        11: Termination.INTERRUPTED, 12: Termination.NUMERICAL_ERROR, 13: Termination.OTHER,
        16: Termination.OTHER, 17: Termination.OTHER,
    }

    def install_hint(self) -> str:
        return super().install_hint() + " (or `pip install lipopt[gurobi]`)"

    def probe_licence(self) -> str:
        import gurobipy

        try:
            env = gurobipy.Env(empty=True)
            env.setParam("OutputFlag", 0)
            env.start()
        except gurobipy.GurobiError as exc:
            return f"{NO_LICENCE} ({exc})"
        model = gurobipy.Model(env=env)
        try:
            model.addVars(2001)
            model.optimize()
            return "full"
        except gurobipy.GurobiError as exc:
            limited = classify_error(exc) == Termination.LICENSE_LIMIT
            return GUROBI_PIP_LICENCE if limited else f"unknown ({exc})"
        finally:
            model.dispose()
            env.dispose()

    def solve_arrays(self, model: Any, options: Any, progress: Progress | None = None) -> SolveOutcome:
        import gurobipy as gp

        t_start = time.perf_counter()
        try:
            env = gp.Env(empty=True)
            env.setParam("OutputFlag", int(bool(options.verbose or options.log_file)))
            if options.log_file:
                env.setParam("LogFile", str(options.log_file))
                env.setParam("LogToConsole", int(bool(options.verbose)))
            env.start()
            g = gp.Model(env=env)
            params = self.native_options(options)
            for k, v in params.items():
                g.setParam(k, v)
            vtype = np.where(model.integrality, gp.GRB.INTEGER, gp.GRB.CONTINUOUS)
            x = g.addMVar(model.n_cols, lb=model.col_lower, ub=model.col_upper, vtype=vtype)
            if model.n_rows:
                fin_hi, fin_lo = np.isfinite(model.row_upper), np.isfinite(model.row_lower)
                if fin_hi.any():
                    g.addMConstr(model.A[fin_hi], x, "<", model.row_upper[fin_hi])
                if fin_lo.any():
                    g.addMConstr(model.A[fin_lo], x, ">", model.row_lower[fin_lo])
            xs = x.tolist()  # scalar Vars: an MVar's x[i] is a 0-d MVar, and sums of those are matrix
            for k, q in enumerate(model.quad_rows):  # expressions that addQConstr refuses (gurobipy >= 12)
                expr = gp.quicksum(float(a) * xs[int(j)] for j, a in zip(q.idx, q.val, strict=True))
                expr += gp.quicksum(float(a) * xs[int(i)] * xs[int(j)] for i, j, a in zip(q.qi, q.qj, q.qv,
                                                                                      strict=True))
                if np.isfinite(model.quad_upper[k]):
                    g.addQConstr(expr <= float(model.quad_upper[k]))
                if np.isfinite(model.quad_lower[k]):
                    g.addQConstr(expr >= float(model.quad_lower[k]))
            obj = model.c @ x + float(model.offset)
            oq = model.objective_quad
            if oq is not None and oq.qv.size:
                xs = x.tolist()
                obj += gp.quicksum(float(a) * xs[int(i)] * xs[int(j)] for i, j, a in zip(oq.qi, oq.qj, oq.qv,
                                                                                     strict=True))
            g.setObjective(obj, gp.GRB.MAXIMIZE if model.sense == "max" else gp.GRB.MINIMIZE)
            t_built = time.perf_counter()
            g.optimize()
        except gp.GurobiError as exc:
            return failed_outcome(self.name, self.version(), model.sense, options, classify_error(exc),
                                  f"exception:GurobiError {getattr(exc, 'errno', '')}", f"gurobi: {exc}",
                                  wall_time=time.perf_counter() - t_start)
        raw = int(g.Status)
        term = self.termination(raw)
        if term is Termination.INTERRUPTED:  # Gurobi caught the Ctrl-C itself: the run must stop too
            from . import interrupts

            interrupts.request()
        has = g.SolCount > 0
        objective = float(g.ObjVal) if has else None
        bound = float(g.ObjBound) if model.is_mip or model.is_quadratic else objective
        term, bound, sol_status = settle(term, objective, bound, options.rel_gap)
        return SolveOutcome(
            solver=self.name, solver_version=self.version(), termination=term,
            raw_status=f"gurobi status {raw}", sense=model.sense, objective=objective, bound=bound, gap=None,
            has_incumbent=has, build_time=0.0,
            solve_time=float(g.Runtime), wall_time=time.perf_counter() - t_start,
            message=f"gurobi: status {raw}; incumbent={objective}, bound={bound}", options=options,
            solution_status=sol_status,
            translate_time=model.translate_time + (t_built - t_start),
            nodes=int(getattr(g, "NodeCount", 0)), x=np.asarray(x.X, dtype=np.float64) if has else None,
        )
