"""The ``lipopt`` command: doctor, methods, compute, demo, certify, grid, table, plot, train."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lipopt.tables import FORMATS

_VECTOR_FILES = ".npy, .txt, .csv, .png, .jpg, .jpeg"


def _read_vector(text: str) -> object:
    """A comma-separated list of numbers, or a .npy / .txt / .csv / image file (InvalidQuestionError
    naming the file and what is supported when it cannot be read)."""
    import numpy as np

    from lipopt.errors import InvalidQuestionError

    p = Path(text)
    suffix = p.suffix.lower()
    if suffix in (".npy", ".txt", ".csv", ".png", ".jpg", ".jpeg"):
        if not p.is_file():
            raise InvalidQuestionError(f"--center {text}: no such file (supported: comma-separated numbers, "
                                       f"or a file {_VECTOR_FILES})")
        try:
            v = _read_vector_file(p, suffix)
        except Exception as exc:  # numpy / lipopt.images raise ValueError, EOFError, OSError, ...
            raise InvalidQuestionError(
                f"--center {text}: cannot read the file ({type(exc).__name__}: {exc}); it may be empty or "
                f"truncated. Supported: comma-separated numbers, or a file {_VECTOR_FILES}") from None
        if v.size == 0:
            raise InvalidQuestionError(f"--center {text}: the file holds no numbers")
        return v
    try:
        return np.array([float(v) for v in text.split(",")])
    except ValueError:
        raise InvalidQuestionError(
            f"--center {text!r}: not a comma-separated list of numbers nor a file {_VECTOR_FILES}") from None


def _read_vector_file(p: Path, suffix: str):  # -> np.ndarray
    import numpy as np

    if suffix == ".npy":
        return np.asarray(np.load(p, allow_pickle=False), dtype=np.float64).reshape(-1)
    if suffix in (".txt", ".csv"):
        import warnings

        with warnings.catch_warnings():  # an empty file: reported as "holds no numbers" by the caller
            warnings.simplefilter("ignore", UserWarning)
            return np.loadtxt(p, delimiter="," if suffix == ".csv" else None, ndmin=1).reshape(-1)
    from lipopt.images import read_image

    return read_image(p).reshape(-1)


def cmd_doctor(args: argparse.Namespace) -> int:
    import importlib.util
    import platform

    from lipopt_solvers import probe_all

    from lipopt._version import version as lipopt_version

    print(f"lipopt   {lipopt_version()} ({Path(__file__).resolve().parent})")
    print(f"python   {platform.python_version()} ({sys.executable})")
    from lipopt.locations import ENV, external_nets

    ext = external_nets()
    print(f"external networks ('external:' paths, ${ENV}): {ext}{'' if ext.is_dir() else ' (missing)'}")
    for mod in ("numpy", "scipy", "torch", "pyomo", "cvxpy", "onnx", "pandas", "matplotlib"):
        if importlib.util.find_spec(mod) is None:
            print(f"{mod:<8} not installed")
            continue
        from importlib.metadata import PackageNotFoundError, version

        try:
            v = version(mod)
        except PackageNotFoundError:
            v = "?"
        extra = ""
        if mod == "torch" and args.torch_details:
            import torch

            extra = f" (cuda available: {torch.cuda.is_available()})"
        print(f"{mod:<8} {v}{extra}")
    print()
    print(f"{'solver':<10} {'installed':<10} {'version':<10} {'capabilities':<32} licence")
    for row in probe_all(licences=args.licences):
        caps = ",".join(sorted(str(c) for c in row.get("capabilities", [])))
        installed = "yes" if row["installed"] else "no"
        print(f"{row['name']:<10} {installed:<10} {row.get('version') or '-':<10} "
              f"{caps:<32} {row.get('licence', '-')}")
    return 0


def cmd_methods(args: argparse.Namespace) -> int:
    from lipopt.methods import REGISTRY

    for name, m in REGISTRY.items():
        print(f"{name:<16} {m.kind.value:<9} {m.description}")
    return 0


def _build_question(args: argparse.Namespace):
    from lipopt.spec import make_question

    center = _read_vector(args.center) if args.center else None
    return make_question(args.norm, input_norm=args.input_norm, output_norm=args.output_norm,
                         domain=args.domain, output=args.output, nominal=args.nominal, center=center,
                         input_space=getattr(args, "input_space", "raw"))


def _options(args: argparse.Namespace):
    from lipopt_solvers import parse_solver_option

    from lipopt.errors import LipoptError
    from lipopt.methods import RunOptions

    params = {}
    for text in getattr(args, "solver_option", None) or []:
        try:
            key, value = parse_solver_option(text)
        except ValueError as exc:
            raise LipoptError(f"--solver-option: {exc}") from None
        params[key] = value
    return RunOptions(time_limit=args.time_limit, solver=args.solver, seed=args.seed, device=args.device,
                      progress=not args.quiet, threads=args.threads, solver_params=params,
                      isolate=bool(getattr(args, "isolate", False)),
                      solver_log=getattr(args, "solver_log", None),
                      write_model=getattr(args, "write_model", None),
                      verbose=bool(getattr(args, "solver_log", None)))


def _emit(rs, args: argparse.Namespace, opts: object = None) -> None:
    cols = getattr(args, "columns", None)
    print(rs.table(args.format, caption=getattr(args, "caption", None), label=getattr(args, "label", None),
                   columns=[c.strip() for c in cols.split(",")] if cols else None,
                   show_not_applicable=True if getattr(args, "show_not_applicable", False) else None))
    if args.json:
        from lipopt.provenance import provenance

        write_json_atomic(Path(args.json), rs.to_json(provenance=provenance("compute", opts), indent=2))
        print(f"results written to {args.json}", file=sys.stderr)


def write_json_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path`` and rename it over ``path``: a reader never
    sees a half-written file."""
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # the permissions of a plainly written file, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _prepare_run(args: argparse.Namespace):
    """Before any work: remove a stale ``--json`` file of an earlier run (a failed run must not leave
    it looking like this run's output), then check the options (exit 2 via LipoptError)."""
    from lipopt.validation import check_json_path, validate_options

    check_json_path(args.json)
    if args.json:
        Path(args.json).unlink(missing_ok=True)
    return validate_options(_options(args))


COMPUTE_EXIT_CODES = """exit codes:
  0  every record is ok (or its method does not apply / its solver is missing)
  2  bad input or options (nothing was run)
  3  the certified bounds of two methods contradict each other (a lower bound above an upper bound)
  4  some record failed a self-check or errored: it is shown as FAILED, with no number
"""


def cmd_compute(args: argparse.Namespace) -> int:
    from lipopt.api import compare
    from lipopt.network.load import load
    from lipopt.validation import validate_request

    opts = _prepare_run(args)
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else None
    from lipopt.network.normalization import in_input_space

    q = _build_question(args)
    net = in_input_space(load(args.net, **({"arch": args.arch} if args.arch else {})), q.input_space)
    if methods:  # an explicit list none of which applies is refused too (the default set: by compare)
        validate_request(net, q, methods, opts, require_applicable=True)
    rs = compare(net, methods=methods, question=q, options=opts)  # opts.progress: not --quiet
    _emit(rs, args, opts)
    if rs.interrupted:
        print("lipopt: interrupted (Ctrl-C); the table shows what was certified before the stop",
              file=sys.stderr)
    return rs.exit_code()  # 0 ok, 3 contradicting methods, 4 a record failed a check or errored


def cmd_demo(args: argparse.Namespace) -> int:
    from lipopt.demo import run_demo
    from lipopt.methods import RunOptions
    from lipopt.validation import validate_options

    args.time_limit = validate_options(RunOptions(time_limit=args.time_limit)).time_limit
    return run_demo(fmt=args.format, time_limit=args.time_limit, quiet=args.quiet)


def _add_question_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--norm", default="2", help="norm for input and output: 1, 2 or inf (default 2)")
    p.add_argument("--input-norm", default=None, help="input norm p (overrides --norm)")
    p.add_argument("--output-norm", default=None, help="output norm q (overrides --norm)")
    p.add_argument("--domain", default="global",
                   help="global | box:LO,HI | ball:EPS[,NORM] (ball needs --center)")
    p.add_argument("--center", default=None,
                   help="nominal input x0: comma-separated values, .npy, .txt or image")
    p.add_argument("--nominal", action="store_true",
                   help="ask for the nominal-point constant sup |f(x)-f(x0)|/|x-x0| over the ball")
    p.add_argument("--output", default="all", help="all | logit:I | margin:I,J | vector:c1,c2,...")
    p.add_argument("--input-space", default="raw", choices=("raw", "normalized"),
                   help="measure the domain, eps and the constant in raw inputs (default) or in the "
                        "network's normalised inputs (x - mean) / std (networks that record one)")


def _add_run_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds per method, > 0 (inf or omitted: no limit)")
    p.add_argument("--solver", default=None,
                   help="solver name (see `lipopt doctor`); must have the capability each method needs")
    p.add_argument("--threads", type=int, default=None, help="solver threads, >= 1 (default: the solver's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--solver-option", action="append", default=[], metavar="KEY=VALUE",
                   help="passed verbatim to the solver in its own names, e.g. presolve=off (HiGHS), "
                        "limits/nodes=1000 (SCIP), MIPFocus=1 (Gurobi); repeatable")
    p.add_argument("--isolate", action="store_true",
                   help="run each solve in a child process that is killed at the hard deadline")
    p.add_argument("--solver-log", default=None, metavar="FILE", help="write the solvers' logs to FILE")
    p.add_argument("--write-model", default=None, metavar="DIR",
                   help="write every MIP / MIQCQP solved as .lp and .mps files into DIR (HiGHS or SCIP read "
                        "them back); rows and columns carry the formulation's names (layer and neuron)")
    p.add_argument("--device", default="cpu", help="torch device for the analytic bounds (cpu or cuda)")
    p.add_argument("--format", default="text", choices=FORMATS, help="table format")
    p.add_argument("--caption", default=None,
                   help="LaTeX: a table float with this caption (the network and question are added)")
    p.add_argument("--label", default=None, help="LaTeX: the \\label of the table float")
    p.add_argument("--columns", default=None,
                   help="comma-separated table columns (method, declared, certified, bracket, ratio, "
                        "verdict, stop, solver, time), e.g. to fit a LaTeX column")
    p.add_argument("--show-not-applicable", action="store_true",
                   help="LaTeX: keep the rows of methods that do not apply (shown in the other formats)")
    p.add_argument("--json", default=None, help="also write the results as JSON to this file")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipopt",
        description="Exact Lipschitz constants and certified bounds of ReLU networks, side by side.")
    from lipopt._version import version as lipopt_version

    parser.add_argument("--version", action="version", version=f"lipopt {lipopt_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("doctor", help="show Python, torch and each solver: installed, version, licence")
    p.add_argument("--no-licences", dest="licences", action="store_false",
                   help="skip licence probes that import a solver")
    p.add_argument("--torch-details", action="store_true", help="import torch and report CUDA")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("methods", help="list the methods and the kind of number each gives")
    p.set_defaults(func=cmd_methods)

    p = sub.add_parser("compute", help="run methods on a network and print the comparison table",
                       epilog=COMPUTE_EXIT_CODES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("net", help="network file: .onnx, .pt/.ckpt, .mat, .npy (weights/biases), .npz")
    p.add_argument("--arch", default=None,
                   help="architecture of a state_dict checkpoint: a lipopt.zoo name, 'package.module:Class', "
                        "or 'mlp:784,32,32,10' (Linear + ReLU; 'mlp-leaky0.01:...' for LeakyReLU)")
    _add_question_args(p)
    p.add_argument("--methods", default=None, help="comma-separated method names (default: all applicable)")
    _add_run_args(p)
    p.set_defaults(func=cmd_compute)

    p = sub.add_parser("demo", help="the demo comparison on the bundled 2-8-8-1 network")
    p.add_argument("--time-limit", type=float, default=60.0)
    p.add_argument("--format", default="text", choices=FORMATS)
    p.add_argument("-q", "--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    try:
        from lipopt.cli_certify import add_parser as add_certify
    except ImportError:
        add_certify = None
    if add_certify is not None:
        add_certify(sub)
    from lipopt.cli_grid import add_parsers as add_grid

    add_grid(sub)
    from lipopt.cli_train import add_parser as add_train

    add_train(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from lipopt.errors import LipoptError

    try:
        return int(args.func(args) or 0)
    except (LipoptError, FileNotFoundError, KeyError) as exc:
        print(f"lipopt: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before any method ran (loading, validation): nothing to show
        print("lipopt: interrupted (Ctrl-C)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
