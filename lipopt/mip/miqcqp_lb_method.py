"""The MIQCQP lower-bound problem alone (regions with an epsilon margin): a certified LOWER bound."""

from lipopt.mip.miqcqp_method import Options, applicable
from lipopt.mip.miqcqp_method import run_lb as run

__all__ = ["Options", "applicable", "run"]
