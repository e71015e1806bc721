"""Evaluation of trained nets: the columns of the paper's Table 1, and a sampled Lipschitz ESTIMATE.

* clean accuracy on the training and test data;
* accuracy under Gaussian noise: x + N(0, ``sigma``^2 I), sigma = 1 as the paper (zero mean, unit
  variance; not clipped to the pixel range);
* accuracy under the l-inf PGD attack (Madry et al.) of radius ``eps`` (default 0.1 on [0, 1] pixels):
  a uniform random start in the ball, ``iters`` signed-gradient steps of size ``step`` on the cross-entropy,
  each followed by the projection onto the ball and the pixel box [0, 1]; a sample stops being attacked
  once it is misclassified. The paper's printed step size and iteration count did not survive in our copy
  of its text; the defaults are those of the authors' ``pgd`` class: 7 iterations, step eps / 4.
* :func:`sampled_estimate`: the largest Jacobian operator norm at sampled inputs: an ESTIMATE of the
  constant from below (never a bound: float32 torch, no witness check).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from lipopt.options import StrictOptions
from lipopt.train.options import _positive

__all__ = ["EvalOptions", "accuracy", "evaluate_model", "noise_accuracy", "pgd_accuracy", "sampled_estimate"]


@dataclass(frozen=True)
class EvalOptions(StrictOptions):
    """``sigma``: the Gaussian noise level; ``eps``, ``step`` (None: eps / 4), ``iters``: the l-inf PGD
    attack; ``box``: the input range the attack stays in (None: not clipped); ``seed``: noise and random
    starts; ``batch_size``: evaluation batches."""

    sigma: float = 1.0
    eps: float = 0.1
    step: float | None = None
    iters: int = 7
    box: tuple[float, float] | None = (0.0, 1.0)
    seed: int = 0
    batch_size: int = 1000

    def __post_init__(self) -> None:
        _positive("sigma", self.sigma, strict=False)
        _positive("eps", self.eps, strict=False)
        if self.step is not None:
            _positive("step", self.step)
        _positive("iters", self.iters, integer=True)
        _positive("batch_size", self.batch_size, integer=True)

    @property
    def pgd_step(self) -> float:
        return self.eps / 4 if self.step is None else float(self.step)


def _t(a: Any) -> Any:
    import torch

    return a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))


def accuracy(model: Any, x: Any, y: Any, batch_size: int = 1000) -> float:
    """Fraction of the rows of x that ``model`` classifies as y (eval mode, no gradients)."""
    import torch

    x, y = _t(x), _t(y)
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(1, len(x))


def mse(model: Any, x: Any, y: Any) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        return float(torch.mean((model(_t(x)) - _t(y)) ** 2))


def noise_accuracy(model: Any, x: Any, y: Any, sigma: float = 1.0, seed: int = 0,
                   batch_size: int = 1000) -> float:
    """Accuracy on x + N(0, sigma^2 I) (one seeded draw per sample)."""
    import torch

    x = _t(x)
    gen = torch.Generator().manual_seed(seed)
    noisy = x + sigma * torch.randn(x.shape, generator=gen, dtype=x.dtype)
    return accuracy(model, noisy, y, batch_size)


def pgd_attack(model: Any, x: Any, y: Any, opts: EvalOptions) -> Any:
    """The l-inf PGD adversarial examples of x (see the module docstring)."""
    import torch

    x, y = _t(x), _t(y)
    gen = torch.Generator().manual_seed(opts.seed)
    eps, step = opts.eps, opts.pgd_step
    delta = (torch.rand(x.shape, generator=gen, dtype=x.dtype) * 2 - 1) * eps
    lo, hi = opts.box if opts.box is not None else (-np.inf, np.inf)
    adv = (x + delta).clamp(lo, hi)
    model.eval()
    for _ in range(opts.iters):
        a = adv.detach().requires_grad_(True)
        out = model(a)
        active = out.argmax(1) == y  # still correct: keep attacking
        if not bool(active.any()):
            break
        loss = torch.nn.functional.cross_entropy(out, y, reduction="sum")
        (g,) = torch.autograd.grad(loss, a)
        nxt = a.detach() + step * g.sign()
        nxt = torch.max(torch.min(nxt, x + eps), x - eps).clamp(lo, hi)
        mask = active.reshape(-1, *([1] * (x.dim() - 1)))
        adv = torch.where(mask, nxt, adv)
    return adv.detach()


def pgd_accuracy(model: Any, x: Any, y: Any, opts: EvalOptions | None = None) -> float:
    opts = opts or EvalOptions()
    x, y = _t(x), _t(y)
    correct = 0
    for i in range(0, len(x), opts.batch_size):
        xb, yb = x[i:i + opts.batch_size], y[i:i + opts.batch_size]
        adv = pgd_attack(model, xb, yb, opts)
        correct += round(accuracy(model, adv, yb) * len(xb))
    return correct / max(1, len(x))


def sampled_estimate(model: Any, x: Any, input_norm: str = "l2", output_norm: str = "l2",
                     n: int = 64, seed: int = 0) -> float:
    """max over ``n`` seeded rows of x of the Jacobian operator norm (input_norm -> output_norm): an
    ESTIMATE from below of the global constant (float32, not certified)."""
    import torch

    from lipopt.norms import operator_norm
    from lipopt.spec import Norm

    x = _t(x)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=gen)[:n]
    pts = x[idx].detach().clone().requires_grad_(True)
    model.eval()
    with torch.enable_grad():
        out = model(pts)
        rows = [torch.autograd.grad(out[:, k].sum(), pts, retain_graph=k < out.shape[1] - 1)[0]
                for k in range(out.shape[1])]  # the rows of each sample's Jacobian (samples independent)
    jac = torch.stack(rows, dim=1).reshape(len(pts), out.shape[1], -1).detach()
    if input_norm == "l2" and output_norm == "l2":
        return float(torch.linalg.matrix_norm(jac, ord=2).max())
    p, q = Norm.parse(input_norm), Norm.parse(output_norm)
    return max(operator_norm(j, p, q) for j in jac.double().numpy())


def evaluate_model(model: Any, data: Any, opts: EvalOptions | None = None) -> dict[str, float]:
    """The paper's columns for a classifier (train, test, noise, pgd accuracies as fractions), or the
    train / test mean squared error for a regression."""
    opts = opts or EvalOptions()
    if data.task == "regression":
        return {"train_mse": mse(model, data.x_train, data.y_train), "test_mse": mse(model, data.x_test,
                                                                                       data.y_test)}
    return {
        "train_accuracy": accuracy(model, data.x_train, data.y_train, opts.batch_size),
        "test_accuracy": accuracy(model, data.x_test, data.y_test, opts.batch_size),
        "noise_accuracy": noise_accuracy(model, data.x_test, data.y_test, opts.sigma, opts.seed,
                                         opts.batch_size),
        "pgd_accuracy": pgd_accuracy(model, data.x_test, data.y_test, opts),
        "noise_sigma": opts.sigma, "pgd_eps": opts.eps, "pgd_step": opts.pgd_step, "pgd_iters": opts.iters,
    }
