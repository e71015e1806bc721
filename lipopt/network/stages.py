"""Lowered stages: the flat form every bound, encoding and exact method works on.

``Network.lower()`` turns the layer chain into ``AffineStage`` (a dense or scipy-sparse matrix and a
bias on flat vectors: Dense, Conv2d, AvgPool2d and Flatten, with consecutive linear maps multiplied
out), activation stages and ``MaxPoolStage`` (window index lists).

The activation stages are the piecewise-linear maps ``y = max(x, alpha x)`` with ``0 <= alpha < 1``:
``ReLUStage`` (alpha = 0) and ``LeakyReLUStage``. Both have ``size`` and ``alpha``, and every
algorithm that handles one handles the other through the same code (slopes ``alpha`` below zero and
1 above); they are kept as two types so that a dispatch table written for ReLU alone fails loudly on a
LeakyReLU stage instead of treating it as a ReLU.

Algorithms that handle several stage kinds look the kind up in a table with :func:`dispatch`, which
names the kinds the table does handle when one is missing.

The mathematics as implemented: ``docs/methods.md#activation``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeVar

import numpy as np

from lipopt.errors import InvalidNetworkError, UnsupportedLayerError

T = TypeVar("T")


def check_negative_slope(alpha: object, what: str) -> float:
    """``alpha`` as a float, or an error unless ``0 <= alpha < 1`` (the activations max(x, alpha x))."""
    try:
        a = float(alpha)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        a = float("nan")
    if not (np.isfinite(a) and 0.0 <= a < 1.0):
        raise InvalidNetworkError(
            f"{what} must satisfy 0 <= alpha < 1, got {alpha!r}: lipopt handles the piecewise-linear "
            "activations max(x, alpha x) with those slopes (a slope of 1 or more is not ReLU-like, a "
            "negative one is not monotone)")
    return a


@dataclass(frozen=True, eq=False)
class AffineStage:
    """y = W x + b on flat vectors. ``weight`` is a numpy array or a scipy.sparse CSR matrix."""

    weight: object
    bias: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.weight.shape)  # type: ignore[attr-defined, return-value]

    def dense(self) -> np.ndarray:
        w = self.weight
        return w.toarray() if hasattr(w, "toarray") else np.asarray(w)  # type: ignore[union-attr]

    def apply(self, x: np.ndarray) -> np.ndarray:
        """x: (B, in) -> (B, out)."""
        return np.asarray((self.weight @ x.T).T) + self.bias  # type: ignore[operator]


@dataclass(frozen=True)
class ReLUStage:
    """y = max(x, 0), elementwise on ``size`` entries."""

    size: int
    alpha: ClassVar[float] = 0.0


@dataclass(frozen=True)
class LeakyReLUStage:
    """y = max(x, alpha x) with the negative slope ``0 <= alpha < 1``, elementwise on ``size`` entries."""

    size: int
    alpha: float

    def __post_init__(self) -> None:
        a = check_negative_slope(self.alpha, "LeakyReLU negative slope")
        object.__setattr__(self, "alpha", a)


@dataclass(frozen=True, eq=False)
class MaxPoolStage:
    windows: np.ndarray  # (n_out, k) flat input indices; -1 = padding (never the max)
    in_size: int

    @property
    def out_size(self) -> int:
        return int(self.windows.shape[0])


ActivationStage = ReLUStage | LeakyReLUStage
ACTIVATION_STAGES: tuple[type, ...] = (ReLUStage, LeakyReLUStage)
Stage = AffineStage | ReLUStage | LeakyReLUStage | MaxPoolStage


def is_activation(stage: object) -> bool:
    """A ReLU or LeakyReLU stage (``y = max(x, alpha x)``)."""
    return type(stage) in ACTIVATION_STAGES


def activation_eval(stage: ActivationStage, h: np.ndarray) -> np.ndarray:
    """max(h, alpha h) (alpha = 0: ReLU)."""
    return np.maximum(h, 0.0) if stage.alpha == 0.0 else np.where(h > 0, h, stage.alpha * h)


def activation_slopes(stage: ActivationStage, active: np.ndarray) -> np.ndarray:
    """The derivative for a boolean pattern: 1 where active, alpha where not (float64)."""
    a = np.asarray(active, dtype=bool)
    return np.where(a, 1.0, stage.alpha)


def dispatch(table: Mapping[type, T], obj: object, what: str) -> T:
    """``table[type(obj)]``; a kind the table lacks is an error naming the kinds it handles."""
    try:
        return table[type(obj)]
    except KeyError:
        known = ", ".join(t.__name__ for t in table)
        raise UnsupportedLayerError([type(obj).__name__], f"{known} (in {what})", source=what) from None
