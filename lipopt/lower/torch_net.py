"""The lowered network in torch (float64), exact or smoothed, and differentiable Jacobian norms.

Only for the search of candidates (gradient ascent); values are certified afterwards in numpy float64.
Smoothing with temperature T: ReLU -> T softplus(z / T) (LeakyReLU max(z, a z) = a z + (1 - a) relu(z)
-> a z + (1 - a) T softplus(z / T)), max-pool -> T logsumexp(z / T) over the window;
T -> 0 recovers the network.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, MaxPoolStage, is_activation
from lipopt.spec import Norm, Question


class TorchStages:
    def __init__(self, network: Network, device: str = "cpu") -> None:
        import torch

        self.torch = torch
        self.device = device
        self.ops: list[tuple[str, Any, Any]] = []
        for s in network.lower():
            if isinstance(s, AffineStage):
                w = s.weight
                if hasattr(w, "toarray") and w.shape[0] * w.shape[1] > 4_000_000:  # type: ignore[union-attr]
                    coo = w.tocoo()  # type: ignore[union-attr]
                    idx = torch.tensor(np.vstack([coo.row, coo.col]), dtype=torch.long)
                    wt = torch.sparse_coo_tensor(idx, torch.tensor(coo.data), w.shape, device=device)
                    wt = wt.coalesce()
                    self.ops.append(("sparse", wt, torch.tensor(s.bias, device=device)))
                else:
                    wt = torch.tensor(s.dense(), device=device)
                    self.ops.append(("dense", wt, torch.tensor(s.bias, device=device)))
            elif is_activation(s):
                self.ops.append(("relu", float(s.alpha), None))
            else:
                assert isinstance(s, MaxPoolStage)
                win = s.windows
                valid = torch.tensor(win >= 0, device=device)
                idx = torch.tensor(np.maximum(win, 0), dtype=torch.long, device=device)
                self.ops.append(("pool", idx, valid))

    def forward(self, x, temperature: float | None = None):
        """x: (B, n) or (n,) float64 tensor; temperature None = the exact network."""
        torch = self.torch
        single = x.dim() == 1
        h = x.unsqueeze(0) if single else x
        for kind, a, b in self.ops:
            if kind == "dense":
                h = h @ a.T + b
            elif kind == "sparse":
                h = torch.sparse.mm(a, h.T).T + b
            elif kind == "relu":  # a = alpha: max(h, a h) = a h + (1 - a) relu(h)
                r = torch.relu(h) if temperature is None else temperature * torch.nn.functional.softplus(
                    h / temperature)
                h = r if a == 0.0 else a * h + (1.0 - a) * r
            else:
                vals = h[:, a]  # (B, n_out, k)
                vals = torch.where(b, vals, torch.full_like(vals, -torch.inf))
                if temperature is None:
                    h = vals.max(dim=2).values
                else:
                    h = temperature * torch.logsumexp(vals / temperature, dim=2)
        return h[0] if single else h

    def pre_activation_scales(self, x) -> list[float]:
        """Median |pre-activation| of each ReLU / max-pool stage at the points x (B, n)."""
        torch = self.torch
        out = []
        h = x
        with torch.no_grad():
            for kind, a, b in self.ops:
                if kind in ("relu", "pool"):
                    out.append(float(torch.median(torch.abs(h)).item()) if h.numel() else 1.0)
                if kind == "dense":
                    h = h @ a.T + b
                elif kind == "sparse":
                    h = torch.sparse.mm(a, h.T).T + b
                elif kind == "relu":
                    h = torch.relu(h) if a == 0.0 else torch.where(h > 0, h, a * h)
                else:
                    vals = torch.where(b, h[:, a], torch.full_like(h[:, a], -torch.inf))
                    h = vals.max(dim=2).values
        return out


def jacobian_fn(ts: TorchStages, question: Question, n_out: int):
    """x (B, n), T -> (B, r, n): the (smoothed) Jacobian, r = 1 (c^T J) for scalar outputs.

    One reverse pass per output row over the whole batch (the samples are independent), with
    ``create_graph`` so that the Jacobian stays differentiable in x. Not ``vmap(jacrev)``: its first call
    imports torch._dynamo and sympy (about 0.9 s of a cold start), for the same values bit for bit and
    no faster (784-50-10, batch 64: 4.0 ms against 5.0 ms a call)."""
    torch = ts.torch
    c = question.output_vector(n_out)
    ct = None if c is None else torch.tensor(c, device=ts.device)

    def jac_rows(x, temperature):
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        out = ts.forward(x, temperature)
        outs = [out @ ct] if ct is not None else [out[:, j] for j in range(out.shape[1])]
        rows = [torch.autograd.grad(o.sum(), x, create_graph=True)[0] for o in outs]
        return torch.stack(rows, dim=1)

    return jac_rows


def torch_norm(jac, question: Question):
    """Differentiable surrogate of the question's Jacobian norm (exact where a closed form exists)."""
    import torch

    p = question.input_norm
    if question.scalar_output:
        return torch.linalg.vector_norm(jac[:, 0, :], ord=p.dual.p, dim=1)
    q = question.output_norm
    if p is Norm.L1:
        return torch.linalg.vector_norm(jac, ord=q.p, dim=1).amax(dim=1)
    if q is Norm.LINF:
        return torch.linalg.vector_norm(jac, ord=p.dual.p, dim=2).amax(dim=1)
    if p is Norm.L2 and q is Norm.L2:
        return torch.linalg.matrix_norm(jac, ord=2)
    # inf -> 1, inf -> 2, 2 -> 1: ||J s|| at the locally best sign vector (a lower surrogate)
    m = jac if p is Norm.LINF else jac.transpose(1, 2)
    qq = q if p is Norm.LINF else Norm.L2
    with torch.no_grad():
        s = torch.ones(m.shape[0], m.shape[2], dtype=m.dtype, device=m.device)
        for _ in range(20):
            ms = torch.einsum("bij,bj->bi", m, s)
            u = torch.sign(ms) if qq is Norm.L1 else ms
            s = torch.sign(torch.einsum("bij,bi->bj", m, u))
            s = torch.where(s == 0, torch.ones_like(s), s)
    return torch.linalg.vector_norm(torch.einsum("bij,bj->bi", m, s), ord=qq.p, dim=1)


def project(x, question: Question):
    """Projection of the rows of a torch tensor onto the domain (in place safe: returns a new tensor)."""
    import torch

    from lipopt.spec import Ball, Box

    dom = question.domain
    if isinstance(dom, Box):
        lo = torch.as_tensor(dom.lo, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(dom.hi, dtype=x.dtype, device=x.device)
        return torch.maximum(torch.minimum(x, hi), lo)
    if isinstance(dom, Ball):
        c = torch.as_tensor(dom.center, dtype=x.dtype, device=x.device)
        d = x - c
        if dom.norm is Norm.LINF:
            return c + d.clamp(-dom.radius, dom.radius)
        n = torch.linalg.vector_norm(d, dim=-1, keepdim=True)
        return c + d * torch.clamp(dom.radius / torch.clamp(n, min=1e-300), max=1.0)
    return x


class Adam:
    """Adam on one tensor, the update of ``torch.optim.Adam`` (single-tensor form, defaults betas
    (0.9, 0.999), eps 1e-8), bit for bit (tests/methods/test_lower.py). torch's optimiser imports
    torch._dynamo on its first step (about 1.3 s of a cold start); this one does not."""

    def __init__(self, param: Any, lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        import torch

        self.p, self.lr, self.betas, self.eps = param, float(lr), betas, float(eps)
        self.m = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.v = torch.zeros_like(param, memory_format=torch.preserve_format)
        self.t = 0

    def zero_grad(self) -> None:
        self.p.grad = None

    def step(self) -> None:
        import torch

        g = self.p.grad
        if g is None:
            return
        b1, b2 = self.betas
        self.t += 1
        with torch.no_grad():
            self.m.lerp_(g, 1 - b1)
            self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
            step_size = self.lr / (1 - b1 ** self.t)
            denom = (self.v.sqrt() / ((1 - b2 ** self.t) ** 0.5)).add_(self.eps)
            self.p.addcdiv_(self.m, denom, value=-step_size)
