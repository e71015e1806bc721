"""The benchmarks: scripts that measure lipopt's speed and tightness targets (README, "Benchmarks").

Every script prints its table and writes it under :data:`RESULTS` (``benchmarks/results/``, not
committed) with :func:`write_result`; list options take names separated by spaces or commas
(:func:`split_names`)."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def split_names(values: str | list[str] | None) -> list[str]:
    """``["lenet", "cifar"]``, ``["lenet,cifar"]`` and ``"lenet,cifar"`` alike: the names, in order."""
    if values is None:
        return []
    items = [values] if isinstance(values, str) else list(values)
    return [n.strip() for v in items for n in v.split(",") if n.strip()]


def write_result(name: str, text: str, directory: str | Path | None = None) -> Path:
    """Write ``text`` to ``directory / name`` (default :data:`RESULTS`), say where, return the path."""
    path = Path(directory) / name if directory is not None else RESULTS / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text if text.endswith("\n") else text + "\n")
    print(f"written to {path}")
    return path
