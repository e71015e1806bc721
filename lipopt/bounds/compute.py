"""Front door for forward neuron bounds: ``compute_bounds(network, lo, hi, method)``.

Methods, from cheapest and loosest to dearest and tightest (each contains the next):
``"interval"`` (interval arithmetic), ``"crown"`` (backward substitution of linear relaxations,
intersected with intervals), ``"lp"`` (CROWN, then LP tightening of every ambiguous neuron after the
first layer). All are sound; the result records the method and its timing in ``stats``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from lipopt.bounds.types import ForwardBounds
from lipopt.network.network import Network

BOUND_METHODS = ("interval", "crown", "lp")


def compute_bounds(network: Network, lo: np.ndarray, hi: np.ndarray, method: str = "crown",
                   **kwargs: Any) -> ForwardBounds:
    """Sound bounds on every stage output of ``network.lower()`` for inputs in [lo, hi].

    ``lo``/``hi`` may be scalars (broadcast to the input size) or contain +-inf (the global domain:
    only interval arithmetic applies, whatever the method). ``kwargs`` go to the LP tightening
    (``max_neurons``, ``time_limit``)."""
    from lipopt.errors import InvalidQuestionError

    n = network.input_size
    lo = np.broadcast_to(np.asarray(lo, dtype=np.float64).reshape(-1), (n,)).copy()
    hi = np.broadcast_to(np.asarray(hi, dtype=np.float64).reshape(-1), (n,)).copy()
    t0 = time.perf_counter()
    if method == "interval":
        from lipopt.bounds.interval import interval_bounds

        fb = interval_bounds(network, lo, hi)
    elif method == "crown":
        from lipopt.bounds.crown import crown_bounds

        fb = crown_bounds(network, lo, hi)
    elif method == "lp":
        from lipopt.bounds.lp_tighten import lp_bounds

        fb = lp_bounds(network, lo, hi, **kwargs)
    else:
        raise InvalidQuestionError(f"unknown bound method {method!r}; supported: {', '.join(BOUND_METHODS)}")
    fb.stats["time"] = time.perf_counter() - t0
    return fb
