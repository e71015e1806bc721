"""Structured linear operators (torch, float64) for the analytic bounds.

Every linear IR layer (Dense, Conv2d, AvgPool2d, Flatten) becomes a :class:`LinOp` acting on batches
``(B, *in_shape) -> (B, *out_shape)``: bias-free ``forward``, its exact ``adjoint`` (transposed
convolution for Conv2d), ``abs_forward`` / ``abs_adjoint`` (the same map with |weights|, used for
row/column absolute sums), the bias, and a lowering to a scipy sparse matrix for moderate sizes.
Consecutive linear layers are composed into one :class:`ComposedOp` (the affine map of one block of
the local bound). Nothing here imports torch at module import time of ``lipopt.analytic``; this module
itself is imported only by the methods that need it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lipopt.network.layers import AvgPool2d, Conv2d, Dense, Flatten
from lipopt.network.network import conv_sparse_matrix

DTYPE = torch.float64


def resolve_device(device: str | None) -> tuple[torch.device, str | None]:
    """torch device for a requested name; a warning text when cuda was asked for but is absent."""
    name = (device or "cpu").lower()
    if name.startswith("cuda"):
        if torch.cuda.is_available():
            return torch.device(name), None
        return torch.device("cpu"), f"device {device!r} requested but CUDA is not available; ran on CPU"
    return torch.device("cpu"), None


def _t(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.array(a, dtype=np.float64, copy=True), dtype=DTYPE, device=device)


@dataclass(eq=False)
class LinOp:
    """Base class: a linear map between tensor shapes (per sample, no batch axis)."""

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    device: torch.device
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def n_in(self) -> int:
        return int(np.prod(self.in_shape))

    @property
    def n_out(self) -> int:
        return int(np.prod(self.out_shape))

    @property
    def kind(self) -> str:
        return type(self).__name__

    def bias(self) -> torch.Tensor:
        return torch.zeros(self.out_shape, dtype=DTYPE, device=self.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def abs_forward(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def abs_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def affine(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x) + self.bias()

    def nnz(self) -> int:
        """Number of structural non-zeros of the lowered matrix (an upper estimate)."""
        return self.n_in * self.n_out

    def to_matrix(self) -> Any:
        """The lowered matrix (scipy CSR or dense numpy) acting on flattened vectors."""
        raise NotImplementedError

    def parts(self) -> list[LinOp]:
        return [self]

    @property
    def is_reshape(self) -> bool:
        return False


class ReshapeOp(LinOp):
    """Identity up to a reshape (Flatten, or the identity of an empty linear run)."""

    @property
    def is_reshape(self) -> bool:
        return True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], *self.out_shape)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return y.reshape(y.shape[0], *self.in_shape)

    abs_forward = forward
    abs_adjoint = adjoint

    def nnz(self) -> int:
        return self.n_in

    def to_matrix(self) -> Any:
        import scipy.sparse as sp

        return sp.identity(self.n_in, format="csr")


class DenseOp(LinOp):
    def __init__(self, weight: np.ndarray, bias: np.ndarray | None, in_shape: tuple[int, ...],
                 device: torch.device) -> None:
        super().__init__(tuple(in_shape), (int(weight.shape[0]),), device)
        self.weight_np = np.asarray(weight, dtype=np.float64)
        self.w = _t(self.weight_np, device)
        self.b = _t(np.zeros(weight.shape[0]) if bias is None else bias, device)
        self._abs_w: torch.Tensor | None = None

    def bias(self) -> torch.Tensor:
        return self.b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.w.T

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y.reshape(y.shape[0], -1) @ self.w).reshape(y.shape[0], *self.in_shape)

    @property
    def abs_w(self) -> torch.Tensor:
        if self._abs_w is None:
            self._abs_w = self.w.abs()
        return self._abs_w

    def abs_forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1) @ self.abs_w.T

    def abs_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y.reshape(y.shape[0], -1) @ self.abs_w).reshape(y.shape[0], *self.in_shape)

    def to_matrix(self) -> Any:
        return self.weight_np


class ConvOp(LinOp):
    def __init__(self, layer: Conv2d, in_shape: tuple[int, ...], device: torch.device) -> None:
        super().__init__(tuple(in_shape), tuple(layer.output_shape(tuple(in_shape))), device)
        self.layer = layer
        self.w = _t(layer.weight, device)
        self.b_ch = _t(layer.bias, device)
        self.stride, self.padding, self.dilation, self.groups = (
            layer.stride, layer.padding, layer.dilation, layer.groups)
        # output_padding so that the transposed convolution returns exactly the input size
        kh, kw = layer.kernel_size
        op = []
        for i, k in enumerate((kh, kw)):
            full = ((self.out_shape[1 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                    + self.dilation[i] * (k - 1) + 1)
            op.append(self.in_shape[1 + i] - full)
        self.output_padding = (op[0], op[1])
        self._abs_w: torch.Tensor | None = None
        self._sq_w: torch.Tensor | None = None

    def bias(self) -> torch.Tensor:
        return self.b_ch[:, None, None].expand(self.out_shape).contiguous()

    def _conv(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x.reshape(x.shape[0], *self.in_shape), w, None, self.stride, self.padding,
                        self.dilation, self.groups)

    def _convt(self, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.conv_transpose2d(y.reshape(y.shape[0], *self.out_shape), w, None, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)

    @property
    def abs_w(self) -> torch.Tensor:
        if self._abs_w is None:
            self._abs_w = self.w.abs()
        return self._abs_w

    @property
    def sq_w(self) -> torch.Tensor:
        if self._sq_w is None:
            self._sq_w = self.w * self.w
        return self._sq_w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.w)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._convt(y, self.w)

    def abs_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.abs_w)

    def abs_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._convt(y, self.abs_w)

    def sq_forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution with the squared kernel (for one-pass row norms)."""
        return self._conv(x, self.sq_w)

    def nnz(self) -> int:
        kh, kw = self.layer.kernel_size
        return self.n_out * (self.in_shape[0] // self.groups) * kh * kw

    def to_matrix(self) -> Any:
        if "matrix" not in self._cache:
            self._cache["matrix"] = conv_sparse_matrix(self.layer, self.in_shape)
        return self._cache["matrix"]


class AvgPoolOp(LinOp):
    def __init__(self, layer: AvgPool2d, in_shape: tuple[int, ...], device: torch.device) -> None:
        super().__init__(tuple(in_shape), tuple(layer.output_shape(tuple(in_shape))), device)
        self.layer = layer
        self.div = _t(layer.divisors(tuple(in_shape)), device)  # (Ho, Wo)
        self._sum_op = _window_sum_conv(layer, in_shape[0], device)

    def _window_sum(self, x: torch.Tensor) -> torch.Tensor:
        w, s, p = self._sum_op
        return F.conv2d(x.reshape(x.shape[0], *self.in_shape), w, None, s, p, 1, self.in_shape[0])

    def _window_sum_t(self, y: torch.Tensor) -> torch.Tensor:
        w, s, p = self._sum_op
        ho, wo = self.out_shape[1:]
        k = self.layer.kernel_size
        op = tuple(self.in_shape[1 + i] - ((ho, wo)[i] - 1) * s[i] + 2 * p[i] - k[i] for i in range(2))
        return F.conv_transpose2d(y.reshape(y.shape[0], *self.out_shape), w, None, s, p, op, self.in_shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._window_sum(x) / self.div

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._window_sum_t(y.reshape(y.shape[0], *self.out_shape) / self.div)

    abs_forward = forward
    abs_adjoint = adjoint

    def nnz(self) -> int:
        return self.n_out * int(np.prod(self.layer.kernel_size))

    def to_matrix(self) -> Any:
        from lipopt.network.network import linear_matrix

        if "matrix" not in self._cache:
            self._cache["matrix"] = linear_matrix(self.layer, self.in_shape, sparse_threshold=0)
        return self._cache["matrix"]


def _window_sum_conv(layer: AvgPool2d, channels: int, device: torch.device):
    kh, kw = layer.kernel_size
    w = torch.ones((channels, 1, kh, kw), dtype=DTYPE, device=device)
    return w, layer.stride, layer.padding


class ComposedOp(LinOp):
    """ops[-1] o ... o ops[0] (reshapes included)."""

    def __init__(self, ops: list[LinOp]) -> None:
        super().__init__(ops[0].in_shape, ops[-1].out_shape, ops[0].device)
        self.ops = ops

    def parts(self) -> list[LinOp]:
        return list(self.ops)

    @property
    def core(self) -> LinOp | None:
        """The single non-reshape part, if there is exactly one."""
        real = [o for o in self.ops if not o.is_reshape]
        return real[0] if len(real) == 1 else None

    @property
    def is_reshape(self) -> bool:
        return all(o.is_reshape for o in self.ops)

    def bias(self) -> torch.Tensor:
        b = torch.zeros((1, *self.in_shape), dtype=DTYPE, device=self.device)
        for o in self.ops:
            b = o.forward(b) + o.bias()
        return b[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for o in self.ops:
            x = o.forward(x)
        return x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        for o in reversed(self.ops):
            y = o.adjoint(y)
        return y

    def abs_forward(self, x: torch.Tensor) -> torch.Tensor:
        for o in self.ops:
            x = o.abs_forward(x)
        return x

    def abs_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        for o in reversed(self.ops):
            y = o.abs_adjoint(y)
        return y

    def nnz(self) -> int:
        real = [o for o in self.ops if not o.is_reshape]
        if not real:
            return self.n_in
        if len(real) == 1:
            return real[0].nnz()
        return self.n_in * self.n_out

    def to_matrix(self) -> Any:
        if "matrix" in self._cache:
            return self._cache["matrix"]
        m = None
        for o in self.ops:
            if o.is_reshape:
                continue
            a = o.to_matrix()
            m = a if m is None else a @ m
        if m is None:
            m = ReshapeOp(self.in_shape, self.out_shape, self.device).to_matrix()
        self._cache["matrix"] = m
        return m


#: linear layer type -> its LinOp (layer, input shape, device)
LAYER_OPS: dict[type, Any] = {
    Dense: lambda la, shp, dev: DenseOp(la.weight, la.bias, shp, dev),
    Conv2d: lambda la, shp, dev: ConvOp(la, shp, dev),
    AvgPool2d: lambda la, shp, dev: AvgPoolOp(la, shp, dev),
    Flatten: lambda la, shp, dev: ReshapeOp(tuple(shp), (int(np.prod(shp)),), dev),
}


def layer_op(layer: Any, in_shape: tuple[int, ...], device: torch.device) -> LinOp:
    """The torch operator of a linear layer (an error naming the linear layer kinds otherwise)."""
    from lipopt.network.stages import dispatch

    return dispatch(LAYER_OPS, layer, "the linear operators")(layer, in_shape, device)


def compose(ops: list[LinOp], in_shape: tuple[int, ...], device: torch.device) -> LinOp:
    """One LinOp for a run of linear layers (identity when the run is empty)."""
    if not ops:
        return ReshapeOp(tuple(in_shape), tuple(in_shape), device)
    if len(ops) == 1:
        return ops[0]
    return ComposedOp(ops)


def fold_output(op: LinOp, c: np.ndarray) -> LinOp:
    """The scalar map c^T op (one output row)."""
    cop = DenseOp(np.asarray(c, dtype=np.float64).reshape(1, -1), None, op.out_shape, op.device)
    parts = op.parts() if isinstance(op, ComposedOp) else [op]
    # fold into a final dense layer exactly (keeps a single core op and its fast paths)
    last = parts[-1]
    if isinstance(last, DenseOp):
        w = c.reshape(1, -1) @ last.weight_np
        b = np.array([float(c @ last.b.cpu().numpy())])
        new_last = DenseOp(w, b, last.in_shape, op.device)
        rest = parts[:-1]
        return new_last if not rest else ComposedOp([*rest, new_last])
    return ComposedOp([*parts, cop])


def flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1)


def log_sum_bound(vals: list[float]) -> float:
    """Product of non-negative factors computed in log space (0 if any factor is 0, inf on overflow)."""
    if any(v == 0 for v in vals):
        return 0.0
    s = sum(math.log(v) for v in vals)
    return math.exp(s) if s < 709 else math.inf
