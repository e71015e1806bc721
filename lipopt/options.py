"""Run options: :class:`RunOptions` (shared by every method) and :class:`MethodOptions`, the base of each
method's own options dataclass.

Method-specific options travel in ``RunOptions.extra``: a flat key (``{"n_samples": 500}``) applies to
every method that has an option of that name; a dict under a method's name (``{"milp": {...}}``) applies
to that method only. Typos are errors: a nested key the method does not have, or a flat key that no
registered method has, raises :class:`lipopt.errors.InvalidOptionsError` listing the valid names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

__all__ = ["MethodOptions", "RunOptions", "check_extra"]

T = TypeVar("T", bound="StrictOptions")


@dataclass(frozen=True)
class RunOptions:
    """Options shared by every method. Method-specific ones go in ``extra``: flat keys apply to every
    method that has them, a dict under a method's name to that method (each method reads them through
    its own :class:`MethodOptions` dataclass, which refuses unknown names)."""

    time_limit: float | None = None
    solver: str | None = None
    seed: int = 0
    threads: int | None = None
    rel_gap: float = 1e-6
    verbose: bool = False
    device: str = "cpu"
    progress: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: passed verbatim to the solver in its own option names (``--solver-option KEY=VALUE``)
    solver_params: dict[str, Any] = field(default_factory=dict)
    isolate: bool = False  # run each solve in a child process killed at the hard deadline
    solver_log: str | None = None  # where a verbose solver writes its log
    write_model: str | None = None  # folder: each MIP / MIQCQP a method solves is written there (.lp, .mps)

    def solver_options(self, time_limit: float | None, **overrides: Any) -> Any:
        """The :class:`lipopt_solvers.SolverOptions` of one solve with ``time_limit`` seconds left:
        gap, threads, seed, verbosity, isolation and log from these options, ``solver_params`` passed
        through verbatim (they win over ``overrides["extra"]``, which a method may set)."""
        from lipopt_solvers import SolverOptions

        extra = {**dict(overrides.pop("extra", {}) or {}), **self.solver_params}
        base = {"rel_gap": self.rel_gap, "threads": self.threads, "seed": self.seed, "verbose": self.verbose,
                "isolate": self.isolate, "log_file": self.solver_log, "write_dir": self.write_model}
        base.update(overrides)
        return SolverOptions(time_limit=time_limit, extra=extra, **base)


@dataclass(frozen=True)
class StrictOptions:
    """Base of options dataclasses that refuse unknown names (subclass as a frozen dataclass with
    defaults): :meth:`from_dict` lists the valid names when a key is not one of them."""

    @classmethod
    def option_names(cls) -> list[str]:
        return sorted(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls: type[T], values: Mapping[str, Any] | None = None, **more: Any) -> T:
        """Build from a mapping (and keywords); unknown names raise InvalidOptionsError."""
        from lipopt.errors import InvalidOptionsError

        d = {**dict(values or {}), **more}
        unknown = sorted(set(d) - set(cls.option_names()))
        if unknown:
            raise InvalidOptionsError(f"unknown {cls.__name__} option(s) {', '.join(map(repr, unknown))}; "
                                      f"valid: {', '.join(cls.option_names())}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class MethodOptions(StrictOptions):
    """Base of a method's options: subclass it as a frozen dataclass with defaults."""

    @classmethod
    def from_run(cls: type[T], options: RunOptions, method: str) -> T:
        """The method's options from ``options.extra`` (flat keys it knows, then its own dict)."""
        from lipopt.errors import InvalidOptionsError

        names = set(cls.option_names())
        values = {k: v for k, v in options.extra.items() if k in names}
        own = options.extra.get(method)
        if own is not None:
            if not isinstance(own, Mapping):
                raise InvalidOptionsError(f"options for method {method!r} must be a dict of option names, "
                                          f"got {type(own).__name__}")
            unknown = sorted(set(own) - names)
            if unknown:
                raise InvalidOptionsError(f"unknown option(s) {', '.join(map(repr, unknown))} for method "
                                          f"{method!r}; its options: {', '.join(sorted(names)) or 'none'}")
            values.update(own)
        return cls(**values)


def check_extra(extra: Mapping[str, Any], known: Mapping[str, Iterable[str]]) -> None:
    """Refuse flat keys that no method in ``known`` (method name -> option names) has, and dicts under a
    name that is not a method."""
    from lipopt.errors import InvalidOptionsError

    every = {n for names in known.values() for n in names}
    bad = []
    for key, value in extra.items():
        if key in known:
            continue
        if isinstance(value, Mapping) and key not in every:
            bad.append(f"{key!r} (not a method: {', '.join(sorted(known))})")
        elif key not in every:
            bad.append(repr(key))
    if bad:
        raise InvalidOptionsError(f"unknown option(s) {', '.join(bad)}; method options: "
                                  f"{', '.join(sorted(every))}")
