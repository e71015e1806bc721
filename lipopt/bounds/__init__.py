"""Sound pre-activation bounds (interval arithmetic, linear relaxation, LP tightening)."""

from lipopt.bounds.compute import BOUND_METHODS, compute_bounds
from lipopt.bounds.crown import crown_bounds
from lipopt.bounds.interval import backward_interval, interval_bounds
from lipopt.bounds.lp_tighten import lp_bounds
from lipopt.bounds.types import BackwardBounds, ForwardBounds

__all__ = ["BOUND_METHODS", "BackwardBounds", "ForwardBounds", "backward_interval", "compute_bounds",
           "crown_bounds", "interval_bounds", "lp_bounds"]
