"""HiGHS (LP, MILP) through Pyomo's ``highs`` interface (``pyomo.contrib.solver``, API v2).

The MIP dual bound is HiGHS' ``info.mip_dual_bound`` (reported by Pyomo as ``objective_bound``);
for an LP the bound is the optimal objective, and no bound is claimed for an LP stopped early.
"""

from __future__ import annotations

from typing import Any

from .options import SolverOptions
from .outcome import SolveOutcome

NAME = "highs"


def solve(model: Any, options: SolverOptions, sense: str) -> SolveOutcome:
    from pyomo.contrib.solver.solvers.highs import Highs

    from .pyomo_common import run_contrib_solver

    opt = Highs()

    def raw_status() -> str:
        h = opt._solver_model
        return str(h.modelStatusToString(h.getModelStatus()))

    solver_options: dict[str, Any] = {"random_seed": int(options.seed)}
    return run_contrib_solver(
        opt, model, name=NAME, sense=sense, options=options, solver_options=solver_options,
        raw_status=raw_status,
    )
