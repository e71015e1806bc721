"""Render a ResultSet as a text, Markdown, LaTeX or CSV table (pandas and tabulate do the layout).

Every row shows the method's declared kind (stable: what ``lipopt methods`` lists), what the record
certified (``EXACT v``, ``UPPER v``, ``LOWER v``, ``ESTIMATE v``; in LaTeX ``=``, ``\\le``, ``\\ge``,
``\\approx``) and its
own bracket ``[lower, upper]`` where it has one, beside the ratio to the best certified lower bound, the
verdict, the stop reason, the solver and the time in sensible units. A record that failed a check or
errored shows FAILED and no number. The footer states the combined bracket and names the record each
side comes from, whether it is consistent, and how many records failed.

LaTeX (:func:`render` with ``fmt="latex"``) needs only ``\\usepackage{booktabs}``; ``caption`` and
``label`` make it a ``table`` float whose caption names the network and the question (in paper notation,
:func:`latex_question`); its columns are :data:`LATEX_COLUMNS` (verdict, stop and solver added only when
a row needs them) so that it fits a column of an article, ``columns`` chooses others; ``not_applicable``
rows are left out unless
``show_not_applicable=True`` (the default for the other formats).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lipopt.resultset import ResultSet

COLUMNS = ("method", "declared", "certified", "bracket", "ratio", "verdict", "stop", "solver", "time")
FORMATS = ("text", "markdown", "latex", "csv")
CSV_COLUMNS = ("method", "declared_kind", "kind", "value", "lower", "upper", "ratio_to_best_lower", "verdict",
               "stop", "raw_status", "solver", "time_s", "checks",
               "question", "input_norm", "output_norm", "domain", "radius", "scope", "output", "input_space",
               "time_limit", "seed", "network")
_MARK = {"EXACT": "=", "UPPER": "<=", "LOWER": ">=", "ESTIMATE": "~"}
LATEX_MARK = {"=": "$=$", "<=": r"$\le$", ">=": r"$\ge$", "~": r"$\approx$"}


def _fmt(v: float | None, digits: int = 6) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}g}"


def format_time(t: float | None) -> str:
    """Seconds in a unit that reads: 0.42 ms, 25 ms, 3.07 s, 4 min 43 s, 1 h 05 min."""
    if t is None or not math.isfinite(t):
        return "-"
    if t < 1e-3:
        return f"{t * 1e3:.2g} ms"
    if t < 1:
        return f"{t * 1e3:.3g} ms"
    if t < 60:
        return f"{t:.3g} s"
    if t < 3600:
        return f"{int(t // 60)} min {int(t % 60):02d} s"
    return f"{int(t // 3600)} h {int(t % 3600 // 60):02d} min"


def _bracket(rec: dict[str, Any]) -> str:
    lo, up = rec["lower"], rec["upper"]
    if rec["kind"] in ("FAILED", "-") or (lo is None and up is None):
        return "-"
    if rec["kind"] == "EXACT":
        return f"[{_fmt(lo)}, {_fmt(up)}]" if lo != up else _fmt(lo)
    return f"[{_fmt(lo) if lo is not None else '-'}, {_fmt(up) if up is not None else 'inf'}]"


def _row(rec: dict[str, Any]) -> dict[str, str]:
    verdict = rec["verdict"]
    if rec["checks"] and rec["checks"] != "ok":
        verdict += f" [{rec['checks']}]"
    certified = "FAILED" if rec["kind"] == "FAILED" else (
        f"{rec['kind']} {_fmt(rec['value'])}" if rec["kind"] in _MARK else "-")
    ratio = rec["ratio_to_best_lower"]
    return {"method": rec["method"], "declared": rec["declared_kind"] or "-", "certified": certified,
            "bracket": _bracket(rec), "ratio": "-" if ratio is None else f"{ratio:.3f}", "verdict": verdict,
            "stop": rec["stop"], "solver": rec["solver"], "time": format_time(rec["time_s"])}


def footer(rs: ResultSet) -> str:
    """The combined bracket with the record each side comes from, consistency and failures."""
    lo, up = rs.best_lower, rs.best_upper
    src_lo, src_up = rs.best_lower_source, rs.best_upper_source
    s = (f"bracket: {_fmt(lo)}{f' ({src_lo})' if src_lo else ''} <= L <= "
         f"{_fmt(up)}{f' ({src_up})' if src_up else ''}")
    if not rs.consistency().passed:
        s += "  !! INCONSISTENT: a certified lower bound exceeds a certified upper bound"
    if rs.failed:
        s += (f"  !! FAILED: {', '.join(r.method for r in rs.failed)} (a check failed or the method errored; "
              "its numbers are not shown and not used)")
    return s


def header(rs: ResultSet) -> str:
    q = rs.results[0].question.get("description", "") if rs.results else ""
    net = rs.results[0].network if rs.results else ""
    parts = [rs.title] if rs.title and rs.title != net else []
    return " | ".join(x for x in (*parts, net, q) if x)


def latex_escape(s: str) -> str:
    """``s`` as LaTeX text: the ten special characters escaped."""
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"),
                 ("$", r"\$"), ("{", r"\{"), ("}", r"\}"), ("^", r"\^{}"), ("~", r"\~{}")):
        s = s.replace(a, b)
    return s


_NORM_TEX = {"linf": r"\ell_\infty", "l1": r"\ell_1", "l2": r"\ell_2"}


def latex_question(s: str) -> str:
    """A question's description (``linf->linf, box [0, 0.1]^2, all outputs, local``) as LaTeX, in the
    notation of a paper: norms as $\\ell_p$, ``->`` as an arrow, exponents raised."""
    import re

    out = latex_escape(s)
    out = re.sub(r"(?<![A-Za-z0-9])(linf|l1|l2)->(linf|l1|l2)(?![A-Za-z0-9])",
                 lambda m: f"${_NORM_TEX[m[1]]}\\to{_NORM_TEX[m[2]]}$", out)
    out = re.sub(r"(?<![A-Za-z0-9])(linf|l1|l2)(?![A-Za-z0-9])", lambda m: f"${_NORM_TEX[m[1]]}$", out)
    return re.sub(r"\\\^\{\}([0-9]+)", r"$^{\1}$", out)


#: the default columns of a LaTeX table (a paper's column); verdict and stop are added when a row is not
#: ok / completed, solver when a row names one; ``columns=`` chooses others
LATEX_COLUMNS = ("method", "certified", "bracket", "ratio", "time")


def _latex_cell(col: str, text: str) -> str:
    if col == "certified" and " " in text and text.split(" ", 1)[0] in _MARK:
        kind, num = text.split(" ", 1)
        return f"{LATEX_MARK[_MARK[kind]]}~{latex_escape(num)}"
    return latex_escape(text)


def render(rs: ResultSet, fmt: str = "text", *, caption: str | None = None, label: str | None = None,
           columns: list[str] | tuple[str, ...] | None = None,
           show_not_applicable: bool | None = None) -> str:
    """The table of ``rs`` in ``fmt`` (text | markdown | latex | csv); see the module docstring."""
    import pandas as pd

    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown table format {fmt!r}; supported: {', '.join(FORMATS)}")
    records = rs.to_records()
    if fmt == "csv":
        return pd.DataFrame(records, columns=list(CSV_COLUMNS)).to_csv(index=False)
    if show_not_applicable is None:
        show_not_applicable = fmt != "latex"
    if not show_not_applicable:
        records = [r for r in records if r["verdict"] != "not_applicable"]
    # the default LaTeX columns follow the rows shown (a dropped not-applicable row adds no verdict column)
    cols = list(columns) if columns else (_latex_columns(records) if fmt == "latex" else list(COLUMNS))
    bad = [c for c in cols if c not in COLUMNS]
    if bad:
        raise ValueError(f"unknown table column(s) {', '.join(bad)}; available: {', '.join(COLUMNS)}")
    df = pd.DataFrame([_row(r) for r in records], columns=list(COLUMNS))[cols]
    if fmt == "latex":
        return _latex(df, rs, caption, label)
    body = df.to_markdown(index=False, tablefmt="pipe" if fmt == "markdown" else "simple",
                          disable_numparse=True)
    if fmt == "markdown":
        head = f"**{header(rs)}**\n\n" if header(rs) else ""
        return f"{head}{body}\n\n{footer(rs)}\n"
    head = f"{header(rs)}\n" if header(rs) else ""
    return f"{head}{body}\n{footer(rs)}\n"


def _latex_columns(records: list[dict[str, Any]]) -> list[str]:
    cols = list(LATEX_COLUMNS)
    if any(r["verdict"] != "ok" or r["stop"] != "completed" for r in records):
        cols[-1:-1] = ["verdict", "stop"]
    if any(r["solver"] for r in records):
        cols.insert(len(cols) - 1, "solver")
    return cols


def _latex(df: Any, rs: ResultSet, caption: str | None, label: str | None) -> str:
    body = df.copy()
    for c in body.columns:
        body[c] = [_latex_cell(c, str(v)) for v in body[c]]
    align = "".join("r" if c in ("certified", "bracket", "ratio", "time") else "l" for c in body.columns)
    tab = body.style.hide(axis="index").format_index(latex_escape, axis=1).to_latex(
        column_format=align, hrules=True)
    lines = ["% needs \\usepackage{booktabs}"]
    if caption is not None or label is not None:
        text = caption if caption is not None else ""
        where = latex_question(header(rs))
        full = f"{latex_escape(text)} ({where})" if text and where else (latex_escape(text) or where)
        lines += [r"\begin{table}[t]", r"\centering", r"\small", tab.rstrip(), rf"\caption{{{full}}}"]
        if label:
            lines.append(rf"\label{{{label}}}")
        lines.append(r"\end{table}")
    else:
        lines.append(tab.rstrip())
    lines.append("% " + footer(rs))
    return "\n".join(lines) + "\n"
