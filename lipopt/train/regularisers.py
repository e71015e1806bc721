"""The baselines' regularisers, under the same training loop as CLIP (:mod:`lipopt.train.clip`).

* ``none``: standard training, R = 0.
* ``weight``: the paper's "Weight Reg." (its eq. (6) with the Lipschitz term dropped): R = sum over the
  layers of |W_l|_F^2 (weight matrices and conv kernels, no biases), lambda chosen by the same
  discrepancy principle. It bounds the product of the layers' norms (eq. (4)) and so the constant.
"""

from __future__ import annotations

from typing import Any

__all__ = ["update_lambda", "weight_penalty"]


def weight_penalty(module: Any) -> Any:
    """sum_l |W_l|_F^2 over the Linear and Conv2d layers of ``module`` (a differentiable torch scalar)."""
    import torch

    layers = (torch.nn.Linear, torch.nn.Conv2d)
    terms = [m.weight.pow(2).sum() for m in module.modules() if isinstance(m, layers)]
    return torch.stack(terms).sum()


def update_lambda(lam: float, accuracy: float, target: float, step: float) -> float:
    """The discrepancy principle of the paper's Algorithm 2: a training accuracy above the target leaves
    room for more regularisation (lam + step); at or below it, lam - step, never below 0."""
    if accuracy > target:
        return lam + step
    return max(lam - step, 0.0)
