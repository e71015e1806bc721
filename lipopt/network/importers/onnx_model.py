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
:func:`onnx_reference` is a small numpy interpreter of the supported ops (value and directional
derivatives), used by the equivalence check instead of onnxruntime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lipopt.errors import InvalidNetworkError, UnsupportedLayerError
from lipopt.network.importers._builder import ChainBuilder, FoldError
from lipopt.network.network import Network

SUPPORTED_ONNX = (
    "Gemm, MatMul (+ Add bias), Add/Sub/Mul/Div with a constant, Conv (2-D, symmetric zero padding), Relu, "
    "LeakyRelu (0 <= alpha < 1), MaxPool, AveragePool (2-D, ceil_mode=0), ReduceMean over the spatial axes, "
    "Flatten (axis=1), Reshape to (batch, -1), "
    "BatchNormalization (inference), Identity, Dropout on a single chain; constant sub-graphs "
    "(Constant, Shape, Gather, Unsqueeze, Squeeze, Concat, Slice, Cast, Reshape, Transpose, Add, Sub, Mul, "
    "Div, MatMul, Neg, Sqrt, Reciprocal, Pow) are folded"
)

_DYN_OPS = {"Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Conv", "Relu", "LeakyRelu", "MaxPool",
            "AveragePool", "ReduceMean", "Flatten", "Reshape", "BatchNormalization", "Identity", "Dropout",
            "Shape"}


class _Dyn:
    """Marker for a tensor computed from the network input."""

    def __init__(self, shape: tuple[int, ...] | None) -> None:
        self.shape = shape


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _label(node: Any) -> str:
    return f"{node.op_type} (node {node.name or node.output[0]!r})"


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


# ------------------------------------------------------------------------------------------------
# constant folding


def _fold(node: Any, ins: list[Any]) -> list[Any]:
    """Evaluate a node whose inputs are all constants; raises KeyError for unknown op types."""
    op, at = node.op_type, _attrs(node)
    if op == "Constant":
        from onnx import numpy_helper

        if "value" in at:
            return [numpy_helper.to_array(at["value"])]
        for k in ("value_float", "value_floats", "value_int", "value_ints"):
            if k in at:
                return [np.asarray(at[k])]
        raise KeyError(op)
    if op in ("Identity", "Dropout"):
        return [ins[0]]
    if op == "Cast":
        from onnx import helper

        return [ins[0].astype(helper.tensor_dtype_to_np_dtype(at["to"]))]
    if op == "Shape":
        shp = np.asarray(ins[0].shape, dtype=np.int64)
        return [shp[at.get("start", 0): at.get("end", len(shp))]]
    if op == "Gather":
        return [np.take(ins[0], ins[1], axis=at.get("axis", 0))]
    if op == "Unsqueeze":
        axes = at.get("axes", None if len(ins) < 2 else ins[1].tolist())
        return [np.expand_dims(ins[0], tuple(int(a) for a in np.atleast_1d(axes)))]
    if op == "Squeeze":
        axes = at.get("axes", None if len(ins) < 2 else ins[1].tolist())
        return [np.squeeze(ins[0], None if axes is None else tuple(int(a) for a in np.atleast_1d(axes)))]
    if op == "Concat":
        return [np.concatenate([np.atleast_1d(i) for i in ins], axis=at["axis"])]
    if op == "Slice":
        if len(ins) > 1:
            starts, ends = ins[1], ins[2]
            axes = ins[3] if len(ins) > 3 and ins[3] is not None else np.arange(len(starts))
            steps = ins[4] if len(ins) > 4 and ins[4] is not None else np.ones(len(starts), dtype=np.int64)
        else:
            starts, ends = at["starts"], at["ends"]
            axes, steps = at.get("axes", list(range(len(starts)))), [1] * len(starts)
        sl = [slice(None)] * ins[0].ndim
        for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
            sl[int(a)] = slice(int(s), int(e), int(st))
        return [ins[0][tuple(sl)]]
    if op == "Reshape":
        return [ins[0].reshape(_resolve_shape(ins[0].shape, ins[1], at.get("allowzero", 0)))]
    if op == "Transpose":
        return [np.transpose(ins[0], at.get("perm"))]
    binary = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": None, "MatMul": np.matmul,
              "Pow": np.power}
    if op in binary:
        if op == "Div":
            if np.issubdtype(ins[0].dtype, np.integer) and np.issubdtype(ins[1].dtype, np.integer):
                return [ins[0] // ins[1]]
            return [ins[0] / ins[1]]
        return [binary[op](ins[0], ins[1])]
    unary = {"Neg": np.negative, "Sqrt": np.sqrt, "Reciprocal": np.reciprocal}
    if op in unary:
        return [unary[op](ins[0])]
    raise KeyError(op)


def _resolve_shape(in_shape: tuple[int, ...], target: np.ndarray, allowzero: int) -> tuple[int, ...]:
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    if not allowzero:
        t = [in_shape[i] if v == 0 else v for i, v in enumerate(t)]
    if -1 in t:
        known = int(np.prod([v for v in t if v != -1]))
        t[t.index(-1)] = int(np.prod(in_shape)) // max(known, 1)
    return tuple(t)


def _get(values: dict, name: str) -> Any:
    return None if name == "" else values.get(name, _MISSING)


_MISSING = object()


def _pair_from(vals: Any, default: int) -> tuple[int, int]:
    if vals is None:
        return (default, default)
    v = [int(a) for a in vals]
    return (v[0], v[1]) if len(v) == 2 else (v[0], v[0])


def _sym_pads(at: dict, k: tuple[int, int], s: tuple[int, int], d: tuple[int, int],
              hw: tuple[int, int] | None) -> tuple[int, int] | str:
    """Symmetric (pH, pW) from ONNX pads/auto_pad, or an error string."""
    auto = at.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto == "VALID":
        return (0, 0)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        if hw is None:
            return "auto_pad SAME with unknown input size"
        pads = []
        for i in range(2):
            out = -(-hw[i] // s[i])
            tot = max((out - 1) * s[i] + d[i] * (k[i] - 1) + 1 - hw[i], 0)
            if tot % 2:
                return f"auto_pad={auto} pads asymmetrically"
            pads.append(tot // 2)
        return (pads[0], pads[1])
    p = [int(v) for v in at.get("pads", [0, 0, 0, 0])]
    if len(p) != 4 or p[0] != p[2] or p[1] != p[3]:
        return f"asymmetric pads {p}"
    return (p[0], p[1])


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


def _apply(b: ChainBuilder, node: Any, ins: list[Any], label: str) -> None:
    op, at = node.op_type, _attrs(node)
    x_first = isinstance(ins[0], _Dyn)
    if op in ("Identity", "Dropout"):
        return  # a Dropout mask output cannot feed the chain (single-chain rule)
    if op == "Relu":
        b.relu(label)
    elif op == "LeakyRelu":
        b.leaky_relu(float(at.get("alpha", 0.01)), label)
    elif op in ("Mul", "Div"):
        c = _per_sample(ins[1] if x_first else ins[0], b.shape, label)
        if op == "Div" and not x_first:
            b.unsupported(f"{label}: a constant divided by the network value is not affine")
        elif op == "Div" and np.any(c == 0):
            raise InvalidNetworkError(f"{label}: division by a constant with zero entries")
        else:
            b.affine(c if op == "Mul" else 1.0 / c, 0.0, label)
    elif op == "ReduceMean":
        axes = ins[1] if len(ins) > 1 and ins[1] is not None else at.get("axes")
        spatial = b.shape is not None and len(b.shape) == 3 and axes is not None and \
            sorted(int(a) % 4 for a in np.asarray(axes).reshape(-1)) == [2, 3]
        if not spatial or not at.get("keepdims", 1):
            b.unsupported(f"{label}: only the mean over the two spatial axes of (C, H, W) with keepdims=1")
        else:
            b.global_avgpool(node.name or node.output[0])
    elif op == "Gemm":
        if not x_first or at.get("transA", 0):
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
    elif op == "MatMul":
        w = np.asarray(ins[1], dtype=np.float64) if x_first else None
        if w is None or w.ndim != 2:
            b.unsupported(f"{label}: only X @ W with a constant 2-D W")
            return
        b.dense(w.T, None, node.name or node.output[0])
    elif op in ("Add", "Sub"):
        c = _per_sample(ins[1] if x_first else ins[0], b.shape, label)
        if op == "Add":
            b.affine(1.0, c, label)
        else:
            b.affine(1.0, -c, label) if x_first else b.affine(-1.0, c, label)
    elif op == "Conv":
        w = np.asarray(ins[1], dtype=np.float64)
        if not x_first or w.ndim != 4:
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
    elif op in ("MaxPool", "AveragePool"):
        k = _pair_from(at.get("kernel_shape"), 1)
        s, d = _pair_from(at.get("strides"), 1), _pair_from(at.get("dilations"), 1)
        indices = len(node.output) > 1 and node.output[1]
        if len(at.get("kernel_shape", [])) != 2 or at.get("ceil_mode", 0) or indices:
            b.unsupported(f"{label}: only 2-D pooling with ceil_mode=0 and no Indices output")
            return
        pads = _sym_pads(at, k, s, d, None if b.shape is None else b.shape[1:])
        if isinstance(pads, str):
            b.unsupported(f"{label}: {pads}")
        elif op == "MaxPool":
            b.maxpool(k, s, pads, d, node.name or node.output[0])
        elif d != (1, 1):
            b.unsupported(f"{label}: dilated average pooling")
        else:
            b.avgpool(k, s, pads, bool(at.get("count_include_pad", 0)), node.name or node.output[0])
    elif op == "Flatten":
        if at.get("axis", 1) != 1:
            b.unsupported(f"{label}: axis={at.get('axis')} (only axis=1)")
        else:
            b.flatten(node.name)
    elif op == "Reshape":
        if ins[1] is None or b.shape is None:
            return
        full = (1, *b.shape)
        target = _resolve_shape(full, ins[1], at.get("allowzero", 0))
        n = int(np.prod(b.shape))
        if target == (1, n) and len(b.shape) > 1:
            b.flatten(node.name)
        elif target not in ((1, n), full):
            b.unsupported(f"{label}: reshape {full} -> {target} (only flattening to (batch, -1))")
    elif op == "BatchNormalization":
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
    else:  # pragma: no cover - guarded by _DYN_OPS
        b.unsupported(label)


# ------------------------------------------------------------------------------------------------
# numpy reference interpreter: (value, tangent) pairs through the supported ops


def _windows(x: np.ndarray, k: tuple[int, int], s: tuple[int, int], p: tuple[int, int],
             d: tuple[int, int], fill: float) -> list[np.ndarray]:
    """Shifted strided views, one per kernel offset: each (B, C, Ho, Wo)."""
    bsz, c, h, w = x.shape
    xp = np.full((bsz, c, h + 2 * p[0], w + 2 * p[1]), fill)
    xp[:, :, p[0]: p[0] + h, p[1]: p[1] + w] = x
    ho = (h + 2 * p[0] - d[0] * (k[0] - 1) - 1) // s[0] + 1
    wo = (w + 2 * p[1] - d[1] * (k[1] - 1) - 1) // s[1] + 1
    out = []
    for i in range(k[0]):
        for j in range(k[1]):
            r0, c0 = i * d[0], j * d[1]
            out.append(xp[:, :, r0: r0 + s[0] * (ho - 1) + 1: s[0], c0: c0 + s[1] * (wo - 1) + 1: s[1]])
    return out


def _conv_ref(x: np.ndarray, w: np.ndarray, s: Any, p: Any, d: Any, groups: int) -> np.ndarray:
    k = (w.shape[2], w.shape[3])
    wins = _windows(x, k, s, p, d, 0.0)
    og, cg = w.shape[0] // groups, w.shape[1]
    out = None
    for idx, win in enumerate(wins):
        i, j = divmod(idx, k[1])
        parts = [np.einsum("bchw,oc->bohw", win[:, g * cg: (g + 1) * cg], w[g * og: (g + 1) * og, :, i, j])
                 for g in range(groups)]
        term = np.concatenate(parts, axis=1)
        out = term if out is None else out + term
    return out  # type: ignore[return-value]


def onnx_reference(model: Any, input_shape: tuple[int, ...]) -> Any:
    """A reference ``ref(x, dirs) -> (y, jv)`` evaluating the ONNX graph with numpy in float64."""
    from onnx import numpy_helper

    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    in_name = next(i.name for i in g.input if i.name not in consts)
    out_name = g.output[0].name

    def f64(v: Any) -> np.ndarray:
        return np.asarray(v, dtype=np.float64)

    def ref(x: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kdir = dirs.shape[0]
        vals: dict[str, Any] = dict(consts)
        vals[in_name] = (f64(x).reshape(1, *input_shape), f64(dirs).reshape(kdir, *input_shape))
        for node in g.node:
            ins = [None if n == "" else vals[n] for n in node.input]
            dyn = [i for i in ins if isinstance(i, tuple)]
            op, at = node.op_type, _attrs(node)
            if not dyn:
                for o, v in zip(node.output, _fold(node, ins), strict=False):
                    vals[o] = v
                continue
            v, t = dyn[0]
            if op == "Shape":
                vals[node.output[0]] = _fold(node, [v])[0]
                continue
            if op in ("Identity", "Dropout"):
                pass
            elif op == "Relu":
                v, t = np.maximum(v, 0.0), t * (v > 0)
            elif op == "LeakyRelu":
                al = float(at.get("alpha", 0.01))
                v, t = np.where(v > 0, v, al * v), t * np.where(v > 0, 1.0, al)
            elif op in ("Mul", "Div"):
                c = f64(ins[1] if isinstance(ins[0], tuple) else ins[0])
                c = c if op == "Mul" else 1.0 / c
                v, t = v * c, t * c
            elif op == "ReduceMean":
                v, t = v.mean(axis=(2, 3), keepdims=True), t.mean(axis=(2, 3), keepdims=True)
            elif op == "Gemm":
                bm = f64(ins[1])
                bm = bm.T if at.get("transB", 0) else bm
                al = at.get("alpha", 1.0)
                v, t = al * (v @ bm), al * (t @ bm)
                if len(ins) > 2 and ins[2] is not None:
                    v = v + at.get("beta", 1.0) * f64(ins[2])
            elif op == "MatMul":
                v, t = v @ f64(ins[1]), t @ f64(ins[1])
            elif op in ("Add", "Sub"):
                x_first = isinstance(ins[0], tuple)
                c = f64(ins[1] if x_first else ins[0])
                if op == "Add":
                    v = v + c
                elif x_first:
                    v = v - c
                else:
                    v, t = c - v, -t
            elif op == "Conv":
                w = f64(ins[1])
                k = (w.shape[2], w.shape[3])
                s, d = _pair_from(at.get("strides"), 1), _pair_from(at.get("dilations"), 1)
                p = _sym_pads(at, k, s, d, v.shape[2:])
                grp = int(at.get("group", 1))
                v, t = _conv_ref(v, w, s, p, d, grp), _conv_ref(t, w, s, p, d, grp)
                if len(ins) > 2 and ins[2] is not None:
                    v = v + f64(ins[2])[None, :, None, None]
            elif op == "MaxPool":
                k = _pair_from(at.get("kernel_shape"), 1)
                s, d = _pair_from(at.get("strides"), 1), _pair_from(at.get("dilations"), 1)
                p = _sym_pads(at, k, s, d, v.shape[2:])
                wv = np.stack(_windows(v, k, s, p, d, -np.inf))  # (K, 1, C, Ho, Wo)
                wt = np.stack(_windows(t, k, s, p, d, 0.0))  # (K, k, C, Ho, Wo)
                arg = np.argmax(wv, axis=0)  # first maximum
                v = np.take_along_axis(wv, arg[None], axis=0)[0]
                t = np.take_along_axis(wt, np.broadcast_to(arg[None], (1, *wt.shape[1:])), axis=0)[0]
            elif op == "AveragePool":
                k = _pair_from(at.get("kernel_shape"), 1)
                s = _pair_from(at.get("strides"), 1)
                p = _sym_pads(at, k, s, (1, 1), v.shape[2:])
                if at.get("count_include_pad", 0):
                    cnt = float(k[0] * k[1])
                else:
                    cnt = sum(_windows(np.ones((1, 1, *v.shape[2:])), k, s, p, (1, 1), 0.0))
                v = sum(_windows(v, k, s, p, (1, 1), 0.0)) / cnt
                t = sum(_windows(t, k, s, p, (1, 1), 0.0)) / cnt
            elif op == "Flatten":
                v, t = v.reshape(1, -1), t.reshape(kdir, -1)
            elif op == "Reshape":
                v = v.reshape(_resolve_shape(v.shape, ins[1], at.get("allowzero", 0)))
                t = t.reshape(kdir, *v.shape[1:])
            elif op == "BatchNormalization":
                sc, bb, mu, var = (f64(a) for a in ins[1:5])
                a = sc / np.sqrt(var + at.get("epsilon", 1e-5))
                shp = (1, -1) + (1,) * (v.ndim - 2)
                v = (v - mu.reshape(shp)) * a.reshape(shp) + bb.reshape(shp)
                t = t * a.reshape(shp)
            else:
                raise InvalidNetworkError(f"reference interpreter: unsupported {_label(node)}")
            vals[node.output[0]] = (v, t)
        v, t = vals[out_name]
        return v.reshape(-1), t.reshape(kdir, -1)

    return ref
