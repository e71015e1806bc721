"""CLIP's Table 1 (Bungert et al., SSVM 2021), with certified brackets of the trained nets' constants.

    python benchmarks/clip_table.py --data digits --epochs 30 --out /tmp/clip_table

Trains the rows Standard, Weight Reg. at three target accuracies and CLIP at three target accuracies
(same seed, same loop: :mod:`lipopt.train`), evaluates them (train / test accuracy, accuracy under
N(0, 1) noise and under l-inf PGD of radius ``--pgd-eps``, final lambda), writes each net
(``DIR/ROW.npz``, read by ``lipopt.load``) with its training record, and brackets its global constant
for each ``--norms`` with lipopt's methods: naive (UPPER), lipsdp-neuron (UPPER, l2), sampling and
grad-ascent (LOWER), CLIP's best pair re-evaluated in float64 (LOWER, the training norm), and with
``--exact`` the exact method of the norm (miqcqp for l2, milp for l-inf) under ``--time-limit``, whose
record is EXACT only when it closes. The certified l2 radius column is the mean over the test set of
margin / (sqrt(2) * best l2 upper bound) (0 for a misclassified point): a lower bound on the distance to
the nearest adversarial example.

Records go to ``DIR/records.jsonl`` (one JSON record per row and method, the training/evaluation
summaries as ``DIR/rows.json``); the table and the figure are rendered from those files
(``--render-only`` re-renders them) with :func:`lipopt.records.table`. Also printed: one CLIP epoch's
time over one standard epoch's (same process), the certified upper bound of the CLIP nets over the
standard net's, and CLIP's own pair LOWER bound over the certified upper bound of the same net.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: the paper's Table 1 (MNIST, FC 2x64 sigmoid): train, test, noise, PGD accuracy in %, lambda
PAPER_MNIST = {
    "Standard": (95.6, 89.8, 71.8, 25.3, 0.0), "Weight Reg.95": (93.1, 89.0, 71.4, 25.4, 0.0003),
    "Weight Reg.90": (89.8, 89.7, 71.9, 24.8, 0.0015), "Weight Reg.85": (84.8, 87.2, 72.3, 24.9, 0.0031),
    "CLIP95": (95.3, 90.7, 70.3, 24.4, 0.01), "CLIP90": (91.8, 91.6, 78.0, 36.2, 3.91),
    "CLIP85": (87.6, 87.2, 74.5, 37.7, 9.82),
}
#: ... and Fashion-MNIST (the CNN of Madry et al.)
PAPER_FASHION = {
    "Standard": (98.5, 92.0, 25.7, 1.9, 0.0), "Weight Reg.95": (94.8, 91.2, 26.9, 3.5, 0.0011),
    "Weight Reg.90": (89.8, 89.6, 28.1, 6.0, 0.0023), "Weight Reg.85": (85.3, 85.4, 34.2, 10.2, 0.0091),
    "CLIP95": (94.6, 91.9, 19.8, 9.1, 0.18), "CLIP90": (90.6, 88.9, 23.3, 13.0, 0.74),
    "CLIP85": (85.9, 83.1, 31.9, 14.9, 4.18),
}
ACC_COLUMNS = (("train_accuracy", "train %"), ("test_accuracy", "test %"), ("noise_accuracy", "noise %"),
               ("pgd_accuracy", "PGD %"))


def rows_to_train(targets: tuple[float, ...]) -> list[tuple[str, dict[str, Any]]]:
    rows: list[tuple[str, dict[str, Any]]] = [("Standard", {"regulariser": "none"})]
    for reg, label in (("weight", "Weight Reg."), ("clip", "CLIP")):
        rows += [(f"{label}{round(100 * t)}", {"regulariser": reg, "target_accuracy": t}) for t in targets]
    return rows


def _methods(norm: str, exact: bool) -> list[str]:
    if norm == "l2":
        return ["naive", "lipsdp-neuron", "sampling", "grad-ascent", *(["miqcqp"] if exact else [])]
    return ["naive", "sampling", "grad-ascent", *(["milp"] if exact else [])]


def certified_radius(net: Any, x: np.ndarray, y: np.ndarray, upper: float | None) -> float | None:
    """Mean over the points of margin / (sqrt(2) L2_upper), 0 where misclassified (float64 IR forward)."""
    if upper is None or upper <= 0:
        return None
    out = np.stack([net.forward(xi) for xi in x.reshape(len(x), -1).astype(np.float64)])
    top = out[np.arange(len(y)), y]
    other = out.copy()
    other[np.arange(len(y)), y] = -np.inf
    margin = np.maximum(top - other.max(axis=1), 0.0)
    return float(np.mean(margin / (math.sqrt(2.0) * upper)))


def epoch_cost_ratio(data: Any, args: argparse.Namespace, repeats: int = 3,
                     epochs: int = 3) -> dict[str, Any]:
    """One CLIP epoch's time over one standard epoch's: the two loops alternated ``repeats`` times in this
    process, ``epochs`` epochs each (fixed lambda, same net, data and batch size), ratio of the medians."""
    from lipopt.train.clip import train
    from lipopt.train.options import TrainOptions

    times: dict[str, list[float]] = {"none": [], "clip": []}
    for _ in range(repeats):
        for reg in ("none", "clip"):
            opts = TrainOptions(arch=args.arch, hidden=tuple(args.hidden), epochs=epochs, regulariser=reg,
                                lam=0.01, batch_size=args.batch_size, threads=args.threads, seed=args.seed,
                                clip={"n_pairs": args.pairs})
            res = train(data, opts)
            times[reg] += [h["epoch_time"] for h in res.history]
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"standard_epoch_s": med["none"], "clip_epoch_s": med["clip"], "ratio": med["clip"] / med["none"],
            "epochs_each": repeats * epochs, "n_pairs": args.pairs, "batch_size": args.batch_size}


def _train_row(name: str, kw: dict[str, Any], data: Any, args: argparse.Namespace, eval_opts: Any,
               out: Path) -> tuple[Any, dict[str, Any]]:
    """Train, evaluate and write one row's net; the loaded IR network and the row's summary."""
    from lipopt.network.load import load
    from lipopt.train.clip import train
    from lipopt.train.evaluate import evaluate_model
    from lipopt.train.options import TrainOptions
    from lipopt.train.record import write_training

    reg = kw["regulariser"]
    opts = TrainOptions(arch=args.arch, hidden=tuple(args.hidden), epochs=args.epochs, seed=args.seed,
                        threads=args.threads, lam=0.0, batch_size=args.batch_size, lr=args.lr,
                        momentum=args.momentum,
                        lam_step=args.clip_step if reg == "clip" else args.weight_step,
                        warmup_epochs=args.warmup_epochs, clip={"n_pairs": args.pairs},
                        select={"rule": args.select, "eps": args.pgd_eps, "points": args.select_points},
                        **kw)
    t0 = time.perf_counter()
    res = train(data, opts)
    wall = time.perf_counter() - t0
    ev = evaluate_model(res.module, data, eval_opts)
    stem = name.replace(" ", "_").replace(".", "")
    fname = f"{stem}.npz" if args.arch == "dense" else f"{stem}.onnx"
    rec = write_training(res, data, out / fname, ev, command="benchmarks/clip_table.py")
    net = load(out / fname)
    net.name = name
    epoch_times = [h["epoch_time"] for h in res.history]
    summary = {"row": name, "file": fname, "regulariser": reg,
               "target": kw.get("target_accuracy"), "lambda": res.selected_lam, "final_lambda": res.lam,
               "selected_epoch": res.selection["epoch"], "select_rule": res.selection["rule"],
               "epoch_time_median": float(np.median(epoch_times)), "train_wall": wall,
               "clip_estimate": (rec["clip_estimate"] or {}).get("value"),
               "clip_lower": (rec["clip_lower"] or {}).get("value"), **ev}
    return net, summary


def _global_brackets(net: Any, data: Any, summary: dict[str, Any], args: argparse.Namespace,
                     records: Any) -> None:
    """The certified bracket of the net's global constant for each --norms (records written)."""
    from lipopt.api import compare
    from lipopt.result import BoundKind, LipschitzResult, Verdict
    from lipopt.spec import make_question

    name = summary["row"]
    for norm in args.norms:
        q = make_question(norm)
        rs = compare(net, methods=_methods(norm, args.exact), question=q, time_limit=args.time_limit,
                     seed=args.seed, title=name)
        if norm == "l2" and summary["clip_lower"]:
            rs.append(LipschitzResult.from_bracket(
                "clip-pair", BoundKind.LOWER, summary["clip_lower"], None, Verdict.OK,
                network=name, question=q.bind(net).to_dict(),
                message="CLIP's best training pair re-evaluated in float64 on the written net"))
        for r in rs:
            d = r.to_dict()
            d.update({"row": name, "norm": norm})
            records.write(json.dumps(d) + "\n")
        summary[f"upper_{norm}"] = rs.best_upper
        summary[f"lower_{norm}"] = rs.best_lower
        summary[f"consistent_{norm}"] = rs.consistency().passed
        if norm == "l2":
            n = args.radius_points or len(data.y_test)
            summary["cert_radius_l2"] = certified_radius(net, data.x_test[:n], data.y_test[:n], rs.best_upper)
            summary["cert_radius_points"] = min(n, len(data.y_test))


def _local_brackets(net: Any, data: Any, summary: dict[str, Any], args: argparse.Namespace,
                    records: Any) -> None:
    """Local brackets, nominal-point bounds and certified radii at --local-points test points."""
    from lipopt.train.certified import LocalEvalOptions, local_evaluation

    opts = LocalEvalOptions(points=args.local_points, eps_l2=args.local_eps_l2,
                            eps_linf=args.pgd_eps if args.local_eps_linf is None else args.local_eps_linf,
                            norms=tuple(args.local_norms), methods_l2=tuple(args.local_methods_l2),
                            methods_linf=tuple(args.local_methods_linf), time_limit=args.local_time_limit,
                            seed=args.seed)
    uppers = {n: summary.get(f"upper_{n}") for n in ("l2", "linf")}
    local, recs = local_evaluation(net, data.x_test, data.y_test, opts, uppers)
    for d in recs:
        d["row"] = summary["row"]
        records.write(json.dumps(d) + "\n")
    summary["local"] = local


def run(args: argparse.Namespace) -> None:
    from lipopt.train.clip import train
    from lipopt.train.data import load_data
    from lipopt.train.evaluate import EvalOptions
    from lipopt.train.options import TrainOptions

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_data(args.data, seed=args.seed, limit=args.limit)
    eval_opts = EvalOptions(eps=args.pgd_eps, seed=args.seed)
    records = (out / "records.jsonl").open("w")
    local_records = (out / "local_records.jsonl").open("w")
    summaries = []
    # one throw-away epoch of each loop first: torch's one-off start-up costs stay out of the epoch times
    for reg in ("none", "clip"):
        train(data, TrainOptions(arch=args.arch, hidden=tuple(args.hidden), epochs=1, regulariser=reg,
                                 lam=0.01, threads=args.threads, clip={"n_pairs": args.pairs}))
    timing = epoch_cost_ratio(data, args, repeats=args.timing_repeats) if args.timing_repeats else None
    if timing:
        print(f"epoch cost: CLIP {timing['clip_epoch_s']:.4g} s, standard {timing['standard_epoch_s']:.4g} "
              f"s, ratio {timing['ratio']:.2f}", file=sys.stderr, flush=True)
    for name, kw in rows_to_train(tuple(args.targets)):
        net, summary = _train_row(name, kw, data, args, eval_opts, out)
        _global_brackets(net, data, summary, args, records)
        if args.local_points:
            _local_brackets(net, data, summary, args, local_records)
        summaries.append(summary)
        print(f"{name}: test {summary['test_accuracy']:.3f} PGD {summary['pgd_accuracy']:.3f} lambda "
              f"{summary['lambda']:.4g} (epoch {summary['selected_epoch']}) L in "
              f"[{summary.get('lower_' + args.norms[0])}, {summary.get('upper_' + args.norms[0])}] "
              f"({summary['train_wall']:.1f} s training)", file=sys.stderr, flush=True)
    records.close()
    local_records.close()
    meta = {"data": data.describe(), "epochs": args.epochs, "hidden": args.hidden, "arch": args.arch,
            "seed": args.seed, "select": args.select, "lr": args.lr, "momentum": args.momentum,
            "radius_points": args.radius_points or len(data.y_test),
            "targets": args.targets, "pgd": {"eps": eval_opts.eps, "step": eval_opts.pgd_step,
                                             "iters": eval_opts.iters}, "noise_sigma": eval_opts.sigma,
            "time_limit": args.time_limit, "norms": args.norms, "timing": timing,
            "local": None if not args.local_points else {
                "points": args.local_points, "eps_l2": args.local_eps_l2,
                "eps_linf": args.pgd_eps if args.local_eps_linf is None else args.local_eps_linf,
                "norms": args.local_norms, "time_limit": args.local_time_limit}}
    (out / "rows.json").write_text(json.dumps({"meta": meta, "rows": summaries}, indent=1))


def _frame(out: Path) -> tuple[Any, list[dict[str, Any]], dict[str, Any]]:
    """A DataFrame in the layout of :func:`lipopt.records.load` (one row per table cell)."""
    import pandas as pd

    from lipopt.result import LipschitzResult

    saved = json.loads((out / "rows.json").read_text())
    rows: list[dict[str, Any]] = []

    def plain(row: str, col: str, value: float | None) -> None:
        rows.append({"network": row, "question": "", "method": col, "seed": 0, "kind": "-", "value": value,
                     "lower": None, "upper": None, "verdict": "ok", "stop": "completed", "failed": False,
                     "timed_out": False, "time_s": 0.0, "method_time_s": 0.0, "gap": None, "ratio": None})

    for s in saved["rows"]:
        for key, col in ACC_COLUMNS:
            plain(s["row"], col, 100.0 * s[key])
        plain(s["row"], "lambda", s["lambda"])
        if "selected_epoch" in s:
            plain(s["row"], "epoch", s["selected_epoch"])
    multi = len(saved["meta"]["norms"]) > 1
    for line in (out / "records.jsonl").read_text().splitlines():
        d = json.loads(line)
        fields = LipschitzResult.__dataclass_fields__
        r = LipschitzResult.from_dict({k: v for k, v in d.items() if k in fields})
        rows.append({"network": d["row"], "question": d["norm"],
                     "method": f"{r.method} {d['norm']}" if multi else r.method, "seed": 0,
                     "kind": "FAILED" if r.failed else (r.kind.value if r.value is not None else "-"),
                     "value": None if r.failed else r.value, "lower": r.lower, "upper": r.upper,
                     "verdict": r.verdict.value, "stop": r.stop.value, "failed": r.failed,
                     "timed_out": r.stop.value == "time_limit", "time_s": r.wall_time,
                     "method_time_s": r.wall_time, "gap": r.gap, "ratio": None})
    for s in saved["rows"]:
        for norm in saved["meta"]["norms"]:  # the combined certified bracket of the row (all methods)
            for side, kind in (("lower", "LOWER"), ("upper", "UPPER")):
                plain(s["row"], f"best {side} {norm}", s.get(f"{side}_{norm}"))
                rows[-1]["kind"] = kind
        plain(s["row"], "cert. radius l2 (global U, test set)", s.get("cert_radius_l2"))
        _local_cells(s, plain, rows)
    return pd.DataFrame(rows), saved["rows"], saved["meta"]


#: the local columns (means over the test points): summary key, column, kind
LOCAL_COLUMNS = (("local_lower_l2", "local l2 LOWER", "LOWER"), ("local_upper_l2", "local l2 UPPER", "UPPER"),
                 ("local_lower_linf", "local linf LOWER", "LOWER"),
                 ("local_upper_linf", "local linf UPPER", "UPPER"),
                 ("nominal_upper_l2", "nominal l2 UPPER (local-affine)", "UPPER"),
                 ("radius_local_l2", "cert. radius l2 (local bound)", "-"),
                 ("radius_global_l2", "cert. radius l2 (global U)", "-"))


def _local_cells(s: dict[str, Any], plain: Any, rows: list[dict[str, Any]]) -> None:
    local = s.get("local")
    if not local:
        return
    for key, col, kind in LOCAL_COLUMNS:
        if key in local:
            plain(s["row"], col, local[key])
            rows[-1]["kind"] = kind


def _local_note(meta: dict[str, Any]) -> str:
    loc = meta.get("local")
    if not loc:
        return ""
    return (f"; local columns: means over {loc['points']} seeded test points of the certified bracket on the "
            f"l2 ball of radius {loc['eps_l2']} and the l-inf ball of radius {loc['eps_linf']} (UPPER "
            "includes the global UPPER), of the local-affine bound on the nominal-point l2 constant, and of "
            "the certified l2 radius (0 where misclassified) from the analytic local bound and from the "
            "global upper bound")


def render(out: Path, fmt: str) -> str:
    import pandas as pd

    from lipopt.records import table

    df, rows, meta = _frame(out)
    local = df["method"].isin([col for _, col, _ in LOCAL_COLUMNS])
    text = [f"data {meta['data']['name']} ({meta['data']['n_train']} train / {meta['data']['n_test']} test), "
            f"{meta.get('arch', 'dense')} ReLU {meta['hidden']}, {meta['epochs']} epochs, "
            f"lr {meta.get('lr', 0.1)}, momentum {meta.get('momentum', 0.9)}, "
            f"seed {meta['seed']}; noise N(0, "
            f"{meta['noise_sigma']}^2); l-inf PGD eps {meta['pgd']['eps']}, step {meta['pgd']['step']:.4g}, "
            f"{meta['pgd']['iters']} iterations; global constants, methods' time limit "
            f"{meta['time_limit']} s; checkpoint: {meta.get('select', 'last')}; test-set radius over "
            f"{meta.get('radius_points', meta['data']['n_test'])} test points" + _local_note(meta),
            table(df[~local], rows="network", cols="method", fmt=fmt)]
    if local.any():
        text.append("Local constants and certified radii (means over the test points; a different quantity "
                    "per column, so no column is compared with the global ones):")
        text.append(table(df[local], rows="network", cols="method", fmt=fmt))
    fashion = meta["data"]["name"] == "fashion"
    paper_rows = PAPER_FASHION if fashion else PAPER_MNIST
    paper = pd.DataFrame([{"network": f"paper {k}", "question": "", "method": col, "seed": 0, "kind": "-",
                           "value": v, "lower": None, "upper": None, "verdict": "ok", "stop": "completed",
                           "failed": False, "timed_out": False, "time_s": 0.0, "method_time_s": 0.0,
                           "gap": None, "ratio": None}
                          for k, vals in paper_rows.items()
                          for col, v in zip([c for _, c in ACC_COLUMNS] + ["lambda"], vals, strict=True)])
    which = "Fashion-MNIST (CNN of Madry et al.)" if fashion else "MNIST (FC 2x64 sigmoid)"
    text.append(f"The paper's Table 1, {which}; its PGD settings are not in our copy:")
    text.append(table(paper, rows="network", cols="method", fmt=fmt))
    std = next(r for r in rows if r["regulariser"] == "none")
    lines = []
    for r in rows:
        if r["regulariser"] == "none":
            continue
        up = r.get("upper_l2")
        up_ratio = None if up is None or not std.get("upper_l2") else up / std["upper_l2"]
        gap = r["clip_lower"] / up if r.get("clip_lower") and up else None
        lines.append(f"{r['row']}: certified l2 upper "
                     f"{'-' if up is None else f'{up:.4g}'} = "
                     f"{'-' if up_ratio is None else f'{up_ratio:.3g}'}x standard's "
                     f"({'-' if std.get('upper_l2') is None else format(std['upper_l2'], '.4g')})"
                     + ("" if gap is None else f"; CLIP pair LOWER {r['clip_lower']:.4g} = {gap:.3g} of it"))
    timing = meta.get("timing")
    if timing:
        lines.insert(0, f"epoch cost (alternated runs, {timing['epochs_each']} epochs each, medians): CLIP "
                        f"{timing['clip_epoch_s']:.4g} s / standard {timing['standard_epoch_s']:.4g} s = "
                        f"{timing['ratio']:.2f}x ({timing['n_pairs']} pairs, batch {timing['batch_size']})")
    text.append("\n".join(lines))
    return "\n\n".join(text) + "\n"


def figure(out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, rows, meta = _frame(out)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    markers = {"none": "o", "weight": "s", "clip": "^"}
    for key, label, colour in (("test_accuracy", "clean test", "tab:blue"),
                               ("pgd_accuracy", f"PGD l-inf eps={meta['pgd']['eps']}", "tab:red"),
                               ("noise_accuracy", f"noise N(0,{meta['noise_sigma']}^2)", "tab:green")):
        first = True
        for r in rows:
            if r.get("upper_l2") is None:
                continue
            ax.scatter(r["upper_l2"], 100 * r[key], marker=markers[r["regulariser"]], color=colour,
                       label=label if first else None)
            first = False
            if key == "test_accuracy":
                ax.annotate(r["row"], (r["upper_l2"], 100 * r[key]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    ups = [r["upper_l2"] for r in rows if r.get("upper_l2")]
    wide = bool(ups) and max(ups) > 10 * min(ups)
    if wide:
        ax.set_xscale("log")
    ax.set_xlabel("certified upper bound of the global l2 Lipschitz constant" + (" (log)" if wide else ""))
    ax.set_ylabel("accuracy on the test set (%)")
    ax.set_title(f"{meta['data']['name']}: accuracy against certified upper bound\n"
                 "(o standard, s weight reg., ^ CLIP)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths = [out / "accuracy_vs_upper.png", out / "accuracy_vs_upper.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits", choices=("digits", "mnist", "fashion"))
    p.add_argument("--out", default="clip_table_out")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--arch", default="dense", choices=("dense", "cnn"),
                   help="cnn: conv 16, 32 (3x3, ReLU, 2x2 max-pool), then the dense --hidden layers")
    p.add_argument("--hidden", type=lambda s: [int(w) for w in s.split(",")], default=[64, 64])
    p.add_argument("--targets", type=lambda s: [float(t) for t in s.split(",")], default=[0.95, 0.9, 0.85])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--pairs", type=int, default=128)
    p.add_argument("--clip-step", type=float, default=0.05, help="CLIP's lambda increment")
    p.add_argument("--weight-step", type=float, default=5e-4, help="weight regularisation's lambda increment")
    p.add_argument("--warmup-epochs", type=int, default=2)
    p.add_argument("--pgd-eps", type=float, default=0.1)
    p.add_argument("--select", default="pgd", choices=("last", "target", "pgd"),
                   help="checkpoint kept: pgd = the paper's (highest PGD accuracy at --pgd-eps on "
                        "--select-points training images), target = closest to the target at or above it")
    p.add_argument("--select-points", type=int, default=512)
    p.add_argument("--radius-points", type=int, default=0,
                   help="test points of the global-bound radius column (the first N; 0: all)")
    p.add_argument("--local-points", type=int, default=5, help="test points of the local columns (0: none)")
    p.add_argument("--local-eps-l2", type=float, default=1.0, help="l2 ball radius of the local constants")
    p.add_argument("--local-eps-linf", type=float, default=None,
                   help="l-inf ball radius of the local constants (default --pgd-eps)")
    p.add_argument("--local-norms", type=lambda s: s.split(","), default=["l2", "linf"])
    p.add_argument("--local-methods-l2", type=lambda s: s.split(","), default=["naive", "sampling"])
    p.add_argument("--local-methods-linf", type=lambda s: s.split(","),
                   default=["naive", "sampling", "lp-relax"])
    p.add_argument("--local-time-limit", type=float, default=10.0, help="per method and point")
    p.add_argument("--timing-repeats", type=int, default=3, help="epoch-cost runs (0: skip)")
    p.add_argument("--norms", type=lambda s: s.split(","), default=["l2"], help="l2 and/or linf")
    p.add_argument("--exact", action="store_true", help="also the exact method (miqcqp / milp)")
    p.add_argument("--time-limit", type=float, default=30.0, help="per method and net")
    p.add_argument("--limit", type=int, default=None, help="fashion: training images kept")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--format", default="text", choices=("text", "markdown", "latex", "csv"))
    p.add_argument("--render-only", action="store_true", help="render the table and figure of --out")
    args = p.parse_args(argv)
    out = Path(args.out)
    if not args.render_only:
        run(args)
    text = render(out, args.format)
    suffix = {"text": "txt", "markdown": "md", "latex": "tex", "csv": "csv"}[args.format]
    (out / f"table.{suffix}").write_text(text)
    print(text)
    for f in figure(out):
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
