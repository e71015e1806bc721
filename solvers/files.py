"""Model files: an :class:`ArrayModel` written as ``.lp`` / ``.mps`` by the solver that reads it back.

A linear model is written by HiGHS (``writeModel``), a quadratic one by SCIP (``writeProblem``: its
``.lp`` and ``.mps`` carry quadratic rows, and SCIP reads them back). Row and column names are the
Pyomo component names (``stage1.relu[5,le_ua]``: which stage, neuron and role a row belongs to), made
safe for the formats.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

__all__ = ["safe_names", "write_model"]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.()]")  # HiGHS' LP writer drops all names if one has [ ]


def safe_names(names: list[str] | None, prefix: str, n: int) -> list[str]:
    """``names`` with characters the LP / MPS formats reject replaced (or ``prefix<k>`` without names)."""
    if names is None or len(names) != n:
        return [f"{prefix}{k}" for k in range(n)]
    return [_UNSAFE.sub("_", s.replace("[", "(").replace("]", ")")) or f"{prefix}{k}"
            for k, s in enumerate(names)]


def write_model(arrays: Any, path: str | Path) -> Path:
    """Write ``arrays`` to ``path`` (``.lp`` or ``.mps``); the solver that writes it reads it back."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in (".lp", ".mps"):
        raise ValueError(f"cannot write {path.name}: supported model files are .lp and .mps")
    path.parent.mkdir(parents=True, exist_ok=True)
    if arrays.is_quadratic:
        from .scip import build_scip_model

        m, _ = build_scip_model(arrays)
        m.writeProblem(str(path), verbose=False)
        return path
    import highspy

    from .highs import _new_highs, _to_highs_lp

    h = _new_highs(highspy)
    h.setOptionValue("output_flag", False)
    h.passModel(_to_highs_lp(highspy, arrays))
    for k, name in enumerate(safe_names(arrays.col_names, "x", arrays.n_cols)):
        h.passColName(k, name)
    for k, name in enumerate(safe_names(arrays.row_names, "r", arrays.n_rows)):
        h.passRowName(k, name)
    h.writeModel(str(path))
    return path
