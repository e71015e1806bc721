"""Render a ResultSet as a text, Markdown, LaTeX or CSV table.

Each value is shown with its kind (EXACT / UPPER / LOWER / ESTIMATE) and its ratio to the best
certified lower bound of the set, beside the record's verdict and stop reason; a record that failed a
check or errored shows FAILED and no number. The footer states the combined bracket, whether it is
consistent, and how many records failed.
"""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lipopt.result import ResultSet

COLUMNS = ("method", "kind", "value", "ratio", "verdict", "stop", "solver", "time")
FORMATS = ("text", "markdown", "latex", "csv")


def _fmt(v: float | None, digits: int = 6) -> str:
    return "-" if v is None else f"{v:.{digits}g}"


def _rows(rs: ResultSet) -> list[list[str]]:
    rows = []
    for rec in rs.to_records():
        ratio = rec["ratio_to_best_lower"]
        verdict = rec["verdict"]
        if rec["checks"] and rec["checks"] != "ok":
            verdict += f" [{rec['checks']}]"
        rows.append([
            rec["method"], rec["kind"], _fmt(rec["value"]), "-" if ratio is None else f"{ratio:.3f}",
            verdict, rec["stop"], rec["solver"], f"{rec['time_s']:.3g}s",
        ])
    return rows


def _footer(rs: ResultSet) -> str:
    c = rs.consistency()
    lo, up = rs.best_lower, rs.best_upper
    s = f"bracket: {_fmt(lo)} <= L <= {_fmt(up)}"
    if not c.passed:
        s += "  !! INCONSISTENT: a certified lower bound exceeds a certified upper bound"
    failed = rs.failed
    if failed:
        s += (f"  !! FAILED: {', '.join(r.method for r in failed)} (a check failed or the method errored; "
              "its numbers are not shown and not used)")
    return s


def _header(rs: ResultSet) -> str:
    q = rs.results[0].question.get("description", "") if rs.results else ""
    net = rs.results[0].network if rs.results else ""
    parts = [rs.title] if rs.title and rs.title != net else []
    return " | ".join(x for x in (*parts, net, q) if x)


def render(rs: ResultSet, fmt: str = "text") -> str:
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; supported: {', '.join(FORMATS)}")
    rows = _rows(rs)
    head = list(COLUMNS)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        cols = ["method", "kind", "value", "ratio_to_best_lower", "lower", "upper", "verdict", "stop",
                "raw_status", "solver", "time_s", "checks", "question", "input_norm", "output_norm", "domain",
                "radius", "scope", "output", "time_limit", "seed", "network"]
        w.writerow(cols)
        for rec in rs.to_records():
            w.writerow([rec[k] for k in cols])
        return buf.getvalue()
    if fmt == "markdown":
        lines = [f"**{_header(rs)}**", ""] if _header(rs) else []
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "|".join("---" for _ in head) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        lines += ["", _footer(rs)]
        return "\n".join(lines) + "\n"
    if fmt == "latex":
        def esc(s: str) -> str:
            for a, b in (("\\", r"\textbackslash{}"), ("_", r"\_"), ("%", r"\%"), ("&", r"\&"), ("#", r"\#"),
                         ("^", r"\^{}"), ("$", r"\$"), ("<=", r"$\le$"), (">=", r"$\ge$")):
                s = s.replace(a, b)
            return s
        lines = [r"\begin{tabular}{llrrllll}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
        lines += [" & ".join(esc(c) for c in r) + r" \\" for r in rows]
        lines += [r"\bottomrule", r"\end{tabular}", "% " + _footer(rs)]
        return "\n".join(lines) + "\n"
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    out = []
    if _header(rs):
        out.append(_header(rs))
    out.append("  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)))
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    out.append(_footer(rs))
    return "\n".join(out) + "\n"
