"""The MIQCQP lower-bound problem alone (regions with an epsilon margin): a certified LOWER bound."""

from lipopt.methods.miqcqp import Options, applicable
from lipopt.methods.miqcqp import run_lb as run

__all__ = ["Options", "applicable", "run"]
