"""Benchmarks of method "milp" (issue 3); every solve is isolated (killed at its hard deadline). One command:

    python benchmarks/bench_milp.py [--time-limit 60] [--threads 2] [--out benchmarks/results/milp_results.md]

Sections (every number measured in this run, on this machine):
  A. LipBaB's published networks over [0, 0.1]^10: exact l-inf -> l-inf and l1 -> l1 with HiGHS.
  B. Seeded random nets [16, 64, 1] and [8, 32, 32, 1] over [-1, 1]^n, l-inf input (gradient l1 norm):
     neuron bounds "lp" (interval + CROWN + LP tightening) vs "interval" only, same run; the speed-up
     is time(interval) / time(lp) when both finish, else the final gaps are compared.
     B2: the same nets, default encoding vs ``extra={"direction_split": True}`` (same run).
  C. Instance size vs solve time for HiGHS and SCIP (Gurobi when installed).
  D. Vector l-inf output: one MILP per output row ("split", the default) vs one MILP with a selector.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from lipopt.locations import external_nets
from lipopt.methods import RunOptions, run_method
from lipopt.network.network import Network
from lipopt.spec import AllOutputs, Box, Logit, Norm, Question

LIPBAB = external_nets() / "lipbab"
LIPBAB_NETS = ["(10,15,10,3)", "(10,20,15,10,3)", "(10,30,30,30,3)"]



def _opts(**kw: object) -> RunOptions:
    """Benchmark runs must end: every solve in a child process killed at its hard deadline."""
    return RunOptions(isolate=True, **kw)

def load_lipbab(tag: str) -> Network:
    ws = np.load(LIPBAB / f"SDnet_{tag}_weights.npy", allow_pickle=True)
    bs = np.load(LIPBAB / f"SDnet_{tag}_biases.npy", allow_pickle=True)
    return Network.from_weights([np.asarray(w, dtype=np.float64).T for w in ws],
                                [np.asarray(b, dtype=np.float64).reshape(-1) for b in bs], name=f"SDnet{tag}")


def random_net(widths: list[int], seed: int) -> Network:
    """Weights N(0, 1/fan_in), biases N(0, 0.01): every hidden neuron can switch inside [-1, 1]^n."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i]) for i in range(len(widths) - 1)]
    bs = [rng.normal(size=widths[i + 1]) * 0.1 for i in range(len(widths) - 1)]
    return Network.from_weights(ws, bs, name=f"random {'-'.join(map(str, widths))} seed {seed}")


def row(r, extra: dict | None = None) -> dict:
    st = r.stats
    d = {
        "value": r.value, "kind": r.kind.value, "status": r.status.value, "lower": r.lower, "upper": r.upper,
        "gap": r.gap, "total_s": r.wall_time, "bounds_s": st.get("bounds_time"), "build_s": r.build_time,
        "solve_s": r.solve_time, "ambiguous": st.get("ambiguous_neurons"),
        "binaries": sum(p.get("binaries", 0) for p in st.get("pieces", [])),
        "pieces_solved": sum(1 for p in st.get("pieces", []) if "solves" in p),
    }
    d.update(extra or {})
    return d


def fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.6g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return "-" if v is None else str(v)


def table(rows: list[dict], cols: list[str]) -> str:
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--random-time-limit", type=float, default=30.0)
    ap.add_argument("--size-time-limit", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "milp_results.md"))
    ap.add_argument("--skip", default="", help="sections to skip, e.g. 'CD'")
    args = ap.parse_args()
    from lipopt_solvers import available_solvers

    solvers = [s for s in ("highs", "scip", "gurobi") if s in set(available_solvers())]
    text = [f"# MILP benchmarks (threads={args.threads}, {time.strftime('%Y-%m-%d %H:%M')})\n",
            f"solvers installed: {', '.join(solvers)}\n"]

    def emit(title: str, rows: list[dict], cols: list[str]) -> None:
        block = f"## {title}\n\n{table(rows, cols)}\n"
        print(block, flush=True)
        text.append(block)

    if "A" not in args.skip:
        rows = []
        for tag in LIPBAB_NETS:
            net = load_lipbab(tag)
            for p in (Norm.LINF, Norm.L1):
                q = Question(p, p, Box(0.0, 0.1), AllOutputs())
                r = run_method("milp", net, q, _opts(time_limit=args.time_limit, threads=args.threads))
                rows.append(row(r, {"net": tag, "norms": f"{p.label}->{p.label}"}))
        emit("A. LipBaB nets, box [0, 0.1]^10, HiGHS", rows,
             ["net", "norms", "value", "kind", "total_s", "bounds_s", "build_s", "solve_s", "ambiguous",
              "binaries", "pieces_solved"])

    if "B" not in args.skip:
        rows = []
        for widths in ([16, 64, 1], [8, 32, 32, 1]):
            net = random_net(widths, 0)
            q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0), Logit(0))
            res = {}
            for bm in ("lp", "crown", "interval"):
                r = run_method("milp", net, q, _opts(
                    time_limit=args.random_time_limit, threads=args.threads, extra={"bound_method": bm}))
                res[bm] = r
                rows.append(row(r, {"net": "-".join(map(str, widths)), "bounds": bm}))
            a, b = res["lp"], res["interval"]
            if a.kind.value == "EXACT" and b.kind.value == "EXACT":
                rows[-1]["speedup_lp_vs_interval"] = b.wall_time / a.wall_time
        emit(f"B. Random nets over [-1, 1]^n, l-inf input, logit 0, HiGHS, limit {args.random_time_limit:g}s",
             rows, ["net", "bounds", "value", "kind", "lower", "upper", "gap", "total_s", "bounds_s",
                    "solve_s", "ambiguous", "binaries", "speedup_lp_vs_interval"])
        # B2: direction splitting (lipopt.mip.milp_directions) vs the default encoding, same run, same nets
        rows = []
        for widths in ([16, 64, 1], [8, 32, 32, 1]):
            net = random_net(widths, 0)
            q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0), Logit(0))
            res = {}
            for split in (False, True):
                opts = _opts(time_limit=args.random_time_limit, threads=args.threads,
                                  extra={"direction_split": split})
                r = run_method("milp", net, q, opts)
                res[split] = r
                rows.append(row(r, {"net": "-".join(map(str, widths)),
                                    "encoding": "direction split" if split else "default"}))
            a, b = res[False], res[True]
            if a.kind.value == "EXACT" and b.kind.value == "EXACT":
                rows[-1]["speedup"] = a.wall_time / b.wall_time
            elif None not in (a.upper, a.lower, b.upper, b.lower) and b.upper > b.lower:
                rows[-1]["gap_ratio"] = (a.upper - a.lower) / (b.upper - b.lower)
        emit(f"B2. Direction splitting vs default (limit {args.random_time_limit:g}s; speedup = time ratio "
             "when both close, gap_ratio = (upper - lower) default / split otherwise)", rows,
             ["net", "encoding", "value", "kind", "lower", "upper", "total_s", "speedup", "gap_ratio"])

    if "C" not in args.skip:
        rows = []
        for widths in ([8, 8, 1], [8, 16, 1], [8, 32, 1], [8, 8, 8, 1], [8, 16, 16, 1], [10, 15, 10, 3]):
            net = random_net(widths, 1) if widths[-1] == 1 else load_lipbab("(10,15,10,3)")
            dom = Box(-1.0, 1.0) if widths[-1] == 1 else Box(0.0, 0.1)
            q = Question(Norm.LINF, Norm.LINF, dom, Logit(0))
            for s in solvers:
                r = run_method("milp", net, q, _opts(
                    time_limit=args.size_time_limit, threads=args.threads, solver=s))
                rows.append(row(r, {"net": "-".join(map(str, widths)), "solver": s, "relus": net.n_relus}))
        emit(f"C. Size vs time (l-inf input, logit 0, limit {args.size_time_limit:g}s)", rows,
             ["net", "relus", "ambiguous", "binaries", "solver", "value", "kind", "gap", "total_s",
              "solve_s"])

    if "D" not in args.skip:
        rows = []
        for tag in LIPBAB_NETS:
            net = load_lipbab(tag)
            q = Question(Norm.LINF, Norm.LINF, Box(0.0, 0.1), AllOutputs())
            for enc in ("split", "selector"):
                r = run_method("milp", net, q, _opts(time_limit=args.time_limit, threads=args.threads,
                                                          extra={"vector_encoding": enc}))
                rows.append(row(r, {"net": tag, "encoding": enc}))
        emit("D. l-inf -> l-inf: split per output row vs one MILP with a selector", rows,
             ["net", "encoding", "value", "kind", "total_s", "solve_s", "binaries", "pieces_solved"])

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(text))
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
