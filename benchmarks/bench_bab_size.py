"""Issue 13: size against time for method ``bab`` on seeded random nets of growing width and depth.

    python -m benchmarks.bench_bab_size [--limit 20] [--solvers highs,scip] [--widths 8,16,32,64]
                                        [--depths 1,2,3,4] [--depth-width 16] [--out DIR]

Nets: ``benchmarks.bench_milp.random_net`` (seed 0) with 8 inputs and one output; the width sweep is
[8, w, 1], the depth sweep [8, 16 x d, 1]. Question: the exact l-inf constant of logit 0 on [-1, 1]^8.
Each run is ``bab`` through the registry (prior bounds on, the default) with the LP solver named (bab's
feasibility and margin LPs go through the solver layer), one after the other in this process. Reported
per run: activation units, the units ambiguous at the root, nodes, seconds, the certified bracket and its
relative gap, and whether it closed. Written under DIR (default benchmarks/results/): ``bab_size.md``
and ``bab_size.png`` (seconds to close, or the limit, against units; a hollow marker where the run did
not close). bab runs on the CPU (numpy float64); there is no GPU path to time.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import split_names, write_result

N_IN = 8


def nets(widths: list[int], depths: list[int], depth_width: int) -> list[tuple[str, list[int]]]:
    """(sweep, layer widths) of every net: the width sweep, then the depth sweep (no duplicates)."""
    out = [("width", [N_IN, w, 1]) for w in widths]
    for d in depths:
        arch = [N_IN] + [depth_width] * d + [1]
        if ("width", arch) not in out:
            out.append(("depth", arch))
    return out


def run(limit: float, solvers: list[str], archs: list[tuple[str, list[int]]]) -> list[dict]:
    import numpy as np

    from benchmarks.bench_milp import random_net
    from lipopt.methods import RunOptions, run_method
    from lipopt.spec import Box, Logit, Norm, Question

    q = Question(Norm.LINF, Norm.LINF, Box(-np.ones(N_IN), np.ones(N_IN)), Logit(0))
    rows = []
    for solver in solvers:
        for sweep, arch in archs:
            net = random_net(arch, 0)
            r = run_method("bab", net, q, RunOptions(time_limit=limit, solver=solver, progress=False))
            rows.append({"solver": solver, "sweep": sweep, "net": "-".join(map(str, arch)),
                         "units": sum(arch[1:-1]), "ambiguous": r.stats.get("ambiguous_root"),
                         "nodes": r.stats.get("nodes"), "seconds": r.wall_time, "lower": r.lower,
                         "upper": r.upper, "gap": r.gap, "closed": r.kind.value == "EXACT",
                         "ok": r.ok, "message": r.message})
            print(_line(rows[-1]), flush=True)
    return rows


def _f(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _line(r: dict) -> str:
    gap = "-" if r["gap"] is None else f"{100 * r['gap']:.1f} %"
    return (f"| {r['solver']} | {r['sweep']} | {r['net']} | {r['units']} | {_f(r['ambiguous'])} | "
            f"{_f(r['nodes'])} | {r['seconds']:.2f} | [{_f(r['lower'])}, {_f(r['upper'])}] | {gap} | "
            f"{'yes' if r['closed'] else 'no'} |")


def render(rows: list[dict], limit: float) -> str:
    head = ("| LP solver | sweep | net | units | ambiguous at root | nodes | seconds "
            "| certified [LOWER, UPPER] | gap | closed (EXACT) |\n|---|---|---|---|---|---|---|---|---|---|")
    return (f"# bab: size against time (exact l-inf, logit 0, [-1, 1]^{N_IN}, limit {limit:g} s)\n\n"
            + head + "\n" + "\n".join(_line(r) for r in rows) + "\n")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for (solver, sweep) in sorted({(r["solver"], r["sweep"]) for r in rows}):
        pts = sorted((r["units"], r["seconds"], r["closed"]) for r in rows
                     if r["solver"] == solver and r["sweep"] == sweep)
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], "-", label=f"{sweep} sweep, {solver}")
        for u, t, closed in pts:
            ax.plot([u], [t], "o", color=line.get_color(), mfc=line.get_color() if closed else "none")
    ax.set_xlabel("hidden ReLU units")
    ax.set_ylabel("seconds to EXACT (hollow: limit reached)")
    ax.set_yscale("log")
    ax.set_title("bab: size against time, random nets, exact l-inf")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _ints(text: str) -> list[int]:
    return [int(v) for v in split_names(text)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=float, default=20.0, help="time limit of each run (seconds)")
    ap.add_argument("--solvers", default="highs,scip", help="LP solvers, comma-separated")
    ap.add_argument("--widths", default="8,16,32,64", help="hidden widths of the one-layer sweep")
    ap.add_argument("--depths", default="1,2,3,4", help="hidden layers of the depth sweep")
    ap.add_argument("--depth-width", type=int, default=16, help="width of the depth sweep's layers")
    ap.add_argument("--out", default=None, help="directory of the outputs (default benchmarks/results)")
    a = ap.parse_args(argv)
    rows = run(a.limit, split_names(a.solvers), nets(_ints(a.widths), _ints(a.depths), a.depth_width))
    md = write_result("bab_size.md", render(rows, a.limit), a.out)
    plot(rows, md.with_suffix(".png"))
    print(render(rows, a.limit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
