"""The LMI's chain (formulations.md 3; docs/methods.md#lipsdp): the input and the unstable neurons' outputs
as the coordinates xi of the LMI, with their pre-activations and the output increment as rows on xi. Shared
by the solve, the certification and the first-order descent."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FORMS = ("neuron", "layer")
EPS = float(np.finfo(np.float64).eps)
#: relative rounding allowance on sqrt(rho) times the power-of-two scale
VALUE_SAFETY = 1.0 + 8 * EPS


# ------------------------------------------------------------------------------------------- the chain


@dataclass
class ChainLayer:
    """The unstable neurons of one hidden layer: their outputs are the coordinates ``idx`` of xi, their
    pre-activations ``V @ xi`` (``V_abs`` bounds the rounding of V: products of absolute values)."""

    idx: np.ndarray
    V: np.ndarray
    V_abs: np.ndarray


@dataclass
class Chain:
    """The network as LipSDP sees it. xi = (x_0, outputs of the unstable neurons, layer by layer); a
    stable-on neuron is linear (its increment is its pre-activation's), a stable-off one constant, so
    both are eliminated exactly. The output increment is ``out @ xi``. ``lam`` vectors have one entry per
    unstable neuron, layer by layer. L(f) <= ``scale`` * sqrt(rho) for a certified rho."""

    n0: int
    layers: list[ChainLayer]
    out: np.ndarray
    out_abs: np.ndarray
    widths_all: list[int]  # every hidden width (stable neurons included), for the rounding margin
    log2_scale: int = 0

    @property
    def widths(self) -> list[int]:
        return [int(la.idx.size) for la in self.layers]

    @property
    def n_hidden(self) -> int:
        return int(sum(self.widths))

    @property
    def size(self) -> int:
        return self.n0 + self.n_hidden

    @property
    def scale(self) -> float:
        return math.ldexp(1.0, self.log2_scale)

    def value(self, rho: float) -> float:
        """The Lipschitz bound of a certified rho."""
        return self.scale * math.sqrt(max(float(rho), 0.0)) * VALUE_SAFETY

    def reduced(self) -> Chain:
        """The chain with the x_0 block reduced to the row space of everything that reads x_0 (thin SVD:
        an exact congruence, the other x_0 directions only meet -rho I); for the solve only."""
        n0 = self.n0
        x0 = np.vstack([la.V[:, :n0] for la in self.layers] + [self.out[:, :n0]])
        x0 = x0[np.any(x0 != 0, axis=1)]
        if x0.shape[0] >= n0:
            return self
        _, _, vt = np.linalg.svd(x0, full_matrices=False)
        q = vt.T  # (n0, r)
        r = q.shape[1]

        def tr(m: np.ndarray) -> np.ndarray:
            return np.hstack([m[:, :n0] @ q, m[:, n0:]])

        layers = [ChainLayer(la.idx - n0 + r, tr(la.V), tr(la.V_abs)) for la in self.layers]
        return Chain(r, layers, tr(self.out), tr(self.out_abs), self.widths_all, self.log2_scale)
