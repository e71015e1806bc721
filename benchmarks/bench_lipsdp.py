"""Benchmark of LipSDP (lipsdp-neuron / -layer / -fast) on LipSDP's own example nets, against the norm
product and, where the PyPI package ``eclipse-nn`` is installed, against ECLipsE and ECLipsE-Fast run in
the same process.

    python -m benchmarks.bench_lipsdp [--nets random,mnist] [--solvers clarabel,scs] [--threads 2]
                                      [--no-first-order] [--markdown benchmarks/results/lipsdp.md]

``random_weights.mat`` (2-10-30-20-2): LipSDP's README publishes Layer 39.839 and Neuron 36.482.
``mnist_weights.mat`` (784-50-10): issue 11's target is a certified lipsdp-neuron bound in under 60 s on
2 cores; ECLipsE gave 26.81 (8.5 s) there and ECLipsE-Fast 26.81 (0.3 s) on the issue's machine.
Every lipopt value printed is the float64-certified one (the solver's own value and the certification
step beside it); ECLipsE's values are its own, uncertified (kind "reported"). Times are wall-clock
seconds in this process, after a warm-up run of each method (imports and first calls excluded).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lipopt.locations import external_nets

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NETS = external_nets() / "lipsdp"
FILES = {"random": "random_weights.mat", "mnist": "mnist_weights.mat"}
README = {"random": {"lipsdp-layer": 39.839, "lipsdp-neuron": 36.482}}


def _row(name: str, method: str, solver: str, r, t: float) -> dict:
    return {"net": name, "method": method, "solver": solver, "value": r.value,
            "kind": r.kind.value if r.value is not None else r.verdict.value, "time_s": t,
            "solver_value": r.stats.get("value_solver"), "certification": r.stats.get("certification", ""),
            "reference": README.get(name, {}).get(method)}


def _eclipse_rows(name: str, net) -> list[dict]:
    """ECLipsE and ECLipsE-Fast (PyPI eclipse-nn) on the same weights, when installed."""
    try:
        import eclipse_nn
    except ImportError:
        return []
    import torch

    ws = [torch.tensor(w) for w, _ in net.affine_relu_weights()]
    k = len(ws) - 1
    rows = []
    for label, fn in (("ECLipsE-Fast (eclipse-nn)", eclipse_nn.ECLipsE_Fast),
                      ("ECLipsE (eclipse-nn)", eclipse_nn.ECLipsE)):
        if "Fast" in label:
            fn(ws, [0.0] * k, [1.0] * k)  # warm-up of the cheap one
        t = time.perf_counter()
        out = fn(ws, [0.0] * k, [1.0] * k)
        out = out[0] if isinstance(out, tuple) else out  # ECLipsE returns (value, ...)
        v = None if out is None else float(out)  # eclipse-nn 0.1.7's ECLipsE gives None on one hidden layer
        rows.append({"net": name, "method": label, "solver": "", "value": v,
                     "kind": "reported" if v is not None else "no value",
                     "time_s": time.perf_counter() - t, "solver_value": None, "certification": "",
                     "reference": None})
    return rows


def bench(name: str, solvers: list[str], threads: int | None, first_order: bool = True) -> list[dict]:
    import lipopt
    from lipopt.methods import RunOptions, run_method
    from lipopt.spec import Norm, Question

    net = lipopt.load(str(NETS / FILES[name]))
    q = Question(Norm.L2, Norm.L2)
    plain = RunOptions(threads=threads)
    runs = [("naive", "", plain), ("lipsdp-fast", "closed form", plain)]
    if first_order:
        fo = RunOptions(threads=threads, extra={"sdp_algorithm": "first-order"})
        runs += [(m, "first-order", fo) for m in ("lipsdp-layer", "lipsdp-neuron")]
    for solver in solvers:
        so = RunOptions(threads=threads, solver=solver, extra={"sdp_algorithm": "solver"})
        runs += [(m, solver, so) for m in ("lipsdp-layer", "lipsdp-neuron")]
    rows = []
    warmed: set[str] = set()
    for method, label, opts in runs:
        if method not in warmed:  # imports and first calls out of the timing
            run_method(method, lipopt.load(str(NETS / FILES["random"])), q, RunOptions(threads=threads))
            warmed.add(method)
        t = time.perf_counter()
        r = run_method(method, net, q, opts)
        rows.append(_row(name, method, label, r, time.perf_counter() - t))
    return rows + _eclipse_rows(name, net)


def render(rows: list[dict]) -> str:
    head = "| net | method | solver | certified value | kind | time (s) | solver's value | certification | " \
           "README | rel. diff |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        ref = r["reference"]
        diff = "" if ref is None or r["value"] is None else f"{(r['value'] - ref) / ref:+.1e}"
        sv = "" if r["solver_value"] is None else f"{r['solver_value']:.6f}"
        val = "-" if r["value"] is None else f"{r['value']:.6f}"
        lines.append(f"| {r['net']} | {r['method']} | {r['solver']} | {val} | {r['kind']} | "
                     f"{r['time_s']:.2f} | {sv} | {r['certification']} | {'' if ref is None else ref} | "
                     f"{diff} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nets", default="random,mnist")
    ap.add_argument("--solvers", default="clarabel,scs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-first-order", action="store_true", help="leave out the first-order descent")
    ap.add_argument("--markdown", default=None, help="write the table to this file (default "
                    "benchmarks/results/lipsdp.md)")
    args = ap.parse_args(argv)
    from benchmarks import split_names

    rows: list[dict] = []
    for name in split_names(args.nets):
        rows += bench(name.strip(), [s.strip() for s in args.solvers.split(",") if s.strip()], args.threads,
                      not args.no_first_order)
        print(render([r for r in rows if r["net"] == name.strip()]), flush=True)
    from benchmarks import write_result

    text = "# LipSDP benchmark (bench_lipsdp.py)\n\n" + render(rows) + "\n"
    md = Path(args.markdown) if args.markdown else None
    write_result(md.name if md else "lipsdp.md", text, md.parent if md else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
