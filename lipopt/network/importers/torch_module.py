"""Import a torch ``nn.Module`` (``nn.Sequential`` or a module traced with ``torch.fx``) into the IR.

Supported: Linear, Conv2d (zero padding), ReLU, LeakyReLU (0 <= negative_slope < 1), MaxPool2d,
AvgPool2d, Flatten (start_dim=1), BatchNorm1d/2d (eval mode, running statistics; folded into the
neighbouring affine layer), Dropout/Identity (vanish); in traced code also
``F.relu``/``torch.relu``/``x.relu()``, ``F.leaky_relu``, ``F.linear``, ``F.conv2d``, ``F.max_pool2d``,
``F.avg_pool2d``, ``F.dropout``, ``torch.flatten``/``x.flatten(1)``, ``x.view``/``x.reshape`` to
``(batch, -1)``, ``x.size(0)``/``x.shape[0]``, and element-wise arithmetic with constants (``(x - mean) /
std`` with buffers, constant tensors or numbers; folded exactly or refused, see ``_builder``).
Everything unsupported is listed in one :class:`~lipopt.errors.UnsupportedLayerError`.

The module is imported with eval-mode semantics (BatchNorm uses running statistics, Dropout is the
identity); the module itself is not modified.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from lipopt.errors import InvalidNetworkError, UnsupportedLayerError
from lipopt.network.importers._builder import ChainBuilder, FoldError
from lipopt.network.importers.torch_calls import Call, _arg, _np, call_rule
from lipopt.network.network import Network

SUPPORTED_TORCH = (
    "nn.Linear, nn.Conv2d (padding_mode='zeros'), nn.ReLU, nn.LeakyReLU (0 <= negative_slope < 1), "
    "nn.MaxPool2d, nn.AvgPool2d (ceil_mode=False), "
    "nn.Flatten(start_dim=1), nn.BatchNorm1d/2d (running statistics; folded), nn.Dropout*, nn.Identity, "
    "nested nn.Sequential; in traced forward code F.relu/torch.relu, F.leaky_relu, F.linear, F.conv2d, "
    "F.max_pool2d, "
    "F.avg_pool2d, F.dropout, torch.flatten(x, 1), x.view/x.reshape(x.size(0), -1), and +,-,*,/ with "
    "constant tensors or numbers (e.g. an input normalisation (x - mean) / std) on a single chain "
    "(no residual branches)"
)

_BATCH = "<batch>"


class _Dyn:
    """The value flowing through the chain (one per fx node that depends on the input)."""

    def __init__(self, shape: tuple[int, ...] | None) -> None:
        self.shape = shape


def _module_rules() -> dict[type, Any]:
    """torch.nn class -> importer method (built on first use: torch is imported lazily)."""
    global _RULES
    if _RULES is None:
        import torch.nn as nn

        T = _TorchImporter
        _RULES = {
            nn.Sequential: T._sequential,
            nn.Linear: T._linear,
            nn.Conv2d: T._conv,
            nn.ReLU: lambda self, m, q: self._do(self.b.relu, q),
            nn.LeakyReLU: lambda self, m, q: self._do(self.b.leaky_relu, float(m.negative_slope), q),
            nn.MaxPool2d: lambda self, m, q: self._maxpool(m.kernel_size, m.stride, m.padding, m.dilation,
                                                           m.ceil_mode, m.return_indices, q),
            nn.AvgPool2d: lambda self, m, q: self._avgpool(m.kernel_size, m.stride, m.padding, m.ceil_mode,
                                                           m.count_include_pad, m.divisor_override, q),
            nn.Flatten: T._flatten,
            nn.BatchNorm1d: T._batchnorm,
            nn.BatchNorm2d: T._batchnorm,
            **{c: (lambda self, m, q: None) for c in (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                                                      nn.AlphaDropout, nn.Identity)},
        }
    return _RULES


_RULES: dict[type, Any] | None = None


class _TorchImporter:
    def __init__(self, input_shape: tuple[int, ...] | None) -> None:
        self.b = ChainBuilder(input_shape)
        self.cur: _Dyn | None = None

    # -- builder calls with FoldError -> problem ---------------------------------------------------
    def _do(self, fn: Any, *args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except FoldError as exc:
            self.b.unsupported(str(exc))

    # -- modules ---------------------------------------------------------------------------------
    def module(self, m: Any, qname: str) -> None:
        """Import one module: the rule of its class (or of the nearest base class in the table), else a
        torch.nn module is unsupported and a user module is traced with torch.fx."""
        rule = None
        for cls in type(m).__mro__:
            rule = _module_rules().get(cls)
            if rule is not None:
                break
        if rule is not None:
            rule(self, m, qname)
        elif type(m).__module__.startswith("torch.nn"):
            self.b.unsupported(f"{type(m).__name__} {qname!r}")
        else:
            self.traced(m, qname)

    def _sequential(self, m: Any, qname: str) -> None:
        for child_name, child in m.named_children():
            self.module(child, f"{qname}.{child_name}" if qname else child_name)

    def _linear(self, m: Any, qname: str) -> None:
        self._do(self.b.dense, _np(m.weight), None if m.bias is None else _np(m.bias), qname)

    def _conv(self, m: Any, qname: str) -> None:
        label = f"{type(m).__name__} {qname!r}"
        if m.padding_mode != "zeros":
            self.b.unsupported(f"{label}: padding_mode={m.padding_mode!r} (only 'zeros')")
            return
        pad = self._conv_padding(m.padding, m.kernel_size, m.dilation, label)
        if pad is not None:
            self._do(self.b.conv, _np(m.weight), None if m.bias is None else _np(m.bias), m.stride, pad,
                     m.dilation, m.groups, qname)

    def _flatten(self, m: Any, qname: str) -> None:
        if m.start_dim != 1 or m.end_dim != -1:
            self.b.unsupported(f"{type(m).__name__} {qname!r}: start_dim={m.start_dim}, end_dim={m.end_dim} "
                               "(only 1, -1)")
        else:
            self._do(self.b.flatten, qname)

    def _conv_padding(self, padding: Any, k: tuple, d: tuple, label: str) -> tuple[int, int] | None:
        if isinstance(padding, str):
            if padding == "valid":
                return (0, 0)
            tot = [dd * (kk - 1) for kk, dd in zip(k, d, strict=True)]
            if any(t % 2 for t in tot):
                self.b.unsupported(f"{label}: padding='same' with an even kernel extent pads asymmetrically")
                return None
            return (tot[0] // 2, tot[1] // 2)
        from lipopt.network.layers import _pair

        return _pair(padding, "padding")

    def _maxpool(self, k: Any, s: Any, p: Any, d: Any, ceil: bool, ret_idx: bool, qname: str) -> None:
        if ceil or ret_idx:
            self.b.unsupported(f"MaxPool2d {qname!r}: ceil_mode/return_indices (not supported)")
            return
        self._do(self.b.maxpool, k, s if s not in (None, [], ()) else None, p, d, qname)

    def _avgpool(self, k: Any, s: Any, p: Any, ceil: bool, incl: bool, div: Any, qname: str) -> None:
        if ceil or div is not None:
            self.b.unsupported(f"AvgPool2d {qname!r}: ceil_mode/divisor_override (not supported)")
            return
        self._do(self.b.avgpool, k, s if s not in (None, [], ()) else None, p, bool(incl), qname)

    def _batchnorm(self, m: Any, qname: str) -> None:
        label = f"{type(m).__name__} {qname!r}"
        if m.running_mean is None or m.running_var is None:
            self.b.unsupported(f"{label}: no running statistics (track_running_stats=False)")
            return
        mean, var = _np(m.running_mean), _np(m.running_var)
        gamma = np.ones_like(mean) if m.weight is None else _np(m.weight)
        beta = np.zeros_like(mean) if m.bias is None else _np(m.bias)
        scale = gamma / np.sqrt(var + m.eps)
        shift = beta - mean * scale
        shape = self.b.shape
        if shape is not None and len(shape) > 1:
            extra = (1,) * (len(shape) - 1)
            scale, shift = scale.reshape(-1, *extra), shift.reshape(-1, *extra)
        elif shape is None and type(m).__name__ == "BatchNorm2d":
            scale, shift = scale.reshape(-1, 1, 1), shift.reshape(-1, 1, 1)
        self._do(self.b.affine, scale, shift, label)

    # -- torch.fx --------------------------------------------------------------------------------
    def traced(self, m: Any, qname: str) -> None:
        import torch.fx as fx

        label = f"{type(m).__name__} {qname!r}" if qname else type(m).__name__
        try:
            gm = fx.symbolic_trace(m)
        except Exception as exc:
            self.b.unsupported(f"{label}: cannot be traced with torch.fx ({type(exc).__name__}: {exc})")
            return
        self.graph(gm, qname, label)

    def graph(self, gm: Any, prefix: str, label: str) -> None:
        env: dict[Any, Any] = {}
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            self.b.unsupported(f"{label}: forward takes {len(placeholders)} inputs (exactly one supported)")
            return
        for node in gm.graph.nodes:
            local = node.target if node.op == "call_module" else node.name
            q = f"{prefix}.{local}" if prefix else local
            if node.op == "placeholder":
                env[node] = self._new_dyn()
            elif node.op == "get_attr":
                env[node] = _fetch_attr(gm, node.target)
            elif node.op == "output":
                out = env[node.args[0]] if not isinstance(node.args[0], tuple | list) else None
                if out is not self.cur and not self.b.problems:
                    self.b.unsupported(f"{label}: the output must be the last tensor of the chain")
            else:
                args = _map(node.args, env)
                kwargs = {k: _map(v, env) for k, v in node.kwargs.items()}
                env[node] = self._node(gm, node, q, args, kwargs)

    def _new_dyn(self) -> _Dyn:
        self.cur = _Dyn(self.b.shape)
        return self.cur

    def _node(self, gm: Any, node: Any, q: str, args: tuple, kwargs: dict) -> Any:
        dyn = [a for a in (*args, *kwargs.values()) if isinstance(a, _Dyn)]
        shapeish = any(_is_shape(a) for a in (*args, *kwargs.values()))
        op, target = node.op, node.target
        fname = target if op == "call_method" else getattr(target, "__name__", str(target))
        what = f"{fname} {q!r}" if op != "call_module" else f"{type(gm.get_submodule(target)).__name__} {q!r}"
        if not dyn and not shapeish and op in ("call_method", "call_function"):
            return self._constant(op, target, args, kwargs, what)
        # shape queries on the chain value
        if op == "call_method" and target == "size":
            return _size(args[0], _arg(args, kwargs, 1, "dim"))
        if op == "call_function" and target is getattr and len(args) == 2 and args[1] == "shape":
            return _size(args[0], None)
        if op == "call_function" and target is operator.getitem and _is_shape(args[0]):
            return args[0][args[1]] if args[0] is not None else None
        if len(dyn) != 1:
            self.b.unsupported(f"{what}: combines {len(dyn)} network tensors (only a single chain supported)")
        elif dyn[0] is not self.cur:
            self.b.unsupported(f"{what}: uses an earlier tensor (branches/residual connections unsupported)")
        elif op == "call_module":
            self.module(gm.get_submodule(target), q)
        else:
            rule = call_rule(target, fname)
            if rule is None:
                self.b.unsupported(what)
            else:
                rule(self, Call(op, fname, args, kwargs, dyn[0], what, q))
        return self._new_dyn()

    def _constant(self, op: str, target: Any, args: tuple, kwargs: dict, what: str) -> Any:
        """A constant expression, evaluated with torch (e.g. weight.view(...) or torch.tensor(...))."""
        try:
            if op == "call_method":
                return getattr(args[0], target)(*args[1:], **kwargs)
            return target(*args, **kwargs)
        except Exception as exc:
            self.b.unsupported(f"{what}: constant expression failed ({exc})")
            return None

    def _reshape(self, sizes: list, what: str, q: str) -> None:
        shape = self.b.shape
        n = None if shape is None else int(np.prod(shape))
        if any(s is None for s in sizes):
            return  # shape unknown after an unsupported node
        first, rest = (sizes[0], sizes[1:]) if sizes else (None, [])
        flat = len(sizes) == 2 and (
            (first in (_BATCH, 1) and (rest[0] == -1 or rest[0] == n))
            or (first == -1 and n is not None and rest[0] == n)
        )
        if flat:
            self._do(self.b.flatten, q)
        elif shape is not None and first == _BATCH and tuple(rest) == shape:
            pass  # identity reshape
        else:
            shown = tuple("batch" if s == _BATCH else s for s in sizes)
            self.b.unsupported(f"{what}: reshape to {shown} (only flattening to (batch, -1) is supported)")

    def _arith(self, op: str, args: tuple, kwargs: dict, x: _Dyn, what: str) -> None:
        if kwargs.get("alpha", 1) != 1 or kwargs.get("rounding_mode") is not None:
            self.b.unsupported(f"{what}: alpha/rounding_mode arguments")
            return
        other = args[1] if args[0] is x else args[0]
        x_first = args[0] is x
        c = self._const_per_sample(other, what)
        if c is None:
            return
        if op == "add":
            self._do(self.b.affine, 1.0, c, what)
        elif op == "sub":
            self._do(self.b.affine, 1.0, -c, what) if x_first else self._do(self.b.affine, -1.0, c, what)
        elif op == "mul":
            self._do(self.b.affine, c, 0.0, what)
        elif op == "div" and x_first:
            self._do(self.b.affine, 1.0 / c, 0.0, what)
        else:
            self.b.unsupported(f"{what}: constant divided by the network value (not affine)")

    def _const_per_sample(self, c: Any, what: str) -> np.ndarray | None:
        arr = _np(c)
        shape = self.b.shape
        if arr.ndim and shape is not None and arr.ndim == len(shape) + 1:
            if arr.shape[0] != 1:
                self.b.unsupported(f"{what}: constant of shape {arr.shape} varies over the batch")
                return None
            arr = arr[0]
        elif arr.ndim and shape is None and arr.ndim == 4 and arr.shape[0] == 1:
            arr = arr[0]
        return arr


def _fetch_attr(gm: Any, target: str) -> Any:
    obj = gm
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _map(a: Any, env: dict) -> Any:
    import torch.fx as fx

    if isinstance(a, fx.Node):
        return env[a]
    if isinstance(a, tuple | list):
        return type(a)(_map(v, env) for v in a)
    if isinstance(a, dict):
        return {k: _map(v, env) for k, v in a.items()}
    return a


class _ShapeTuple(tuple):
    pass


def _is_shape(a: Any) -> bool:
    if isinstance(a, _ShapeTuple) or (isinstance(a, str) and a == _BATCH):
        return True
    if isinstance(a, tuple | list):
        return any(_is_shape(v) for v in a)
    return False


def _size(x: Any, dim: Any) -> Any:
    if not isinstance(x, _Dyn):
        return None
    if x.shape is None:
        return None if dim not in (0,) else _BATCH
    full = _ShapeTuple((_BATCH, *x.shape))
    return full if dim is None else full[dim]


def import_torch(module: Any, input_shape: tuple[int, ...] | None = None, name: str = "") -> Network:
    """The IR of ``module`` (eval-mode semantics). ``input_shape`` is per sample, e.g. (1, 28, 28)."""
    import torch.nn as nn

    if not isinstance(module, nn.Module):
        raise InvalidNetworkError(f"expected a torch nn.Module, got {type(module).__name__}")
    if input_shape is not None:
        input_shape = (int(input_shape),) if isinstance(input_shape, int | np.integer) else tuple(input_shape)
    try:
        return _import_chain(module, input_shape, name)
    except InvalidNetworkError as exc:
        if input_shape is None or not str(exc).startswith("shape mismatch"):
            raise
        why = str(exc)
        if len(input_shape) > 1 and input_shape[0] == 1:  # a leading batch dimension of 1: drop it
            try:
                return _import_chain(module, input_shape[1:], name)
            except InvalidNetworkError as exc2:
                why = f"{why}; without the leading 1, {input_shape[1:]}: {exc2}"
        raise InvalidNetworkError(f"input_shape {input_shape} does not fit the model: {why}. input_shape is "
                                  f"the shape of one sample, without the batch dimension (a leading batch "
                                  f"dimension of 1 is dropped); {_expected_input(module, input_shape, name)}"
                                  ) from None


def _expected_input(module: Any, given: tuple[int, ...], name: str) -> str:
    """What input_shape the model takes: the first Linear / Conv2d's input with the given trailing sizes,
    stated as exact only when importing with it succeeds."""
    import torch.nn as nn

    first = next((m for m in module.modules() if isinstance(m, nn.Linear | nn.Conv2d)), None)
    if isinstance(first, nn.Linear):
        candidate, generic = (first.in_features,), f"({first.in_features},)"
    elif isinstance(first, nn.Conv2d) and len(given) >= 2:
        candidate, generic = (first.in_channels, *given[-2:]), f"(C={first.in_channels}, H, W)"
    elif isinstance(first, nn.Conv2d):
        return f"the model expects (C={first.in_channels}, H, W)"
    else:
        return "see the message for the shape the first layer expects"
    try:
        _import_chain(module, candidate, name)
    except (InvalidNetworkError, UnsupportedLayerError, FoldError):
        return f"the first layer expects {generic}"
    return f"the model expects input_shape={candidate}"


def _import_chain(module: Any, input_shape: tuple[int, ...] | None, name: str) -> Network:
    imp = _TorchImporter(input_shape)
    imp._new_dyn()
    imp.module(module, "")
    if imp.b.problems:
        raise UnsupportedLayerError(imp.b.problems, SUPPORTED_TORCH,
                                    source=f"torch model {type(module).__name__}")
    try:
        return imp.b.build(name=name or type(module).__name__)
    except FoldError as exc:
        raise UnsupportedLayerError([str(exc)], SUPPORTED_TORCH, source="torch model") from None
