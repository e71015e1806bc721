"""Method "lipsdp-fast": ECLipsE-Fast (Xu & Sivaranjani, NeurIPS 2024), a certified GLOBAL l2 upper bound
in closed form: one multiplier per hidden layer chosen layer by layer, which is a feasible point of the
LipSDP-Neuron LMI; no SDP solver runs. The value is certified like every LipSDP value (the LMI rebuilt in
float64 at the multipliers and its largest eigenvalue checked, :mod:`lipopt.sdp.certification`).

Same scope as lipsdp-neuron (dense and conv nets as their matrices, any output selection, max-pool
refused); never tighter than lipsdp-neuron, which starts its first-order descent from these multipliers.

The mathematics as implemented: ``docs/methods.md#lipsdp-fast``.
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

    return run_lipsdp("lipsdp-fast", network, question, options, "fast")
