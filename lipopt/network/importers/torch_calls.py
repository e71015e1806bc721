"""The rules of the torch importer for ``call_function`` / ``call_method`` nodes of a traced module.

A table of (rule, targets, names): a node's rule is the first entry whose targets hold its callable (by
identity) or whose names hold its function / method name; a node without one is unsupported (the importer
reports it). Each rule is ``rule(importer, call)`` and adds the node to the importer's chain. The
``torch.nn`` module classes have their own table (``torch_module._module_rules``).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

import numpy as np

_ARITH = {
    "add": "add", "iadd": "add", "add_": "add", "sub": "sub", "isub": "sub", "sub_": "sub", "subtract": "sub",
    "mul": "mul", "imul": "mul", "mul_": "mul", "multiply": "mul", "truediv": "div", "itruediv": "div",
    "div": "div", "div_": "div", "divide": "div",
}


def _np(t: Any) -> np.ndarray:
    import torch

    if isinstance(t, torch.Tensor):
        return t.detach().cpu().to(dtype=torch.float64).numpy()
    return np.asarray(t, dtype=np.float64)


def _arg(args: tuple, kwargs: dict, i: int, name: str, default: Any = None) -> Any:
    if len(args) > i:
        return args[i]
    return kwargs.get(name, default)


@dataclass(frozen=True)
class Call:
    """One call_function / call_method node on the chain value ``x``."""

    op: str
    fname: str
    args: tuple
    kwargs: dict
    x: Any  # the chain value (torch_module._Dyn)
    what: str
    q: str


def _rules() -> list[tuple[Any, tuple, frozenset[str]]]:
    """(rule, targets, function / method names), first match wins (torch imported lazily)."""
    global _CALL_RULES
    if _CALL_RULES is None:
        import torch
        import torch.nn.functional as F

        _CALL_RULES = [
            (_identity, (F.dropout, F.dropout1d, F.dropout2d, F.alpha_dropout, torch.dropout),
             frozenset({"contiguous", "clone", "detach", "float", "double", "to", "dropout"})),
            (_relu, (F.relu, torch.relu, torch.relu_, F.relu_), frozenset({"relu", "relu_"})),
            (_leaky_relu, (F.leaky_relu, F.leaky_relu_), frozenset({"leaky_relu", "leaky_relu_"})),
            (_flatten, (torch.flatten,), frozenset({"flatten"})),
            (_reshape, (torch.reshape,), frozenset({"view", "reshape"})),
            (_linear, (F.linear,), frozenset()),
            (_conv2d, (F.conv2d,), frozenset()),
            (_max_pool2d, (F.max_pool2d,), frozenset({"max_pool2d", "_max_pool2d"})),
            (_avg_pool2d, (F.avg_pool2d,), frozenset()),
            (_arith, (), frozenset(_ARITH)),
            (_neg, (operator.neg,), frozenset({"neg", "__neg__"})),
        ]
    return _CALL_RULES


_CALL_RULES: list[tuple[Any, tuple, frozenset[str]]] | None = None


def call_rule(target: Any, fname: str) -> Any:
    """The rule for a call target (by identity) or name; None when unsupported."""
    for rule, targets, names in _rules():
        if target in targets or fname in names:
            return rule
    return None


# ------------------------------------------------------------------------------------------------
# rules: rule(importer, call)


def _identity(imp: Any, c: Call) -> None:
    return  # dropout and dtype / memory-layout methods are the identity


def _relu(imp: Any, c: Call) -> None:
    imp._do(imp.b.relu, c.q)


def _leaky_relu(imp: Any, c: Call) -> None:
    imp._do(imp.b.leaky_relu, float(_arg(c.args, c.kwargs, 1, "negative_slope", 0.01)), c.q)


def _flatten(imp: Any, c: Call) -> None:
    start = _arg(c.args, c.kwargs, 1, "start_dim", 0)
    end = _arg(c.args, c.kwargs, 2, "end_dim", -1)
    if start != 1 or end != -1:
        imp.b.unsupported(f"{c.what}: flatten(start_dim={start}, end_dim={end}) (only start_dim=1)")
    else:
        imp._do(imp.b.flatten, c.q)


def _reshape(imp: Any, c: Call) -> None:
    import torch

    sizes = list(c.args[1:]) if c.op == "call_method" else [c.args[1]]
    if len(sizes) == 1 and isinstance(sizes[0], tuple | list | torch.Size):
        sizes = list(sizes[0])
    imp._reshape(sizes, c.what, c.q)


def _linear(imp: Any, c: Call) -> None:
    w, bias = _arg(c.args, c.kwargs, 1, "weight"), _arg(c.args, c.kwargs, 2, "bias")
    imp._do(imp.b.dense, _np(w), None if bias is None else _np(bias), c.q)


def _conv2d(imp: Any, c: Call) -> None:
    from lipopt.network.layers import _pair

    args, kwargs = c.args, c.kwargs
    w, bias = _arg(args, kwargs, 1, "weight"), _arg(args, kwargs, 2, "bias")
    k = tuple(w.shape[2:])
    dil = _pair(_arg(args, kwargs, 5, "dilation", 1), "dilation")
    pad = imp._conv_padding(_arg(args, kwargs, 4, "padding", 0), k, dil, c.what)
    if pad is not None:
        imp._do(imp.b.conv, _np(w), None if bias is None else _np(bias),
                _arg(args, kwargs, 3, "stride", 1), pad, dil, int(_arg(args, kwargs, 6, "groups", 1)), c.q)


def _max_pool2d(imp: Any, c: Call) -> None:
    args, kwargs = c.args, c.kwargs
    imp._maxpool(_arg(args, kwargs, 1, "kernel_size"), _arg(args, kwargs, 2, "stride"),
                 _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 4, "dilation", 1),
                 _arg(args, kwargs, 5, "ceil_mode", False), _arg(args, kwargs, 6, "return_indices", False),
                 c.q)


def _avg_pool2d(imp: Any, c: Call) -> None:
    args, kwargs = c.args, c.kwargs
    imp._avgpool(_arg(args, kwargs, 1, "kernel_size"), _arg(args, kwargs, 2, "stride"),
                 _arg(args, kwargs, 3, "padding", 0), _arg(args, kwargs, 4, "ceil_mode", False),
                 _arg(args, kwargs, 5, "count_include_pad", True), _arg(args, kwargs, 6, "divisor_override"),
                 c.q)


def _arith(imp: Any, c: Call) -> None:
    imp._arith(_ARITH[c.fname], c.args, c.kwargs, c.x, c.what)


def _neg(imp: Any, c: Call) -> None:
    imp._do(imp.b.affine, -1.0, 0.0, c.what)
