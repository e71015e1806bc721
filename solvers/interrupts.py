"""One process-wide record of a Ctrl-C that a solve absorbed.

A backend that catches KeyboardInterrupt (to stop its solver cleanly and keep the bracket) calls
:func:`request`; a run loop checks :func:`requested` after each solve and stops, and clears the flag
with :func:`clear` when it starts. Nothing else is global.
"""

from __future__ import annotations

__all__ = ["clear", "request", "requested"]

_flag = False


def request() -> None:
    global _flag
    _flag = True


def requested() -> bool:
    return _flag


def clear() -> None:
    global _flag
    _flag = False
