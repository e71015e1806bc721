"""Layers of the float64 network IR.

Every layer is an immutable dataclass holding float64 numpy arrays. Shapes are per sample (no batch
axis): dense layers act on vectors, Conv2d and the pooling layers on (C, H, W) arrays. A layer knows
how to evaluate itself on a batch and how to report its output shape; linear algebra that needs the
whole network (Jacobians, lowering to matrices) lives in :mod:`lipopt.network.network`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipopt.errors import InvalidNetworkError

Pair = tuple[int, int]


def _pair(v: int | tuple[int, ...] | list[int], name: str) -> Pair:
    if isinstance(v, int | np.integer):
        return (int(v), int(v))
    t = tuple(int(a) for a in v)
    if len(t) == 1:
        return (t[0], t[0])
    if len(t) != 2:
        raise InvalidNetworkError(f"{name} must be an int or a pair, got {v!r}")
    return (t[0], t[1])


def _finite(arr: np.ndarray, what: str) -> np.ndarray:
    a = np.array(arr, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise InvalidNetworkError(f"{what} contains {bad} NaN or infinite value(s); weights must be finite")
    a.setflags(write=False)
    return a


@dataclass(frozen=True, eq=False)
class Dense:
    """Affine map y = W x + b on flat vectors; weight has shape (out, in)."""

    weight: np.ndarray
    bias: np.ndarray
    name: str = ""

    def __post_init__(self) -> None:
        w = _finite(self.weight, f"Dense {self.name or ''} weight".replace("  ", " "))
        if w.ndim != 2:
            raise InvalidNetworkError(f"Dense weight must be 2-D (out, in), got shape {w.shape}")
        b = np.zeros(w.shape[0]) if self.bias is None else _finite(self.bias, "Dense bias")
        b = b.reshape(-1)
        if b.shape != (w.shape[0],):
            raise InvalidNetworkError(
                f"Dense bias has {b.shape[0]} entries but the weight has {w.shape[0]} rows (shape {w.shape})"
            )
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        n = int(np.prod(input_shape))
        if len(input_shape) != 1 or n != self.in_features:
            raise InvalidNetworkError(
                f"Dense layer {self.name!r} expects a flat input of size {self.in_features}, "
                f"got shape {input_shape}"
            )
        return (self.out_features,)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weight.T + self.bias

    def linear(self, dx: np.ndarray) -> np.ndarray:
        return dx @ self.weight.T


@dataclass(frozen=True, eq=False)
class Conv2d:
    """2-D convolution (cross-correlation, as in torch) on (C, H, W) inputs, zero padding."""

    weight: np.ndarray  # (C_out, C_in / groups, kH, kW)
    bias: np.ndarray | None
    stride: Pair = (1, 1)
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    groups: int = 1
    name: str = ""

    def __post_init__(self) -> None:
        w = _finite(self.weight, "Conv2d weight")
        if w.ndim != 4:
            raise InvalidNetworkError(
                f"Conv2d weight must be 4-D (C_out, C_in/groups, kH, kW), got {w.shape}")
        b = np.zeros(w.shape[0]) if self.bias is None else _finite(self.bias, "Conv2d bias").reshape(-1)
        if b.shape != (w.shape[0],):
            raise InvalidNetworkError(f"Conv2d bias has {b.size} entries for {w.shape[0]} output channels")
        object.__setattr__(self, "weight", w)
        object.__setattr__(self, "bias", b)
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding"))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation"))
        if self.groups < 1 or w.shape[0] % self.groups:
            raise InvalidNetworkError(
                f"Conv2d: {w.shape[0]} output channels not divisible by groups={self.groups}")
        if min(self.stride) < 1 or min(self.dilation) < 1 or min(self.padding) < 0:
            raise InvalidNetworkError("Conv2d: stride and dilation must be >= 1 and padding >= 0")

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1] * self.groups)

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def kernel_size(self) -> Pair:
        return (int(self.weight.shape[2]), int(self.weight.shape[3]))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3 or input_shape[0] != self.in_channels:
            raise InvalidNetworkError(
                f"Conv2d {self.name!r} expects input (C={self.in_channels}, H, W), got shape {input_shape}"
            )
        h, w = _window_out(input_shape[1:], self.kernel_size, self.stride, self.padding, self.dilation)
        if h < 1 or w < 1:
            raise InvalidNetworkError(f"Conv2d {self.name!r}: input {input_shape} too small for its kernel")
        return (self.out_channels, h, w)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.linear(x) + self.bias[None, :, None, None]

    def linear(self, x: np.ndarray) -> np.ndarray:
        """Bias-free convolution of a batch (B, C, H, W)."""
        b, c, _, _ = x.shape
        kh, kw = self.kernel_size
        cols = _im2col(x, (kh, kw), self.stride, self.padding, self.dilation, 0.0)  # (B, C, kh, kw, Ho, Wo)
        g = self.groups
        cg = c // g
        og = self.out_channels // g
        ho, wo = cols.shape[-2:]
        out = np.empty((b, self.out_channels, ho, wo))
        for gi in range(g):
            wg = self.weight[gi * og : (gi + 1) * og]  # (og, cg, kh, kw)
            cg_cols = cols[:, gi * cg : (gi + 1) * cg]
            out[:, gi * og : (gi + 1) * og] = np.einsum("ocij,bcijhw->bohw", wg, cg_cols, optimize=True)
        return out


@dataclass(frozen=True)
class ReLU:
    name: str = ""

    @property
    def alpha(self) -> float:
        return 0.0

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)


@dataclass(frozen=True)
class LeakyReLU:
    """y = max(x, alpha x) with the negative slope ``0 <= alpha < 1`` (torch's ``negative_slope``)."""

    negative_slope: float = 0.01
    name: str = ""

    def __post_init__(self) -> None:
        from lipopt.network.stages import check_negative_slope

        a = check_negative_slope(self.negative_slope, "LeakyReLU negative_slope")
        object.__setattr__(self, "negative_slope", a)

    @property
    def alpha(self) -> float:
        return self.negative_slope

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return input_shape

    def forward(self, x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, x, self.negative_slope * x)


@dataclass(frozen=True)
class MaxPool2d:
    kernel_size: Pair
    stride: Pair | None = None
    padding: Pair = (0, 0)
    dilation: Pair = (1, 1)
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size"))
        stride = self.kernel_size if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, "stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding"))
        object.__setattr__(self, "dilation", _pair(self.dilation, "dilation"))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise InvalidNetworkError(f"MaxPool2d expects (C, H, W) input, got {input_shape}")
        h, w = _window_out(input_shape[1:], self.kernel_size, self.stride, self.padding, self.dilation)
        return (input_shape[0], h, w)

    def windows(self, input_shape: tuple[int, ...]) -> np.ndarray:
        """Flat input indices of each output's window, shape (n_out, kH*kW); -1 marks padding."""
        return _window_indices(input_shape, self.kernel_size, self.stride, self.padding, self.dilation)

    def forward(self, x: np.ndarray) -> np.ndarray:
        cols = _im2col(x, self.kernel_size, self.stride, self.padding, self.dilation, -np.inf)
        return cols.max(axis=(2, 3))


@dataclass(frozen=True)
class AvgPool2d:
    """Average pooling; count_include_pad follows torch's default (True)."""

    kernel_size: Pair
    stride: Pair | None = None
    padding: Pair = (0, 0)
    count_include_pad: bool = True
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, "kernel_size"))
        stride = self.kernel_size if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, "stride"))
        object.__setattr__(self, "padding", _pair(self.padding, "padding"))

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise InvalidNetworkError(f"AvgPool2d expects (C, H, W) input, got {input_shape}")
        h, w = _window_out(input_shape[1:], self.kernel_size, self.stride, self.padding, (1, 1))
        return (input_shape[0], h, w)

    def divisors(self, input_shape: tuple[int, ...]) -> np.ndarray:
        """Per output position (Ho, Wo): the number the window sum is divided by."""
        kh, kw = self.kernel_size
        if self.count_include_pad:
            _, ho, wo = self.output_shape(input_shape)
            return np.full((ho, wo), float(kh * kw))
        ones = np.ones((1, 1, *input_shape[1:]))
        cols = _im2col(ones, self.kernel_size, self.stride, self.padding, (1, 1), 0.0)
        return cols.sum(axis=(2, 3))[0, 0]

    def forward(self, x: np.ndarray) -> np.ndarray:
        return self.linear(x)

    def linear(self, x: np.ndarray) -> np.ndarray:
        cols = _im2col(x, self.kernel_size, self.stride, self.padding, (1, 1), 0.0)
        return cols.sum(axis=(2, 3)) / self.divisors(x.shape[1:])


@dataclass(frozen=True)
class Flatten:
    name: str = ""

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(input_shape)),)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x.reshape(x.shape[0], -1)


Layer = Dense | Conv2d | ReLU | LeakyReLU | MaxPool2d | AvgPool2d | Flatten
LAYER_TYPES: tuple[type, ...] = (Dense, Conv2d, ReLU, LeakyReLU, MaxPool2d, AvgPool2d, Flatten)
LINEAR_LAYERS = (Dense, Conv2d, AvgPool2d, Flatten)
#: the elementwise activations max(x, alpha x), 0 <= alpha < 1 (ReLU: alpha = 0)
ACTIVATION_LAYERS = (ReLU, LeakyReLU)
SUPPORTED_LAYERS = ("Dense (Linear/Gemm/MatMul+Add), Conv2d, ReLU, LeakyReLU (0 <= negative slope < 1), "
                    "MaxPool2d, AvgPool2d, Flatten")


def _window_out(hw: tuple[int, ...], k: Pair, s: Pair, p: Pair, d: Pair) -> Pair:
    out = []
    for i in range(2):
        out.append((hw[i] + 2 * p[i] - d[i] * (k[i] - 1) - 1) // s[i] + 1)
    return (out[0], out[1])


def _im2col(x: np.ndarray, k: Pair, s: Pair, p: Pair, d: Pair, fill: float) -> np.ndarray:
    """(B, C, H, W) -> (B, C, kH, kW, Ho, Wo) view of the sliding windows, padded with ``fill``."""
    b, c, h, w = x.shape
    if p != (0, 0):
        xp = np.full((b, c, h + 2 * p[0], w + 2 * p[1]), fill, dtype=x.dtype)
        xp[:, :, p[0] : p[0] + h, p[1] : p[1] + w] = x
    else:
        xp = x
    ho, wo = _window_out((h, w), k, s, p, d)
    sb, sc, sh, sw = xp.strides
    shape = (b, c, k[0], k[1], ho, wo)
    strides = (sb, sc, sh * d[0], sw * d[1], sh * s[0], sw * s[1])
    return np.lib.stride_tricks.as_strided(xp, shape=shape, strides=strides, writeable=False)


def _window_indices(input_shape: tuple[int, ...], k: Pair, s: Pair, p: Pair, d: Pair) -> np.ndarray:
    c, h, w = input_shape
    idx = np.arange(c * h * w, dtype=np.float64).reshape(1, c, h, w)
    cols = _im2col(idx, k, s, p, d, -1.0)  # (1, C, kh, kw, Ho, Wo)
    cols = cols[0].transpose(0, 3, 4, 1, 2).reshape(-1, k[0] * k[1])
    return cols.astype(np.int64)
