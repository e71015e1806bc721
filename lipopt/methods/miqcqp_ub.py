"""The MIQCQP upper-bound problem alone (closed activation regions): a certified UPPER bound.

The mathematics as implemented: ``docs/methods.md#miqcqp-ub``.
"""

from lipopt.methods.miqcqp import Options, applicable
from lipopt.methods.miqcqp import run_ub as run

__all__ = ["Options", "applicable", "run"]
