"""Method "lp-relax" (UPPER): the LP relaxation of the MILP of "milp" (LipLP, formulations.md 2.2).

The same model with every binary (ReLU switches, max-pool selectors, sign and selector binaries of the
objective) relaxed to [0, 1]; its optimum is a certified upper bound on the MILP optimum and hence on the
constant. Uses the same neuron bounds (default "lp") and output pieces. The LP's input point x is
re-evaluated on the network; if it lies inside a linear region its Jacobian norm is reported as the lower
side of the bracket. Options as for "milp" (``RunOptions.extra``).

The mathematics as implemented: ``docs/methods.md#lp-relax``.
"""

from __future__ import annotations

from lipopt.methods.milp import Options  # noqa: F401  (the options of "lp-relax" are the MILP's)
from lipopt.network.network import Network
from lipopt.options import RunOptions
from lipopt.result import LipschitzResult
from lipopt.spec import Question

METHOD = "lp-relax"


def applicable(network: Network, question: Question) -> str | None:
    from lipopt.methods.milp import mip_applicable

    return mip_applicable(network, question)


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    from lipopt.exact.affine import affine_result
    from lipopt.methods.milp import solve_mip

    if (affine := affine_result(network, question, METHOD)) is not None:  # no ReLU: the LP is exact
        return affine
    return solve_mip(network, question, options, relax=True, method=METHOD)
