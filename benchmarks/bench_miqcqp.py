"""Benchmarks of the MIQCQP method ("miqcqp"): certified brackets of l2 (and l-inf) Lipschitz constants.

Suites (``--suite``, several allowed; default ``exlipbab lipbab``):

* ``exlipbab``: global l2 constants (all outputs) of ExLipBaB's iris 4-6-6-3, wine 11-12-12-1,
  abalone 9-16-16-1 and bike 13-20-16-8-3 networks (../shared/external-nets/exlipbab/).
* ``lipbab``: local l2 constants over [0, 0.1]^10 of LipBaB's SDnets (../shared/external-nets/lipbab/).
* ``random``: random nets with 12 to 40 ReLUs, global l2 and local l-inf; miqcqp against region
  enumeration and (l-inf) the MILP, in the same run, with the bracket width against time.
* ``prior``: the cheap methods' certified bounds as cut-offs and bracket caps (``prior_bounds`` off,
  then on, lipopt.exact.prior) on LipSDP's 784-50-10 MNIST net, LipBaB's 10-30-30-30-3 net and a random
  [8, 32, 32, 1] net over [-1, 1]^8 (issue 13).
* ``ablation``: what each solvability device buys (bounds, stable fixing, symmetry, warm start / cut-off,
  direction bounds), on mid-sized nets.

Usage::

    python benchmarks/bench_miqcqp.py --time-limit 600 --suite exlipbab lipbab
    python benchmarks/bench_miqcqp.py --time-limit 30 --suite random --json out.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from lipopt.locations import external_nets
from lipopt.methods import REGISTRY, RunOptions, run_method
from lipopt.network.network import Network
from lipopt.spec import Box, Global, Norm, Question

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NETS = external_nets()


def _opts(**kw: object) -> RunOptions:
    """Benchmark runs must end: every solve in a child process killed at its hard deadline."""
    return RunOptions(isolate=True, **kw)

def load_npy_net(weights_file: Path) -> Network:
    """``<name>_weights.npy`` + ``<name>_biases.npy``: object arrays, weights stored in x out."""
    wf = Path(weights_file)
    bf = wf.with_name(wf.name.replace("_weights.npy", "_biases.npy"))
    ws = np.load(wf, allow_pickle=True)
    bs = np.load(bf, allow_pickle=True)
    name = re.sub(r"_weights\.npy$", "", wf.name)
    return Network.from_weights([np.asarray(w, float).T for w in ws],
                                [np.asarray(b, float).reshape(-1) for b in bs], name=name)


def random_net(widths: list[int], seed: int) -> Network:
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(widths[i + 1], widths[i])) / np.sqrt(widths[i]) for i in range(len(widths) - 1)]
    bs = [rng.normal(size=widths[i + 1]) * 0.5 for i in range(len(widths) - 1)]
    return Network.from_weights(ws, bs, name=f"rand {'-'.join(map(str, widths))} s{seed}")


def _row(name: str, q: str, r, extra: str = "") -> dict:
    st = r.stats or {}
    ub = st.get("ub", {})
    lbp = st.get("lb", {})
    return {
        "net": name, "question": q, "method": r.method, "kind": r.kind.value, "status": r.status.value,
        "lower": r.lower, "upper": r.upper, "gap": r.gap, "time": r.wall_time,
        "sources": st.get("bracket_sources"), "own": st.get("own_bracket"),
        "amb": st.get("ambiguous_relus"), "relus": st.get("relus"), "bounds": st.get("bound_method"),
        "warm": (st.get("warm_start") or {}).get("value"),
        "ub_time": ub.get("solve_time"), "lb_time": lbp.get("solve_time"), "ok": r.ok, "extra": extra,
        "message": r.message[:120],
    }


def _fmt(v, d=6) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{d}g}"
    return str(v)


def print_table(rows: list[dict]) -> None:
    cols = ["net", "question", "method", "extra", "kind", "status", "lower", "upper", "gap", "time", "amb",
            "relus", "bounds", "warm", "ub_time", "lb_time", "ok"]
    data = [[_fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(d[i]) for d in data)) if data else len(c) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for d in data:
        print("  ".join(x.ljust(w) for x, w in zip(d, widths, strict=True)))
    sys.stdout.flush()


def suite_exlipbab(tl: float, names: list[str] | None) -> list[dict]:
    rows = []
    files = ["iris_net_(4x6x6x3)", "wine_net_(11x12x12x1)", "abalone_net_(9x16x16x1)",
             "bike_net_(13x20x16x8x3)"]
    for f in files:
        if names and not any(n in f for n in names):
            continue
        net = load_npy_net(NETS / "exlipbab" / f"{f}_ReLU_weights.npy")
        q = Question(Norm.L2, Norm.L2)
        r = run_method("miqcqp", net, q, _opts(time_limit=tl))
        rows.append(_row(f, "global l2", r))
        print_table(rows[-1:])
    return rows


def suite_lipbab(tl: float, names: list[str] | None) -> list[dict]:
    rows = []
    for f in ["SDnet_(10,15,10,3)", "SDnet_(10,20,15,10,3)", "SDnet_(10,30,30,30,3)"]:
        if names and not any(n in f for n in names):
            continue
        net = load_npy_net(NETS / "lipbab" / f"{f}_weights.npy")
        q = Question(Norm.L2, Norm.L2, Box(0.0, 0.1))
        r = run_method("miqcqp", net, q, _opts(time_limit=tl))
        rows.append(_row(f, "l2 on [0,0.1]^10", r))
        print_table(rows[-1:])
    return rows


def suite_random(tl: float, names: list[str] | None) -> list[dict]:
    rows = []
    shapes = [[2, 6, 6, 1], [3, 8, 8, 2], [4, 10, 10, 2], [4, 12, 12, 1], [5, 20, 20, 2]]
    for widths in shapes:
        for seed in range(2):
            net = random_net(widths, seed)
            for qlabel, q, methods in [
                ("global l2", Question(Norm.L2, Norm.L2), ["miqcqp", "enumeration"]),
                ("linf box [-1,1]", Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0)),
                 ["miqcqp", "milp", "enumeration"]),
            ]:
                for m in methods:
                    if m not in REGISTRY:
                        continue
                    for t in ([1.0, tl] if m == "miqcqp" else [tl]):
                        r = run_method(m, net, q, _opts(time_limit=t))
                        rows.append(_row(net.name, qlabel, r, extra=f"T={t:g}"))
                        print_table(rows[-1:])
    return rows


ABLATIONS = {
    "default": {},
    "crown bounds (no LP)": {"bounds": "crown"},
    "interval bounds": {"bounds": "interval"},
    "no sign split": {"sign_split": False},
    "no local search": {"local_search": False},
    "no stable fixing": {"fix_stable": False},
    "no symmetry": {"symmetry": False},
    "no warm start/cut-off": {"warm_start": False, "cutoff": False},
    "warm start, no cut-off": {"cutoff": False},
    "interval direction bounds": {"direction_bounds": "interval"},
}


def suite_ablation(tl: float, names: list[str] | None) -> list[dict]:
    rows = []
    cases = [
        (load_npy_net(NETS / "exlipbab" / "iris_net_(4x6x6x3)_ReLU_weights.npy"), Question(Norm.L2, Norm.L2),
         "global l2"),
        (load_npy_net(NETS / "lipbab" / "SDnet_(10,20,15,10,3)_weights.npy"),
         Question(Norm.L2, Norm.L2, Box(0.0, 0.1)), "l2 on [0,0.1]^10"),
        (random_net([4, 12, 12, 2], 0), Question(Norm.L2, Norm.L2), "global l2"),
        (load_npy_net(NETS / "exlipbab" / "wine_net_(11x12x12x1)_ReLU_weights.npy"),
         Question(Norm.L2, Norm.L2), "global l2"),
    ]
    for net, q, ql in cases:
        if names and not any(n in net.name for n in names):
            continue
        for label, extra in ABLATIONS.items():
            r = run_method("miqcqp", net, q, _opts(time_limit=tl, extra=extra))
            rows.append(_row(net.name, ql, r, extra=label))
            print_table(rows[-1:])
    return rows


def _prior_cases() -> list[tuple[str, Network, Question, str]]:
    """The issue-13 cases of the prior bounds: LipSDP's 784-50-10 MNIST net (global l2), LipBaB's
    10-30-30-30-3 net (l2 on [0, 0.1]^10) and a random [8, 32, 32, 1] net (bench_milp.random_net, seed 0)
    over [-1, 1]^8 in l2 and l-inf."""
    import lipopt
    from benchmarks.bench_milp import random_net as milp_random_net

    cases = []
    mnist = NETS / "lipsdp" / "mnist_weights.mat"
    if mnist.exists():
        cases.append(("mnist 784-50-10", lipopt.load(str(mnist)), Question(Norm.L2, Norm.L2), "global l2"))
    sd = NETS / "lipbab" / "SDnet_(10,30,30,30,3)_weights.npy"
    if sd.exists():
        cases.append(("SDnet 10-30-30-30-3", load_npy_net(sd), Question(Norm.L2, Norm.L2, Box(0.0, 0.1)),
                      "l2 on [0,0.1]^10"))
    rnet = milp_random_net([8, 32, 32, 1], 0)
    cases.append(("random 8-32-32-1 s0", rnet, Question(Norm.L2, Norm.L2, Box(-1.0, 1.0)), "l2 on [-1,1]^8"))
    cases.append(("random 8-32-32-1 s0", rnet, Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0)),
                  "linf on [-1,1]^8"))
    return cases


def suite_prior(tl: float, names: list[str] | None) -> list[dict]:
    """``miqcqp`` with the prior bounds off, then on (lipopt.exact.prior), in the same process, beside
    the cheap methods run alone (lipsdp-fast, lipsdp-neuron without a limit, naive, grad-ascent)."""
    rows = []
    for name, net, q, ql in _prior_cases():
        if names and not any(n in name for n in names):
            continue
        for m in ("naive", "lipsdp-fast", "lipsdp-neuron", "grad-ascent"):
            qm = q if m == "grad-ascent" else q.with_(domain=Global())
            r = run_method(m, net, qm, _opts(time_limit=tl))
            rows.append(_row(name, ql, r, extra="alone (global question)" if m != "grad-ascent" else "alone"))
            print_table(rows[-1:])
        for on in (False, True):
            r = run_method("miqcqp", net, q, _opts(time_limit=tl, extra={"prior_bounds": on}))
            src = r.stats.get("bracket_sources") or {}
            rows.append(_row(name, ql, r, extra=f"prior {'on' if on else 'off'} (lower: {src.get('lower')}, "
                                                f"upper: {src.get('upper')})"))
            print_table(rows[-1:])
    return rows


SUITES = {"exlipbab": suite_exlipbab, "lipbab": suite_lipbab, "random": suite_random,
          "ablation": suite_ablation, "prior": suite_prior}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--time-limit", type=float, default=600.0, help="seconds per run (default 600)")
    ap.add_argument("--suite", nargs="+", default=["exlipbab", "lipbab"], choices=sorted(SUITES))
    ap.add_argument("--nets", nargs="*", default=None, help="only nets whose name contains one of these")
    ap.add_argument("--json", default=None, help="write the rows to this file (default "
                    "benchmarks/results/miqcqp.json)")
    args = ap.parse_args(argv)
    rows: list[dict] = []
    t0 = time.perf_counter()
    for s in args.suite:
        print(f"\n== suite {s} (time limit {args.time_limit:g} s per run)")
        rows += SUITES[s](args.time_limit, args.nets)
    print(f"\n== all ({time.perf_counter() - t0:.1f} s)")
    print_table(rows)
    from benchmarks import write_result

    text = json.dumps(rows, indent=1, default=str)
    if args.json:
        write_result(Path(args.json).name, text, Path(args.json).parent)
    else:
        write_result("miqcqp.json", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
