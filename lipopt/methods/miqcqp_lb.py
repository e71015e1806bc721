"""The MIQCQP lower-bound problem alone (regions with an epsilon margin): a certified LOWER bound.

The mathematics as implemented: ``docs/methods.md#miqcqp-lb``.
"""

from lipopt.methods.miqcqp import Options, applicable
from lipopt.methods.miqcqp import run_lb as run

__all__ = ["Options", "applicable", "run"]
