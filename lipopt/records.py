"""Tables from grid records (``DIR/records.jsonl`` written by :mod:`lipopt.grid`), never from live runs.

``load(DIR)`` gives one DataFrame row per cell (the last record of a cell wins: ``--force`` appends).
``table(DIR, rows="network", cols="method", value="value")`` pivots it: each cell shows the value with
its kind marker (``=`` EXACT, ``<=`` UPPER, ``>=`` LOWER, ``~`` ESTIMATE); a failed record shows
``failed`` (``failed (time-out)`` when it was killed at its deadline) and never a number; an ok record
that stopped at its time limit is marked ``[t/o]``. ``value="ratio"`` divides by the best certified
lower bound of the same network and question (over all methods and seeds); ``"time"`` is the cell's
wall time in seconds, ``"gap"`` the record's own relative gap. The tightest certified upper bound of a
row is bold in Markdown and LaTeX.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

__all__ = ["MARKS", "PLOTS", "VALUES", "load", "plot", "table"]

VALUES = ("value", "ratio", "time", "gap")
FORMATS = ("text", "markdown", "latex", "csv")
PLOTS = ("bracket", "ratio-vs-size", "time-vs-size", "anytime")
MARKS = {"EXACT": "=", "UPPER": "<=", "LOWER": ">=", "ESTIMATE": "~"}
_FAILED = ("error", "check_failed")


def _read_lines(path: Path) -> list[dict[str, Any]]:
    recs = []
    for line in path.read_text().splitlines():
        try:
            recs.append(json.loads(line))
        except json.JSONDecodeError:  # a line half written by a crash: its cell is run again on resume
            continue
    return recs


def load(directory: str | Path) -> Any:
    """The records of a grid folder as a pandas DataFrame, one row per cell: network, question (its
    description), method, seed, kind, value, lower, upper, verdict, stop, failed, timed_out, time_s,
    gap, ratio (value over the best certified lower bound of the same network and question), message,
    fingerprint, and the record itself under ``record``. Every record is re-finalised through
    :class:`lipopt.result.LipschitzResult`: a failed record has no value."""
    import pandas as pd

    from lipopt.result import LipschitzResult

    path = Path(directory)
    if path.is_dir():
        path = path / "records.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no records at {path} (run `lipopt grid SPEC --out DIR` first)")
    by_key: dict[str, dict[str, Any]] = {}
    for rec in _read_lines(path):
        by_key[rec.get("cell_key") or json.dumps(rec, sort_keys=True)] = rec
    fields = set(LipschitzResult.__dataclass_fields__) | {"schema", "status", "gap"}
    rows = []
    ordered = sorted(by_key.values(), key=lambda r: (r.get("cell_index") is None, r.get("cell_index") or 0))
    # a cell whose process failed has no question bound to its network: it takes the description that
    # the other cells of its network and question got, so that it lands in their row
    described = {(r.get("network_source"), r.get("question_index")): r["question"]["description"]
                 for r in ordered
                 if not r.get("question_unbound") and (r.get("question") or {}).get("description")}
    for rec in ordered:
        res = LipschitzResult.from_dict({k: v for k, v in rec.items() if k in fields})
        failed = res.failed
        desc = described.get((rec.get("network_source"), rec.get("question_index"))) or res.question.get(
            "description", "") or json.dumps(rec.get("question_spec"))
        rows.append({
            "network": rec.get("network_name") or res.network,
            "question": desc,
            "question_index": rec.get("question_index"),
            "method": res.method,
            "seed": rec.get("seed"),
            "kind": "FAILED" if failed else (res.kind.value if res.value is not None else "-"),
            "value": None if failed else res.value,
            "lower": None if failed else res.lower,
            "upper": None if failed else res.upper,
            "verdict": res.verdict.value,
            "stop": res.stop.value,
            "failed": failed,
            "timed_out": res.stop.value == "time_limit",
            "time_s": rec.get("cell_wall_s", res.wall_time),
            "method_time_s": res.wall_time,
            "gap": res.gap,
            "message": res.message,
            "fingerprint": rec.get("fingerprint"),
            "network_source": rec.get("network_source"),
            "n_relus": (rec.get("network_size") or {}).get("n_relus"),
            "n_params": (rec.get("network_size") or {}).get("n_params"),
            "record": rec,
        })
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    best: dict[tuple[str, str], float] = {}
    for r in rows:
        if r["value"] is not None and r["kind"] in ("EXACT", "UPPER", "LOWER") and r["lower"] is not None:
            k = (r["network"], r["question"])
            best[k] = max(best.get(k, -math.inf), r["lower"])
    df["best_lower"] = [best.get((r["network"], r["question"])) for r in rows]
    df["ratio"] = [r["value"] / b if r["value"] is not None and b not in (None, 0) else None
                   for r, b in zip(rows, df["best_lower"], strict=True)]
    return df


def to_parquet(source: Any, path: str | Path) -> Path:
    """The records (a folder or the DataFrame of :func:`load`) as a Parquet file, one row per cell with
    the columns of :func:`load` (the record itself as its JSON text). Needs pyarrow (``pip install
    lipopt[parquet]``)."""
    from lipopt.errors import LipoptError

    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise LipoptError("Parquet output needs pyarrow: pip install 'lipopt[parquet]'") from None
    df = source if not isinstance(source, str | Path) else load(source)
    out = df.copy()
    if "record" in out.columns:
        out["record"] = [json.dumps(r, default=str) for r in out["record"]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_parquet(path, index=False)
    return path


def _as_list(v: str | list[str] | tuple[str, ...]) -> list[str]:
    return [s.strip() for s in v.split(",")] if isinstance(v, str) else list(v)


def _cell_text(r: Any, value: str) -> tuple[str, str, float | None]:
    """(marker, text, number) of one record for ``value``; marker '' when none applies."""
    if r["failed"]:
        return "", "failed (time-out)" if r["timed_out"] else "failed", None
    if r["verdict"] == "not_applicable":
        return "", "n/a", None
    if r["verdict"] == "solver_missing":
        return "", "no solver", None
    if value == "time":
        t = r["time_s"]
        return "", f"{t:.3g} s", t
    if value == "gap":
        g = r["gap"]
        return "", "-" if g is None or (isinstance(g, float) and math.isnan(g)) else f"{g:.3g}", g
    v = r["value"] if value == "value" else r["ratio"]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "", "-", None
    mark = MARKS.get(r["kind"], "")
    text = f"{v:.6g}" if value == "value" else f"{v:.4g}"
    if r["timed_out"]:
        text += " [t/o]"
    return mark, text, v


def table(source: Any, rows: str | list[str] = "network", cols: str | list[str] = "method",
          value: str = "value", fmt: str = "text", time: bool = False, caption: str | None = None,
          label: str | None = None) -> str:
    """A table of grid records (a folder or the DataFrame of :func:`load`). ``rows`` / ``cols``: columns
    of the DataFrame (comma-separated for several); when several records fall in one cell, the keys that
    tell them apart (question, seed) are added to the rows. ``value``: value | ratio | time | gap;
    ``fmt``: text | markdown | latex (booktabs) | csv; ``time``: the method's wall time beside each
    value. LaTeX: one column per row key, wrapped (``p{}``) so that the table fits the text width of a
    one-column article for a few methods (choose them with ``cols`` / the grid's methods), ``\\small``;
    ``caption`` / ``label`` make it a ``table`` float."""
    from lipopt.errors import LipoptError

    if value not in VALUES:
        raise LipoptError(f"unknown table value {value!r}; supported: {', '.join(VALUES)}")
    if fmt not in FORMATS:
        raise LipoptError(f"unknown table format {fmt!r}; supported: {', '.join(FORMATS)}")
    df = source if not isinstance(source, str | Path) else load(source)
    row_keys, col_keys = _as_list(rows), _as_list(cols)
    for k in (*row_keys, *col_keys):
        if k not in df.columns:
            raise LipoptError(f"unknown table key {k!r}; available: network, question, method, seed, kind, "
                              "verdict, stop")
    if df.empty:
        return "(no records)"
    for extra in ("question", "seed"):
        if df.duplicated(row_keys + col_keys).any() and extra not in row_keys + col_keys:
            row_keys.append(extra)
    if df.duplicated(row_keys + col_keys).any():
        raise LipoptError(f"several records per cell of rows {row_keys} x cols {col_keys}; add the keys that "
                          "differ to rows or cols")
    records = df.to_dict("records")
    row_ids = list(dict.fromkeys(tuple(r[k] for k in row_keys) for r in records))
    col_ids = list(dict.fromkeys(tuple(r[k] for k in col_keys) for r in records))
    cells: dict[tuple, dict[tuple, tuple[str, str, float | None, Any]]] = {rid: {} for rid in row_ids}
    for r in records:
        mark, text, num = _cell_text(r, value)
        if time and value != "time" and r["verdict"] not in ("not_applicable", "solver_missing"):
            text += f" ({r['method_time_s']:.3g} s)"
        cells[tuple(r[k] for k in row_keys)][tuple(r[k] for k in col_keys)] = (mark, text, num, r)
    bold = _tightest(cells) if value in ("value", "ratio") else {}
    header = [tuple(row_keys)] + [" / ".join(map(str, c)) for c in col_ids]
    body = []
    for rid in row_ids:
        line: list[Any] = [tuple(map(str, rid))]
        for cid in col_ids:
            c = cells[rid].get(cid)
            line.append(("", "", False) if c is None else (c[0], c[1], cid in bold.get(rid, ())))
        body.append(line)
    if fmt == "latex":
        return _latex(header, body, row_keys, caption, label)
    header[0] = " / ".join(header[0])
    body = [[" / ".join(line[0]), *line[1:]] for line in body]
    return _render(header, body, fmt, value)


def _tightest(cells: dict) -> dict:
    """Per row, the columns of the smallest certified upper bound (EXACT or UPPER, ok records) among the
    cells of one network and question (a row across questions compares each question's cells only)."""
    out: dict = {}
    for rid, row in cells.items():
        groups: dict = {}
        for cid, (_, _, num, r) in row.items():
            groups.setdefault((r["network"], r["question"]), []).append((num, cid, r))
        for members in groups.values():
            if len(members) < 2:  # nothing to compare with
                continue
            ups = [(num, cid) for num, cid, r in members
                   if num is not None and r["kind"] in ("EXACT", "UPPER")]
            if ups:
                out.setdefault(rid, set()).add(min(ups, key=lambda t: t[0])[1])
    return out


def _plain(c: tuple[str, str, bool]) -> str:
    return f"{c[0]} {c[1]}".strip()


def _latex(header: list[Any], body: list[list[Any]], row_keys: list[str], caption: str | None,
           label: str | None) -> str:
    """The booktabs tabular of :func:`table`: the row keys in wrapped columns sharing 40 % of the line
    (questions in paper notation), the values right-aligned with their kind's mark, the tightest bold."""
    from lipopt.tables import LATEX_MARK, latex_escape, latex_question

    k = len(row_keys)
    width = 0.4 / k
    spec = "".join(rf"p{{{width:.2f}\linewidth}}" for _ in range(k)) + "r" * (len(header) - 1)
    def name(v: str) -> str:  # a network's name may break after ":", "_" and "," in a narrow column
        out = latex_escape(v)
        for a in (":", r"\_", ","):
            out = out.replace(a, a + r"\allowbreak{}")
        return out

    text = {key: (latex_question if key == "question" else name) for key in row_keys}
    out = ["% needs \\usepackage{booktabs}"]
    if caption is not None or label is not None:
        out += [r"\begin{table}[t]", r"\centering"]
    out += [r"\begingroup\small\setlength{\tabcolsep}{4pt}", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
            " & ".join([*(latex_escape(h) for h in row_keys), *(latex_escape(h) for h in header[1:])])
            + r" \\", r"\midrule"]
    for line in body:
        vals = []
        for mark, cell, bold in line[1:]:
            t = latex_escape(cell)
            t = rf"\textbf{{{t}}}" if bold else t
            vals.append(f"{LATEX_MARK[mark]}~{t}" if mark else t)
        keys = [text[key](v) for key, v in zip(row_keys, line[0], strict=True)]
        out.append(" & ".join([*keys, *vals]) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", r"\endgroup"]
    if caption is not None or label is not None:
        out.append(rf"\caption{{{latex_escape(caption or '')}}}")
        if label:
            out.append(rf"\label{{{label}}}")
        out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def _render(header: list[str], body: list[list[Any]], fmt: str, value: str) -> str:
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(header)
        for line in body:
            w.writerow([line[0], *(_plain(c) for c in line[1:])])
        return buf.getvalue()
    if fmt == "markdown":
        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for line in body:
            vals = [(f"**{_plain(c)}**" if c[2] else _plain(c)).replace("|", "\\|") for c in line[1:]]
            out.append("| " + " | ".join([line[0], *vals]) + " |")
        return "\n".join(out) + "\n"
    texts = [header] + [[line[0], *(_plain(c) for c in line[1:])] for line in body]
    widths = [max(len(t[i]) for t in texts) for i in range(len(header))]
    lines = ["  ".join(t[i].ljust(widths[i]) if i == 0 else t[i].rjust(widths[i]) for i in range(len(t)))
             for t in texts]
    lines.insert(1, "  ".join("-" * w for w in widths))
    legend = {"value": "= exact, <= upper bound, >= lower bound, ~ estimate",
              "ratio": "value / best certified lower bound of the network and question",
              "time": "wall time of the cell in seconds",
              "gap": "relative gap (upper - lower) / upper"}[value]
    return "\n".join(lines) + f"\n({legend}; failed: no number)\n"


def plot(source: Any, kind: str = "bracket", out: str | Path | None = None) -> list[Path]:
    """A figure of grid records, written as PNG and PDF (``out``: the file stem, default ``DIR/KIND``);
    the paths written. Failed records are never plotted (the title counts them).

    * ``"bracket"``: one row per network and question, each certified value of an ok record at its
      position (EXACT o, UPPER v, LOWER ^, one colour per method) and the certified bracket
      [best lower, best upper] as a bar;
    * ``"ratio-vs-size"``: value over the best certified lower bound of its network and question against
      the network's number of ReLUs, one series per method (and question);
    * ``"time-vs-size"``: the method's wall time against the number of ReLUs;
    * ``"anytime"``: the certified lower and upper bound against time of every record that kept its
      history (``stats["history"]``: bab, milp with one MIP, miqcqp), one colour per method, the upper
      bound solid and the lower bound dashed (steps), for the first network and question that has one.

    An axis is logarithmic when its values span more than two decades."""
    from lipopt.errors import LipoptError

    if kind not in PLOTS:
        raise LipoptError(f"unknown plot kind {kind!r}; supported: {', '.join(PLOTS)}")
    directory = Path(source) if isinstance(source, str | Path) else None
    df = load(directory) if directory is not None else source
    if out is None:
        if directory is None:
            raise LipoptError("plot of a DataFrame needs out= (the file stem)")
        out = (directory if directory.is_dir() else directory.parent) / kind
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_failed = int(df["failed"].sum()) if not df.empty else 0
    if kind == "bracket":
        fig, ax, title = _plot_bracket(df, plt)
    elif kind == "anytime":
        fig, ax, title = _plot_anytime(df, plt)
    else:
        fig, ax, title = _plot_vs_size(df, plt, kind)
    if n_failed:
        title += f" ({n_failed} failed record(s) not shown)"
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    paths = []
    for ext in ("png", "pdf"):
        p = Path(f"{out}.{ext}")
        p.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(p, dpi=150)
        paths.append(p)
    plt.close(fig)
    return paths


def _log_if_wide(ax: Any, axis: str, values: Any) -> None:
    import numpy as np

    v = np.asarray([x for x in values if x is not None and np.isfinite(x) and x > 0], dtype=float)
    if len(v) and v.max() / v.min() > 100:
        from matplotlib.ticker import NullFormatter

        getattr(ax, f"set_{axis}scale")("log")
        getattr(ax, f"{axis}axis").set_minor_formatter(NullFormatter())


def _plot_bracket(df: Any, plt: Any) -> tuple[Any, Any, str]:
    ok = df[df["value"].notna() & df["kind"].isin(["EXACT", "UPPER", "LOWER"])]
    rows = list(dict.fromkeys(zip(df["network"], df["question"], strict=True)))
    methods = list(dict.fromkeys(ok["method"]))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    markers = {"EXACT": "o", "UPPER": "v", "LOWER": "^"}
    fig, ax = plt.subplots(figsize=(8, 1.0 + 0.45 * max(len(rows), 1)))
    for y, (net, q) in enumerate(rows):
        sel = ok[(ok["network"] == net) & (ok["question"] == q)]
        lows = sel["lower"].dropna()  # an UPPER record's bracket may carry a certified lower bound too
        ups = sel[sel["kind"].isin(["EXACT", "UPPER"])]["upper"].dropna()
        if len(lows) and len(ups):
            ax.plot([lows.max(), ups.min()], [y, y], color="0.7", linewidth=6, solid_capstyle="butt",
                    zorder=1)
        for _, r in sel.iterrows():
            ax.scatter(r["value"], y, marker=markers[r["kind"]], color=colours[r["method"]], s=40, zorder=2)
    _log_if_wide(ax, "x", ok["value"].astype(float))
    ax.set_yticks(range(len(rows)), [f"{n}\n{q}" for n, q in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("Lipschitz constant (certified value of each bound, in the question's norms)")
    ax.set_ylabel("network / question")
    handles = [plt.Line2D([], [], linestyle="", marker="s", color=colours[m], label=m) for m in methods]
    handles += [plt.Line2D([], [], linestyle="", marker=mk, color="k", label=k.lower())
                for k, mk in markers.items()]
    handles.append(plt.Line2D([], [], color="0.7", linewidth=6, label="certified bracket"))
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig, ax, "Certified bounds per network and question"


def _steps(rows: list, col: int, better: Any) -> tuple[list[float], list[float]]:
    """Best-so-far step points of column ``col`` (1 lower, 2 upper) of [t, lower, upper] rows."""
    ts: list[float] = []
    vs: list[float] = []
    best = None
    for row in rows:
        v = row[col]
        if v is None or not math.isfinite(float(v)):
            continue
        best = float(v) if best is None else better(best, float(v))
        ts.append(float(row[0]))
        vs.append(best)
    return ts, vs


def _plot_anytime(df: Any, plt: Any) -> tuple[Any, Any, str]:
    ok = df[~df["failed"]] if not df.empty else df
    with_hist = [r for _, r in ok.iterrows() if (r["record"].get("stats") or {}).get("history")]
    fig, ax = plt.subplots(figsize=(7, 4))
    if not with_hist:
        ax.text(0.5, 0.5, "no record kept an anytime history", ha="center", transform=ax.transAxes)
        return fig, ax, "Anytime bounds"
    net, q = with_hist[0]["network"], with_hist[0]["question"]
    sel = [r for r in with_hist if r["network"] == net and r["question"] == q]
    values = []
    for i, r in enumerate(sel):
        colour = plt.get_cmap("tab10")(i % 10)
        rows = r["record"]["stats"]["history"]
        for col, better, style, side in ((2, min, "-", "upper"), (1, max, "--", "lower")):
            ts, vs = _steps(rows, col, better)
            if ts:
                ax.step(ts, vs, where="post", linestyle=style, color=colour, label=f"{r['method']} ({side})")
                values += vs
    ax.set_xlabel("time (s)")
    ax.set_ylabel("certified bound on the Lipschitz constant")
    if values:
        _log_if_wide(ax, "y", values)
    ax.legend(fontsize=7)
    return fig, ax, f"Anytime certified bracket: {net} | {q}"


def _plot_vs_size(df: Any, plt: Any, kind: str) -> tuple[Any, Any, str]:
    """Ratio or time against the number of ReLUs, one series per method and question."""
    from lipopt.errors import LipoptError

    y_col = "ratio" if kind == "ratio-vs-size" else "method_time_s"
    ok = df[~df["failed"] & df["n_relus"].notna() & df[y_col].notna()]
    if kind == "ratio-vs-size":
        ok = ok[ok["kind"].isin(["EXACT", "UPPER", "LOWER"])]
    if ok.empty:
        raise LipoptError(f"no ok records with a network size and a {y_col} to plot")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = {"EXACT": "o", "UPPER": "v", "LOWER": "^"}
    questions = list(dict.fromkeys(ok["question"]))
    styles = ["-", "--", ":", "-."]
    for i, ((method, q), sel) in enumerate(ok.groupby(["method", "question"], sort=False)):
        sel = sel.sort_values("n_relus")
        label = method if len(questions) == 1 else f"{method} ({q})"
        line, = ax.plot(sel["n_relus"], sel[y_col], styles[questions.index(q) % len(styles)], label=label,
                        color=plt.get_cmap("tab10")(i % 10), linewidth=1)
        for _, r in sel.iterrows():
            ax.scatter(r["n_relus"], r[y_col], marker=markers.get(r["kind"], "s"), color=line.get_color(),
                       s=25, zorder=3)
    _log_if_wide(ax, "x", ok["n_relus"].astype(float))
    _log_if_wide(ax, "y", ok[y_col].astype(float))
    ax.set_xlabel("network size (number of ReLUs)")
    if kind == "ratio-vs-size":
        ax.axhline(1.0, color="0.5", linewidth=0.8)
        ax.set_ylabel("value / best certified lower bound (1 = tight)")
        title = "Tightness against network size (o exact, v upper, ^ lower)"
    else:
        ax.set_ylabel("method wall time (s)")
        title = "Run time against network size"
    ax.legend(fontsize=7, loc="best")
    return fig, ax, title
