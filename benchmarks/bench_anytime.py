"""Issue 13: the MIQCQP paper's claim, measured. Under a limited time budget, does the quadratically
constrained formulation (``miqcqp``) give tighter certified brackets than a MIP method (``milp``) and a
branch and bound (``bab``), for l2 and l-inf?

    python -m benchmarks.bench_anytime [--limit 60] [--budgets 10,60] [--cases lipbab30,wine,random832]
                                       [--methods bab,milp] [--out DIR]

Each exact method runs once per case with ``--limit`` seconds (isolated in a child process, killed at
its deadline); its anytime history (``stats["history"]``: [seconds, certified lower, certified upper]
rows, the solvers' dual bounds as they move) gives its certified bracket at every budget <= the limit.
That is the anytime view of one run, not a separate run per budget (a method may split its time
differently under a shorter limit); at a budget equal to the limit the run's own answer is read (it may
arrive a little after the limit: the final certification). Printed and written under DIR (default
benchmarks/results/): ``anytime.md`` (the bracket and its relative gap at each budget, the tightest
marked) and ``anytime.png`` (lower and upper bound against time, one panel per case). ``enumeration``
is added where the net is small enough for it. The prior bounds of the cheap methods are on (the default).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import split_names, write_result


def _cases() -> dict:
    """name -> (network loader, question, methods): LipBaB's deepest SDnet (local, l2 and l-inf),
    ExLipBaB's wine (global l2) and a seeded random [8, 32, 32, 1] (box [-1, 1]^8, l-inf and l2)."""
    import numpy as np

    import lipopt
    from benchmarks.bench_milp import load_lipbab, random_net
    from lipopt.spec import Box, Global, Norm, Question

    def exlipbab(tag: str):
        return lipopt.load(f"external:exlipbab/{tag}_ReLU_weights.npy")

    box01 = Box(np.zeros(10), np.full(10, 0.1))
    box8 = Box(-np.ones(8), np.ones(8))
    return {
        "lipbab30-l2": (lambda: load_lipbab("(10,30,30,30,3)"), Question(Norm.L2, Norm.L2, box01),
                        ["miqcqp", "bab"]),
        "lipbab30-inf": (lambda: load_lipbab("(10,30,30,30,3)"), Question(Norm.LINF, Norm.LINF, box01),
                         ["miqcqp", "milp", "bab"]),
        "wine-l2": (lambda: exlipbab("wine_net_(11x12x12x1)"), Question(Norm.L2, Norm.L2, Global()),
                    ["miqcqp", "bab"]),
        "random832-inf": (lambda: random_net([8, 32, 32, 1], 0), Question(Norm.LINF, Norm.LINF, box8),
                          ["miqcqp", "milp", "bab"]),
        "random832-l2": (lambda: random_net([8, 32, 32, 1], 0), Question(Norm.L2, Norm.L2, box8),
                         ["miqcqp", "bab"]),
    }


def bracket_at(history: list, t: float) -> tuple[float | None, float | None]:
    """The best certified (lower, upper) known by ``t`` seconds: the running max of the lower side and
    min of the upper side over the rows up to ``t`` (None where no row is that early)."""
    lo = up = None
    for s, a, b in history:
        if s > t:
            break
        if a is not None and math.isfinite(a):
            lo = a if lo is None else max(lo, a)
        if b is not None and math.isfinite(b):
            up = b if up is None else min(up, b)
    return lo, up


def run(cases: list[str], limit: float, budgets: list[float], only: list[str] | None = None) -> list[dict]:
    """Each case's exact methods (``only``: those of them named there) with ``limit`` seconds each."""
    from lipopt.methods import RunOptions, run_method

    table = _cases()
    rows = []
    for name in cases:
        load, q, methods = table[name]
        net = load()
        from lipopt.methods import get_method

        if get_method("enumeration").applicable(net, q) is None and net.n_relus <= 20:
            methods = [*methods, "enumeration"]
        for m in (m for m in methods if not only or m in only):
            r = run_method(m, net, q, RunOptions(time_limit=limit, isolate=True, seed=0))
            hist = r.stats.get("history") or [[r.wall_time or limit, r.lower, r.upper]]
            row = {"case": name, "method": m, "history": hist, "kind": r.kind.value, "time": r.wall_time,
                   "final": (r.lower, r.upper)}
            for b in budgets:  # at the run's own limit: its answer (it may arrive a little after it)
                row[b] = (r.lower, r.upper) if b >= limit else bracket_at(hist, b)
            rows.append(row)
            print(f"{name} {m}: {r.kind.value} [{r.lower}, {r.upper}] in {r.wall_time:.1f} s", flush=True)
    return rows


def _gap(lo: float | None, up: float | None) -> float:
    if lo is None or up is None or up <= 0:
        return math.inf
    return max(0.0, (up - lo) / up)


def render(rows: list[dict], budgets: list[float]) -> str:
    head = "| case | method | " + " | ".join(f"bracket at {b:g} s | gap" for b in budgets) + " | final |"
    out = [head, "|" + "---|" * (3 + 2 * len(budgets))]
    for r in rows:
        peers = [p for p in rows if p["case"] == r["case"]]
        cells = []
        for b in budgets:
            lo, up = r[b]
            g = _gap(lo, up)
            best = min(_gap(*p[b]) for p in peers)
            mark = "**" if math.isfinite(g) and g <= best else ""
            br = "-" if lo is None and up is None else f"[{_f(lo)}, {_f(up)}]"
            cells.append(f"{br} | {mark}{_pct(g)}{mark}")
        out.append(f"| {r['case']} | {r['method']} | " + " | ".join(cells) + f" | {r['kind']} in "
                   f"{r['time']:.1f} s |")
    return "\n".join(out)


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.5g}"


def _pct(g: float) -> str:
    return "open" if not math.isfinite(g) else ("closed" if g <= 1e-6 else f"{100 * g:.2g} %")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = list(dict.fromkeys(r["case"] for r in rows))
    fig, axes = plt.subplots(1, len(cases), figsize=(4.2 * len(cases), 3.6), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        for i, r in enumerate(p for p in rows if p["case"] == case):
            h = [row for row in r["history"] if row[0] is not None]
            ts = [max(row[0], 1e-2) for row in h]
            colour = f"C{i}"
            lows = [bracket_at(h, t)[0] for t in ts]
            ups = [bracket_at(h, t)[1] for t in ts]
            ax.step(ts, [v if v is not None else math.nan for v in ups], where="post", color=colour,
                    label=f"{r['method']} upper")
            ax.step(ts, [v if v is not None else math.nan for v in lows], where="post", color=colour,
                    linestyle="--", label=f"{r['method']} lower")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("seconds")
        ax.set_ylabel("certified bound on the Lipschitz constant")
        ax.set_title(case)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=float, default=60.0, help="time limit of each run (seconds)")
    ap.add_argument("--budgets", default="10,60", help="budgets read off the anytime histories")
    ap.add_argument("--cases", nargs="*", default=None, help="cases (default: all)")
    ap.add_argument("--out", default=None, help="directory of the outputs (default benchmarks/results)")
    ap.add_argument("--methods", default=None, help="only these of each case's methods (comma-separated)")
    args = ap.parse_args(argv)
    known = list(_cases())
    cases = split_names(args.cases) or known
    bad = [c for c in cases if c not in known]
    if bad:
        ap.error(f"unknown cases {', '.join(bad)}; known: {', '.join(known)}")
    budgets = [float(b) for b in split_names(args.budgets)]
    rows = run(cases, args.limit, budgets, split_names(args.methods) or None)
    text = render(rows, budgets)
    print(text)
    path = write_result("anytime.md", "# Anytime brackets of the exact methods (bench_anytime.py)\n\n" + text,
                        args.out)
    plot(rows, path.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
