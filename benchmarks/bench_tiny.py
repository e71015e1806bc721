"""Tiny nets and the cold start (issue 13: "Tiny nets (10-15-10-3): under 0.5 s per question in a warm
process, and the cold start of `lipopt compute` measured and cut"; issue 14: "the first call in a process
costs about 11 s ... measure where the cold start goes and cut it"). One command:

    python benchmarks/bench_tiny.py [--repeats 5] [--cold-repeats 3] [--threads 2]
                                    [--out benchmarks/results/tiny.md] [--skip ABC]

Sections (every number measured in this run, on this machine):
  A. Warm process, per method and question: LipBaB's 10-15-10-3 on [0, 0.1]^10 (l-inf, l1, l2, all
     outputs) and the seeded random 3-6-5-2 net of tests/nets.py (l-inf -> l1 global, l-inf box, l2
     global): the first call and the median of the next ``--repeats`` calls, with phase times (prior,
     neuron bounds, model build, MIP solve). For milp the median with the old setting
     (``small_mip_tuning=False``: HiGHS' default heuristics) is measured in the same process, the calls
     alternating, and the ratio old / new printed; the certified values of both are compared.
  B. Cold start: ``python -m lipopt compute <10-15-10-3> --norm inf --domain box:0,0.1 -q`` with the default
     methods and with ``--methods milp`` / ``bab`` / ``enumeration``, new against old (old: Pyomo's eager
     scipy submodules kept, ``lipopt.methods.defer_pyomo_scipy`` replaced by a no-op, and
     ``small_mip_tuning=False``) in alternating fresh processes, median of ``--cold-repeats``; then where
     the cold start goes: ``-X importtime`` self times summed by top-level package.
  C. The costs left, which are outside the files this change touched, measured one by one in fresh
     processes: the first milp / bab call with and without the prior bounds (naive imports torch), torch's
     import, torch.optim.Adam's first construction (grad-ascent: it imports torch._dynamo and sympy),
     pandas' import (the table), and the solver layer's cost per tiny LP against highspy directly.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks import write_result  # noqa: E402
from benchmarks.bench_milp import LIPBAB, load_lipbab, table  # noqa: E402

TINY = "(10,15,10,3)"
TINY_FILE = LIPBAB / f"SDnet_{TINY}_weights.npy"
#: the old behaviour in a fresh process: Pyomo's scipy hook armed (set before lipopt.api is imported)
OLD_PATCH = "import lipopt.methods as _M; _M.defer_pyomo_scipy = lambda: False\n"


def _questions() -> list[tuple[str, object, object]]:
    from nets import random_mlp

    from lipopt.spec import AllOutputs, Box, Global, Norm, Question

    out = []
    if TINY_FILE.exists():
        net = load_lipbab(TINY)
        for p in (Norm.LINF, Norm.L1, Norm.L2):
            out.append(
                (
                    f"LipBaB 10-15-10-3 {p.label}, [0, 0.1]^10",
                    net,
                    Question(p, p, Box(0.0, 0.1), AllOutputs()),
                )
            )
    r = random_mlp([3, 6, 5, 2], 0)
    out.append(("random 3-6-5-2 linf->l1 global", r, Question(Norm.LINF, Norm.L1, Global(), AllOutputs())))
    out.append(
        ("random 3-6-5-2 linf box [-1, 1]^3", r, Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0), AllOutputs()))
    )
    out.append(("random 3-6-5-2 l2 global", r, Question(Norm.L2, Norm.L2, Global(), AllOutputs())))
    return out


def _phases(r) -> dict:
    st = r.stats
    pieces = st.get("pieces", [])
    solve = sum(s.get("solve_time", 0.0) for p in pieces for s in p.get("solves", []))
    prior = (st.get("prior") or {}).get("time")
    return {
        "prior_s": prior,
        "bounds_s": st.get("bounds_time"),
        "build_s": st.get("build_time"),
        "mip_solve_s": solve if pieces else None,
        "mips": sum(len(p.get("solves", [])) for p in pieces) or None,
    }


def section_a(repeats: int, threads: int) -> list[dict]:
    from lipopt.methods import RunOptions, run_method

    rows = []
    for name, net, q in _questions():
        for method in ("enumeration", "bab", "milp", "miqcqp"):
            opts = RunOptions(threads=threads)
            t = time.perf_counter()
            first = run_method(method, net, q, opts)
            t_first = time.perf_counter() - t
            if first.verdict.value == "not_applicable":
                continue
            new, old, r_new, r_old = [], [], first, None
            for _ in range(repeats):
                t = time.perf_counter()
                r_new = run_method(method, net, q, opts)
                new.append(time.perf_counter() - t)
                if method == "milp":
                    t = time.perf_counter()
                    r_old = run_method(
                        method, net, q, RunOptions(threads=threads, extra={"small_mip_tuning": False})
                    )
                    old.append(time.perf_counter() - t)
            row = {
                "question": name,
                "method": method,
                "kind": r_new.kind.value,
                "lower": r_new.lower,
                "upper": r_new.upper,
                "first_s": t_first,
                "warm_s": statistics.median(new),
                **_phases(r_new),
            }
            if old:
                row["old_warm_s"] = statistics.median(old)
                row["ratio_old_over_new"] = row["old_warm_s"] / row["warm_s"]
                same_lo = r_old.lower == r_new.lower or (
                    r_old.lower is not None
                    and r_new.lower is not None
                    and abs(r_old.lower - r_new.lower) <= 1e-9 * abs(r_new.lower)
                )
                row["same_value"] = f"lower {'=' if same_lo else '!='}, upper rel diff " + (
                    f"{abs(r_old.upper - r_new.upper) / abs(r_new.upper):.1e}"
                    if r_old.upper and r_new.upper
                    else "-"
                )
            rows.append(row)
            print(
                json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}),
                flush=True,
            )
    return rows


def _cold_cmd(method: str | None, old: bool) -> list[str]:
    """A cold ``lipopt compute`` on the tiny net; ``old``: with the behaviour before this change (Pyomo's
    scipy hook armed, no small-MIP options for HiGHS)."""
    args = ["compute", str(TINY_FILE), "--norm", "inf", "--domain", "box:0,0.1", "-q"]
    if method:
        args += ["--methods", method]
    code = (
        OLD_PATCH + "import lipopt.methods.milp as _m; _m.small_mip_options = lambda *a, **k: {}\n"
        if old
        else ""
    )
    code += f"import sys; from lipopt.cli import main; sys.exit(main({args!r}))\n"
    return [sys.executable, "-c", code]


def _wall(cmd: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t


def _importtime(method: str | None) -> dict[str, float]:
    """-X importtime self times (s) summed by top-level package, for one cold `lipopt compute`."""
    cmd = _cold_cmd(method, False)
    out = subprocess.run([cmd[0], "-X", "importtime", *cmd[1:]], cwd=ROOT, capture_output=True, text=True)
    tot: dict[str, float] = {}
    for line in out.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cum, name = line[len("import time:") :].split("|", 2)
        root = name.strip().split(".")[0]
        tot[root] = tot.get(root, 0.0) + float(self_us) / 1e6
    return tot


def section_b(repeats: int) -> tuple[list[dict], list[dict]]:
    rows = []
    for method in (None, "milp", "bab", "enumeration"):
        new, old = [], []
        for _ in range(repeats):
            old.append(_wall(_cold_cmd(method, True)))
            new.append(_wall(_cold_cmd(method, False)))
        row = {
            "command": "lipopt compute " + (f"--methods {method}" if method else "(default methods)"),
            "old_s": statistics.median(old),
            "new_s": statistics.median(new),
        }
        row["ratio_old_over_new"] = row["old_s"] / row["new_s"]
        rows.append(row)
        print(json.dumps(row), flush=True)
    where = []
    for method in (None, "milp", "bab", "enumeration"):
        tot = _importtime(method)
        top = sorted(tot.items(), key=lambda kv: -kv[1])
        row = {"command": f"--methods {method}" if method else "(default)", "imports_s": sum(tot.values())}
        for pkg in ("torch", "scipy", "pyomo", "pandas", "sympy", "numpy", "highspy", "lipopt"):
            row[pkg] = tot.get(pkg, 0.0)
        row["others (largest)"] = ", ".join(f"{k} {v:.2f}" for k, v in top if k not in row and v >= 0.02)[
            :120
        ]
        where.append(row)
        print(json.dumps(row), flush=True)
    return rows, where


_FIRST = (
    "import json, sys, time\n"
    "sys.path.insert(0, {root!r})\n"
    "from benchmarks.bench_milp import load_lipbab\n"
    "from lipopt.methods import RunOptions, run_method\n"
    "from lipopt.spec import AllOutputs, Box, Norm, Question\n"
    "net = load_lipbab({tiny!r}); q = Question(Norm.LINF, Norm.LINF, Box(0.0, 0.1), AllOutputs())\n"
    "o = RunOptions(threads={threads}, extra={extra!r})\n"
    "ts = []\n"
    "for i in range(2):\n"
    "    t = time.perf_counter(); r = run_method({method!r}, net, q, o); ts.append(time.perf_counter() - t)\n"
    "print(json.dumps(ts + [r.value, 'torch' in sys.modules]))\n"
)

_T0, _T1 = "import time; t = time.perf_counter(); ", "; print(time.perf_counter() - t)"
_SNIPPETS = {
    "import torch": f"{_T0}import torch{_T1}",
    "first torch.optim.Adam (after import torch)":
        f"import torch; {_T0}torch.optim.Adam([torch.zeros(2, requires_grad=True)]){_T1}",
    "import pandas": f"{_T0}import pandas{_T1}",
    "import pyomo.environ (scipy not imported)": f"{_T0}import pyomo.environ{_T1}",
    "import scipy.stats (Pyomo's hook, avoided now)": f"import scipy.sparse; {_T0}import scipy.stats{_T1}",
}

_LP = (
    "import time, numpy as np, highspy\n"
    "from lipopt_solvers import SolverOptions, solve_lp\n"
    "rng = np.random.default_rng(0); A = rng.normal(size=(20, 8)); b = np.abs(rng.normal(size=20)) + 1\n"
    "c = rng.normal(size=8); solve_lp(c, A_ub=A, b_ub=b, bounds=[(-1, 1)] * 8)\n"
    "t = time.perf_counter()\n"
    "for _ in range(200): solve_lp(c, A_ub=A, b_ub=b, bounds=[(-1, 1)] * 8, options=SolverOptions())\n"
    "layer = (time.perf_counter() - t) / 200\n"
    "t = time.perf_counter()\n"
    "for _ in range(200):\n"
    "    h = highspy.Highs(); h.setOptionValue('output_flag', False)\n"
    "    h.addVars(8, np.full(8, -1.0), np.full(8, 1.0))\n"
    "    h.changeColsCost(8, np.arange(8, dtype=np.int32), c)\n"
    "    for r in range(20): h.addRow(-highspy.kHighsInf, b[r], 8, np.arange(8, dtype=np.int32), A[r])\n"
    "    h.run()\n"
    "print(layer, (time.perf_counter() - t) / 200)\n"
)


def section_c(repeats: int, threads: int) -> list[dict]:
    rows = []
    if TINY_FILE.exists():
        for method in ("milp", "bab"):
            for prior in (True, False):
                firsts, seconds = [], []
                for _ in range(repeats):
                    code = _FIRST.format(
                        root=str(ROOT),
                        tiny=TINY,
                        threads=threads,
                        method=method,
                        extra={"prior_bounds": prior},
                    )
                    out = subprocess.run(
                        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True
                    )
                    a, b, value, torch_loaded = json.loads(out.stdout.strip().splitlines()[-1])
                    firsts.append(a)
                    seconds.append(b)
                rows.append(
                    {
                        "what": f"{method} first / second call in a process, prior_bounds={prior}",
                        "seconds": statistics.median(firsts),
                        "second_call_s": statistics.median(seconds),
                        "note": f"value {value:.9g}; torch imported: {torch_loaded}",
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
    for what, code in _SNIPPETS.items():
        vals = [
            float(
                subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
                .stdout.strip()
                .splitlines()[-1]
            )
            for _ in range(repeats)
        ]
        rows.append({"what": what, "seconds": statistics.median(vals)})
        print(json.dumps(rows[-1]), flush=True)
    out = subprocess.run([sys.executable, "-c", _LP], cwd=ROOT, capture_output=True, text=True)
    layer, direct = map(float, out.stdout.strip().splitlines()[-1].split())
    rows.append(
        {
            "what": "one tiny LP (20 x 8) through lipopt_solvers.solve_lp",
            "seconds": layer,
            "note": f"highspy directly: {direct * 1e3:.2f} ms ({layer / direct:.1f}x)",
        }
    )
    print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cold-repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip", default="")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "tiny.md"))
    args = ap.parse_args()
    text = [f"# Tiny nets and the cold start ({time.strftime('%Y-%m-%d %H:%M')}, threads {args.threads})\n"]

    def emit(title: str, rows: list[dict], cols: list[str]) -> None:
        block = f"## {title}\n\n{table(rows, cols)}\n"
        print(block, flush=True)
        text.append(block)

    if "A" not in args.skip:
        rows = section_a(args.repeats, args.threads)
        emit(
            f"A. Warm process (median of {args.repeats} calls after the first)",
            rows,
            [
                "question",
                "method",
                "kind",
                "lower",
                "upper",
                "first_s",
                "warm_s",
                "old_warm_s",
                "ratio_old_over_new",
                "same_value",
                "prior_s",
                "bounds_s",
                "build_s",
                "mip_solve_s",
                "mips",
            ],
        )
    if "B" not in args.skip and TINY_FILE.exists():
        rows, where = section_b(args.cold_repeats)
        emit(
            "B. Cold `lipopt compute` on 10-15-10-3, l-inf, [0, 0.1]^10 "
            f"(median of {args.cold_repeats} fresh processes; "
            "old: Pyomo's scipy hook armed and small_mip_tuning off)",
            rows,
            ["command", "old_s", "new_s", "ratio_old_over_new"],
        )
        emit(
            "B2. Where the cold start goes now: -X importtime self seconds by top-level package",
            where,
            [
                "command",
                "imports_s",
                "torch",
                "scipy",
                "pyomo",
                "pandas",
                "sympy",
                "numpy",
                "highspy",
                "lipopt",
                "others (largest)",
            ],
        )
    if "C" not in args.skip:
        emit(
            "C. The costs left (outside this change), fresh processes",
            section_c(args.cold_repeats, args.threads),
            ["what", "seconds", "second_call_s", "note"],
        )
    out = Path(args.out)
    write_result(out.name, "\n".join(text), out.parent)


if __name__ == "__main__":
    main()
