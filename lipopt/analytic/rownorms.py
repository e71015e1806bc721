"""Row norms ||a_i^T D||_2 of a (masked) linear layer, all rows at once.

With D = diag(d), ||a_i^T D||_2^2 = sum_j a_ij^2 d_j^2, i.e. the layer with *squared* weights applied to
d^2. For a convolution that is ONE convolution of the mask d^2 with the squared kernel, using the
layer's own stride / padding / dilation / groups (zero padding contributes nothing, exactly as in the
lowered matrix) [formulations.md 4.2: Avant & Morgansen compute the rows as transposed convolutions of
basis images instead]. Dense: (W*W) @ d^2. Average pooling: window sums of d^2 divided by the squared
divisor. Reshapes: d^2 itself.

:func:`row_norms_sq_reference` is the basis-vector method of the paper (row i = A^T e_i, batched
transposed convolutions), kept as the independent reference for tests and the benchmark; it works for
any operator (also compositions of several linear layers), and is what :func:`row_norms_sq` falls back
to for compositions without a one-pass form.
"""

from __future__ import annotations

import numpy as np
import torch

from lipopt.analytic.linops import DTYPE, AvgPoolOp, ComposedOp, ConvOp, DenseOp, LinOp, ReshapeOp


def row_norms_sq(op: LinOp, d: torch.Tensor) -> torch.Tensor:
    """||a_i^T D||^2 for every output i, shaped like the output (one pass where possible)."""
    d = d.to(dtype=DTYPE, device=op.device)
    d2 = (d * d).reshape(1, *op.in_shape)
    if isinstance(op, ConvOp):
        return op.sq_forward(d2)[0]
    if isinstance(op, DenseOp):
        return (d2.reshape(-1) @ (op.w * op.w).T).reshape(op.out_shape)
    if isinstance(op, AvgPoolOp):
        return (op._window_sum(d2)[0] / (op.div * op.div))
    if isinstance(op, ReshapeOp):
        return d2.reshape(op.out_shape)
    if isinstance(op, ComposedOp):
        core = op.core
        if core is None and op.is_reshape:
            return d2.reshape(op.out_shape)
        if core is not None:
            return row_norms_sq(core, d.reshape(core.in_shape)).reshape(op.out_shape)
    return row_norms_sq_reference(op, d)


def row_norms_sq_reference(op: LinOp, d: torch.Tensor, rows: np.ndarray | None = None,
                           batch: int = 256) -> torch.Tensor:
    """Basis-vector reference: a_i^T = A^T e_i by the adjoint (transposed convolution) of a batch of basis
    images, masked by d, squared and summed. ``rows``: flat output indices (default: all); returns the
    values for those rows (flat) or, without ``rows``, the full output-shaped tensor."""
    n_out = op.n_out
    batch = max(1, min(batch, (1 << 24) // max(1, op.n_in + n_out)))  # bound the memory of a batch
    idx = np.arange(n_out) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
    dm = d.reshape(1, -1)
    out = torch.empty(idx.size, dtype=DTYPE, device=op.device)
    for s in range(0, idx.size, batch):
        sel = torch.as_tensor(idx[s:s + batch], device=op.device)
        e = torch.zeros((sel.numel(), n_out), dtype=DTYPE, device=op.device)
        e[torch.arange(sel.numel(), device=op.device), sel] = 1.0
        a = op.adjoint(e.reshape(sel.numel(), *op.out_shape)).reshape(sel.numel(), -1) * dm
        out[s:s + sel.numel()] = (a * a).sum(dim=1)
    return out.reshape(op.out_shape) if rows is None else out
