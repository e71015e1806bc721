"""Method "lipsdp-local": LipSDP-Neuron with per-neuron slope intervals from sound neuron bounds on the
domain (Local-LipSDP, Hashemi, Ruths and Fazlyab, L4DC 2021): a certified LOCAL l2 upper bound on a box or
ball (the ball through its bounding box). Stable-off neurons get slope [0, 0], stable-on [1, 1],
unstable [0, 1]; the neuron bounds come from ``lipopt.bounds.compute_bounds`` (CROWN by default).

The mathematics as implemented: ``docs/methods.md#lipsdp-local``.
"""

from __future__ import annotations

from lipopt.network.network import Network
from lipopt.options import RunOptions
from lipopt.result import LipschitzResult
from lipopt.sdp.lipsdp import LipSDPOptions
from lipopt.spec import Question

Options = LipSDPOptions


def applicable(network: Network, question: Question) -> str | None:
    from lipopt.sdp.runner import applicable_local

    return applicable_local(network, question)


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    from lipopt.sdp.runner import run_lipsdp

    return run_lipsdp("lipsdp-local", network, question, options, "neuron", local=True)
