"""ONNX helpers shared by the importer (:mod:`.onnx_model`) and the numpy reference interpreter
(:mod:`.onnx_reference`): node attributes and labels, pooling / convolution attribute decoding, and the
constant folding of nodes whose inputs are all constants (a table op_type -> numpy function)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _label(node: Any) -> str:
    return f"{node.op_type} (node {node.name or node.output[0]!r})"


def _resolve_shape(in_shape: tuple[int, ...], target: np.ndarray, allowzero: int) -> tuple[int, ...]:
    t = [int(v) for v in np.asarray(target).reshape(-1)]
    if not allowzero:
        t = [in_shape[i] if v == 0 else v for i, v in enumerate(t)]
    if -1 in t:
        known = int(np.prod([v for v in t if v != -1]))
        t[t.index(-1)] = int(np.prod(in_shape)) // max(known, 1)
    return tuple(t)


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
# constant folding: op_type -> fold(ins, at) -> list of output arrays

Fold = Callable[[list[Any], dict[str, Any]], list[Any]]


def _fold_constant(ins: list[Any], at: dict[str, Any]) -> list[Any]:
    from onnx import numpy_helper

    if "value" in at:
        return [numpy_helper.to_array(at["value"])]
    for k in ("value_float", "value_floats", "value_int", "value_ints"):
        if k in at:
            return [np.asarray(at[k])]
    raise KeyError("Constant")


def _fold_cast(ins: list[Any], at: dict[str, Any]) -> list[Any]:
    from onnx import helper

    return [ins[0].astype(helper.tensor_dtype_to_np_dtype(at["to"]))]


def _fold_shape(ins: list[Any], at: dict[str, Any]) -> list[Any]:
    shp = np.asarray(ins[0].shape, dtype=np.int64)
    return [shp[at.get("start", 0): at.get("end", len(shp))]]


def _fold_unsqueeze(ins: list[Any], at: dict[str, Any]) -> list[Any]:
    axes = at.get("axes", None if len(ins) < 2 else ins[1].tolist())
    return [np.expand_dims(ins[0], tuple(int(a) for a in np.atleast_1d(axes)))]


def _fold_squeeze(ins: list[Any], at: dict[str, Any]) -> list[Any]:
    axes = at.get("axes", None if len(ins) < 2 else ins[1].tolist())
    return [np.squeeze(ins[0], None if axes is None else tuple(int(a) for a in np.atleast_1d(axes)))]


def _fold_slice(ins: list[Any], at: dict[str, Any]) -> list[Any]:
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


def _fold_div(ins: list[Any], at: dict[str, Any]) -> list[Any]:
    if np.issubdtype(ins[0].dtype, np.integer) and np.issubdtype(ins[1].dtype, np.integer):
        return [ins[0] // ins[1]]
    return [ins[0] / ins[1]]


def _binary(fn: Callable[[Any, Any], Any]) -> Fold:
    return lambda ins, at: [fn(ins[0], ins[1])]


def _unary(fn: Callable[[Any], Any]) -> Fold:
    return lambda ins, at: [fn(ins[0])]


_FOLD: dict[str, Fold] = {
    "Constant": _fold_constant,
    "Identity": lambda ins, at: [ins[0]],
    "Dropout": lambda ins, at: [ins[0]],
    "Cast": _fold_cast,
    "Shape": _fold_shape,
    "Gather": lambda ins, at: [np.take(ins[0], ins[1], axis=at.get("axis", 0))],
    "Unsqueeze": _fold_unsqueeze,
    "Squeeze": _fold_squeeze,
    "Concat": lambda ins, at: [np.concatenate([np.atleast_1d(i) for i in ins], axis=at["axis"])],
    "Slice": _fold_slice,
    "Reshape": lambda ins, at: [ins[0].reshape(_resolve_shape(ins[0].shape, ins[1], at.get("allowzero", 0)))],
    "Transpose": lambda ins, at: [np.transpose(ins[0], at.get("perm"))],
    "Add": _binary(np.add),
    "Sub": _binary(np.subtract),
    "Mul": _binary(np.multiply),
    "Div": _fold_div,
    "MatMul": _binary(np.matmul),
    "Pow": _binary(np.power),
    "Neg": _unary(np.negative),
    "Sqrt": _unary(np.sqrt),
    "Reciprocal": _unary(np.reciprocal),
}


def _fold(node: Any, ins: list[Any]) -> list[Any]:
    """Evaluate a node whose inputs are all constants; raises KeyError for unknown op types."""
    op, at = node.op_type, _attrs(node)
    if op not in _FOLD:
        raise KeyError(op)
    return _FOLD[op](ins, at)
