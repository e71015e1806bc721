"""Where the tests find the repository and the shared folder beside it (wherever a test file sits)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED = ROOT.parent / "shared"  # ../shared: the external networks, docs and seeds
EXTERNAL = SHARED / "external-nets"


def benchmark_module(name: str) -> ModuleType:
    """A script of ``benchmarks/`` (``name`` without .py) imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod
