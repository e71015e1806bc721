"""Checks of a run request before any work starts: the options, the solver against each method, and
whether any method applies. Shared by the Python front door (:mod:`lipopt.api`) and the CLI (exit 2).

Conventions (documented in the CLI help and the README):

* ``time_limit``: None or ``inf`` = no limit (``inf`` is normalised to None); otherwise a finite number of
  seconds > 0. NaN, 0 and negative values are errors.
* ``threads``: None = the solver's default; otherwise an integer >= 1.
* ``seed``: an integer >= 0; ``rel_gap``: a finite number in [0, 1).
* ``solver``: a name from ``lipopt_solvers.SOLVERS`` (``lipopt doctor``). Every method that runs it must
  find the capability it declares (``MethodInfo.needs``) and, where it declares one, the interface:
  an explicitly requested method that cannot use the solver is an error; in the default method set such
  a method is reported as not applicable, with the reason.
* No method applies: an error listing each method tried and why it does not apply.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from numbers import Integral, Real

from lipopt.errors import InvalidOptionsError, NoApplicableMethodError
from lipopt.methods import REGISTRY, MethodInfo, RunOptions, get_method
from lipopt.network.network import Network
from lipopt.spec import Question

__all__ = ["RunPlan", "check_json_path", "solver_problem", "validate_options", "validate_request"]


def validate_options(options: RunOptions) -> RunOptions:
    """``options`` with ``time_limit=inf`` normalised to None; InvalidOptionsError for a bad value."""
    tl = options.time_limit
    if tl is not None:
        if isinstance(tl, bool) or not isinstance(tl, Real):
            raise InvalidOptionsError(f"time limit must be a number of seconds, got {tl!r}")
        tl = float(tl)
        if math.isnan(tl) or tl <= 0:
            raise InvalidOptionsError(
                f"time limit must be a positive number of seconds (or inf / None for no limit), got {tl:g}")
        if math.isinf(tl):
            options = replace(options, time_limit=None)
    th = options.threads
    if th is not None and (isinstance(th, bool) or not isinstance(th, Integral) or th < 1):
        raise InvalidOptionsError(
            f"threads must be an integer >= 1 (or None for the solver's default), got {th!r}")
    sd = options.seed
    if isinstance(sd, bool) or not isinstance(sd, Integral) or sd < 0:
        raise InvalidOptionsError(f"seed must be an integer >= 0, got {sd!r}")
    gap = options.rel_gap
    if isinstance(gap, bool) or not isinstance(gap, Real) or not (0.0 <= float(gap) < 1.0):
        raise InvalidOptionsError(f"rel_gap must be a number in [0, 1), got {gap!r}")
    if options.solver is not None:
        _solver_info(options.solver)
    return options


def _solver_info(name: object):  # -> lipopt_solvers.SolverInfo
    from lipopt_solvers import SOLVERS, get_solver

    if not isinstance(name, str) or not name.strip():
        raise InvalidOptionsError(f"solver must be a name, got {name!r}; known solvers: {', '.join(SOLVERS)}")
    try:
        return get_solver(name)
    except ValueError:
        raise InvalidOptionsError(
            f"unknown solver {name!r}; known solvers: {', '.join(SOLVERS)} (see `lipopt doctor` for which "
            "are installed)") from None


def solver_problem(info: MethodInfo, solver: str | None) -> str | None:
    """Why method ``info`` cannot run with the user-chosen ``solver`` (None: it can, or none was chosen)."""
    if solver is None or info.needs is None:
        return None
    from lipopt_solvers import available_solvers

    sinfo = _solver_info(solver)
    cap = info.capability()
    if not sinfo.supports(cap):
        ok = [n for n, s in _catalog().items() if s.supports(cap)
              and (info.interface is None or s.solves(info.interface))]
        return (f"method {info.name!r} needs a solver with capability {cap.name}; solver {sinfo.name!r} has "
                f"{', '.join(sorted(c.name for c in sinfo.capabilities))}. Solvers with {cap.name}: "
                f"{', '.join(ok) or 'none'}")
    if info.interface is not None and not sinfo.solves(info.interface):
        ok = [n for n, s in _catalog().items() if s.supports(cap) and s.solves(info.interface)]
        return (f"method {info.name!r} builds {info.interface} models; solver {sinfo.name!r} solves "
                f"{', '.join(sorted(sinfo.model_kinds))} models. Solvers of {info.interface} models with "
                f"{cap.name}: {', '.join(ok) or 'none'}")
    if not sinfo.is_installed():
        others = [n for n in available_solvers(cap, model_kind=info.interface) if n != sinfo.name]
        return (f"solver {sinfo.name!r} (needed by method {info.name!r}) is not installed: "
                f"{sinfo.install_hint()}. Installed solvers with {cap.name}: {', '.join(others) or 'none'}")
    return None


def _catalog() -> dict:
    from lipopt_solvers import SOLVERS

    return SOLVERS


@dataclass
class RunPlan:
    """What a request will run: the validated options, the methods to run (in order) and the methods
    of the default set left out, with the reason (reported as not applicable)."""

    options: RunOptions
    names: list[str]
    left_out: dict[str, str] = field(default_factory=dict)


def validate_request(
    network: Network,
    question: Question,
    methods: Sequence[str] | None,
    options: RunOptions,
    *,
    require_applicable: bool | None = None,
) -> RunPlan:
    """Check a request before any method runs.

    ``methods=None`` is the default set (applicable default methods). An explicit list must name known
    methods that can use ``options.solver``. ``require_applicable`` (default: True for the default set,
    False for an explicit list, whose non-applicable methods are reported as records) raises
    NoApplicableMethodError, listing every method tried with its reason, when none applies.
    """
    from lipopt.methods import check_method_options

    opts = validate_options(options)
    check_method_options(opts)
    q = question.bind(network)
    explicit = methods is not None and len(methods) > 0
    if require_applicable is None:
        require_applicable = not explicit
    if explicit:
        assert methods is not None
        names = list(methods)
        infos = []
        for n in names:
            try:
                infos.append(get_method(n))
            except KeyError as exc:
                raise InvalidOptionsError(exc.args[0]) from None
        bad = [msg for i in infos if (msg := solver_problem(i, opts.solver)) is not None]
        if bad:
            raise InvalidOptionsError("; ".join(bad))
        if require_applicable:
            tried = {i.name: i.applicable(network, q) for i in infos}
            if all(r is not None for r in tried.values()):
                raise NoApplicableMethodError(_none_applies(q, tried))
        return RunPlan(opts, names)
    reasons: dict[str, str | None] = {}
    names, left_out = [], {}
    for name, info in REGISTRY.items():
        if not info.default:
            continue
        why = info.applicable(network, q)
        if why is None:
            why = solver_problem(info, opts.solver)
            if why is not None:
                left_out[name] = why
        reasons[name] = why
        if why is None:
            names.append(name)
    if not names and require_applicable:
        raise NoApplicableMethodError(_none_applies(q, reasons))
    return RunPlan(opts, names, left_out)


def _none_applies(q: Question, reasons: dict[str, str | None]) -> str:
    lines = "\n".join(f"  - {n}: {r}" for n, r in reasons.items())
    return f"no method applies to this question ({q.describe()}); methods tried:\n{lines}"


def check_json_path(path: str | None) -> None:
    """The folder of a ``--json`` output file must exist and the path must not be a folder."""
    if path is None:
        return
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        raise InvalidOptionsError(f"--json {path}: is a directory; give a file name")
    if not p.parent.exists() and str(p.parent) not in ("", "."):
        raise InvalidOptionsError(f"--json {path}: the folder {p.parent} does not exist")
