"""SCIP (LP, MILP, nonconvex MIQCQP) through Pyomo's ``scip_direct`` (``pyomo.contrib.solver``).

``scip_direct`` builds a pyscipopt model in memory (no ``scip`` executable is needed). It moves the
objective into a constraint ``z <= f(x)`` (max) / ``z >= f(x)`` (min), so quadratic objectives work.
Dual bound: ``Model.getDualbound()``; incumbent: ``Model.getObjVal()``.
"""

from __future__ import annotations

from typing import Any

from .options import SolverOptions
from .outcome import SolveOutcome

NAME = "scip"


def solve(model: Any, options: SolverOptions, sense: str) -> SolveOutcome:
    from pyomo.contrib.solver.solvers.scip.scip_direct import ScipDirect

    from .pyomo_common import run_contrib_solver

    opt = ScipDirect()

    def raw_status() -> str:
        return str(opt._solver_model.getStatus())

    # scip_direct maps threads to 'lp/threads'; SCIP itself is single-threaded.
    solver_options: dict[str, Any] = {"randomization/randomseedshift": int(options.seed)}
    if not options.verbose:
        # Silence SCIP at the source: Pyomo captures the solver's log through a pipe, and a long run
        # can fill it while SCIP holds the GIL, freezing the process (seen after ~6 minutes).
        solver_options["display/verblevel"] = 0
    return run_contrib_solver(
        opt, model, name=NAME, sense=sense, options=options, solver_options=solver_options,
        raw_status=raw_status,
    )
