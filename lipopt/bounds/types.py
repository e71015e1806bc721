"""Containers for sound bounds on the forward and backward (gradient) variables of a lowered network.

Indexing follows ``network.lower()``: ``stage_bounds[i]`` bounds the OUTPUT of stage i (for an
AffineStage that is the pre-activation of the following ReLU / max-pool), ``input_lo/hi`` bound the
input. Backward bounds: ``grad_out[i]`` bounds the derivative of the scalarised output c^T f with respect
to the output of stage i; ``grad_input`` bounds the gradient with respect to the input.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lipopt.network.stages import AffineStage, MaxPoolStage, Stage, is_activation

Interval = tuple[np.ndarray, np.ndarray]


@dataclass
class ForwardBounds:
    stages: tuple[Stage, ...]
    input_lo: np.ndarray
    input_hi: np.ndarray
    stage_bounds: list[Interval]
    method: str = "interval"
    stats: dict[str, float] = field(default_factory=dict)

    def pre_activation(self, i: int) -> Interval:
        """Bounds of the input of stage i (the output of stage i-1, or the network input)."""
        return (self.input_lo, self.input_hi) if i == 0 else self.stage_bounds[i - 1]

    def relu_masks(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(active, inactive, ambiguous) boolean masks of activation (ReLU / LeakyReLU) stage i: l >= 0,
        u <= 0, l < 0 < u."""
        if not is_activation(self.stages[i]):
            raise ValueError(f"stage {i} is not an activation stage")
        lo, hi = self.pre_activation(i)
        active = lo >= 0
        inactive = (hi <= 0) & ~active
        return active, inactive, ~(active | inactive)

    def relu_stage_indices(self) -> list[int]:
        """Indices of the activation (ReLU / LeakyReLU) stages."""
        return [i for i, s in enumerate(self.stages) if is_activation(s)]

    @property
    def n_ambiguous(self) -> int:
        return int(sum(self.relu_masks(i)[2].sum() for i in self.relu_stage_indices()))

    @property
    def n_relus(self) -> int:
        return int(sum(s.size for s in self.stages if is_activation(s)))

    def summary(self) -> dict[str, object]:
        return {"bound_method": self.method, "ambiguous_neurons": self.n_ambiguous, "relus": self.n_relus}


@dataclass
class BackwardBounds:
    grad_out: list[Interval]  # per stage: derivative of c^T f w.r.t. the stage's output
    grad_input: Interval
    method: str = "interval"


def is_affine(s: Stage) -> bool:
    return isinstance(s, AffineStage)


def is_maxpool(s: Stage) -> bool:
    return isinstance(s, MaxPoolStage)
