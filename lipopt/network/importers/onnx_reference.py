"""A small numpy interpreter of the ONNX ops the importer supports: (value, tangent) pairs in float64.

:func:`onnx_reference` returns ``ref(x, dirs) -> (y, jv)``, the graph's output at ``x`` and its
directional derivatives along the rows of ``dirs``; the equivalence check uses it instead of
onnxruntime. Each op on the network's data path is one entry of a table op_type -> rule
``(v, t, ins, at, kdir) -> (v, t)`` (``v`` the value with a batch of one, ``t`` the tangents with
``kdir`` rows, one per direction); an op without an entry raises
:class:`~lipopt.errors.InvalidNetworkError`. Nodes whose inputs are all constants are folded as in the
importer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lipopt.errors import InvalidNetworkError
from lipopt.network.importers.onnx_common import _attrs, _fold, _label, _pair_from, _resolve_shape, _sym_pads

Pair = tuple[np.ndarray, np.ndarray]
Rule = Callable[[np.ndarray, np.ndarray, list[Any], dict[str, Any], int], Pair]


def _f64(v: Any) -> np.ndarray:
    return np.asarray(v, dtype=np.float64)


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


# ------------------------------------------------------------------------------------------------
# rules: (v, t, ins, at, kdir) -> (v, t)


def _identity(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    return v, t


def _relu(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    return np.maximum(v, 0.0), t * (v > 0)


def _leaky_relu(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    al = float(at.get("alpha", 0.01))
    return np.where(v > 0, v, al * v), t * np.where(v > 0, 1.0, al)


def _mul(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    c = _f64(ins[1] if isinstance(ins[0], tuple) else ins[0])
    return v * c, t * c


def _div(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    c = 1.0 / _f64(ins[1] if isinstance(ins[0], tuple) else ins[0])
    return v * c, t * c


def _reduce_mean(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    return v.mean(axis=(2, 3), keepdims=True), t.mean(axis=(2, 3), keepdims=True)


def _gemm(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    bm = _f64(ins[1])
    bm = bm.T if at.get("transB", 0) else bm
    al = at.get("alpha", 1.0)
    v, t = al * (v @ bm), al * (t @ bm)
    if len(ins) > 2 and ins[2] is not None:
        v = v + at.get("beta", 1.0) * _f64(ins[2])
    return v, t


def _matmul(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    return v @ _f64(ins[1]), t @ _f64(ins[1])


def _add(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    return v + _f64(ins[1] if isinstance(ins[0], tuple) else ins[0]), t


def _sub(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    if isinstance(ins[0], tuple):
        return v - _f64(ins[1]), t
    return _f64(ins[0]) - v, -t


def _conv(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    w = _f64(ins[1])
    k = (w.shape[2], w.shape[3])
    s, d = _pair_from(at.get("strides"), 1), _pair_from(at.get("dilations"), 1)
    p = _sym_pads(at, k, s, d, v.shape[2:])
    grp = int(at.get("group", 1))
    v, t = _conv_ref(v, w, s, p, d, grp), _conv_ref(t, w, s, p, d, grp)
    if len(ins) > 2 and ins[2] is not None:
        v = v + _f64(ins[2])[None, :, None, None]
    return v, t


def _maxpool(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    k = _pair_from(at.get("kernel_shape"), 1)
    s, d = _pair_from(at.get("strides"), 1), _pair_from(at.get("dilations"), 1)
    p = _sym_pads(at, k, s, d, v.shape[2:])
    wv = np.stack(_windows(v, k, s, p, d, -np.inf))  # (K, 1, C, Ho, Wo)
    wt = np.stack(_windows(t, k, s, p, d, 0.0))  # (K, k, C, Ho, Wo)
    arg = np.argmax(wv, axis=0)  # first maximum
    v = np.take_along_axis(wv, arg[None], axis=0)[0]
    t = np.take_along_axis(wt, np.broadcast_to(arg[None], (1, *wt.shape[1:])), axis=0)[0]
    return v, t


def _avgpool(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    k = _pair_from(at.get("kernel_shape"), 1)
    s = _pair_from(at.get("strides"), 1)
    p = _sym_pads(at, k, s, (1, 1), v.shape[2:])
    if at.get("count_include_pad", 0):
        cnt = float(k[0] * k[1])
    else:
        cnt = sum(_windows(np.ones((1, 1, *v.shape[2:])), k, s, p, (1, 1), 0.0))
    v2 = sum(_windows(v, k, s, p, (1, 1), 0.0)) / cnt
    t2 = sum(_windows(t, k, s, p, (1, 1), 0.0)) / cnt
    return v2, t2  # type: ignore[return-value]


def _flatten(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    return v.reshape(1, -1), t.reshape(kdir, -1)


def _reshape(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    v = v.reshape(_resolve_shape(v.shape, ins[1], at.get("allowzero", 0)))
    return v, t.reshape(kdir, *v.shape[1:])


def _batchnorm(v: np.ndarray, t: np.ndarray, ins: list[Any], at: dict, kdir: int) -> Pair:
    sc, bb, mu, var = (_f64(a) for a in ins[1:5])
    a = sc / np.sqrt(var + at.get("epsilon", 1e-5))
    shp = (1, -1) + (1,) * (v.ndim - 2)
    v = (v - mu.reshape(shp)) * a.reshape(shp) + bb.reshape(shp)
    return v, t * a.reshape(shp)


_RULES: dict[str, Rule] = {
    "Identity": _identity,
    "Dropout": _identity,
    "Relu": _relu,
    "LeakyRelu": _leaky_relu,
    "Mul": _mul,
    "Div": _div,
    "ReduceMean": _reduce_mean,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add,
    "Sub": _sub,
    "Conv": _conv,
    "MaxPool": _maxpool,
    "AveragePool": _avgpool,
    "Flatten": _flatten,
    "Reshape": _reshape,
    "BatchNormalization": _batchnorm,
}


def _step(node: Any, ins: list[Any], vals: dict[str, Any], kdir: int) -> None:
    """Evaluate one node into ``vals``: folded when all its inputs are constants, else by its rule."""
    dyn = [i for i in ins if isinstance(i, tuple)]
    if not dyn:
        for o, val in zip(node.output, _fold(node, ins), strict=False):
            vals[o] = val
        return
    v, t = dyn[0]
    if node.op_type == "Shape":
        vals[node.output[0]] = _fold(node, [v])[0]
        return
    rule = _RULES.get(node.op_type)
    if rule is None:
        raise InvalidNetworkError(f"reference interpreter: unsupported {_label(node)}")
    vals[node.output[0]] = rule(v, t, ins, _attrs(node), kdir)


def onnx_reference(model: Any, input_shape: tuple[int, ...]) -> Any:
    """A reference ``ref(x, dirs) -> (y, jv)`` evaluating the ONNX graph with numpy in float64."""
    from onnx import numpy_helper

    g = model.graph
    consts = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    in_name = next(i.name for i in g.input if i.name not in consts)
    out_name = g.output[0].name

    def ref(x: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kdir = dirs.shape[0]
        vals: dict[str, Any] = dict(consts)
        vals[in_name] = (_f64(x).reshape(1, *input_shape), _f64(dirs).reshape(kdir, *input_shape))
        for node in g.node:
            _step(node, [None if n == "" else vals[n] for n in node.input], vals, kdir)
        v, t = vals[out_name]
        return v.reshape(-1), t.reshape(kdir, -1)

    return ref
