"""Sets of results: :class:`ResultSet` (the records of several methods on one question, their combined
bracket and its consistency, the exit code, tables and JSON) and :func:`format_value`. Re-exported by
:mod:`lipopt.result`, where the records themselves (:class:`~lipopt.result.LipschitzResult`) live.
"""

from __future__ import annotations

import json
from typing import Any

from lipopt.result import (
    EXIT_FAILED,
    EXIT_INCONSISTENT,
    EXIT_INTERRUPTED,
    BoundKind,
    Check,
    LipschitzResult,
)

_KIND_MARK = {BoundKind.EXACT: "=", BoundKind.UPPER: "<=", BoundKind.LOWER: ">=", BoundKind.ESTIMATE: "~"}


def _question_columns(question: dict[str, Any]) -> dict[str, Any]:
    """The parts of a record's question (``Question.to_dict``) as table columns (empty when unknown)."""
    cols: dict[str, Any] = {"input_norm": "", "output_norm": "", "domain": "", "radius": None, "scope": "",
                            "output": "", "input_space": ""}
    if not question.get("domain"):
        return cols
    from lipopt.spec import Question

    q = Question.from_dict(question)
    cols.update(input_norm=q.input_norm.label, output_norm=q.output_norm.label, domain=q.domain.describe(),
                radius=question["domain"].get("radius"), scope=q.constant, output=q.output.describe(),
                input_space=q.input_space)
    return cols


class ResultSet:
    """Results of several methods on one question, with the combined bracket and table rendering."""

    def __init__(self, results: list[LipschitzResult] | None = None, title: str = "") -> None:
        self.results: list[LipschitzResult] = list(results or [])
        self.title = title
        self.interrupted = False  # a Ctrl-C stopped the run; the records hold what was certified

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

    @property
    def best_lower_source(self) -> str | None:
        """The method whose certified lower bound is :attr:`best_lower` (the footer names it)."""
        best = self.best_lower
        return next((r.method for r in self._trusted() if r.lower == best and best is not None
                     and r.kind is not BoundKind.ESTIMATE), None)

    @property
    def best_upper_source(self) -> str | None:
        """The method whose certified upper bound is :attr:`best_upper`."""
        best = self.best_upper
        return next((r.method for r in self._trusted() if r.upper == best and best is not None
                     and r.kind is not BoundKind.ESTIMATE), None)

    def consistency(self, rtol: float = 1e-6) -> Check:
        """Every certified lower bound <= every certified upper bound, within the relative tolerance
        ``rtol`` (no absolute floor: the check means the same at every scale)."""
        lo, up = self.best_lower, self.best_upper
        if lo is None or up is None:
            return Check("lower <= upper across methods", True, "nothing to compare")
        ok = lo <= up + rtol * abs(up)
        return Check("lower <= upper across methods", ok, f"best lower {lo:.9g}, best upper {up:.9g}")

    @property
    def failed(self) -> list[LipschitzResult]:
        """Records that failed a self-check or errored."""
        return [r for r in self.results if r.failed]

    def exit_code(self) -> int:
        """0: every record ok (or not applicable / solver missing); 3: certified bounds of different
        methods contradict each other; 4: some record failed a self-check or errored; 130: the run
        was interrupted (Ctrl-C), its certified bracket so far shown and saved."""
        if not self.consistency().passed:
            return EXIT_INCONSISTENT
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.failed:
            return EXIT_FAILED
        return 0

    # -- tables ----------------------------------------------------------------------------------
    def to_records(self) -> list[dict[str, Any]]:
        """One dict per record: the table's columns, the bracket, and the question's parts (input_norm,
        output_norm as l1 / l2 / linf; domain, radius of a ball domain, scope global / local / nominal,
        output) with the run's time_limit (None: no limit) and seed."""
        best = self.best_lower
        rows = []
        for r in self.results:
            r.finalise()
            ratio = None
            if r.value is not None and best not in (None, 0):
                ratio = r.value / best
            if r.failed:
                kind = "FAILED"
            else:
                kind = r.kind.value if r.value is not None else "-"
            declared = r.declared_kind.value if r.declared_kind is not None else ""
            rows.append({
                "method": r.method,
                "declared_kind": declared,
                "kind": kind,
                "value": r.value,
                "ratio_to_best_lower": ratio,
                "lower": r.lower,
                "upper": r.upper,
                "verdict": r.verdict.value if r.verdict else "",
                "stop": r.stop.value if r.stop else "",
                "status": r.status.value,
                "raw_status": r.raw_status,
                "unverified_value": r.unverified_value,
                "solver": r.solver or "",
                "time_s": r.wall_time,
                "checks": "; ".join(str(c) for c in r.checks if not c.passed) or ("ok" if r.checks else ""),
                "question": r.question.get("description", ""),
                **_question_columns(r.question),
                "time_limit": r.options.get("time_limit"),
                "seed": r.options.get("seed"),
                "network": r.network,
            })
        return rows

    def to_dataframe(self):
        """The records as a pandas DataFrame, one row per method (columns of :meth:`to_records`)."""
        import pandas as pd

        return pd.DataFrame(self.to_records())

    def table(self, fmt: str = "text", **options: Any) -> str:
        """Render as 'text', 'markdown', 'latex' or 'csv'; ``options``: caption, label, columns,
        show_not_applicable (see :func:`lipopt.tables.render`)."""
        from lipopt.tables import render

        return render(self, fmt, **options)

    def __str__(self) -> str:
        return self.table("text")

    def to_json(self, provenance: dict[str, Any] | None = None, **kw: Any) -> str:
        """The set as a ``lipopt.resultset`` document (``docs/schema.md``): the envelope (schema, lipopt
        version, ``provenance``: :func:`lipopt.provenance.provenance`, made here as command "api" when not
        given) and the records; ``kw`` go to ``json.dumps``."""
        from lipopt.provenance import envelope

        c = self.consistency()
        payload = {"title": self.title, "consistent": c.passed, "consistency": c.detail,
                   "interrupted": self.interrupted, "results": [r.to_dict() for r in self.results]}
        return json.dumps(envelope("resultset", "api", None, payload, prov=provenance), **kw)

    @classmethod
    def from_json(cls, s: str) -> ResultSet:
        """A set from :meth:`to_json` (any ``lipopt.resultset`` version; a file without a schema too)."""
        from lipopt.provenance import read_document

        d = read_document(s, "resultset")
        rs = cls([LipschitzResult.from_dict(r) for r in d["results"]], d.get("title", ""))
        rs.interrupted = bool(d.get("interrupted", False))
        return rs


def format_value(r: LipschitzResult, digits: int = 6) -> str:
    if r.failed:
        return "FAILED"
    if r.value is None:
        return "-"
    return f"{_KIND_MARK[r.kind]} {r.value:.{digits}g}"
