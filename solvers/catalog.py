"""The solver catalog: one backend instance per name, preference orders per capability.

Nothing here imports a solver, Pyomo or cvxpy: backend modules import them inside their solve methods,
availability is ``importlib.util.find_spec`` and versions come from package metadata. Only
:meth:`Backend.licence` of a commercial solver imports it (an explicit request).
"""

from __future__ import annotations

from typing import Any

from .base import Backend, Capability, SolverNotAvailableError
from .cvxpy_backends import ClarabelBackend, MosekBackend, ScsBackend
from .gurobi import GurobiBackend
from .highs import HighsBackend
from .pyomo_contrib import PyomoHighsBackend, PyomoScipBackend
from .scip import ScipBackend

__all__ = [
    "SOLVERS",
    "SolverInfo",
    "available_solvers",
    "default_solver",
    "get_solver",
    "probe_all",
    "require_solver",
]

SolverInfo = Backend  # the name the first release used

SOLVERS: dict[str, Backend] = {b.name: b for b in (
    HighsBackend(), ScipBackend(), GurobiBackend(), ClarabelBackend(), ScsBackend(), MosekBackend(),
    PyomoHighsBackend(), PyomoScipBackend(),
)}

_C = Capability
# Preference order per capability (first installed wins in default_solver).
_DEFAULTS: dict[Capability, tuple[str, ...]] = {
    _C.LP: ("highs", "gurobi", "scip", "clarabel", "mosek", "scs"),
    _C.MILP: ("highs", "gurobi", "scip"),
    _C.MIQCQP: ("scip", "gurobi"),
    _C.SOCP: ("clarabel", "mosek", "scs"),
    _C.SDP: ("clarabel", "mosek", "scs"),
    _C.INDICATOR: ("gurobi",),
}


def get_solver(name: str) -> Backend:
    """The backend of ``name`` (case-insensitive); ValueError listing the known names otherwise."""
    key = str(name).strip().lower()
    if key not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; known solvers: {', '.join(SOLVERS)}")
    return SOLVERS[key]


def available_solvers(capability: Capability | None = None, *, interface: str | None = None,
                      model_kind: str | None = None) -> list[str]:
    """Installed solvers (optionally with ``capability``, reached through ``interface``, or solving
    models of ``model_kind``), preferred first."""
    order = _DEFAULTS.get(capability, ()) if capability is not None else ()
    names = list(order) + [n for n in SOLVERS if n not in order]
    return [
        n for n in names
        if (capability is None or SOLVERS[n].supports(capability))
        and (interface is None or SOLVERS[n].interface == interface)
        and (model_kind is None or SOLVERS[n].solves(model_kind))
        and SOLVERS[n].is_installed()
    ]


def not_available_message(info: Backend) -> str:
    others = [n for n in available_solvers() if n != info.name]
    return (f"solver {info.name!r} is not available: install it with {info.install_hint()}. "
            f"Installed solvers: {', '.join(others) or 'none'}.")


def require_solver(name: str, capability: Capability | None = None) -> Backend:
    """Like :func:`get_solver`, but raise :class:`SolverNotAvailableError` if it is not installed and
    ValueError if it lacks ``capability`` (naming the installed solvers that have it)."""
    info = get_solver(name)
    if capability is not None and not info.supports(capability):
        able = available_solvers(capability)
        raise ValueError(f"solver {info.name!r} cannot solve {capability.name} problems; installed solvers "
                         f"that can: {', '.join(able) or 'none'}")
    if not info.is_installed():
        raise SolverNotAvailableError(not_available_message(info))
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
            "default": info.default,
        })
    return rows
