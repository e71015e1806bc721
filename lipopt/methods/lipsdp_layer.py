"""Method "lipsdp-layer": LipSDP-Layer, a certified GLOBAL l2 upper bound (one multiplier per hidden
layer: cheaper, never tighter than lipsdp-neuron). Same scope and certification as lipsdp-neuron.

The mathematics as implemented: ``docs/methods.md#lipsdp-layer``.
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

    return run_lipsdp("lipsdp-layer", network, question, options, "layer")
