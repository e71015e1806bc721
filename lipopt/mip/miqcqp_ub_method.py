"""The MIQCQP upper-bound problem alone (closed activation regions): a certified UPPER bound."""

from lipopt.mip.miqcqp_method import Options, applicable
from lipopt.mip.miqcqp_method import run_ub as run

__all__ = ["Options", "applicable", "run"]
