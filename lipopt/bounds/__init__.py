"""Sound pre-activation bounds (interval arithmetic, linear relaxation, LP tightening)."""

from lipopt.bounds.interval import backward_interval, interval_bounds
from lipopt.bounds.types import BackwardBounds, ForwardBounds

__all__ = ["BackwardBounds", "ForwardBounds", "backward_interval", "interval_bounds"]
