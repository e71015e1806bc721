"""Benchmarks of method "bab" (issue 13) against "milp" in the same run. One command:

    python benchmarks/bench_bab.py [--time-limit 30] [--threads 2] [--out benchmarks/results/bab_results.md]

Sections (every number measured in this run, on this machine, one method after the other):
  A. Seeded random nets [16, 64, 1] and [8, 32, 32, 1] over [-1, 1]^n (benchmarks/bench_milp.random_net),
     exact l-inf input, logit 0: bab vs milp under the same time limit. Ratio = milp time / bab time
     when both close; otherwise the final relative gaps are compared (gap ratio = milp gap / bab gap).
  B. Small nets where both close (LipBaB's 10-15-10-3 on [0, 0.1]^10 when its weights are present, and
     seeded random tiny nets): time to close, ratio milp / bab.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_milp import LIPBAB, load_lipbab, random_net, table
from lipopt.methods import RunOptions, run_method
from lipopt.spec import AllOutputs, Box, Logit, Norm, Question


def _row(name: str, method: str, r) -> dict:
    st = r.stats
    return {"net": name, "method": method, "kind": r.kind.value, "lower": r.lower, "upper": r.upper,
            "gap": r.gap, "total_s": r.wall_time, "nodes": st.get("nodes"),
            "lp_calls": (st.get("lp_prune_calls", 0) + st.get("margin_lps", 0) + st.get("completions", 0))
            if method == "bab" else None}




def compare(name: str, net, q: Question, limit: float, threads: int) -> list[dict]:
    res = {}
    rows = []
    for method in ("bab", "milp"):
        opts = RunOptions(time_limit=limit, threads=threads, isolate=(method == "milp"))
        r = run_method(method, net, q, opts)
        res[method] = r
        rows.append(_row(name, method, r))
    b, m = res["bab"], res["milp"]
    if b.kind.value == "EXACT" and m.kind.value == "EXACT":
        rows[0]["ratio_milp_over_bab"] = m.wall_time / b.wall_time
    elif b.kind.value == "EXACT":  # milp's time to close is more than its limit: a lower bound on the ratio
        rows[0]["note"] = f"only bab closed: ratio > {m.wall_time / b.wall_time:.3g}"
    elif b.gap is not None and m.gap is not None and b.gap > 0:
        rows[0]["gap_ratio_milp_over_bab"] = m.gap / b.gap
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--time-limit", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="", help="sections to skip, e.g. 'B'")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "bab_results.md"))
    args = ap.parse_args()
    cols = ["net", "method", "kind", "lower", "upper", "gap", "total_s", "nodes", "lp_calls",
            "ratio_milp_over_bab", "gap_ratio_milp_over_bab", "note"]
    text = [f"# bab vs milp ({time.strftime('%Y-%m-%d %H:%M')}, time limit {args.time_limit:g} s, "
            f"threads {args.threads})\n"]

    def emit(title: str, rows: list[dict]) -> None:
        block = f"## {title}\n\n{table(rows, cols)}\n"
        print(block, flush=True)
        text.append(block)

    if "A" not in args.skip:
        rows = []
        for widths in ([16, 64, 1], [8, 32, 32, 1]):
            net = random_net(widths, 0)
            q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0), Logit(0))
            rows += compare("-".join(map(str, widths)), net, q, args.time_limit, args.threads)
        emit("A. Random nets over [-1, 1]^n, l-inf input, logit 0", rows)
    if "B" not in args.skip:
        rows = []
        if (LIPBAB / "SDnet_(10,15,10,3)_weights.npy").exists():
            net = load_lipbab("(10,15,10,3)")
            for p in (Norm.LINF, Norm.L1):
                rows += compare(f"LipBaB 10-15-10-3 {p.label}", net,
                                Question(p, p, Box(0.0, 0.1), AllOutputs()), args.time_limit, args.threads)
        for widths, seed in (([4, 12, 1], 0), ([3, 8, 8, 1], 1), ([6, 20, 1], 2)):
            net = random_net(widths, seed)
            rows += compare("-".join(map(str, widths)) + f" s{seed}", net,
                            Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0), Logit(0)), args.time_limit,
                            args.threads)
        emit("B. Small nets (both expected to close)", rows)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
