"""The MIQCQP upper-bound problem alone (closed activation regions): a certified UPPER bound."""

from lipopt.mip.miqcqp_method import applicable
from lipopt.mip.miqcqp_method import run_ub as run

__all__ = ["applicable", "run"]
