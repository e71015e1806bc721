"""Method "naive": the product of the layers' operator norms (a GLOBAL upper bound, kind UPPER).

L(f) <= prod_k ||A_k||  (ReLU and LeakyReLU are 1-Lipschitz coordinatewise in every p-norm; max pooling
contributes its exact constant from the window counts at the actual input size: sqrt(n_max) in l2, 1 in l-inf,
n_max in l1 — see :mod:`lipopt.analytic.maxpool`).

Each factor is computed exactly where possible:
* Dense: :func:`lipopt.norms.operator_norm` (2->2 through the certified spectral routine);
* Conv2d / AvgPool2d, inf->inf and 1->1: the exact max row / column absolute sums of the lowered map,
  computed without densifying (one convolution / transposed convolution of a ones-image with |kernel|:
  the sum of |kernel| over the valid positions);
* Conv2d 2->2: the certified spectral norm of :mod:`lipopt.analytic.spectral` at the actual input size
  (exact eigenvalue for small layers; for large ones the circular/Fourier upper bound, recorded per factor).

Mixed norms p -> q: by submultiplicativity, for any intermediate norm s,
||f(x)-f(y)||_q <= ||A_1||_{p->s} prod_mid ||A_k||_{s->s} ||A_L||_{s->q} ||x-y||_p, so the first linear
layer carries the change of norm (the chain p->q at the first layer and q->q after, s = q) — we also
try s = p (change of norm at the last layer) and keep the smaller product. A mixed factor without a
closed form uses ||A||_{a->b} <= min(||I_m||_{a->b} ||A||_{a->a}, ||A||_{b->b} ||I_n||_{a->b}),
||I_n||_{a->b} = n^max(0, 1/b - 1/a). Scalar outputs c^T f: c is folded into the last linear layer
(its single row's dual norm), or, when a ReLU / max-pool follows the last linear layer, a final factor
||c||_{s*}.

Time limit (``RunOptions.time_limit``): the certified spectral norms (2->2 factors) get the deadline; a
factor whose certified computation does not fit in what is left gets the cheaper sound bound
min(||A||_F, sqrt(||A||_1 ||A||_inf)) (dense) or sqrt(||A||_1 ||A||_inf) (convolutions,
:mod:`lipopt.analytic.spectral`). The product stays a sound UPPER bound; the record stops with
``StopReason.TIME_LIMIT`` and names the factors so bounded.

Applicable to every network and question: the bound is global, hence also valid (but not local) for
local and nominal-point questions; the result says so in its notes.

The mathematics as implemented: ``docs/methods.md#naive``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lipopt.errors import NotApplicableError
from lipopt.network.layers import AvgPool2d, Conv2d, Dense, Flatten, LeakyReLU, MaxPool2d, ReLU
from lipopt.network.network import Network
from lipopt.options import MethodOptions, RunOptions
from lipopt.result import BoundKind, LipschitzResult, Status
from lipopt.spec import Norm, Question

SAFETY = 1 + 1e-12  # relative rounding allowance on sums of absolute values


@dataclass(frozen=True)
class Options(MethodOptions):
    spectral: Any = None  # lipopt.analytic.spectral.SpectralOptions (default: certified, no power iteration)


def applicable(network: Network, question: Question) -> str | None:
    return None


def _ident_norm(n: int, a: Norm, b: Norm) -> float:
    inv = {Norm.L1: 1.0, Norm.L2: 0.5, Norm.LINF: 0.0}
    return float(n) ** max(0.0, inv[b] - inv[a])


def _row_dual(row: np.ndarray, s: Norm) -> float:
    """|c^T v| <= ||c||_{s*} ||v||_s."""
    return float(np.linalg.norm(np.ravel(row), ord=s.dual.p)) * SAFETY


def _same_norm(op: Any, layer: Any, a: Norm, spec_opts: Any) -> tuple[float, str]:
    """||A||_{a->a} of one linear layer (exact or certified)."""
    import torch

    from lipopt.analytic.linops import DenseOp
    from lipopt.analytic.spectral import global_upper

    if isinstance(op, DenseOp) and a is not Norm.L2:
        from lipopt.norms import operator_norm

        return operator_norm(op.weight_np, a, a) * SAFETY, "exact"
    if a is Norm.L2:
        g = global_upper(op, spec_opts)
        return g.upper, "exact" if g.exact else g.method
    ones_in = torch.ones((1, *op.in_shape), dtype=torch.float64, device=op.device)
    ones_out = torch.ones((1, *op.out_shape), dtype=torch.float64, device=op.device)
    if a is Norm.LINF:  # max row abs sum
        return float(op.abs_forward(ones_in).max()) * SAFETY, "exact"
    return float(op.abs_adjoint(ones_out).max()) * SAFETY, "exact"  # l1: max column abs sum


def _factor(op: Any, layer: Any, a: Norm, b: Norm, spec_opts: Any) -> tuple[float, str]:
    """||A||_{a->b}."""
    from lipopt.analytic.linops import DenseOp

    if a is b:
        return _same_norm(op, layer, a, spec_opts)
    if isinstance(op, DenseOp):
        from lipopt.norms import operator_norm

        try:
            if not (a is Norm.L2 and b is Norm.L2):
                return operator_norm(op.weight_np, a, b) * SAFETY, "exact"
        except NotApplicableError:
            pass
    va, ma = _same_norm(op, layer, a, spec_opts)
    vb, mb = _same_norm(op, layer, b, spec_opts)
    c1 = _ident_norm(op.n_out, a, b) * va
    c2 = vb * _ident_norm(op.n_in, a, b)
    return (c1, f"{ma} x |I|") if c1 <= c2 else (c2, f"|I| x {mb}")


def naive_product(network: Network, question: Question, device: str = "cpu",
                  spectral_options: Any = None) -> tuple[float, list[dict[str, Any]], str]:
    """(bound, per-factor records, intermediate norm used)."""
    from lipopt.analytic.linops import layer_op, resolve_device
    from lipopt.analytic.maxpool import maxpool_constant
    from lipopt.analytic.spectral import SpectralOptions

    dev, _ = resolve_device(device)
    spec_opts = spectral_options or SpectralOptions()
    p, q = question.input_norm, question.output_norm
    c = question.output_vector(network.output_size)
    mids = [p] if c is not None else list(dict.fromkeys([q, p]))
    lin_idx = [i for i, la in enumerate(network.layers) if isinstance(la, Dense | Conv2d | AvgPool2d)]
    last_lin = lin_idx[-1] if lin_idx else -1
    fold = c is not None and last_lin >= 0 and all(
        isinstance(la, Flatten) for la in network.layers[last_lin + 1:])
    ops = {i: layer_op(network.layers[i], network.shapes[i], dev) for i in lin_idx}
    best: tuple[float, list[dict[str, Any]], str] | None = None
    for s in mids:
        factors: list[dict[str, Any]] = []
        cur = p
        for i, la in enumerate(network.layers):
            name = la.name or f"{type(la).__name__.lower()}{i}"
            if isinstance(la, Flatten | ReLU | LeakyReLU):  # 1-Lipschitz coordinatewise: factor 1
                continue
            if isinstance(la, MaxPool2d):
                val = maxpool_constant(la, network.shapes[i], cur)
                factors.append({"layer": i, "name": name, "norm": f"{cur.label}->{cur.label}", "value": val,
                                "method": "window count"})
                continue
            op = ops[i]
            if i == last_lin and fold:
                import torch

                cc = torch.as_tensor(np.asarray(c, dtype=np.float64).reshape(1, *op.out_shape),
                                     device=op.device)
                row = op.adjoint(cc).reshape(-1).cpu().numpy()
                val, meth = _row_dual(row, cur), "exact (c folded)"
                factors.append({"layer": i, "name": name, "norm": f"{cur.label}->|.|", "value": val,
                                "method": meth})
                cur = None  # type: ignore[assignment]
                continue
            target = (q if c is None else s) if i == last_lin else s
            val, meth = _factor(op, la, cur, target, spec_opts)
            factors.append({"layer": i, "name": name, "norm": f"{cur.label}->{target.label}", "value": val,
                            "method": meth})
            cur = target
        if cur is not None:
            if c is not None:
                factors.append({"layer": None, "name": "output c", "norm": f"{cur.label}->|.|",
                                "value": _row_dual(c, cur), "method": "exact"})
            elif cur is not q:
                factors.append({"layer": None, "name": "norm change", "norm": f"{cur.label}->{q.label}",
                                "value": _ident_norm(network.output_size, cur, q), "method": "exact"})
        vals = [f["value"] for f in factors]
        total = 0.0 if any(v == 0 for v in vals) else math.exp(sum(math.log(v) for v in vals)) * SAFETY
        if best is None or total < best[0]:
            best = (total, factors, s.label)
    assert best is not None
    return best


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    t0 = time.perf_counter()  # the time limit counts from here (torch's import included)
    from lipopt.analytic._threads import limit_threads

    with limit_threads(options.threads):
        return _run(network, question, options, t0)


def _run(network: Network, question: Question, options: RunOptions,
         t0: float | None = None) -> LipschitzResult:
    import dataclasses

    from lipopt.deadline import Deadline

    t0 = time.perf_counter() if t0 is None else t0
    dl = Deadline.start(options.time_limit, t0)

    from lipopt.analytic.linops import resolve_device
    from lipopt.analytic.spectral import TIME_LIMIT_TAG, SpectralOptions

    _, warn = resolve_device(options.device)
    so = Options.from_run(options, "naive").spectral or SpectralOptions(seed=options.seed, power_iters=0)
    if dl.limited:
        so = dataclasses.replace(so, deadline=dl.at)
    value, factors, mid = naive_product(network, question, options.device, so)
    late = [f["name"] for f in factors if str(f["method"]).endswith(TIME_LIMIT_TAG)]
    if late:
        dl.stopped("the certified spectral norms of " + ", ".join(dict.fromkeys(late))
                   + " (bounded by cheaper sound bounds instead)")
    res = LipschitzResult("naive", BoundKind.UPPER, value, Status.SOLVED,
                          solve_time=time.perf_counter() - t0,
                          stats={"factors": factors, "intermediate_norm": mid},
                          options={"device": options.device})
    res.notes.append("global bound (product of layer operator norms): also valid, but not local, for "
                     f"{question.constant} questions")
    if question.input_norm is not question.output_norm and not question.scalar_output:
        res.notes.append(f"mixed norms: norm change carried by one layer, {mid} in between "
                         "(submultiplicativity)")
    inexact = [f["name"] for f in factors if not str(f["method"]).startswith("exact")
               and f["method"] != "window count"]
    if inexact:
        res.notes.append("factors bounded, not exact: " + ", ".join(inexact))
    if warn:
        res.notes.append(warn)
    ok = all(math.isfinite(f["value"]) and f["value"] >= 0 for f in factors)
    res.add_check("factors finite and non-negative", ok, f"{len(factors)} factors")
    dl.mark(res)
    res.wall_time = time.perf_counter() - t0
    return res
