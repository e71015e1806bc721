"""Scale normalisation of a network before a MIP model is built (issue 15: scale-invariant exact methods).

ReLU and max-pool are positively homogeneous: relu(z / s) = relu(z) / s for s > 0. Dividing layer k's
weight by s_k and its bias by P_k = s_1 ... s_k therefore gives a network whose every hidden value is the
original one divided by P_k, with the same activation pattern (and max-pool winners) at every input x, and

    f_n(x) = f(x) / P,   P = s_1 ... s_L,   so   L(f_n, X) = L(f, X) / P   for every norm and domain X

(inputs are not scaled, so the domain and every witness point x are unchanged). Each s_k is a power of
two near max |W_k|, which makes the division exact in floating point (barring under/overflow, which
:func:`normalised` checks): the normalised network evaluates to exactly f(x) / P in float64 and has
bit-identical activation patterns. A MIP model built on it has weights of unit scale whatever the
network's scale (1e-6 or 1e6 per layer), so the solvers' absolute tolerances (feasibility 1e-6, integrality
1e-6 x big-M, absolute gaps) act at a fixed relative size. The solver's bounds are multiplied back by P;
witnesses are certified on the original network.

The mathematics as implemented: ``docs/methods.md#scaling``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.network.layers import Conv2d, Dense, LeakyReLU, ReLU
from lipopt.network.network import Network


@dataclass
class Normalisation:
    """The normalised network and the factor P with f = P * f_n (so L(f) = P * L(f_n))."""

    network: Network
    factor: float = 1.0
    layer_exponents: list[int] = field(default_factory=list)  # s_k = 2 ** exponent, per weighted layer
    relu_factors: list[float] = field(default_factory=list)  # P_k at each ReLU layer (pre-activation scale)
    note: str = ""

    def up(self, value: float | None) -> float | None:
        """A value of the normalised network in units of the original one (exact: P is a power of 2)."""
        return None if value is None else float(value) * self.factor

    def down(self, value: float | None) -> float | None:
        return None if value is None else float(value) / self.factor

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"factor": self.factor, "layer_exponents": list(self.layer_exponents),
                               "relu_factors": list(self.relu_factors)}
        if self.note:
            out["note"] = self.note
        return out


def _exponent(w: np.ndarray) -> int:
    """e with 2**e closest (in log scale) to max |w|; 0 for an all-zero weight."""
    m = float(np.max(np.abs(w))) if w.size else 0.0
    if not (m > 0.0 and math.isfinite(m)):
        return 0
    return round(math.log2(m))


def _exact_scaled(a: np.ndarray, e: int) -> np.ndarray | None:
    """a / 2**e, or None if that under- or overflows (zeros or infinities appear, subnormals lose bits)."""
    out = np.ldexp(np.asarray(a, dtype=np.float64), -e)
    nz = a != 0
    if not np.all(np.isfinite(out)):
        return None
    if np.any(nz & (np.abs(out) < np.finfo(np.float64).tiny)):
        return None
    if np.any(nz & (np.abs(a) < np.finfo(np.float64).tiny)):  # subnormal input: scaling may not be exact
        return None
    return out


def normalised(network: Network, enabled: bool = True) -> Normalisation:
    """The network with every weighted layer (Dense, Conv2d) divided by a power of two s_k ~ max |W_k| and
    its bias by s_1 ... s_k (see the module docstring). ``enabled=False`` (or an under/overflow) returns
    the network itself with factor 1."""
    if not enabled:
        return Normalisation(network, 1.0, [], "normalisation disabled")
    layers: list[Any] = []
    exps: list[int] = []
    relu_factors: list[float] = []
    cum = 0
    for layer in network.layers:
        if isinstance(layer, Dense | Conv2d):
            e = _exponent(layer.weight)
            cum += e
            w = _exact_scaled(layer.weight, e)
            b = _exact_scaled(layer.bias, cum)
            if w is None or b is None:
                return Normalisation(network, 1.0, [], "not normalised: scaling would under- or overflow")
            layers.append(dataclasses.replace(layer, weight=w, bias=b))
            exps.append(e)
        else:
            if isinstance(layer, ReLU | LeakyReLU):  # positively homogeneous: commutes with 2**e
                relu_factors.append(math.ldexp(1.0, cum))
            layers.append(layer)
    factor = math.ldexp(1.0, cum)
    if not (math.isfinite(factor) and factor > 0.0):
        return Normalisation(network, 1.0, [], "not normalised: the factor under- or overflows")
    if not any(exps):
        return Normalisation(network, 1.0, exps, relu_factors)
    net = Network(layers, network.input_shape, name=f"{network.name} (normalised)" if network.name else "")
    return Normalisation(net, factor, exps, relu_factors)


def scaled_outcome(outcome: Any, factor: float | Normalisation) -> Any:
    """A solver outcome of the normalised model with objective and bound in the original units."""
    f = factor.factor if isinstance(factor, Normalisation) else float(factor)
    if outcome is None or f == 1.0:
        return outcome

    def up(v: float | None) -> float | None:
        return None if v is None else float(v) * f

    return dataclasses.replace(outcome, objective=up(outcome.objective), bound=up(outcome.bound))
