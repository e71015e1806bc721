"""Issue 8: the direct solver path (Pyomo model -> arrays -> highspy) against the Pyomo-contrib path
(``pyomo-highs``, Pyomo's own HiGHS interface), in one process on the same models. One command:

    python benchmarks/bench_solver_layer.py [--time-limit 2] [--out benchmarks/results/solver_layer.md]

For each MILP (LipBaB's published nets over [0, 0.1]^10, l-inf, first logit; a seeded random
784-256-256-10 net over [0, 1]^784, first logit) it reports the translation time (model to the solver,
ready to run), the solver's own time and the total, for both paths, and their ratios (contrib / direct:
above 1 means the direct path is faster). Both paths get the same time limit; the direct path is also
run isolated (a child process killed at the hard deadline) to show what isolation costs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

try:
    from bench_milp import LIPBAB, load_lipbab, random_net
except ImportError:  # python -m benchmarks.bench_solver_layer
    from benchmarks.bench_milp import LIPBAB, load_lipbab, random_net

if TYPE_CHECKING:
    from lipopt.network.network import Network

LIPBAB_NETS = ["(10,15,10,3)", "(10,20,15,10,3)", "(10,30,30,30,3)"]


def build_model(net: Network, lo: float, hi: float):
    from lipopt.bounds import compute_bounds
    from lipopt.formulations.milp import build_milp, output_pieces
    from lipopt.spec import make_question

    q = make_question("inf", domain=f"box:{lo},{hi}", output="logit:0").bind(net)
    fb = compute_bounds(net, np.full(net.input_size, lo), np.full(net.input_size, hi), method="interval")
    piece = output_pieces(q, net.output_size)[0]
    return build_milp(fb, q.input_norm, piece)


def run_direct(model, time_limit: float, isolate: bool) -> dict:
    import lipopt_solvers as ls

    t0 = time.perf_counter()
    options = ls.SolverOptions(time_limit=time_limit, isolate=isolate)
    out = ls.solve_pyomo(model, "highs", options, sense="max")
    total = time.perf_counter() - t0
    return {"translate": out.translate_time, "solve": out.solve_time, "total": total,
            "term": out.termination.value, "objective": out.objective, "bound": out.bound}


def run_contrib(model, time_limit: float) -> dict:
    from pyomo.contrib.solver.solvers.highs import Highs

    opt = Highs()
    t0 = time.perf_counter()
    res = opt.solve(model, load_solutions=False, raise_exception_on_nonoptimal_result=False,
                    time_limit=time_limit, rel_gap=1e-6, abs_gap=0.0, tee=False)  # the direct path's gaps
    total = time.perf_counter() - t0
    run_time = float(opt._solver_model.getRunTime())
    return {"translate": total - run_time, "solve": run_time, "total": total,
            "term": res.termination_condition.name, "objective": res.incumbent_objective,
            "bound": res.objective_bound}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=2.0)
    ap.add_argument("--out", default="benchmarks/results/solver_layer.md")
    ap.add_argument("--no-large", action="store_true", help="skip the 784-256-256-10 model")
    args = ap.parse_args()
    cases = [(load_lipbab(t), 0.0, 0.1) for t in LIPBAB_NETS if (LIPBAB / f"SDnet_{t}_weights.npy").exists()]
    if not args.no_large:
        cases.append((random_net([784, 256, 256, 10], seed=0), 0.0, 1.0))
    lines = ["| network | path | translate s | solve s | total s | termination | incumbent | bound |",
             "|---|---|---|---|---|---|---|---|"]
    ratios = []
    for net, lo, hi in cases:
        t0 = time.perf_counter()
        mm = build_model(net, lo, hi)
        build = time.perf_counter() - t0
        runs = {"contrib (pyomo-highs)": run_contrib(mm.model.clone(), args.time_limit),
                "direct (highs)": run_direct(mm.model.clone(), args.time_limit, False),
                "direct, isolated": run_direct(mm.model.clone(), args.time_limit, True)}
        for path, r in runs.items():
            lines.append(f"| {net.name} | {path} | {r['translate']:.3f} | {r['solve']:.3f} | "
                         f"{r['total']:.3f} | {r['term']} | {r['objective']} | {r['bound']} |")
        c, d = runs["contrib (pyomo-highs)"], runs["direct (highs)"]
        ratios.append(f"- {net.name} (model build {build:.2f} s, {mm.stats.get('binaries')} binaries): "
                      f"translation contrib/direct = {c['translate'] / d['translate']:.2f}x, "
                      f"total contrib/direct = {c['total'] / d['total']:.2f}x")
        print(lines[-3], lines[-2], lines[-1], ratios[-1], sep="\n", flush=True)
    text = "\n".join([f"# Solver layer: direct vs Pyomo-contrib HiGHS (time limit {args.time_limit} s)", "",
                      *lines, "", *ratios, ""])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"written to {out}")


if __name__ == "__main__":
    main()
