"""Import an ONNX model (``onnx`` package only, no onnxruntime) into the IR.

Supported nodes on the network's data path: Gemm (transA=0; transB, alpha, beta), MatMul followed by
Add (bias), Add/Sub with a constant (folded as a bias), Mul/Div by a constant (an element-wise scale,
folded: GLipSDP's scaled layers), Conv (2-D, symmetric zero padding), Relu, LeakyRelu (0 <= alpha < 1),
MaxPool / AveragePool (2-D, ceil_mode=0, symmetric padding), ReduceMean over the two spatial axes
(global average pooling), Flatten (axis=1), Reshape to ``(batch, -1)``, BatchNormalization (inference
mode; folded), Identity, Dropout. Sub-graphs that depend only on initializers (e.g. a weight
re-parametrisation) and shape arithmetic (Shape, Gather, Concat, Unsqueeze, ...) are constant-folded
with numpy. Anything else (Sigmoid, Softmax, ...) is reported: one
:class:`~lipopt.errors.UnsupportedLayerError` lists every unsupported node.

Initializers stored as external data (``model.onnx.data`` next to the file) are read by ``onnx.load``.
:func:`onnx_reference` (in :mod:`.onnx_reference`) is a small numpy interpreter of the supported ops (value
and directional derivatives), used by the equivalence check instead of onnxruntime. Each data-path op is one
entry of the table ``_RULES`` (op_type -> IR rule); constant folding lives in :mod:`.onnx_common`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from lipopt.errors import InvalidNetworkError, UnsupportedLayerError
from lipopt.network.importers._builder import ChainBuilder, FoldError
from lipopt.network.importers.onnx_common import _attrs, _fold, _label, _pair_from, _resolve_shape, _sym_pads
from lipopt.network.importers.onnx_reference import onnx_reference
from lipopt.network.network import Network

SUPPORTED_ONNX = (
    "Gemm, MatMul (+ Add bias), Add/Sub/Mul/Div with a constant, Conv (2-D, symmetric zero padding), Relu, "
    "LeakyRelu (0 <= alpha < 1), MaxPool, AveragePool (2-D, ceil_mode=0), ReduceMean over the spatial axes, "
    "Flatten (axis=1), Reshape to (batch, -1), "
    "BatchNormalization (inference), Identity, Dropout on a single chain; constant sub-graphs "
    "(Constant, Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Cast, Reshape, Transpose, Add, Sub, Mul, "
    "Div, MatMul, Neg, Sqrt, Reciprocal, Pow) are folded"
)


class _Dyn:
    """Marker for a tensor computed from the network input."""

    def __init__(self, shape: tuple[int, ...] | None) -> None:
        self.shape = shape


def load_model(source: Any) -> Any:
    import onnx

    if isinstance(source, onnx.ModelProto):
        return source
    path = Path(source)
    if path.is_file() and path.stat().st_size == 0:
        raise InvalidNetworkError(f"{path} is empty (0 bytes), not a valid ONNX model")
    try:
        model = onnx.load(str(path))
    except FileNotFoundError as exc:
        raise InvalidNetworkError(
            f"cannot read {path}: {exc} (external initializers must lie next to the .onnx file, "
            "e.g. model.onnx.data)"
        ) from None
    except Exception as exc:  # onnx raises various DecodeError / ValidationError types
        raise InvalidNetworkError(f"cannot read ONNX model {path}: {type(exc).__name__}: {exc}") from None
    if not model.HasField("graph") or not (len(model.graph.node) or len(model.graph.input)):
        raise InvalidNetworkError(
            f"{path} is not a valid ONNX model: it holds no graph (no nodes, no inputs); export one with "
            "torch.onnx.export or onnx.save"
        )
    return model


def _graph_io(model: Any, input_shape: tuple[int, ...] | None) -> tuple[str, tuple[int, ...], dict]:
    from onnx import numpy_helper

    g = model.graph
    consts = {init.name: numpy_helper.to_array(init) for init in g.initializer}
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        raise UnsupportedLayerError(
            [f"graph with {len(inputs)} inputs {[i.name for i in inputs]} (exactly one supported)"],
            SUPPORTED_ONNX, source="ONNX model",
        )
    if len(g.output) != 1:
        raise UnsupportedLayerError([f"graph with {len(g.output)} outputs (exactly one supported)"],
                                    SUPPORTED_ONNX, source="ONNX model")
    inp = inputs[0]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
    if input_shape is None:
        per = dims[1:]
        if not per or any(d is None or d < 1 for d in per):
            raise InvalidNetworkError(
                f"the ONNX input {inp.name!r} has shape {dims} with unknown per-sample dimensions: pass "
                "input_shape=(...) per sample"
            )
        input_shape = tuple(int(d) for d in per)
    return inp.name, tuple(int(s) for s in input_shape), consts


def _get(values: dict, name: str) -> Any:
    return None if name == "" else values.get(name, _MISSING)


_MISSING = object()


# ------------------------------------------------------------------------------------------------


def import_onnx(
    source: Any, input_shape: tuple[int, ...] | None = None, name: str = ""
) -> tuple[Network, Any]:
    """IR of an ONNX model and its numpy reference (see :func:`onnx_reference`)."""
    model = load_model(source)
    in_name, shape, consts = _graph_io(model, input_shape)
    b = ChainBuilder(shape)
    values: dict[str, Any] = dict(consts)
    cur = _Dyn(shape)
    values[in_name] = cur

    for node in model.graph.node:
        ins = [_get(values, n) for n in node.input]
        label = _label(node)
        if any(i is _MISSING for i in ins):
            missing = [n for n, i in zip(node.input, ins, strict=True) if i is _MISSING]
            raise InvalidNetworkError(f"{label}: input(s) {missing} are not produced by any node")
        dyn = [i for i in ins if isinstance(i, _Dyn)]
        if not dyn:
            if any(i is None and n for i, n in zip(ins, node.input, strict=True)):
                outs = [None] * len(node.output)  # depends on a shape lost after an unsupported node
            else:
                try:
                    outs = _fold(node, ins)
                except KeyError:
                    b.unsupported(f"{label} on constants")
                    outs = [None] * len(node.output)
                except Exception as exc:
                    raise InvalidNetworkError(f"{label}: cannot evaluate constant node ({exc})") from None
            for o, v in zip(node.output, outs, strict=False):
                values[o] = v
            continue
        if node.op_type == "Shape" and len(dyn) == 1:
            sh = None if dyn[0].shape is None else np.asarray((1, *dyn[0].shape), dtype=np.int64)
            values[node.output[0]] = None if sh is None else _fold(node, [np.zeros(sh)])[0]
            continue
        if len(dyn) != 1 or dyn[0] is not cur:
            b.unsupported(f"{label}: combines several network tensors or an earlier one (single chain only)")
        elif node.op_type not in _DYN_OPS:
            b.unsupported(label)
        else:
            try:
                _apply(b, node, ins, label)
            except FoldError as exc:
                b.unsupported(str(exc))
        cur = _Dyn(b.shape)
        values[node.output[0]] = cur
        for o in node.output[1:]:
            if o:
                values[o] = _Dyn(None)
    out = values.get(model.graph.output[0].name)
    if b.problems:
        raise UnsupportedLayerError(b.problems, SUPPORTED_ONNX, source="ONNX model")
    if out is not cur:
        raise UnsupportedLayerError(["the graph output is not the end of the network chain"], SUPPORTED_ONNX,
                                    source="ONNX model")
    try:
        net = b.build(name=name or model.graph.name or "onnx")
    except FoldError as exc:
        raise UnsupportedLayerError([str(exc)], SUPPORTED_ONNX, source="ONNX model") from None
    return net, onnx_reference(model, shape)


def _per_sample(c: np.ndarray, shape: tuple[int, ...] | None, label: str) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    if shape is not None and c.ndim == len(shape) + 1:
        if c.shape[0] != 1:
            raise InvalidNetworkError(f"{label}: constant of shape {c.shape} varies over the batch")
        c = c[0]
    return c




# ------------------------------------------------------------------------------------------------
# IR rules for the ops on the network's data path: op_type -> rule(b, node, ins, at, label)

Rule = Callable[[ChainBuilder, Any, list[Any], dict[str, Any], str], None]


def _passthrough(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    return  # a Dropout mask output cannot feed the chain (single-chain rule)


def _relu(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    b.relu(label)


def _leaky_relu(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    b.leaky_relu(float(at.get("alpha", 0.01)), label)


def _scale(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    """Mul / Div by a constant: an element-wise scale."""
    op, x_first = node.op_type, isinstance(ins[0], _Dyn)
    c = _per_sample(ins[1] if x_first else ins[0], b.shape, label)
    if op == "Div" and not x_first:
        b.unsupported(f"{label}: a constant divided by the network value is not affine")
    elif op == "Div" and np.any(c == 0):
        raise InvalidNetworkError(f"{label}: division by a constant with zero entries")
    else:
        b.affine(c if op == "Mul" else 1.0 / c, 0.0, label)


def _shift(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    """Add / Sub of a constant: folded as a bias."""
    x_first = isinstance(ins[0], _Dyn)
    c = _per_sample(ins[1] if x_first else ins[0], b.shape, label)
    if node.op_type == "Add":
        b.affine(1.0, c, label)
    elif x_first:
        b.affine(1.0, -c, label)
    else:
        b.affine(-1.0, c, label)


def _reduce_mean(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    axes = ins[1] if len(ins) > 1 and ins[1] is not None else at.get("axes")
    spatial = b.shape is not None and len(b.shape) == 3 and axes is not None and \
        sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) == [2, 3]
    if not spatial or not at.get("keepdims", 1):
        b.unsupported(f"{label}: only the mean over the two spatial axes of (C, H, W) with keepdims=1")
    else:
        b.global_avgpool(node.name or node.output[0])


def _gemm(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    if not isinstance(ins[0], _Dyn) or at.get("transA", 0):
        b.unsupported(f"{label}: only Y = X @ B' (+ C) with the network value as A and transA=0")
        return
    w = np.asarray(ins[1], dtype=np.float64)
    w = w if at.get("transB", 0) else w.T
    w = at.get("alpha", 1.0) * w
    bias = None
    if len(ins) > 2 and ins[2] is not None:
        c = np.asarray(ins[2], dtype=np.float64)
        c = c.reshape(-1) if c.size == w.shape[0] else c
        bias = at.get("beta", 1.0) * np.broadcast_to(c, (w.shape[0],))
    b.dense(w, bias, node.name or node.output[0])


def _matmul(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    w = np.asarray(ins[1], dtype=np.float64) if isinstance(ins[0], _Dyn) else None
    if w is None or w.ndim != 2:
        b.unsupported(f"{label}: only X @ W with a constant 2-D W")
        return
    b.dense(w.T, None, node.name or node.output[0])


def _conv(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    w = np.asarray(ins[1], dtype=np.float64)
    if not isinstance(ins[0], _Dyn) or w.ndim != 4:
        b.unsupported(f"{label}: only 2-D convolutions of the network value with constant weights")
        return
    k = (w.shape[2], w.shape[3])
    s, d = _pair_from(at.get("strides"), 1), _pair_from(at.get("dilations"), 1)
    pads = _sym_pads(at, k, s, d, None if b.shape is None else b.shape[1:])
    if isinstance(pads, str):
        b.unsupported(f"{label}: {pads}")
        return
    bias = ins[2] if len(ins) > 2 else None
    b.conv(w, bias, s, pads, d, int(at.get("group", 1)), node.name or node.output[0])


def _pool(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    """MaxPool / AveragePool (2-D, ceil_mode=0, symmetric padding)."""
    k = _pair_from(at.get("kernel_shape"), 1)
    s, d = _pair_from(at.get("strides"), 1), _pair_from(at.get("dilations"), 1)
    indices = len(node.output) > 1 and node.output[1]
    if len(at.get("kernel_shape", [])) != 2 or at.get("ceil_mode", 0) or indices:
        b.unsupported(f"{label}: only 2-D pooling with ceil_mode=0 and no Indices output")
        return
    pads = _sym_pads(at, k, s, d, None if b.shape is None else b.shape[1:])
    if isinstance(pads, str):
        b.unsupported(f"{label}: {pads}")
    elif node.op_type == "MaxPool":
        b.maxpool(k, s, pads, d, node.name or node.output[0])
    elif d != (1, 1):
        b.unsupported(f"{label}: dilated average pooling")
    else:
        b.avgpool(k, s, pads, bool(at.get("count_include_pad", 0)), node.name or node.output[0])


def _flatten(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    if at.get("axis", 1) != 1:
        b.unsupported(f"{label}: axis={at.get('axis')} (only axis=1)")
    else:
        b.flatten(node.name)


def _reshape(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    if ins[1] is None or b.shape is None:
        return
    full = (1, *b.shape)
    target = _resolve_shape(full, ins[1], at.get("allowzero", 0))
    n = int(np.prod(b.shape))
    if target == (1, n) and len(b.shape) > 1:
        b.flatten(node.name)
    elif target not in ((1, n), full):
        b.unsupported(f"{label}: reshape {full} -> {target} (only flattening to (batch, -1))")


def _batchnorm(b: ChainBuilder, node: Any, ins: list[Any], at: dict, label: str) -> None:
    if at.get("training_mode", 0):
        b.unsupported(f"{label}: training_mode=1")
        return
    scale, bias, mean, var = (np.asarray(v, dtype=np.float64) for v in ins[1:5])
    a = scale / np.sqrt(var + at.get("epsilon", 1e-5))
    c = bias - mean * a
    if b.shape is not None and len(b.shape) > 1:
        extra = (1,) * (len(b.shape) - 1)
        a, c = a.reshape(-1, *extra), c.reshape(-1, *extra)
    b.affine(a, c, label)


_RULES: dict[str, Rule] = {
    "Identity": _passthrough,
    "Dropout": _passthrough,
    "Relu": _relu,
    "LeakyRelu": _leaky_relu,
    "Mul": _scale,
    "Div": _scale,
    "Add": _shift,
    "Sub": _shift,
    "ReduceMean": _reduce_mean,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Conv": _conv,
    "MaxPool": _pool,
    "AveragePool": _pool,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "BatchNormalization": _batchnorm,
}

# ops allowed on the network's data path (Shape of the network value is evaluated from its known shape)
_DYN_OPS = frozenset(_RULES) | {"Shape"}


def _apply(b: ChainBuilder, node: Any, ins: list[Any], label: str) -> None:
    """Add the IR of one data-path node (its op type is in ``_DYN_OPS``; a missing rule is a KeyError)."""
    _RULES[node.op_type](b, node, ins, _attrs(node), label)
