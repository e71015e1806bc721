"""The local affine-ReLU bound of Avant & Morgansen (formulations.md section 4), in torch float64.

It bounds the NOMINAL-POINT constant L(f, x0, B_eps(x0)) = sup_{|x-x0|_2 <= eps} |f(x)-f(x0)|_2 / |x-x0|_2
(not the pairwise local constant). Layers are grouped into blocks: a run of linear layers (Dense,
Conv2d, AvgPool2d, Flatten; composed into one affine map A) followed by a ReLU, a max-pool, or the end.
Per block k, with the ball {x0_k + D delta : |D delta| <= eps_k} (D = diag(d), d_j = 0 for coordinates
that cannot move):

* affine + ReLU: ybar = y0 + eps_k ||a_i^T D||_2 (one-pass row norms, :mod:`.rownorms`), slopes
  r_i = (relu(ybar_i) - relu(y0_i)) / (ybar_i - y0_i) (Theorem 1; 0 for rows with ||a_i^T D|| = 0);
  for a LeakyReLU max(y, alpha y) the largest chord slope from y0 is 1 for y0 >= 0, alpha for
  ybar <= 0, else (ybar - alpha y0) / (ybar - y0), so r_i lies in [alpha, 1] for the rows that move,
  L_k = ||R A D||_2 as a CERTIFIED upper bound (:mod:`.spectral`), next nominal relu(y0), next
  restriction d = 1[r > 0] (r_i = 0 means the output cannot move: ybar_i <= 0, or a zero row);
* affine only: L_k = ||A D||_2, next d = 1[row of A D non-zero] (constant outputs cannot move);
* max-pool: L_k = sqrt(n_max), n_max counted exactly at the actual input size / padding / dilation,
  over the inputs that can move; nominal and restriction pooled;
* Flatten: a reshape (L = 1, d passes through).
Then eps_{k+1} = L_k eps_k and L = prod L_k. A scalar output c^T f is folded into the last linear layer.

ybar is inflated by a relative 1e-12 (and an absolute 1e-300) so that float64 rounding of y0 and of the
row norms cannot make a slope too small (the slope is non-decreasing in ybar).

The mathematics as implemented: ``docs/methods.md#local-affine``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.errors import InvalidQuestionError, UnsupportedLayerError
from lipopt.network.layers import AvgPool2d, Conv2d, Dense, Flatten, LeakyReLU, MaxPool2d, ReLU
from lipopt.network.network import Network


@dataclass(frozen=True)
class LocalOptions:
    device: str = "cpu"
    spectral: Any = None  # lipopt.analytic.spectral.SpectralOptions (default: its defaults)
    restrict_maxpool: bool = True  # count windows only over inputs that can move (never larger)
    ybar_rtol: float = 1e-12


@dataclass
class BlockRecord:
    index: int
    kind: str  # "affine-relu", "affine", "maxpool", "reshape"
    layers: list[int]
    eps_in: float
    constant: float  # certified upper bound of this block's nominal-point constant
    method: str
    exact: bool
    estimate: float | None
    global_factor: float
    n_out: int = 0
    n_moving_in: int = 0  # d > 0
    n_active: int = 0  # r > 0
    n_unstable: int = 0  # 0 < r < 1

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class LocalBound:
    value: float  # certified upper bound on the nominal-point constant
    eps: float
    blocks: list[BlockRecord]
    global_bound: float  # certified global product bound of the same blocks
    estimate: float | None  # product with power-iteration values (paper-style; NOT certified)
    all_exact: bool
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "eps": self.eps, "global_bound": self.global_bound,
                "estimate": self.estimate, "all_exact": self.all_exact,
                "blocks": [b.to_dict() for b in self.blocks], "notes": list(self.notes)}


def _prod(vals: list[float]) -> float:
    if any(v == 0 for v in vals):
        return 0.0
    s = sum(math.log(v) for v in vals)
    return math.exp(s) if s < 709 else math.inf


def _slopes(y0: Any, ybar: Any, moving: Any, alpha: float = 0.0) -> Any:
    """The largest chord slope (g(y) - g(y0)) / (y - y0) of g(y) = max(y, alpha y) over y <= ybar: 1 for
    y0 >= 0; for y0 < 0, alpha if ybar <= 0, else (ybar - alpha y0) / (ybar - y0) (increasing in ybar).
    0 for rows that cannot move."""
    import torch

    r = torch.full_like(y0, float(alpha))
    up = ybar > y0
    one = up & (y0 >= 0)
    mid = up & (y0 < 0) & (ybar > 0)
    r[one] = 1.0
    r[mid] = (ybar[mid] - alpha * y0[mid]) / (ybar[mid] - y0[mid])
    r[~moving] = 0.0
    return r


class LocalBoundComputer:
    """Prepares the blocks and the nominal pass once; :meth:`bound` evaluates any radius."""

    def __init__(self, network: Network, x0: np.ndarray, c: np.ndarray | None = None,
                 options: LocalOptions | None = None) -> None:
        import torch

        from lipopt.analytic.linops import DTYPE, compose, fold_output, layer_op, resolve_device
        from lipopt.analytic.spectral import SpectralOptions

        self.options = options or LocalOptions()
        self.spectral = self.options.spectral or SpectralOptions()
        self.device, self.device_warning = resolve_device(self.options.device)
        self.network = network
        x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
        if x0.size != network.input_size:
            raise InvalidQuestionError(f"x0 has {x0.size} entries, the network {network.input_size} inputs")
        self.x0 = x0
        dev = self.device
        blocks: list[dict[str, Any]] = []
        run: list[Any] = []
        run_idx: list[int] = []
        run_start = 0
        for i, la in enumerate(network.layers):
            shp = network.shapes[i]
            if isinstance(la, Dense | Conv2d | AvgPool2d | Flatten):
                if not run:
                    run_start = i
                run.append(layer_op(la, shp, dev))
                run_idx.append(i)
                continue
            start_shape = network.shapes[run_start] if run else shp
            op = compose(run, start_shape, dev)
            if isinstance(la, ReLU | LeakyReLU):  # max(y, alpha y): chord slopes in [alpha, 1]
                blocks.append({"kind": "affine-relu", "op": op, "layers": [*run_idx, i], "alpha": la.alpha})
            elif isinstance(la, MaxPool2d):
                if run:
                    blocks.append({"kind": "affine", "op": op, "layers": list(run_idx)})
                blocks.append({"kind": "maxpool", "layer": la, "shape": shp, "layers": [i]})
            else:
                raise UnsupportedLayerError([f"layer {i}: {type(la).__name__}"],
                                            "Dense, Conv2d, AvgPool2d, Flatten, ReLU, LeakyReLU, MaxPool2d",
                                            source="local affine bound")
            run, run_idx = [], []
        if run:
            blocks.append({"kind": "affine", "op": compose(run, network.shapes[run_start], dev),
                           "layers": list(run_idx)})
        if c is not None:
            c = np.asarray(c, dtype=np.float64).reshape(-1)
            if blocks and blocks[-1]["kind"] == "affine":
                blocks[-1]["op"] = fold_output(blocks[-1]["op"], c)
            else:
                from lipopt.analytic.linops import DenseOp

                blocks.append({"kind": "affine", "op": DenseOp(c.reshape(1, -1), None, (c.size,), dev),
                               "layers": []})
        for b in blocks:
            if b["kind"] != "maxpool" and b["op"].is_reshape:
                b["kind"] = "reshape" if b["kind"] == "affine" else b["kind"]
        self.blocks = blocks
        # nominal pass (independent of eps)
        h = torch.as_tensor(x0.reshape(1, *network.input_shape).copy(), dtype=DTYPE, device=dev)
        for b in blocks:
            b["x_in"] = h
            if b["kind"] == "maxpool":
                h = _maxpool(b["layer"], h)
            else:
                y0 = b["op"].affine(h)
                b["y0"] = y0
                if b["kind"] == "affine-relu":
                    a = b["alpha"]
                    h = torch.relu(y0) if a == 0.0 else torch.where(y0 > 0, y0, a * y0)
                else:
                    h = y0
        self.nominal_output = h.reshape(-1).cpu().numpy()
        self._global: float | None = None

    # ------------------------------------------------------------------------------------------
    def global_bound(self) -> float:
        """Certified global l2 product of the same blocks (||A|| per block, sqrt(n_max) per max-pool)."""
        if self._global is None:
            from lipopt.analytic.maxpool import maxpool_constant
            from lipopt.analytic.spectral import global_upper

            vals = []
            for b in self.blocks:
                if b["kind"] == "maxpool":
                    vals.append(maxpool_constant(b["layer"], b["shape"]))
                elif b["kind"] != "reshape":
                    vals.append(global_upper(b["op"], self.spectral).upper)
            self._global = _prod(vals)
        return self._global

    def bound(self, eps: float, with_global: bool = True) -> LocalBound:
        import torch

        from lipopt.analytic.maxpool import max_count, maxpool_constant
        from lipopt.analytic.rownorms import row_norms_sq
        from lipopt.analytic.spectral import global_upper, masked_norm_upper

        eps = float(eps)
        if not math.isfinite(eps) or eps < 0:
            raise InvalidQuestionError(f"eps must be a finite non-negative number, got {eps}")
        dev = self.device
        d = torch.ones(self.network.input_shape, dtype=torch.float64, device=dev)
        cur_eps = eps
        records: list[BlockRecord] = []
        for k, b in enumerate(self.blocks):
            kind = b["kind"]
            if kind == "maxpool":
                la, shp = b["layer"], b["shape"]
                mask = d.cpu().numpy() if self.options.restrict_maxpool else None
                n = max_count(la, shp, mask)
                lk = math.sqrt(n)
                d_next = _maxpool(la, d.reshape(1, *shp))[0]
                records.append(BlockRecord(k, kind, b["layers"], cur_eps, lk, "window count", True, lk,
                                           maxpool_constant(la, shp) if with_global else math.nan,
                                           int(d_next.numel()), int((d > 0).sum())))
                d = d_next
                cur_eps *= lk
                continue
            op = b["op"]
            if kind == "reshape":
                lk = 1.0 if bool((d > 0).any()) else 0.0
                records.append(BlockRecord(k, kind, b["layers"], cur_eps, lk, "reshape", True, lk, 1.0,
                                           op.n_out, int((d > 0).sum())))
                d = d.reshape(op.out_shape)
                cur_eps *= lk
                continue
            rn = torch.sqrt(row_norms_sq(op, d))
            moving = rn > 0
            if kind == "affine-relu":
                y0 = b["y0"][0]
                ybar = y0 + cur_eps * rn * (1 + self.options.ybar_rtol)
                ybar = ybar + (ybar.abs() * self.options.ybar_rtol + 1e-300) * moving
                r = _slopes(y0, ybar, moving, b["alpha"])
                sb = masked_norm_upper(op, r, d, self.spectral)
                d_next = (r > 0).to(torch.float64)
                n_act = int((r > 0).sum())
                n_unst = int(((r > 0) & (r < 1)).sum())
            else:
                sb = masked_norm_upper(op, None, d, self.spectral)
                d_next = moving.to(torch.float64)
                n_act = int(moving.sum())
                n_unst = 0
            gk = global_upper(op, self.spectral).upper if with_global else math.nan
            records.append(BlockRecord(k, kind, b["layers"], cur_eps, sb.upper, sb.method, sb.exact,
                                       sb.estimate, gk, op.n_out, int((d > 0).sum()), n_act, n_unst))
            d = d_next
            cur_eps *= sb.upper
        value = _prod([r.constant for r in records])
        ests = [r.estimate for r in records]
        est = None if any(e is None for e in ests) else _prod([float(e) for e in ests])  # type: ignore[arg-type]
        glob = self.global_bound() if with_global else math.nan
        notes = []
        if with_global and value > glob:
            notes.append(f"local product {value:.9g} exceeded the global product {glob:.9g}; "
                         "the global product is reported (it also bounds the nominal constant)")
            value = glob
        return LocalBound(value, eps, records, glob, est, all(r.exact for r in records), notes)


def _maxpool(layer: MaxPool2d, x: Any) -> Any:
    import torch
    import torch.nn.functional as F

    k, s, p, dl = layer.kernel_size, layer.stride, layer.padding, layer.dilation
    if p[0] <= k[0] // 2 and p[1] <= k[1] // 2:
        return F.max_pool2d(x, k, s, p, dl)
    out = layer.forward(x.cpu().numpy())
    return torch.as_tensor(out, dtype=x.dtype, device=x.device)


def local_bound(network: Network, x0: np.ndarray, eps: float, c: np.ndarray | None = None,
                options: LocalOptions | None = None) -> LocalBound:
    """One-shot: the certified local affine-ReLU bound at radius eps (l2) around x0."""
    return LocalBoundComputer(network, x0, c, options).bound(eps)


__all__ = ["BlockRecord", "LocalBound", "LocalBoundComputer", "LocalOptions", "local_bound"]
