"""lipopt: exact Lipschitz constants and certified bounds of ReLU networks, side by side.

``import lipopt`` is light: torch, cvxpy, Pyomo and the solvers are imported only by the methods that
use them.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "lipschitz": "lipopt.api",
    "build_model": "lipopt.models",
    "compare": "lipopt.api",
    "load": "lipopt.network.load",
    "Network": "lipopt.network.network",
    "Question": "lipopt.spec",
    "make_question": "lipopt.spec",
    "Box": "lipopt.spec",
    "Ball": "lipopt.spec",
    "Global": "lipopt.spec",
    "Norm": "lipopt.spec",
    "LipschitzResult": "lipopt.result",
    "ResultSet": "lipopt.result",
    "BoundKind": "lipopt.result",
    "Status": "lipopt.result",
    "Verdict": "lipopt.result",
    "StopReason": "lipopt.result",
    "RunOptions": "lipopt.methods",
    "methods": "lipopt.methods",
    "grid": "lipopt.grid",
    "records": "lipopt.records",
}
_MODULES = ("methods", "grid", "records")

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name == "__version__":  # from the package metadata: pyproject.toml's version is the one source
        from lipopt._version import version

        return version()
    if name in _LAZY:
        import importlib

        mod = importlib.import_module(_LAZY[name])
        return mod if name in _MODULES else getattr(mod, name)
    raise AttributeError(f"module 'lipopt' has no attribute {name!r}")
