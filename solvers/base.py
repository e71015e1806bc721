"""The backend base class: one subclass per solver, in its own module.

A backend declares what it can do (``capabilities``), what it needs (``modules``, probed with
``importlib.util.find_spec``: nothing heavy is imported to tell whether it is installed), how its raw
statuses map to a :class:`Termination`, and how it is silenced at the source. It solves an
:class:`ArrayModel` (``interface = "arrays"``: HiGHS, SCIP, Gurobi) or a cvxpy problem (``"cvxpy"``).
"""

from __future__ import annotations

import enum
import importlib.metadata
import importlib.util
from collections.abc import Callable
from typing import Any, ClassVar

from .options import SolverOptions
from .outcome import SolveOutcome, Termination

__all__ = ["Backend", "Capability", "Progress", "SolverNotAvailableError"]

OPEN_SOURCE = "open source"
NO_LICENCE = "no valid licence"  # how licence() begins for an installed commercial solver that has none

#: progress(objective, bound, x) is called by a backend as its incumbent or bound improves
Progress = Callable[[float | None, float | None, Any], None]


class Capability(enum.Enum):
    LP = "lp"
    MILP = "milp"
    MIQCQP = "miqcqp"  # nonconvex mixed-integer quadratically constrained quadratic programs
    SOCP = "socp"
    SDP = "sdp"
    INDICATOR = "indicator"  # indicator constraints


class SolverNotAvailableError(RuntimeError):
    """A solver was asked for that is not installed (or whose interface is not importable)."""


_OPTION_TYPES: dict[str, Any] = {"time_limit": float, "rel_gap": float, "abs_gap": float,
                                 "feasibility_tol": float, "threads": int, "seed": int}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


class Backend:
    """One solver as lipopt reaches it. Subclasses set the class attributes and implement a solve."""

    name: ClassVar[str] = ""
    interface: ClassVar[str] = "arrays"  # "arrays" | "cvxpy" | "pyomo"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    package: ClassVar[str] = ""  # pip distribution name
    modules: ClassVar[tuple[str, ...]] = ()  # importable modules it needs
    description: ClassVar[str] = ""
    commercial: ClassVar[bool] = False
    default: ClassVar[bool] = True  # may be picked by default_solver()
    #: the kinds of model it solves: "pyomo" (a Pyomo model, through ``solve_pyomo``), "arrays" (an
    #: ``ArrayModel``, through ``solve_arrays``), "cvxpy" (a cvxpy problem, through ``solve_cvxpy``)
    model_kinds: ClassVar[frozenset[str]] = frozenset({"pyomo", "arrays"})
    #: raw solver status -> why it stopped (statuses not listed map to Termination.OTHER)
    status_map: ClassVar[dict[Any, Termination]] = {}

    #: SolverOptions field -> the solver's own parameter name(s); the one place a backend maps options
    option_map: ClassVar[dict[str, str | tuple[str, ...]]] = {}

    _licence_cache: ClassVar[dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"

    def is_installed(self) -> bool:
        return all(_installed(m) for m in self.modules)

    def version(self) -> str | None:
        if not self.is_installed():
            return None
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None

    def supports(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def solves(self, model_kind: str) -> bool:
        """Whether it solves models of ``model_kind`` ("pyomo", "arrays" or "cvxpy")."""
        return model_kind in self.model_kinds

    def native_options(self, options: SolverOptions) -> dict[str, Any]:
        """The solver's own parameters for ``options``: the mapped fields that are set (in the field's
        type), then ``options.extra`` verbatim, which wins."""
        out: dict[str, Any] = {}
        for name, native in self.option_map.items():
            value = getattr(options, name)
            if value is None:
                continue
            value = _OPTION_TYPES.get(name, lambda v: v)(value)
            for key in (native,) if isinstance(native, str) else native:
                out[key] = value
        out.update(dict(options.extra))
        return out

    def termination(self, raw: Any) -> Termination:
        return self.status_map.get(raw, Termination.OTHER)

    def licence(self) -> str:
        """"open source", "full", a size-limited description, "not installed", ...; may import the
        solver for a commercial one (an explicit request), cached."""
        if not self.is_installed():
            return "not installed"
        if not self.commercial:
            return OPEN_SOURCE
        if self.name not in self._licence_cache:
            self._licence_cache[self.name] = self.probe_licence()
        return self._licence_cache[self.name]

    def probe_licence(self) -> str:
        return "commercial (licence not probed)"

    def licensed(self) -> bool:
        """Installed and not known to lack a licence (may import a commercial solver, as ``licence``)."""
        return self.is_installed() and not self.licence().startswith(NO_LICENCE)

    def install_hint(self) -> str:
        missing = [m for m in self.modules if not _installed(m)]
        return f"`pip install {self.package}`; missing module(s): {', '.join(missing) or 'none'}"

    # -- solving ----------------------------------------------------------------------------------
    def solve_arrays(self, model: Any, options: SolverOptions, progress: Progress | None = None
                     ) -> SolveOutcome:
        raise NotImplementedError(f"{self.name} does not solve array models (interface {self.interface})")

    def solve_cvxpy(self, problem: Any, options: SolverOptions) -> SolveOutcome:
        raise NotImplementedError(f"{self.name} does not solve cvxpy problems (interface {self.interface})")
