"""Issue 11: LipSDP time against depth, random MLPs of width 64 (10 outputs), dense and chordal interior-point
forms against the first-order descent and ECLipsE-Fast's closed form, every value certified in float64.

    python -m benchmarks.bench_lipsdp_depth [--depths 8,16,32,64] [--width 64] [--limit 600]
                                            [--forms fast,first-order,first-order-adam,chordal,dense]
                                            [--out DIR]

Weights N(0, 1/width); one table (Markdown, printed and written to DIR/lipsdp_depth.md) and one plot
(DIR/lipsdp_depth.png: seconds against depth, log scale). A form whose LMI is over the solver's size limit
or that ran past ``--limit`` seconds is reported as such, with no value.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FORMS = {
    "fast": ("lipsdp-fast", {}),
    "first-order": ("lipsdp-neuron", {"sdp_algorithm": "first-order"}),
    # the descent's earlier optimiser, as the same-process baseline of the L-BFGS default
    "first-order-adam": ("lipsdp-neuron", {"sdp_algorithm": "first-order", "sdp_fo_optimizer": "adam"}),
    "chordal": ("lipsdp-neuron", {"sdp_algorithm": "solver", "sdp_chordal": "on", "sdp_max_size": 100_000,
                                  "sdp_split": False}),
    "dense": ("lipsdp-neuron", {"sdp_algorithm": "solver", "sdp_chordal": "off", "sdp_max_size": 100_000,
                                "sdp_split": False}),
}


def net_of(depth: int, width: int, seed: int = 0):
    import numpy as np

    from lipopt.network.network import Network

    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(width, width)) / np.sqrt(width) for _ in range(depth)]
    return Network.from_weights([*ws, rng.normal(size=(10, width)) / np.sqrt(width)],
                                name=f"mlp width {width} depth {depth}")


def run(depths: list[int], width: int, forms: list[str], limit: float, threads: int | None) -> list[dict]:
    from lipopt.methods import RunOptions, run_method
    from lipopt.spec import Norm, Question

    q = Question(Norm.L2, Norm.L2)
    rows = []
    for d in depths:
        net = net_of(d, width)
        naive = run_method("naive", net, q).value
        for form in forms:
            method, extra = FORMS[form]
            t = time.perf_counter()
            r = run_method(method, net, q, RunOptions(time_limit=limit, threads=threads, extra=extra))
            rows.append({"depth": d, "form": form, "value": r.value, "naive": naive,
                         "status": r.verdict.value if r.value is None else r.stop.value,
                         "seconds": time.perf_counter() - t, "iterations": r.stats.get("iterations")})
            print(rows[-1], flush=True)
    return rows


def render(rows: list[dict]) -> str:
    lines = ["| depth | form | certified value | naive product | value / naive | status | seconds |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        v = "-" if r["value"] is None else f"{r['value']:.6g}"
        ratio = "-" if r["value"] is None else f"{r['value'] / r['naive']:.3g}"
        lines.append(f"| {r['depth']} | {r['form']} | {v} | {r['naive']:.6g} | {ratio} | {r['status']} | "
                     f"{r['seconds']:.1f} |")
    return "\n".join(lines)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, bx) = plt.subplots(1, 2, figsize=(10, 4))
    for form in dict.fromkeys(r["form"] for r in rows):
        done = [r for r in rows if r["form"] == form and r["value"] is not None]
        if done:
            depths = [r["depth"] for r in done]
            ax.plot(depths, [r["seconds"] for r in done], marker="o", label=form)
            bx.plot(depths, [r["value"] / r["naive"] for r in done], marker="o", label=form)
    ax.set_xlabel("hidden layers")
    ax.set_ylabel("seconds to a certified bound")
    ax.set_yscale("log")
    ax.set_title("LipSDP-Neuron: time against depth")
    bx.set_xlabel("hidden layers")
    bx.set_ylabel("certified bound / norm product")
    bx.set_yscale("log")
    bx.set_title("tightness against depth")
    for a in (ax, bx):
        a.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", default="8,16,32,64")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--forms", default="fast,first-order,first-order-adam,chordal,dense")
    ap.add_argument("--limit", type=float, default=600.0, help="time limit per solve (seconds)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    rows = run([int(d) for d in args.depths.split(",")], args.width, args.forms.split(","), args.limit,
               args.threads)
    table = render(rows)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    head = "# LipSDP time against depth (bench_lipsdp_depth.py)\n\n"
    (out / "lipsdp_depth.md").write_text(head + table + "\n")
    plot(rows, out / "lipsdp_depth.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
