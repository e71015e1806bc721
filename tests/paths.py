"""Where the tests find the repository, the shared folder beside it and the external networks (wherever a
test file sits)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from lipopt.locations import external_nets

ROOT = Path(__file__).resolve().parents[1]  # the repository
SHARED = ROOT.parent / "shared"  # ../shared: docs and seeds
EXTERNAL = external_nets()  # $LIPOPT_EXTERNAL_NETS, default ../shared/external-nets (lipopt.locations)


def benchmark_module(name: str) -> ModuleType:
    """A script of ``benchmarks/`` (``name`` without .py) imported as a module."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod
