"""Solver catalog: names, capabilities, availability, versions and licences.

Nothing here imports a solver, Pyomo or cvxpy: availability is ``importlib.util.find_spec`` and
versions come from package metadata. Only :meth:`SolverInfo.licence` for Gurobi imports
``gurobipy`` (an explicit request: it builds a 2001-variable model to detect the pip licence).
"""

from __future__ import annotations

import enum
import importlib
import importlib.metadata
import importlib.util
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "SOLVERS",
    "Capability",
    "SolverInfo",
    "SolverNotAvailableError",
    "available_solvers",
    "default_solver",
    "get_solver",
    "probe_all",
    "require_solver",
]

OPEN_SOURCE = "open source"
GUROBI_PIP_LICENCE = "size-limited (pip licence: 2000 vars/cons, 200 vars with quadratic terms)"


class Capability(enum.Enum):
    LP = "lp"
    MILP = "milp"
    MIQCQP = "miqcqp"  # nonconvex mixed-integer quadratically constrained quadratic programs
    SOCP = "socp"
    SDP = "sdp"
    INDICATOR = "indicator"  # indicator constraints (no Pyomo interface used here translates them)


class SolverNotAvailableError(RuntimeError):
    """A solver was asked for that is not installed (or whose interface is not importable)."""


_licence_cache: dict[str, str] = {}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _dist_version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True)
class SolverInfo:
    """One solver as lipopt reaches it (through ``interface``)."""

    name: str
    interface: str  # "pyomo" | "cvxpy"
    capabilities: frozenset[Capability]
    package: str  # pip distribution name
    description: str
    module: str = field(default="", repr=False)  # importable module of the solver itself
    backend: str = field(default="", repr=False)  # lipopt_solvers module that runs it
    commercial: bool = field(default=False, repr=False)

    def _requirements(self) -> tuple[str, ...]:
        return (self.interface, self.module)

    def is_installed(self) -> bool:
        return all(_installed(m) for m in self._requirements())

    def version(self) -> str | None:
        return _dist_version(self.package) if _installed(self.module) else None

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def licence(self) -> str:
        """"open source", "full", a size-limited description, "not installed", ... .

        For Gurobi this imports gurobipy and solves a tiny 2001-variable model (cached)."""
        if not _installed(self.module):
            return "not installed"
        if not self.commercial:
            return OPEN_SOURCE
        if self.name not in _licence_cache:
            prober = getattr(importlib.import_module(self.backend), "probe_licence", None)
            _licence_cache[self.name] = prober() if prober else "commercial (licence not probed)"
        return _licence_cache[self.name]

    def install_hint(self) -> str:
        extra = " (or `pip install lipopt[gurobi]`)" if self.name == "gurobi" else ""
        missing = [m for m in self._requirements() if not _installed(m)]
        return f"`pip install {self.package}`{extra}; missing module(s): {', '.join(missing) or 'none'}"


_C = Capability
SOLVERS: dict[str, SolverInfo] = {
    "highs": SolverInfo(
        "highs", "pyomo", frozenset({_C.LP, _C.MILP}), "highspy",
        "HiGHS LP/MILP solver via Pyomo's `highs` interface (pyomo.contrib.solver)",
        module="highspy", backend="lipopt_solvers.highs",
    ),
    "scip": SolverInfo(
        "scip", "pyomo", frozenset({_C.LP, _C.MILP, _C.MIQCQP}), "pyscipopt",
        "SCIP (global MINLP incl. nonconvex MIQCQP) via Pyomo's `scip_direct` and the pyscipopt wheel",
        module="pyscipopt", backend="lipopt_solvers.scip",
    ),
    "gurobi": SolverInfo(
        "gurobi", "pyomo", frozenset({_C.LP, _C.MILP, _C.MIQCQP}), "gurobipy",
        "Gurobi via Pyomo's `gurobi_persistent` interface (pip licence is size-limited)",
        module="gurobipy", backend="lipopt_solvers.gurobi", commercial=True,
    ),
    "clarabel": SolverInfo(
        "clarabel", "cvxpy", frozenset({_C.LP, _C.SOCP, _C.SDP}), "clarabel",
        "Clarabel interior-point conic solver via cvxpy",
        module="clarabel", backend="lipopt_solvers.cvxpy_backends",
    ),
    "scs": SolverInfo(
        "scs", "cvxpy", frozenset({_C.LP, _C.SOCP, _C.SDP}), "scs",
        "SCS first-order conic solver via cvxpy (low accuracy: certificates need a repair/check)",
        module="scs", backend="lipopt_solvers.cvxpy_backends",
    ),
    "mosek": SolverInfo(
        "mosek", "cvxpy", frozenset({_C.LP, _C.SOCP, _C.SDP}), "Mosek",
        "MOSEK interior-point conic solver via cvxpy (needs a licence file)",
        module="mosek", backend="lipopt_solvers.cvxpy_backends", commercial=True,
    ),
}

# Preference order per capability (first installed wins in default_solver).
_DEFAULTS: dict[Capability, tuple[str, ...]] = {
    _C.LP: ("highs", "gurobi", "scip", "clarabel", "mosek", "scs"),
    _C.MILP: ("highs", "gurobi", "scip"),
    _C.MIQCQP: ("scip", "gurobi"),
    _C.SOCP: ("clarabel", "mosek", "scs"),
    _C.SDP: ("clarabel", "mosek", "scs"),
    _C.INDICATOR: (),
}


def get_solver(name: str) -> SolverInfo:
    """The catalog entry of ``name`` (case-insensitive); ValueError listing known names otherwise."""
    key = str(name).strip().lower()
    if key not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; known solvers: {', '.join(SOLVERS)}")
    return SOLVERS[key]


def available_solvers(capability: Capability | None = None, *, interface: str | None = None) -> list[str]:
    """Installed solvers (optionally with ``capability`` / through ``interface``), preferred first."""
    order = _DEFAULTS.get(capability, ()) if capability is not None else ()
    names = list(order) + [n for n in SOLVERS if n not in order]
    return [
        n for n in names
        if (capability is None or SOLVERS[n].supports(capability))
        and (interface is None or SOLVERS[n].interface == interface)
        and SOLVERS[n].is_installed()
    ]


def _not_available_message(info: SolverInfo) -> str:
    others = [n for n in available_solvers(interface=info.interface) if n != info.name]
    return (
        f"solver {info.name!r} is not available: install it with {info.install_hint()}. "
        f"Installed {info.interface} solvers: {', '.join(others) or 'none'}."
    )


def require_solver(name: str) -> SolverInfo:
    """Like :func:`get_solver`, but raise :class:`SolverNotAvailableError` if it is not installed."""
    info = get_solver(name)
    if not info.is_installed():
        raise SolverNotAvailableError(_not_available_message(info))
    return info


def default_solver(capability: Capability) -> str:
    """highs for LP/MILP, scip for MIQCQP, clarabel for SOCP/SDP; the next installed one otherwise."""
    for name in _DEFAULTS.get(capability, ()):
        if SOLVERS[name].is_installed():
            return name
    wanted = [SOLVERS[n] for n in _DEFAULTS.get(capability, ())]
    hints = "; ".join(f"{i.name}: `pip install {i.package}`" for i in wanted) or "none of the catalog solvers"
    raise SolverNotAvailableError(
        f"no installed solver has capability {capability.name}; install one of: {hints}. "
        f"Installed solvers: {', '.join(available_solvers()) or 'none'}."
    )


def probe_all(*, licences: bool = True) -> list[dict[str, Any]]:
    """One dict per catalog solver (for ``lipopt doctor``); ``licences=False`` avoids importing gurobipy."""
    rows = []
    for info in SOLVERS.values():
        installed = info.is_installed()
        rows.append({
            "name": info.name,
            "interface": info.interface,
            "installed": installed,
            "version": info.version(),
            "licence": info.licence() if (licences or not info.commercial or not installed) else "not probed",
            "capabilities": sorted(c.name for c in info.capabilities),
            "package": info.package,
            "description": info.description,
        })
    return rows
