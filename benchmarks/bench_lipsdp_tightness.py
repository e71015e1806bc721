"""How tight is LipSDP: lipsdp-neuron / -layer / -fast / -local against the exact constant and the norm
product, on the trained networks of the external projects (issue 11's tightness table).

    python -m benchmarks.bench_lipsdp_tightness [--exact-limit 120] [--nets iris,wine] [--out DIR]

Rows:

* **global l2** on ExLipBaB's nets (iris 4-6-6-3, wine 11-12-12-1, abalone 9-16-16-1, bike
  13-20-16-8-3, wine 11-24-24-1), LipBaB's SDnets and iris 4-5-5-3, ECLipsE's 2-layer net, GLipSDP's
  MLPs and LipSDP's own random / MNIST nets: ``miqcqp`` gives the exact value or a certified bracket where
  it closes within ``--exact-limit`` seconds (small nets only), ``grad-ascent`` a certified lower bound
  everywhere;
* **local l2 over LipBaB's box [0, 0.1]^10** on the SDnets (the setting of LipBaB's paper):
  ``lipsdp-local`` against the exact local value (``miqcqp`` on the box) and the global bounds.

Each bound's ratio is to the exact value, else to the best certified lower bound (marked ``>=``), so a
ratio of 1.000 is tight and every ratio is an upper estimate of the true looseness. Every value is the
record's certified one (kind shown); a failed record shows no number. Written to
``benchmarks/results/lipsdp_tightness.md``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from lipopt.locations import external_nets

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

EXT = external_nets()
#: (name, path under the external folder, exact attempted): miqcqp only where it can close
GLOBAL_NETS = [
    ("iris 4-6-6-3", "exlipbab/iris_net_(4x6x6x3)_ReLU_weights.npy", True),
    ("wine 11-12-12-1", "exlipbab/wine_net_(11x12x12x1)_ReLU_weights.npy", True),
    ("abalone 9-16-16-1", "exlipbab/abalone_net_(9x16x16x1)_ReLU_weights.npy", True),
    ("bike 13-20-16-8-3", "exlipbab/bike_net_(13x20x16x8x3)_ReLU_weights.npy", True),
    ("wine 11-24-24-1", "exlipbab/wine_net_(11x24x24x1)_ReLU_weights.npy", True),
    ("LipBaB iris 4-5-5-3", "lipbab/iris_net_(4,5,5,3)_weights.npy", True),
    ("SDnet 10-15-10-3", "lipbab/SDnet_(10,15,10,3)_weights.npy", True),
    ("SDnet 10-20-15-10-3", "lipbab/SDnet_(10,20,15,10,3)_weights.npy", True),
    ("SDnet 10-30-30-30-3", "lipbab/SDnet_(10,30,30,30,3)_weights.npy", False),
    ("ECLipsE 2-layer", "eclipse/lyr2n80test1.npz", False),
    ("GLipSDP fnn2", "glipsdp/fnn2_seed0_weights.mat", False),
    ("GLipSDP fnn3", "glipsdp/fnn3_seed0_weights.mat", False),
    ("GLipSDP mlp L3 W16", "glipsdp/mlp_L3_W16.onnx", False),
    ("LipSDP random 2-10-30-20-2", "lipsdp/random_weights.mat", False),
    ("LipSDP MNIST 784-50-10", "lipsdp/mnist_weights.mat", False),
]
LOCAL_NETS = [n for n in GLOBAL_NETS if n[1].startswith("lipbab/SDnet")]
BOUNDS = ["naive", "lipsdp-fast", "lipsdp-layer", "lipsdp-neuron"]


def _opts(time_limit: float | None = None):
    from lipopt.methods import RunOptions

    return RunOptions(time_limit=time_limit, isolate=time_limit is not None, seed=0)


def _cell(r) -> tuple[float | None, str]:
    """The certified value and its kind ('-' when the record shows none)."""
    if r is None or r.value is None:
        return None, "-" if r is None else r.verdict.value
    return float(r.value), r.kind.value


def _rows_for(name: str, net, question, methods: list[str], exact_limit: float | None,
              label: str) -> dict:
    from lipopt.methods import run_method

    row: dict = {"net": name, "question": label, "cells": {}}
    for m in methods:
        t = time.perf_counter()
        r = run_method(m, net, question, _opts(exact_limit if m == "miqcqp" else None))
        row["cells"][m] = (*_cell(r), time.perf_counter() - t, r)
    return row


def _reference(row: dict) -> tuple[float | None, str]:
    """The exact value when a record is EXACT, else the best certified lower bound ('>=')."""
    best, how = None, ""
    for v, kind, _t, r in row["cells"].values():
        if kind == "EXACT":
            return v, "="
        lo = r.lower if r is not None and r.ok else None
        if lo is not None and (best is None or lo > best):
            best, how = float(lo), ">="
    return best, how


def render(rows: list[dict], methods: list[str]) -> str:
    head = ["net", "question", "exact / best lower", *methods]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        ref, how = _reference(row)
        cells = []
        for m in methods:
            if m not in row["cells"]:
                cells.append("")
                continue
            v, kind, t, _r = row["cells"][m]
            if v is None:
                cells.append(f"{kind} ({t:.1f} s)")
                continue
            ratio = f", {v / ref:.3f}x" if ref and kind in ("UPPER", "EXACT") else ""
            cells.append(f"{kind} {v:.5g}{ratio} ({t:.1f} s)")
        refs = "-" if ref is None else f"{how} {ref:.6g}"
        lines.append("| " + " | ".join([row["net"], row["question"], refs, *cells]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import split_names, write_result
    from lipopt import load
    from lipopt.spec import Box, Norm, Question

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exact-limit", type=float, default=120.0, help="seconds for each miqcqp run")
    ap.add_argument("--nets", nargs="*", default=None, help="only nets whose name contains one of these")
    ap.add_argument("--no-local", action="store_true", help="leave out the local rows")
    ap.add_argument("--out", default=None, help="folder of the result file (default benchmarks/results)")
    args = ap.parse_args(argv)
    want = [w.lower() for w in split_names(args.nets)]
    pick = [n for n in GLOBAL_NETS if not want or any(w in n[0].lower() for w in want)]
    rows: list[dict] = []
    glob_methods = ["miqcqp", "grad-ascent", *BOUNDS]
    for name, rel, exact in pick:
        net = load(EXT / rel)
        methods = glob_methods if exact else glob_methods[1:]
        rows.append(_rows_for(name, net, Question(Norm.L2, Norm.L2), methods, args.exact_limit, "global l2"))
        print(render(rows[-1:], glob_methods), flush=True)
    loc_methods = ["miqcqp", "grad-ascent", "naive", "lipsdp-neuron", "lipsdp-local"]
    if not args.no_local:
        for name, rel, exact in (n for n in LOCAL_NETS if n in pick):
            net = load(EXT / rel)
            q = Question(Norm.L2, Norm.L2, Box(0.0, 0.1))
            methods = loc_methods if exact else loc_methods[1:]
            rows.append(_rows_for(name, net, q, methods, args.exact_limit, "l2 on [0, 0.1]^10"))
            print(render(rows[-1:], loc_methods), flush=True)
    glob = render([r for r in rows if r["question"] == "global l2"], glob_methods)
    loc = render([r for r in rows if r["question"] != "global l2"], loc_methods)
    text = ("# LipSDP tightness (bench_lipsdp_tightness.py)\n\n"
            f"miqcqp time limit {args.exact_limit:g} s; value, ratio to the exact value (or the best "
            "certified lower bound), time.\n\n## Global l2\n\n" + glob + "\n\n## Local l2 on [0, 0.1]^10\n\n"
            + loc + "\n")
    write_result("lipsdp_tightness.md", text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
