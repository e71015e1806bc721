"""Limit BLAS / OpenMP / torch threads for a block (heavily shared machines thrash with many threads)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def limit_threads(n: int | None) -> Iterator[None]:
    """Within the block use at most ``n`` threads in BLAS/LAPACK (threadpoolctl, if installed) and torch.
    ``None``: change nothing."""
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover - optional
            yield
        else:
            with threadpool_limits(max(1, int(n))):
                yield
    finally:
        torch.set_num_threads(old)
