"""The ``lipopt grid``, ``lipopt table`` and ``lipopt plot`` subcommands (experiment grids and the tables
and figures rendered from their records)."""

from __future__ import annotations

import argparse
import sys

GRID_EXIT_CODES = """exit codes:
  0  every cell has an ok record (or its method does not apply / its solver is missing)
  2  bad spec or options (nothing was run)
  4  some cell's record failed (crash, time-out, error, failed check): it shows no number
  130  interrupted (Ctrl-C): the finished records are kept, a rerun resumes
"""


def cmd_grid(args: argparse.Namespace) -> int:
    from lipopt.grid import load_spec, run

    spec = load_spec(args.spec)
    if args.jobs is not None:
        import dataclasses

        from lipopt.grid import GridError

        if args.jobs < 1:
            raise GridError(f"--jobs must be >= 1, got {args.jobs}")
        spec = dataclasses.replace(spec, executor=dataclasses.replace(spec.executor, jobs=args.jobs))
    res = run(spec, args.out, force=args.force, quiet=args.quiet, max_cells=args.max_cells)
    if not args.quiet:
        print(f"{res.done} cell(s) run, {res.skipped} already recorded, {res.failed} failed, "
              f"{res.remaining} left; records in {res.out / 'records.jsonl'}", file=sys.stderr)
    if res.interrupted:
        print("lipopt: interrupted (Ctrl-C); finished records are kept, run again to resume", file=sys.stderr)
        return 130
    return 4 if res.failed else 0


def cmd_table(args: argparse.Namespace) -> int:
    from lipopt.records import table, to_parquet

    if args.parquet:
        print(f"records written to {to_parquet(args.dir, args.parquet)}", file=sys.stderr)
    print(table(args.dir, rows=args.rows, cols=args.cols, value=args.value, fmt=args.format, time=args.time,
                caption=args.caption, label=args.label), end="")
    return 0


def cmd_plot(args: argparse.Namespace) -> int:
    from lipopt.records import plot

    for p in plot(args.dir, kind=args.kind, out=args.out):
        print(p)
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    from lipopt.records import FORMATS, PLOTS, VALUES

    p = sub.add_parser("grid", help="run an experiment grid (TOML spec) and append one record per cell",
                       epilog=GRID_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help="grid spec (.toml); see the README's 'Experiment grids'")
    p.add_argument("--out", default=None, help="records folder (default: the spec's out)")
    p.add_argument("--force", action="store_true", help="rerun the cells that already have a record")
    p.add_argument("--jobs", type=int, default=None, help="cells at once (default: [executor] jobs)")
    p.add_argument("--max-cells", type=int, default=None, help="stop after this many cells (resume later)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    p.set_defaults(func=cmd_grid)

    p = sub.add_parser("table", help="a table of the records of a grid folder")
    p.add_argument("dir", help="records folder written by `lipopt grid`")
    p.add_argument("--rows", default="network", help="comma-separated keys (network, question, method, seed)")
    p.add_argument("--cols", default="method", help="comma-separated keys (default method)")
    p.add_argument("--value", default="value", choices=VALUES)
    p.add_argument("--format", default="text", choices=FORMATS)
    p.add_argument("--time", action="store_true", help="the method's wall time beside each value")
    p.add_argument("--caption", default=None, help="LaTeX: a table float with this caption")
    p.add_argument("--label", default=None, help="LaTeX: the float's \\label")
    p.add_argument("--parquet", default=None, metavar="FILE",
                   help="also write the records as Parquet (one row per cell; needs pyarrow)")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("plot", help="a figure (PNG and PDF) of the records of a grid folder")
    p.add_argument("dir", help="records folder written by `lipopt grid`")
    p.add_argument("--kind", default="bracket", choices=PLOTS)
    p.add_argument("--out", default=None, help="file stem (default DIR/KIND)")
    p.set_defaults(func=cmd_plot)
