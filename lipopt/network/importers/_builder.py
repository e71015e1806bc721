"""Assemble an IR layer chain while folding element-wise affine maps (BatchNorm, input normalisation).

The IR has no element-wise scale/shift layer, so ``y = a * x + c`` (BatchNorm in eval mode, an input
normalisation ``(x - mean) / std``, ...) must be folded into a neighbouring affine layer:

* directly after a Dense / Conv2d layer it is folded *backwards* into that layer (always exact when the
  scale and shift are per output channel, or per output feature for Dense);
* otherwise it is kept *pending* and folded *forwards* into the next Dense / Conv2d layer. Into a Dense
  layer that is always exact; into a Conv2d layer only when scale and shift are per input channel and,
  if the shift is non-zero, the convolution has no zero padding (the padded border would otherwise see
  ``c`` instead of 0). A pending map commutes with Flatten, with MaxPool2d (positive per-channel scale),
  with AvgPool2d (per channel, no padding) and with ReLU / LeakyReLU (positive scale, zero shift:
  ``max(a x, alpha a x) = a max(x, alpha x)`` for ``a > 0``);
* anything else is reported as unsupported (the caller lists every problem at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lipopt.errors import InvalidNetworkError
from lipopt.network.layers import AvgPool2d, Conv2d, Dense, Flatten, Layer, LeakyReLU, MaxPool2d, ReLU
from lipopt.network.network import Network

Shape = tuple[int, ...]


class FoldError(Exception):
    """An element-wise affine map cannot be folded exactly (message says why)."""


@dataclass
class ChainBuilder:
    """Collects IR layers; ``shape`` is the current per-sample shape (None while unknown)."""

    input_shape: Shape | None = None
    layers: list[Layer] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    shape: Shape | None = None
    _pending: tuple[np.ndarray, np.ndarray, str] | None = None  # (scale, shift, description)
    _fresh: bool = False  # the last layer is Dense/Conv2d and nothing happened after it
    _broken: bool = False  # an unsupported op happened: stop building, keep collecting problems
    # element-wise maps applied to the input itself (before any layer but Flatten): (scale, shift, shape,
    # description); composed into ``Network.input_normalization`` by build()
    _input_maps: list[tuple[np.ndarray, np.ndarray, Shape | None, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.input_shape is not None:
            self.input_shape = tuple(int(s) for s in self.input_shape)
            self.shape = self.input_shape

    # -- helpers ---------------------------------------------------------------------------------
    def unsupported(self, what: str) -> None:
        """Record an unsupported node; the chain stops being built (shapes become unknown)."""
        self.problems.append(what)
        self._broken = True
        self.shape = None
        self._pending = None
        self._fresh = False

    def _append(self, layer: Layer, what: str) -> None:
        if self._broken:
            return
        if self.shape is not None:
            try:
                self.shape = tuple(layer.output_shape(self.shape))
            except InvalidNetworkError as exc:
                raise InvalidNetworkError(f"{what}: {exc}") from None
        self.layers.append(layer)

    def _need_input_shape(self, layer_shape: Shape, what: str) -> None:
        """First shaped layer: infer the input shape for Dense, demand it for Conv2d."""
        if self.input_shape is None and not self.layers and not self._broken:
            if len(layer_shape) != 1:
                raise InvalidNetworkError(
                    f"input_shape is required for a model whose first layer is a convolution ({what}): "
                    "pass it per sample, e.g. lipopt.load(model, input_shape=(1, 28, 28))"
                )
            self.input_shape = layer_shape
            self.shape = layer_shape

    # -- layers ----------------------------------------------------------------------------------
    def dense(self, weight: np.ndarray, bias: np.ndarray | None, name: str) -> None:
        w = np.asarray(weight, dtype=np.float64)
        b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
        self._need_input_shape((w.shape[1],), name)
        if self._broken:
            return
        if self.shape is not None and (len(self.shape) != 1 or self.shape[0] != w.shape[1]):
            raise InvalidNetworkError(
                f"shape mismatch at {name}: it expects {w.shape[1]} input features, but the previous layer "
                f"({self._last_name()}) outputs shape {self.shape}"
            )
        if self._pending is not None:
            a, c, _ = self._pending
            a = np.broadcast_to(a, self.shape).reshape(-1)
            c = np.broadcast_to(c, self.shape).reshape(-1)
            b = b + w @ c
            w = w * a[None, :]
            self._pending = None
        self._append(Dense(w, b, name=name), name)
        self._fresh = True

    def conv(self, weight: np.ndarray, bias: np.ndarray | None, stride, padding, dilation, groups: int,
             name: str) -> None:
        w = np.asarray(weight, dtype=np.float64)
        b = np.zeros(w.shape[0]) if bias is None else np.asarray(bias, dtype=np.float64).reshape(-1)
        self._need_input_shape((w.shape[1] * groups, 0, 0), name)
        if self._broken:
            return
        layer = Conv2d(w, b, stride=stride, padding=padding, dilation=dilation, groups=groups, name=name)
        if self.shape is not None and (len(self.shape) != 3 or self.shape[0] != layer.in_channels):
            raise InvalidNetworkError(
                f"shape mismatch at {name}: it expects input (C={layer.in_channels}, H, W), but the previous "
                f"layer ({self._last_name()}) outputs shape {self.shape}"
            )
        if self._pending is not None:
            a, c, desc = self._pending
            try:
                a_ch = self._per_channel(a, "scale")
                c_ch = self._per_channel(c, "shift")
            except FoldError as exc:
                raise FoldError(f"{desc} before Conv2d {name!r}: {exc}") from None
            if layer.padding != (0, 0) and np.any(c_ch != 0):
                raise FoldError(
                    f"{desc} before Conv2d {name!r} cannot be folded exactly: the convolution pads with "
                    f"zeros (padding {layer.padding}), so at the border the shift would not be applied; "
                    "lipopt's IR has no element-wise affine layer yet"
                )
            g = groups
            cg = layer.in_channels // g
            og = layer.out_channels // g
            w = w.copy()
            b = b.copy()
            for gi in range(g):
                sl = slice(gi * og, (gi + 1) * og)
                ac = a_ch[gi * cg : (gi + 1) * cg]
                cc = c_ch[gi * cg : (gi + 1) * cg]
                b[sl] = b[sl] + np.einsum("ocij,c->o", w[sl], cc)
                w[sl] = w[sl] * ac[None, :, None, None]
            layer = Conv2d(w, b, stride=stride, padding=padding, dilation=dilation, groups=groups, name=name)
            self._pending = None
        self._append(layer, name)
        self._fresh = True

    def relu(self, name: str = "") -> None:
        self.activation(ReLU(name=name))

    def leaky_relu(self, negative_slope: float, name: str = "") -> None:
        self.activation(LeakyReLU(negative_slope, name=name))

    def activation(self, layer: ReLU | LeakyReLU) -> None:
        """Append a ReLU / LeakyReLU; a pending element-wise map commutes with it only when it is a
        positive scale without shift."""
        kind = type(layer).__name__
        if self._pending is not None:
            a, c, desc = self._pending
            if np.any(c != 0) or np.any(a <= 0):
                raise FoldError(
                    f"{desc} is followed by {kind} {layer.name!r} with no affine layer before it to fold "
                    f"into (only a positive scale without shift commutes with {kind})"
                )
        self._append(layer, layer.name or kind)
        self._fresh = False

    def global_avgpool(self, name: str = "") -> None:
        """Mean over the spatial axes of a (C, H, W) value, keeping them: AvgPool2d with an (H, W) kernel."""
        if self.shape is None or len(self.shape) != 3:
            raise FoldError(f"global average pooling {name!r} needs a (C, H, W) input, got {self.shape}")
        hw = (self.shape[1], self.shape[2])
        self.avgpool(hw, hw, (0, 0), True, name)

    def maxpool(self, kernel_size, stride, padding, dilation, name: str) -> None:
        if self._pending is not None:
            a, c, desc = self._pending
            try:
                a_ch = self._per_channel(a, "scale")
                c_ch = self._per_channel(c, "shift")
            except FoldError as exc:
                raise FoldError(f"{desc} before MaxPool2d {name!r}: {exc}") from None
            if np.any(a_ch <= 0):
                raise FoldError(f"{desc} with a non-positive scale does not commute with MaxPool2d {name!r}")
            self._pending = (a_ch[:, None, None], c_ch[:, None, None], desc)
        self._append(MaxPool2d(kernel_size, stride, padding, dilation, name=name), name)
        self._fresh = False

    def avgpool(self, kernel_size, stride, padding, count_include_pad: bool, name: str) -> None:
        layer = AvgPool2d(kernel_size, stride, padding, count_include_pad, name=name)
        if self._pending is not None:
            desc = self._pending[2]
            try:
                self._per_channel(self._pending[0], "scale")
                c_ch = self._per_channel(self._pending[1], "shift")
            except FoldError as exc:
                raise FoldError(f"{desc} before AvgPool2d {name!r}: {exc}") from None
            if layer.padding != (0, 0) and count_include_pad and np.any(c_ch != 0):
                raise FoldError(f"{desc} does not commute with the zero-padded AvgPool2d {name!r}")
            a_ch = self._per_channel(self._pending[0], "scale")
            self._pending = (a_ch[:, None, None], c_ch[:, None, None], desc)
        self._append(layer, name)
        self._fresh = False

    def flatten(self, name: str = "") -> None:
        if self._pending is not None and self.shape is not None:
            a, c, desc = self._pending
            self._pending = (np.broadcast_to(a, self.shape).reshape(-1).copy(),
                             np.broadcast_to(c, self.shape).reshape(-1).copy(), desc)
        if self.shape is not None and len(self.shape) == 1 and self.layers:
            return  # flattening a flat vector: nothing to do
        if self.shape is None and self.input_shape is None and not self.layers:
            return  # leading Flatten with unknown input shape: the input is taken flat
        self._append(Flatten(name=name), name or "Flatten")
        self._fresh = False

    def affine(self, scale: np.ndarray | float, shift: np.ndarray | float, desc: str) -> None:
        """Element-wise y = scale * x + shift; arrays broadcast against the per-sample shape."""
        if self._broken:
            return
        a = np.asarray(scale, dtype=np.float64)
        c = np.asarray(shift, dtype=np.float64)
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(c))):
            raise InvalidNetworkError(f"{desc}: scale/shift contain NaN or infinite values")
        if self.shape is not None:
            for arr in (a, c):
                try:
                    np.broadcast_shapes(arr.shape, self.shape)
                except ValueError:
                    raise InvalidNetworkError(
                        f"{desc}: constant of shape {arr.shape} does not broadcast against the per-sample "
                        f"shape {self.shape}"
                    ) from None
                if np.broadcast_shapes(arr.shape, self.shape) != self.shape:
                    raise InvalidNetworkError(
                        f"{desc}: constant of shape {arr.shape} would change the shape {self.shape}"
                    )
        if all(isinstance(la, Flatten) for la in self.layers):
            self._input_maps.append((a, c, self.shape, desc))
        if self._fresh and self._pending is None and self.layers:
            last = self.layers[-1]
            if isinstance(last, Dense):
                aa = np.broadcast_to(a, (last.out_features,))
                cc = np.broadcast_to(c, (last.out_features,))
                self.layers[-1] = Dense(last.weight * aa[:, None], aa * last.bias + cc, name=last.name)
                return
            if isinstance(last, Conv2d):
                try:
                    aa = self._per_channel(a, "scale")
                    cc = self._per_channel(c, "shift")
                except FoldError:
                    pass  # spatially varying: keep it pending for the next layer
                else:
                    self.layers[-1] = Conv2d(last.weight * aa[:, None, None, None], aa * last.bias + cc,
                                             last.stride, last.padding, last.dilation, last.groups, last.name)
                    return
        if self._pending is None:
            self._pending = (a, c, desc)
        else:
            pa, pc, pdesc = self._pending
            self._pending = (a * pa, a * pc + c, f"{pdesc} + {desc}")

    # -- finishing -------------------------------------------------------------------------------
    def _per_channel(self, arr: np.ndarray, what: str) -> np.ndarray:
        """Reduce a scale/shift broadcastable to (C, H, W) to a per-channel vector, or raise FoldError."""
        shape = self.shape
        if shape is None or len(shape) != 3:
            raise FoldError(f"needs a (C, H, W) input, got shape {shape}")
        full = np.broadcast_to(arr, shape)
        ch = full[:, 0, 0]
        if not np.array_equal(full, np.broadcast_to(ch[:, None, None], shape)):
            raise FoldError(f"the {what} varies across pixels (it is not per channel)")
        return np.array(ch, dtype=np.float64)

    def _last_name(self) -> str:
        if not self.layers:
            return "the input"
        la = self.layers[-1]
        return f"{type(la).__name__} {la.name!r}" if getattr(la, "name", "") else type(la).__name__

    def build(self, name: str = "") -> Network:
        if self.problems:
            raise RuntimeError("build() called with unsupported nodes")  # callers raise first
        if self._pending is not None:
            a, c, desc = self._pending
            if self.shape is None or len(self.shape) != 1:
                raise FoldError(f"{desc} at the end of the network cannot be represented")
            n = self.shape[0]
            self._append(Dense(np.diag(np.broadcast_to(a, (n,)).astype(np.float64)),
                               np.broadcast_to(c, (n,)).astype(np.float64), name="output_affine"), desc)
            self._pending = None
        if not self.layers:
            raise InvalidNetworkError("the model has no layers lipopt can represent (an empty network)")
        if self.input_shape is None:
            raise InvalidNetworkError("cannot infer the input shape: pass input_shape=... (per sample)")
        if self.shape is not None and len(self.shape) != 1:
            self._append(Flatten(name="output_flatten"), "output flatten")
        net = Network(self.layers, self.input_shape, name=name)
        net.input_normalization = self._input_normalization(net)
        return net

    def _input_normalization(self, net: Network) -> object:
        """The composed element-wise input map as an InputNormalization (None if none or not invertible)."""
        from lipopt.network.normalization import from_affine

        if not self._input_maps:
            return None
        n = net.input_size
        a_tot, c_tot = np.ones(n), np.zeros(n)
        for a, c, shape, _ in self._input_maps:
            shp = shape if shape is not None else net.input_shape
            a_f = np.broadcast_to(a, shp).reshape(-1)
            c_f = np.broadcast_to(c, shp).reshape(-1)
            if a_f.size != n:
                return None
            a_tot, c_tot = a_f * a_tot, a_f * c_tot + c_f
        return from_affine(a_tot, c_tot, n, " + ".join(d for *_, d in self._input_maps))
