"""The methods: this registry (name -> module, declared bound kind, the solver capability it needs) and
one module per registered name beside it (``enumeration``, ``bab``, ``naive``, ``local_affine``, ``sampling``,
``grad_ascent``, ``milp``, ``lp_relax``, ``miqcqp``, ``miqcqp_ub``, ``miqcqp_lb``, ``lipsdp_neuron``,
``lipsdp_layer``, ``lipsdp_fast``, ``lipsdp_local``). The algorithms they run live in their own packages
(:mod:`lipopt.bounds`, :mod:`lipopt.analytic`, :mod:`lipopt.exact`, :mod:`lipopt.formulations`,
:mod:`lipopt.certify`, :mod:`lipopt.lower`, :mod:`lipopt.sdp`) and know nothing of the registry.

A method module defines an ``Options`` dataclass (:class:`lipopt.options.MethodOptions`) and two
functions, and imports nothing heavy at module level:

    def applicable(network: Network, question: Question) -> str | None   # None, or why not
    def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult

``run_method`` binds the question, times the run, turns exceptions into ERROR results (never a silent
value), checks the record's own bracket (lower <= upper, relative tolerance) and finalises it (kind and
value derived from verdict and bracket, :meth:`lipopt.result.LipschitzResult.finalise`).
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lipopt.errors import NotApplicableError
from lipopt.network.network import Network
from lipopt.options import MethodOptions, RunOptions, check_extra
from lipopt.result import BoundKind, LipschitzResult, StopReason, Verdict
from lipopt.spec import Question


@dataclass(frozen=True)
class MethodInfo:
    name: str
    kind: BoundKind
    module: str
    description: str
    default: bool = True  # part of the default comparison when applicable
    #: the solver capability the method needs from ``RunOptions.solver`` (a ``lipopt_solvers.Capability``
    #: name: "LP", "MILP", "MIQCQP"), or None when it runs no external solver chosen by the user
    needs: str | None = None
    #: the interface a user-chosen solver must be reached through ("pyomo" or "cvxpy"; None: any)
    interface: str | None = None
    #: heavy modules the method imports on first use: imported by run_method before its clock starts,
    #: and that one-off cost is reported apart (``stats["warmup_time"]``), so timings compare runs
    warm: tuple[str, ...] = ()

    def capability(self) -> Any:
        """The ``lipopt_solvers.Capability`` of :attr:`needs` (None when the method needs no solver)."""
        if self.needs is None:
            return None
        from lipopt_solvers import Capability

        return Capability[self.needs]

    def _mod(self) -> Any:
        return importlib.import_module(self.module)

    def applicable(self, network: Network, question: Question) -> str | None:
        try:
            mod = self._mod()
        except ImportError as exc:
            return f"method module {self.module} cannot be imported: {exc}"
        return mod.applicable(network, question)

    def runner(self) -> Callable[..., LipschitzResult]:
        return self._mod().run

    def options_class(self) -> type[MethodOptions]:
        """The method's options dataclass (its module's ``Options``; none: no options)."""
        return getattr(self._mod(), "Options", MethodOptions)


REGISTRY: dict[str, MethodInfo] = {}


def register(info: MethodInfo) -> MethodInfo:
    REGISTRY[info.name] = info
    return info


def get_method(name: str) -> MethodInfo:
    if name not in REGISTRY:
        raise KeyError(f"unknown method {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def applicable_methods(network: Network, question: Question, only_default: bool = True) -> list[str]:
    q = question.bind(network)
    return [n for n, m in REGISTRY.items()
            if (m.default or not only_default) and m.applicable(network, q) is None]


def check_method_options(options: RunOptions, names: list[str] | None = None) -> None:
    """Refuse method options that are typos (InvalidOptionsError listing the valid names): a flat key
    of ``options.extra`` that no registered method has, or a key in a method's own dict (for the methods
    in ``names``, default all) that this method does not have."""
    known = {n: m.options_class().option_names() for n, m in REGISTRY.items()}
    check_extra(options.extra, known)
    for n in names if names is not None else list(REGISTRY):
        if n in options.extra:
            REGISTRY[n].options_class().from_run(options, n)


def run_method(
    name: str, network: Network, question: Question, options: RunOptions | None = None
) -> LipschitzResult:
    from lipopt_solvers import interrupts

    info = get_method(name)
    options = options or RunOptions()
    if question.input_space != "raw":  # the question's input space (no-op for an already normalized view)
        from lipopt.network.normalization import in_input_space

        network = in_input_space(network, question.input_space)
    q = question.bind(network)
    warmup = _warm_up(info)
    t0 = time.perf_counter()
    check_method_options(options, [name])
    interrupts.clear()  # a fresh run: a Ctrl-C absorbed by an earlier run's solver does not carry over
    reason = info.applicable(network, q)
    if reason is not None:
        res = LipschitzResult(name, info.kind, None, verdict=Verdict.NOT_APPLICABLE, message=reason)
    else:
        try:
            res = info.runner()(network, q, options)
        except NotApplicableError as exc:
            res = LipschitzResult(name, info.kind, None, verdict=Verdict.NOT_APPLICABLE, message=str(exc))
        except Exception as exc:  # a failed method is a reported ERROR, never a silent value
            res = LipschitzResult(name, info.kind, None, verdict=Verdict.ERROR, stop=StopReason.ABORTED,
                                  message=f"{type(exc).__name__}: {exc}",
                                  notes=[traceback.format_exc(limit=5)] if options.verbose else [])
    res.method = res.method or name
    res.declared_kind = info.kind
    res.question = q.to_dict()
    res.options.setdefault("time_limit", options.time_limit)  # as run (a method's own value wins)
    res.options.setdefault("seed", options.seed)
    res.network = res.network or network.name or network.describe()
    if not res.wall_time:
        res.wall_time = time.perf_counter() - t0
    if warmup > 0:
        res.stats["warmup_time"] = warmup  # imports paid by this first run, outside wall_time
    return post_run_checks(res)


def _warm_up(info: MethodInfo) -> float:
    """Import the method's module and heavy modules not imported yet; the seconds it took."""
    import sys

    todo = [m for m in (info.module, *info.warm) if m not in sys.modules]
    if not todo:
        return 0.0
    t = time.perf_counter()
    if any(m.startswith("pyomo") for m in todo):
        defer_pyomo_scipy()
    for m in todo:
        try:
            importlib.import_module(m)
        except ImportError:  # missing: the method itself says so when it runs
            pass
    return time.perf_counter() - t


def uses_pyomo(names: list[str]) -> bool:
    """Whether one of the registered methods ``names`` imports Pyomo (its warm-up list names it)."""
    return any(m.startswith("pyomo") for n in names if n in REGISTRY for m in REGISTRY[n].warm)


def defer_pyomo_scipy() -> bool:
    """Disarm Pyomo's eager import of scipy's submodules; True when it was disarmed here.

    ``pyomo.common.dependencies`` registers a post-import hook on scipy that imports ``scipy.stats``,
    ``scipy.integrate`` and ``scipy.spatial`` the moment scipy is first imported (about 0.5 s, a sixth of
    a cold ``lipopt compute --methods milp`` on a tiny net; benchmarks/bench_tiny.py). lipopt uses none
    of them, and scipy (>= 1.9; lipopt needs 1.10) loads its submodules on first attribute access, so
    Pyomo's own uses of them (``pyomo.common.dependencies.scipy.stats``) still work, only later.

    Possible only while scipy is not imported yet (Pyomo runs the hook at once otherwise): then
    ``pyomo.common.dependencies`` is imported (about 30 ms) and the hook of its still-unresolved scipy
    indicator dropped. Nothing is done when scipy is already imported, when Pyomo is missing, or when
    Pyomo's internals are not the expected ones (the hook then runs as before)."""
    import sys

    if "scipy" in sys.modules:
        return False
    try:
        import pyomo.common.dependencies as deps
    except Exception:  # Pyomo missing or broken: the method says so when it runs
        return False
    ind, hook = getattr(deps, "scipy_available", None), getattr(deps, "_finalize_scipy", None)
    if (hook is None or type(ind).__name__ != "DeferredImportIndicator"
            or getattr(ind, "_callback", None) is not hook or getattr(ind, "_module", False) is not None):
        return False
    ind._callback = None
    return True


def post_run_checks(res: LipschitzResult) -> LipschitzResult:
    """The checks every record gets after its method ran: its own bracket ``lower <= upper`` within the
    record's relative tolerance (no absolute floor), then :meth:`LipschitzResult.finalise` (kind and
    value from verdict and bracket; a failed record shows no number)."""
    if res.lower is not None and res.upper is not None:
        ok = res.lower <= res.upper + res.rel_tol * abs(res.upper)
        if not any(c.name == "lower <= upper" for c in res.checks):
            res.add_check("lower <= upper", ok, f"{res.lower:.9g} <= {res.upper:.9g} (relative tolerance "
                                                f"{res.rel_tol:g})")
    return res.finalise()


_TORCH = ("torch",)
_LP = ("scipy.sparse", "highspy")
_MIP = ("pyomo.environ", "pyomo.repn.standard_repn", "highspy")
_MIQCQP = (*_MIP, "pyscipopt")
_SDP = ("cvxpy", "clarabel")


def _builtin() -> None:
    entries = [
        MethodInfo("enumeration", BoundKind.EXACT, "lipopt.methods.enumeration",
                   "exact: enumerate full-dimensional linear regions (LP interior test), tiny nets",
                   needs="LP", warm=_LP),
        MethodInfo("naive", BoundKind.UPPER, "lipopt.methods.naive",
                   "upper: product of layer operator norms (global)", warm=_TORCH),
        MethodInfo("sampling", BoundKind.LOWER, "lipopt.methods.sampling",
                   "lower: largest Jacobian norm at sampled points of the domain"),
        MethodInfo("grad-ascent", BoundKind.LOWER, "lipopt.methods.grad_ascent",
                   "lower: projected gradient ascent on the Jacobian norm, with restarts", warm=_TORCH),
        MethodInfo("region-climb", BoundKind.LOWER, "lipopt.methods.region_climb",
                   "lower: hill climbing over neighbouring linear regions from the best samples (margin LPs)",
                   default=False, needs="LP", warm=_LP),
        MethodInfo("milp", BoundKind.EXACT, "lipopt.methods.milp",
                   "exact l-inf / l1 constant by mixed-integer linear programming (LipMIP family)",
                   needs="MILP", interface="pyomo", warm=_MIP),
        MethodInfo("lp-relax", BoundKind.UPPER, "lipopt.methods.lp_relax",
                   "upper: LP relaxation of the MILP (binaries relaxed)", needs="LP",
                   interface="pyomo", warm=_MIP),
        MethodInfo("miqcqp", BoundKind.EXACT, "lipopt.methods.miqcqp",
                   "exact l2 / l-inf constant by the MIQCQP upper- and lower-bound problems (Sbihi et al.)",
                   needs="MIQCQP", interface="pyomo", warm=_MIQCQP),
        MethodInfo("miqcqp-ub", BoundKind.UPPER, "lipopt.methods.miqcqp_ub",
                   "upper: the MIQCQP upper-bound problem alone (closed activation regions)", default=False,
                   needs="MIQCQP", interface="pyomo", warm=_MIQCQP),
        MethodInfo("miqcqp-lb", BoundKind.LOWER, "lipopt.methods.miqcqp_lb",
                   "lower: the MIQCQP lower-bound problem alone (epsilon-margin regions)", default=False,
                   needs="MIQCQP", interface="pyomo", warm=_MIQCQP),
        MethodInfo("bab", BoundKind.EXACT, "lipopt.methods.bab",
                   "exact: branch and bound over activation patterns (interval Jacobian bounds, LP pruning)",
                   default=False, needs="LP", warm=_LP),
        MethodInfo("local-affine", BoundKind.UPPER, "lipopt.methods.local_affine",
                   "upper: analytic local affine-ReLU bound, nominal-point l2 constant (Avant & Morgansen)",
                   warm=_TORCH),
        MethodInfo("lipsdp-neuron", BoundKind.UPPER, "lipopt.methods.lipsdp_neuron",
                   "upper: LipSDP-Neuron, global l2 (SDP, certified in float64)", needs="SDP",
                   interface="cvxpy", warm=_SDP),
        MethodInfo("lipsdp-layer", BoundKind.UPPER, "lipopt.methods.lipsdp_layer",
                   "upper: LipSDP-Layer, global l2 (SDP, one multiplier per layer)", default=False,
                   needs="SDP", interface="cvxpy", warm=_SDP),
        MethodInfo("lipsdp-fast", BoundKind.UPPER, "lipopt.methods.lipsdp_fast",
                   "upper: ECLipsE-Fast's closed-form LipSDP-Neuron multipliers, global l2 (certified in "
                   "float64; no SDP solver)", warm=("scipy.linalg",)),
        MethodInfo("lipsdp-local", BoundKind.UPPER, "lipopt.methods.lipsdp_local",
                   "upper: LipSDP-Neuron with local slope intervals on a box / ball, l2", needs="SDP",
                   interface="cvxpy", warm=_SDP),
    ]
    for e in entries:
        register(e)


_builtin()
