"""Method "lipsdp-neuron": LipSDP-Neuron, a certified GLOBAL l2 upper bound (one multiplier per neuron).

Dense nets, conv nets as their lowered matrices; any output selection (all outputs in l2, or c^T f).
Max-pooling is refused. The value is certified by the float64 eigen-check (:mod:`lipopt.sdp.lipsdp`).

The mathematics as implemented: ``docs/methods.md#lipsdp-neuron``.
"""

from __future__ import annotations

from lipopt.network.network import Network
from lipopt.options import RunOptions
from lipopt.result import LipschitzResult
from lipopt.sdp.lipsdp import LipSDPOptions
from lipopt.spec import Question

Options = LipSDPOptions


def applicable(network: Network, question: Question) -> str | None:
    from lipopt.sdp.runner import applicable_global

    return applicable_global(network, question)


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    from lipopt.sdp.runner import run_lipsdp

    return run_lipsdp("lipsdp-neuron", network, question, options, "neuron")
