"""The network IR: a validated chain of float64 layers with evaluation, Jacobians and lowering.

``Network.lower()`` turns the chain into the *stages* of :mod:`lipopt.network.stages` for the exact
formulations and bounds: ``AffineStage`` (Dense, Conv2d, AvgPool2d and Flatten, with consecutive linear
maps multiplied out), the activation stages ``ReLUStage`` / ``LeakyReLUStage`` and ``MaxPoolStage``.
Every hidden activation of ``lower()`` therefore sits between two affine stages. Layers and stages are
handled through tables keyed by their type (a missing entry is an error naming the supported kinds).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property

import numpy as np

from lipopt.errors import InvalidNetworkError
from lipopt.network.layers import (
    ACTIVATION_LAYERS,
    LAYER_TYPES,
    SUPPORTED_LAYERS,
    AvgPool2d,
    Conv2d,
    Dense,
    Flatten,
    Layer,
    LeakyReLU,
    MaxPool2d,
    ReLU,
)
from lipopt.network.stages import (  # AffineStage, ReLUStage, MaxPoolStage: re-exported (old home)
    ActivationStage,
    AffineStage,
    LeakyReLUStage,
    MaxPoolStage,
    ReLUStage,
    Stage,
    activation_eval,
    dispatch,
)

__all__ = ["AffineStage", "LeakyReLUStage", "MaxPoolStage", "Network", "ReLUStage", "Stage", "stage_forward"]


def _affine_eval(s: AffineStage, h: np.ndarray) -> tuple[np.ndarray, None]:
    return s.apply(h), None


def _activation_state(s: ActivationStage, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return activation_eval(s, h), h > 0


def _maxpool_eval(s: MaxPoolStage, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    win = s.windows
    vals = np.where((win >= 0)[None], h[:, np.maximum(win, 0)], -np.inf)  # (B, n_out, k)
    arg = np.argmax(vals, axis=2)
    idx = np.take_along_axis(np.broadcast_to(win, vals.shape), arg[..., None], axis=2)[..., 0]
    return np.take_along_axis(h, idx, axis=1), idx


#: stage type -> (stage, batch) -> (output, state)
STAGE_EVAL: dict[type, Callable[..., tuple[np.ndarray, np.ndarray | None]]] = {
    AffineStage: _affine_eval,
    ReLUStage: _activation_state,
    LeakyReLUStage: _activation_state,
    MaxPoolStage: _maxpool_eval,
}


def stage_forward(stages: Sequence[Stage], x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray | None]]:
    """Evaluate lowered stages on a batch x (B, n).

    Returns the output of every stage (B, size) and, per stage, the activation states (B, n) as
    booleans (pre-activation > 0), the max-pool winners (B, n_out) as flat input indices (ties to the
    first index of the window), or None for affine stages."""
    outputs: list[np.ndarray] = []
    states: list[np.ndarray | None] = []
    h = np.asarray(x, dtype=np.float64)
    for s in stages:
        h, state = dispatch(STAGE_EVAL, s, "stage evaluation")(s, h)
        states.append(state)
        outputs.append(h)
    return outputs, states


def _jvp_activation(la: ReLU | LeakyReLU, h: np.ndarray, d: np.ndarray) -> np.ndarray:
    return d * np.where(h > 0, 1.0, la.alpha)


def _jvp_maxpool(la: MaxPool2d, h: np.ndarray, d: np.ndarray) -> np.ndarray:
    k = d.shape[0]
    win = la.windows(h.shape[1:])
    flat = h.reshape(-1)
    vals = np.where(win >= 0, flat[np.maximum(win, 0)], -np.inf)
    arg = win[np.arange(win.shape[0]), np.argmax(vals, axis=1)]
    return d.reshape(k, -1)[:, arg].reshape(k, *la.output_shape(h.shape[1:]))


def _jvp_linear(la: Dense | Conv2d | AvgPool2d, h: np.ndarray, d: np.ndarray) -> np.ndarray:
    return la.linear(d)


#: layer type -> (layer, input h (1, *shape), tangents d (k, *shape)) -> output tangents
_LAYER_JVP: dict[type, Callable[..., np.ndarray]] = {
    Dense: _jvp_linear,
    Conv2d: _jvp_linear,
    AvgPool2d: _jvp_linear,
    Flatten: lambda la, h, d: d.reshape(d.shape[0], -1),
    ReLU: _jvp_activation,
    LeakyReLU: _jvp_activation,
    MaxPool2d: _jvp_maxpool,
}


# ------------------------------------------------------------------------------------------------


class Network:
    """A chain of IR layers with a fixed per-sample input shape, evaluated in float64."""

    def __init__(self, layers: Sequence[Layer], input_shape: Sequence[int] | int, name: str = "") -> None:
        if isinstance(input_shape, int | np.integer):
            input_shape = (int(input_shape),)
        self.input_shape: tuple[int, ...] = tuple(int(s) for s in input_shape)
        if not self.input_shape or min(self.input_shape) < 1:
            raise InvalidNetworkError(f"input shape must be non-empty and positive, got {self.input_shape}")
        self.layers: tuple[Layer, ...] = tuple(layers)
        self.name = name
        # x_norm = (x - mean) / std folded into the first layer by the importer (lipopt.network.normalization)
        self.input_normalization = None
        self.input_space = "raw"
        if not self.layers:
            raise InvalidNetworkError("a network needs at least one layer")
        bad = [
            f"layer {i}: {type(layer).__name__}"
            for i, layer in enumerate(self.layers)
            if type(layer) not in LAYER_TYPES
        ]
        if bad:
            raise InvalidNetworkError(f"not IR layers: {', '.join(bad)}; supported: {SUPPORTED_LAYERS}")
        shapes = [self.input_shape]
        for i, layer in enumerate(self.layers):
            try:
                shapes.append(layer.output_shape(shapes[-1]))
            except InvalidNetworkError as exc:
                raise InvalidNetworkError(f"layer {i} ({type(layer).__name__}): {exc}") from None
        self.shapes: tuple[tuple[int, ...], ...] = tuple(shapes)
        if len(self.output_shape) != 1:
            raise InvalidNetworkError(
                f"the network output must be a flat vector (add a Flatten), got shape {self.output_shape}"
            )

    # -- basic properties ------------------------------------------------------------------------
    @property
    def output_shape(self) -> tuple[int, ...]:
        return self.shapes[-1]

    @property
    def input_size(self) -> int:
        return int(np.prod(self.input_shape))

    @property
    def output_size(self) -> int:
        return int(np.prod(self.output_shape))

    @property
    def n_relus(self) -> int:
        """Number of activation neurons (ReLU and LeakyReLU)."""
        return sum(self.hidden_widths())

    @property
    def has_bias(self) -> bool:
        return any(
            isinstance(la, Dense | Conv2d) and np.any(la.bias != 0) for la in self.layers
        )

    @property
    def is_dense_relu(self) -> bool:
        """Only Dense, ReLU and Flatten layers (the classic MLP)."""
        return all(isinstance(la, Dense | ReLU | Flatten) for la in self.layers)

    @property
    def has_maxpool(self) -> bool:
        return any(isinstance(la, MaxPool2d) for la in self.layers)

    @property
    def has_leaky(self) -> bool:
        """Some activation is a LeakyReLU (negative slope alpha > 0 allowed)."""
        return any(isinstance(la, LeakyReLU) for la in self.layers)

    def hidden_widths(self) -> list[int]:
        """Widths of the activation (ReLU / LeakyReLU) layers."""
        return [int(np.prod(self.shapes[i])) for i, la in enumerate(self.layers)
                if isinstance(la, ACTIVATION_LAYERS)]

    def describe(self) -> str:
        parts = []
        for la, shp in zip(self.layers, self.shapes[1:], strict=True):
            parts.append(f"{type(la).__name__}->{'x'.join(map(str, shp))}")
        return f"{self.name or 'network'}: in {'x'.join(map(str, self.input_shape))}; " + ", ".join(parts)

    def __repr__(self) -> str:
        return f"Network({self.describe()})"

    # -- evaluation ------------------------------------------------------------------------------
    def _as_batch(self, x: np.ndarray) -> tuple[np.ndarray, bool]:
        x = np.asarray(x, dtype=np.float64)
        if x.shape == self.input_shape or (x.ndim == 1 and x.size == self.input_size and x.ndim != 0):
            return x.reshape(1, *self.input_shape), True
        if x.ndim >= 2 and int(np.prod(x.shape[1:])) == self.input_size:
            return x.reshape(x.shape[0], *self.input_shape), False
        raise InvalidNetworkError(
            f"input of shape {x.shape} does not match the network input shape {self.input_shape}"
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Evaluate in float64. x: one input (flat or shaped) or a batch; returns (out,) or (B, out)."""
        h, single = self._as_batch(x)
        for la in self.layers:
            h = la.forward(h)
        return h[0] if single else h

    __call__ = forward

    def jvp(self, x: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Output at one input x and directional derivatives along ``dirs`` (k, *input_shape or flat).

        Returns (f(x) of shape (out,), J(x) dirs^T of shape (k, out)); ReLU'(0) = 0, LeakyReLU'(0) =
        alpha, and max-pool ties go to the first index of the window."""
        h, _ = self._as_batch(x)
        h = h[:1]
        dirs = np.asarray(dirs, dtype=np.float64)
        k = dirs.shape[0]
        d = dirs.reshape(k, *self.input_shape)
        for la in self.layers:
            d = dispatch(_LAYER_JVP, la, "the Jacobian")(la, h, d)
            h = la.forward(h)
        return h.reshape(-1), d.reshape(k, -1)

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        """Jacobian (out, in_flat) at x, with ReLU'(0) = 0 (LeakyReLU'(0) = alpha) and max-pool ties to
        the first index."""
        n = self.input_size
        if 4 * self.output_size < n:  # reverse mode: one backward pass per output instead of per input
            from lipopt.lower.batch import reverse_jacobian

            return reverse_jacobian(self, x)
        return self.jvp(x, np.eye(n))[1].T

    def activation_pattern(self, x: np.ndarray) -> list[np.ndarray]:
        """Boolean ReLU states (pre-activation > 0) of every ReLU layer at one input, flattened."""
        h, _ = self._as_batch(x)
        h = h[:1]
        pattern = []
        for la in self.layers:
            if isinstance(la, ACTIVATION_LAYERS):
                pattern.append(h.reshape(-1) > 0)
            h = la.forward(h)
        return pattern

    # -- lowering --------------------------------------------------------------------------------
    @cached_property
    def _lowered(self) -> tuple[Stage, ...]:
        return tuple(_lower(self))

    def lower(self) -> tuple[Stage, ...]:
        """Flat stages (AffineStage / ReLUStage / MaxPoolStage); consecutive linear layers merged.

        The sequence always starts and ends with an AffineStage (identity where needed)."""
        return self._lowered

    def affine_relu_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """For networks without max-pool: dense [(W_1, b_1), ..., (W_L, b_L)] with ReLU between."""
        if self.has_maxpool or self.has_leaky:
            raise InvalidNetworkError(
                "affine_relu_weights() needs a ReLU network without MaxPool2d or LeakyReLU")
        return [(s.dense(), s.bias) for s in self.lower() if isinstance(s, AffineStage)]

    @classmethod
    def from_weights(
        cls,
        weights: Sequence[np.ndarray],
        biases: Sequence[np.ndarray | None] | None = None,
        name: str = "",
    ) -> Network:
        """Dense ReLU network from weight matrices of shape (out, in) and optional biases."""
        ws = [np.asarray(w, dtype=np.float64) for w in weights]
        if not ws:
            raise InvalidNetworkError("from_weights needs at least one weight matrix")
        if biases is None:
            biases = [None] * len(ws)
        if len(biases) != len(ws):
            raise InvalidNetworkError(f"{len(ws)} weight matrices but {len(biases)} bias vectors")
        for i, w in enumerate(ws):
            if w.ndim != 2:
                raise InvalidNetworkError(f"weight {i} must be 2-D (out, in), got shape {w.shape}")
            if i and w.shape[1] != ws[i - 1].shape[0]:
                raise InvalidNetworkError(
                    f"weight {i} has {w.shape[1]} columns but weight {i - 1} has {ws[i - 1].shape[0]} rows "
                    "(expected (out, in) layout)"
                )
        layers: list[Layer] = []
        for i, (w, b) in enumerate(zip(ws, biases, strict=True)):
            layers.append(Dense(w, None if b is None else np.asarray(b, dtype=np.float64), name=f"fc{i + 1}"))
            if i < len(ws) - 1:
                layers.append(ReLU())
        return cls(layers, (ws[0].shape[1],), name=name)


# ------------------------------------------------------------------------------------------------


def linear_matrix(layer: Layer, input_shape: tuple[int, ...], sparse_threshold: int = 4096) -> object:
    """The matrix of a linear layer (bias-free) acting on flattened inputs.

    Dense: the weight. Flatten: identity. Conv2d / AvgPool2d: built by applying the layer to the
    identity batch (small inputs) or by scattering the kernel (sparse CSR, large inputs)."""
    n_in = int(np.prod(input_shape))
    if isinstance(layer, Dense):  # no scipy import for a dense net
        return layer.weight
    if isinstance(layer, Flatten):
        if n_in <= sparse_threshold:
            return np.eye(n_in)
        import scipy.sparse as sp

        return sp.identity(n_in, format="csr")
    if isinstance(layer, Conv2d | AvgPool2d):
        out_shape = layer.output_shape(input_shape)
        if n_in <= sparse_threshold:
            eye = np.eye(n_in).reshape(n_in, *input_shape)
            return layer.linear(eye).reshape(n_in, -1).T.copy()
        return _sparse_window_matrix(layer, input_shape, out_shape)
    raise InvalidNetworkError(f"{type(layer).__name__} is not linear")


def _sparse_window_matrix(layer: Conv2d | AvgPool2d, input_shape, out_shape):
    import scipy.sparse as sp

    if isinstance(layer, Conv2d):
        return conv_sparse_matrix(layer, input_shape)
    c_in = input_shape[0]
    # AvgPool2d
    win = _window_indices_per_channel(input_shape, layer.kernel_size, layer.stride, layer.padding, (1, 1))
    div = layer.divisors(input_shape).reshape(-1)
    n_pos = win.shape[1]
    rows, cols, vals = [], [], []
    for c in range(c_in):
        idx = win[c]
        valid = idx >= 0
        r = (c * n_pos + np.arange(n_pos))[:, None].repeat(idx.shape[1], axis=1)
        rows.append(r[valid])
        cols.append(idx[valid])
        vals.append(np.broadcast_to((1.0 / div)[:, None], idx.shape)[valid])
    n_out = int(np.prod(out_shape))
    m = sp.coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                      shape=(n_out, int(np.prod(input_shape))))
    return m.tocsr()


def conv_sparse_matrix(layer: Conv2d, in_shape: tuple[int, ...]) -> object:
    """The zero-padded convolution as a scipy CSR matrix (vectorised construction)."""
    import scipy.sparse as sp

    c_in, h, w = in_shape
    c_out, cg, kh, kw = layer.weight.shape
    _, ho, wo = layer.output_shape(tuple(in_shape))
    g = layer.groups
    og = c_out // g
    sh, sw = layer.stride
    ph, pw = layer.padding
    dh, dw = layer.dilation
    o = np.arange(c_out)[:, None, None, None, None, None]
    ci = np.arange(cg)[None, :, None, None, None, None]
    ki = np.arange(kh)[None, None, :, None, None, None]
    kj = np.arange(kw)[None, None, None, :, None, None]
    oi = np.arange(ho)[None, None, None, None, :, None]
    oj = np.arange(wo)[None, None, None, None, None, :]
    hh = oi * sh - ph + ki * dh
    ww = oj * sw - pw + kj * dw
    cc = (o // og) * cg + ci
    shape = (c_out, cg, kh, kw, ho, wo)
    valid = np.broadcast_to((hh >= 0) & (hh < h) & (ww >= 0) & (ww < w), shape)
    rows = np.broadcast_to((o * ho + oi) * wo + oj, shape)[valid]
    cols = np.broadcast_to((cc * h + hh) * w + ww, shape)[valid]
    vals = np.broadcast_to(layer.weight[:, :, :, :, None, None], shape)[valid]
    m = sp.coo_matrix((vals, (rows, cols)), shape=(c_out * ho * wo, c_in * h * w))
    return m.tocsr()



def _window_indices_per_channel(input_shape, k, s, p, d) -> np.ndarray:
    from lipopt.network.layers import _im2col

    c, h, w = input_shape
    idx = np.arange(c * h * w, dtype=np.float64).reshape(1, c, h, w)
    cols = _im2col(idx, k, s, p, d, -1.0)[0]  # (C, kh, kw, Ho, Wo)
    cc = cols.shape[0]
    return cols.transpose(0, 3, 4, 1, 2).reshape(cc, -1, k[0] * k[1]).astype(np.int64)


def _matmul(a: object, b: object) -> object:
    """a @ b for dense/sparse operands; densify small sparse products."""
    out = a @ b  # type: ignore[operator]
    if hasattr(out, "toarray") and np.prod(out.shape) <= 4_000_000 and out.nnz > 0.2 * np.prod(out.shape):
        out = out.toarray()
    return out


def _lower(net: Network) -> list[Stage]:
    stages: list[Stage] = []
    cur: list = [None, None]  # the pending linear map (W, b) being multiplied out

    def push_linear(w: object, b: np.ndarray) -> None:
        if cur[0] is None:
            cur[0], cur[1] = w, b
        else:
            cur[1] = np.asarray(w @ cur[1]).reshape(-1) + b  # type: ignore[operator]
            cur[0] = _matmul(w, cur[0])

    def flush(size: int) -> None:
        w, b = (np.eye(size), np.zeros(size)) if cur[0] is None else cur
        stages.append(AffineStage(w, np.asarray(b, dtype=np.float64).reshape(-1)))
        cur[0] = cur[1] = None

    def nonlinear(stage: Stage, size: int) -> None:
        flush(size)
        stages.append(stage)

    def linear(la: Layer, shp: tuple[int, ...], n_out: int) -> None:
        if isinstance(la, Dense):
            b = la.bias
        elif isinstance(la, Conv2d):
            b = np.repeat(la.bias, n_out // la.out_channels)
        else:
            b = np.zeros(n_out)
        push_linear(linear_matrix(la, shp), np.asarray(b, dtype=np.float64))

    n = lambda shp: int(np.prod(shp))  # noqa: E731
    rules: dict[type, Callable[..., None]] = {
        ReLU: lambda la, shp, n_out: nonlinear(ReLUStage(n(shp)), n(shp)),
        LeakyReLU: lambda la, shp, n_out: nonlinear(LeakyReLUStage(n(shp), la.negative_slope), n(shp)),
        MaxPool2d: lambda la, shp, n_out: nonlinear(MaxPoolStage(la.windows(shp), n(shp)), n(shp)),
        Flatten: lambda la, shp, n_out: None,
        Dense: linear, Conv2d: linear, AvgPool2d: linear,
    }
    for i, la in enumerate(net.layers):
        dispatch(rules, la, "lowering")(la, net.shapes[i], n(net.shapes[i + 1]))
    flush(net.output_size)
    return stages
