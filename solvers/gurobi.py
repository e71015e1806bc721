"""Gurobi (LP, MILP, nonconvex MIQCQP) through Pyomo's ``gurobi_persistent`` (``pyomo.contrib.solver``).

The pip wheel ships a size-limited licence (2000 variables/constraints, 200 variables once a
quadratic term appears): Gurobi raises ``GurobiError`` "Model too large for size-limited license"
(error 10010), which becomes ``Termination.LICENSE_LIMIT``. A missing gurobipy is NOT_AVAILABLE
(handled by :func:`lipopt_solvers.solve_pyomo` before this module is imported).
"""

from __future__ import annotations

from typing import Any

from .catalog import GUROBI_PIP_LICENCE
from .options import SolverOptions
from .outcome import SolveOutcome, Termination

NAME = "gurobi"
_SIZE_LIMIT_CODE = 10010
_LICENCE_CODES = {10009, 10010}  # no licence / size-limited licence


def classify_error(exc: BaseException) -> Termination:
    """LICENSE_LIMIT for licence errors (size limit, missing licence), ERROR otherwise."""
    code = getattr(exc, "errno", None)
    text = str(exc).lower()
    if code in _LICENCE_CODES or "size-limited" in text or "license" in text or "licence" in text:
        return Termination.LICENSE_LIMIT
    return Termination.ERROR


def probe_licence() -> str:
    """"full", the pip size-limited description, or "no valid licence (...)"; imports gurobipy."""
    import gurobipy

    try:
        env = gurobipy.Env(empty=True)
        env.setParam("OutputFlag", 0)
        env.start()
    except gurobipy.GurobiError as exc:
        return f"no valid licence ({exc})"
    model = gurobipy.Model(env=env)
    try:
        model.addVars(2001)
        model.optimize()
        return "full"
    except gurobipy.GurobiError as exc:
        return GUROBI_PIP_LICENCE if classify_error(exc) == Termination.LICENSE_LIMIT else f"unknown ({exc})"
    finally:
        model.dispose()
        env.dispose()


def solve(model: Any, options: SolverOptions, sense: str) -> SolveOutcome:
    from pyomo.contrib.solver.solvers.gurobi.gurobi_persistent import GurobiPersistent

    from .pyomo_common import run_contrib_solver

    opt = GurobiPersistent()

    def raw_status() -> str:
        return f"gurobi status {opt._solver_model.Status}"

    solver_options: dict[str, Any] = {"Seed": int(options.seed)}
    try:
        if tuple(opt.version())[:1] < (11,):
            solver_options["NonConvex"] = 2  # Gurobi >= 11 accepts nonconvex quadratics by default
    except Exception:
        pass
    return run_contrib_solver(
        opt, model, name=NAME, sense=sense, options=options, solver_options=solver_options,
        raw_status=raw_status, classify_error=classify_error,
    )
