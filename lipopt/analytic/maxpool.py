"""Max-pooling constants from the exact window counts at the actual input size.

Max pooling is y = M(x) x with one 1 per row of M(x); M^T M = diag(column counts), so its global l2
constant is sqrt(n_max), n_max = the largest number of pooling windows containing one input element
(Avant & Morgansen, Thm 3 / Prop 5). The closed form ceil(k/s)^2 assumes a large input; here the count
is taken at the real input size, padding and dilation (formulations.md 4.1 caveat, T10): e.g. 4x4 input,
k=3, s=1 gives 2, not 3.

Other norms: l-inf -> l-inf constant 1 (each output is a max of inputs), l1 -> l1 constant n_max
(|Delta y|_1 <= sum_windows max_{j in w} |Delta x_j| <= sum_j count_j |Delta x_j|).

Restricted count: when some inputs are known not to move (d_j = 0), only windows' varying members
matter: |max(u) - max(u0)| <= max_{j in w, d_j = 1} |u_j - u0_j|, so sqrt(max_{j: d_j=1} count_j) is
still a valid constant, never larger than sqrt(n_max).

The mathematics as implemented: ``docs/methods.md#maxpool``.
"""

from __future__ import annotations

import math

import numpy as np

from lipopt.network.layers import MaxPool2d
from lipopt.spec import Norm


def window_counts(layer: MaxPool2d, input_shape: tuple[int, ...]) -> np.ndarray:
    """Number of pooling windows containing each input element, shape (H, W) (same for every channel)."""
    _, h, w = input_shape
    win = layer.windows((1, h, w))
    idx = win[win >= 0]
    return np.bincount(idx, minlength=h * w).reshape(h, w)


def max_count(layer: MaxPool2d, input_shape: tuple[int, ...], mask: np.ndarray | None = None) -> int:
    """n_max at the actual input size; with ``mask`` (C, H, W) only over elements with mask > 0."""
    counts = window_counts(layer, input_shape)
    if mask is None:
        return int(counts.max()) if counts.size else 0
    m = np.asarray(mask).reshape(input_shape) > 0
    if not m.any():
        return 0
    return int(counts[m.any(axis=0)].max())


def formula_count(layer: MaxPool2d) -> int:
    """The paper's closed form ceil(kh/sh) * ceil(kw/sw) (dilation 1, large input); for comparison only."""
    (kh, kw), (sh, sw) = layer.kernel_size, layer.stride
    return math.ceil(kh / sh) * math.ceil(kw / sw)


def maxpool_constant(layer: MaxPool2d, input_shape: tuple[int, ...], norm: Norm = Norm.L2,
                     mask: np.ndarray | None = None) -> float:
    """The exact global constant of the max-pool layer in the norm ``norm`` (-> same norm)."""
    n = max_count(layer, input_shape, mask)
    if norm is Norm.L2:
        return math.sqrt(n)
    if norm is Norm.LINF:
        return 1.0 if n > 0 else 0.0
    return float(n)
