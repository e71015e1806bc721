"""Results: one record per method run, and sets of them rendered as tables.

Every number carries its kind: EXACT (proved within a stated tolerance), UPPER (certified upper
bound), LOWER (certified lower bound, attained by a real point or pair), or ESTIMATE (heuristic,
never a bound). Each record lists the self-checks it ran (witness re-evaluation, eigenvalue check,
lower <= upper) and whether they passed.
"""

from __future__ import annotations

import enum
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


class BoundKind(enum.StrEnum):
    EXACT = "EXACT"
    UPPER = "UPPER"
    LOWER = "LOWER"
    ESTIMATE = "ESTIMATE"


class Status(enum.StrEnum):
    """How the computation ended (the solver's raw status is kept beside it)."""

    SOLVED = "solved"  # finished as designed (optimal, or a closed-form bound computed)
    TIME_LIMIT = "time_limit"  # stopped by the time limit: the bracket is still valid
    GAP_LIMIT = "gap_limit"  # stopped at the requested gap
    LICENSE_LIMIT = "license_limit"  # the solver's licence is too small for the model
    INFEASIBLE = "infeasible"
    NOT_APPLICABLE = "not_applicable"
    SOLVER_MISSING = "solver_missing"
    CHECK_FAILED = "check_failed"  # a self-check failed: the value must not be trusted
    ERROR = "error"


@dataclass
class Check:
    name: str
    passed: bool
    detail: str = ""

    def __str__(self) -> str:
        detail = f" ({self.detail})" if self.detail else ""
        return f"{self.name}: {'ok' if self.passed else 'FAILED'}{detail}"


def _clean(v: Any) -> Any:
    """JSON-friendly copy (numpy arrays and scalars to lists/floats; inf as a string)."""
    if isinstance(v, np.ndarray):
        return [_clean(x) for x in v.tolist()]
    if isinstance(v, np.generic):
        return _clean(v.item())
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    if isinstance(v, dict):
        return {str(k): _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    return v


def _unclean_float(v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, str):
        return float(v)
    return float(v)


@dataclass
class LipschitzResult:
    """The answer of one method to one question."""

    method: str
    kind: BoundKind
    value: float | None
    status: Status = Status.SOLVED
    lower: float | None = None
    upper: float | None = None
    raw_status: str = ""
    solver: str | None = None
    solver_version: str | None = None
    question: dict[str, Any] = field(default_factory=dict)
    network: str = ""
    build_time: float = 0.0
    solve_time: float = 0.0
    wall_time: float = 0.0
    witness: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    message: str = ""

    def __post_init__(self) -> None:
        self.kind = BoundKind(self.kind)
        self.status = Status(self.status)
        if self.kind is BoundKind.EXACT and self.value is not None:
            self.lower = self.value if self.lower is None else self.lower
            self.upper = self.value if self.upper is None else self.upper
        elif self.kind is BoundKind.UPPER and self.upper is None:
            self.upper = self.value
        elif self.kind is BoundKind.LOWER and self.lower is None:
            self.lower = self.value

    # -- derived ---------------------------------------------------------------------------------
    @property
    def gap(self) -> float | None:
        """Relative gap (upper - lower) / upper of this record's own bracket."""
        if self.lower is None or self.upper is None:
            return None
        if self.upper == 0:
            return 0.0 if self.lower == 0 else math.inf
        return (self.upper - self.lower) / abs(self.upper)

    @property
    def ok(self) -> bool:
        return self.value is not None and all(c.passed for c in self.checks) and self.status not in (
            Status.CHECK_FAILED, Status.ERROR, Status.NOT_APPLICABLE, Status.SOLVER_MISSING)

    def add_check(self, name: str, passed: bool, detail: str = "") -> Check:
        c = Check(name, bool(passed), detail)
        self.checks.append(c)
        if not c.passed:
            self.status = Status.CHECK_FAILED
        return c

    def summary(self) -> str:
        v = "-" if self.value is None else f"{self.value:.6g}"
        return f"{self.method}: {v} [{self.kind.value}] ({self.status.value}, {self.wall_time:.3g}s)"

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kind"] = self.kind.value
        d["status"] = self.status.value
        d["gap"] = self.gap
        return _clean(d)

    def to_json(self, **kw: Any) -> str:
        return json.dumps(self.to_dict(), **kw)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LipschitzResult:
        d = dict(d)
        d.pop("gap", None)
        d["checks"] = [Check(**c) for c in d.get("checks", [])]
        for k in ("value", "lower", "upper"):
            d[k] = _unclean_float(d.get(k))
        return cls(**d)

    @classmethod
    def from_json(cls, s: str) -> LipschitzResult:
        return cls.from_dict(json.loads(s))


_KIND_MARK = {BoundKind.EXACT: "=", BoundKind.UPPER: "<=", BoundKind.LOWER: ">=", BoundKind.ESTIMATE: "~"}


class ResultSet:
    """Results of several methods on one question, with the combined bracket and table rendering."""

    def __init__(self, results: list[LipschitzResult] | None = None, title: str = "") -> None:
        self.results: list[LipschitzResult] = list(results or [])
        self.title = title

    def __iter__(self):
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, key: int | str) -> LipschitzResult:
        if isinstance(key, str):
            for r in self.results:
                if r.method == key:
                    return r
            raise KeyError(key)
        return self.results[key]

    def append(self, r: LipschitzResult) -> None:
        self.results.append(r)

    # -- the combined bracket --------------------------------------------------------------------
    def _trusted(self) -> list[LipschitzResult]:
        return [r for r in self.results if r.ok]

    @property
    def best_lower(self) -> float | None:
        vals = [r.lower for r in self._trusted() if r.lower is not None and r.kind is not BoundKind.ESTIMATE]
        return max(vals) if vals else None

    @property
    def best_upper(self) -> float | None:
        vals = [r.upper for r in self._trusted() if r.upper is not None and r.kind is not BoundKind.ESTIMATE]
        return min(vals) if vals else None

    def consistency(self, rtol: float = 1e-6, atol: float = 1e-9) -> Check:
        """Every certified lower bound <= every certified upper bound (within tolerance)."""
        lo, up = self.best_lower, self.best_upper
        if lo is None or up is None:
            return Check("lower <= upper across methods", True, "nothing to compare")
        ok = lo <= up * (1 + rtol) + atol
        return Check("lower <= upper across methods", ok, f"best lower {lo:.9g}, best upper {up:.9g}")

    # -- tables ----------------------------------------------------------------------------------
    def to_records(self) -> list[dict[str, Any]]:
        best = self.best_lower
        rows = []
        for r in self.results:
            ratio = None
            if r.value is not None and best not in (None, 0):
                ratio = r.value / best
            rows.append({
                "method": r.method,
                "kind": r.kind.value,
                "value": r.value,
                "ratio_to_best_lower": ratio,
                "lower": r.lower,
                "upper": r.upper,
                "status": r.status.value,
                "solver": r.solver or "",
                "time_s": r.wall_time,
                "checks": "; ".join(str(c) for c in r.checks if not c.passed) or ("ok" if r.checks else ""),
                "question": r.question.get("description", ""),
                "network": r.network,
            })
        return rows

    def to_dataframe(self):
        import pandas as pd

        return pd.DataFrame(self.to_records())

    def table(self, fmt: str = "text") -> str:
        """Render as 'text', 'markdown', 'latex' or 'csv'."""
        from lipopt.tables import render

        return render(self, fmt)

    def __str__(self) -> str:
        return self.table("text")

    def to_json(self, **kw: Any) -> str:
        return json.dumps({"title": self.title, "results": [r.to_dict() for r in self.results]}, **kw)

    @classmethod
    def from_json(cls, s: str) -> ResultSet:
        d = json.loads(s)
        return cls([LipschitzResult.from_dict(r) for r in d["results"]], d.get("title", ""))


def format_value(r: LipschitzResult, digits: int = 6) -> str:
    if r.value is None:
        return "-"
    return f"{_KIND_MARK[r.kind]} {r.value:.{digits}g}"
