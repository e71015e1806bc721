"""Benchmark of the analytic bounds (Avant & Morgansen's local bound, the global product, row norms).

    python -m benchmarks.bench_analytic [--nets lenet,cifar,vgg16,alexnet] [--eps 0.001] [--threads 2]
    python benchmarks/bench_analytic.py --nets cifar --rownorms
    python -m benchmarks.bench_analytic --nets lenet,cifar --eps 0.001,0.01 --baseline

For each network: the certified local bound at eps (first call, which also computes the cached global
layer norms, and a warm call), the power-iteration estimate (paper-style, NOT a bound), the global
product, and the spectral method used per layer. ``--fast`` adds a run where only small layers get
exact spectral norms (larger ones: rigorous Fourier / Schur bounds). ``--rownorms`` compares the
one-pass row norms with the basis-vector reference on every conv layer (VGG: the reference only on a
random subsample of rows, its time extrapolated to all rows). ``--baseline`` adds, in the same process
and before the default run, the previous certificates (``SpectralOptions(banded=False,
fourier_taps=False)``: dense Cholesky of the Gram matrix, per-frequency K^H K with a power iteration) and
prints the time ratios baseline / default and the relative difference of the bounds (the default must be
the same to 1e-9 relative, or tighter). Paper targets (GTX 1080 Ti, power
iteration): MNIST 0.1 s, CIFAR-10 1 s, VGG-16 52 min.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from lipopt.locations import external_nets

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

AVANT = external_nets() / "avant"


def _image(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    from lipopt.cli_certify import read_input

    return read_input(str(path), shape)


def load_net(name: str) -> tuple:
    """(network, x0) for a benchmark network name."""
    if name in ("lenet", "cifar"):
        import lipopt

        ckpt, img = (("mnist_lenet_ckpt_99.ckpt", "mnist_8.png") if name == "lenet"
                     else ("cifar10_net_ckpt_499.ckpt", "cifar10_dog4.png"))
        net = lipopt.load(str(AVANT / ckpt), check=False)
        return net, _image(AVANT / img, net.input_shape)
    from lipopt.zoo import imagenet

    net = imagenet.vgg16_network(0) if name == "vgg16" else imagenet.alexnet_network(0)
    x0 = np.random.default_rng(0).random(net.input_size)
    return net, x0


def bench_local(name: str, eps: float, fast: bool, power_iters: int | None,
                baseline: bool = False) -> list[dict]:
    from lipopt.analytic.local_bound import LocalBoundComputer, LocalOptions
    from lipopt.analytic.spectral import SpectralOptions

    net, x0 = load_net(name)
    big = name in ("vgg16", "alexnet")
    rows = []
    # big nets: no power-iteration estimate by default (100 conv + transposed conv passes per layer)
    settings = [("certified", SpectralOptions(power_iters=0 if big else 100))]
    if baseline:
        settings.insert(0, ("baseline", SpectralOptions(power_iters=0 if big else 100, banded=False,
                                                        fourier_taps=False)))
    if fast:
        settings.append(("fast", SpectralOptions(cholesky_limit=1000, power_iters=0 if big else 100)))
        if big:  # fast first: no Fourier bound either (Schur bounds on the large convolutions)
            settings = [("fast", SpectralOptions(cholesky_limit=1000, power_iters=0, fourier=False)),
                        settings[0]]
    if power_iters is not None:
        settings = [(k, SpectralOptions(**{**s.__dict__, "power_iters": power_iters})) for k, s in settings]
    for label, so in settings:
        t0 = time.perf_counter()
        comp = LocalBoundComputer(net, x0, None, LocalOptions(spectral=so))
        lb = comp.bound(eps)
        t_first = time.perf_counter() - t0
        t1 = time.perf_counter()
        lb = comp.bound(eps, with_global=False) if not big else lb
        t_warm = time.perf_counter() - t1 if not big else float("nan")
        methods = ",".join(sorted({b.method for b in lb.blocks if b.kind != "maxpool"}))
        rows.append({"net": name, "setting": label, "eps": eps, "local_upper": lb.value,
                     "estimate": lb.estimate, "global": comp.global_bound(), "first_s": t_first,
                     "warm_s": t_warm, "methods": methods})
    return rows


def bench_rownorms(name: str, max_rows: int | None) -> list[dict]:
    import torch

    from lipopt.analytic.linops import ConvOp
    from lipopt.analytic.rownorms import row_norms_sq, row_norms_sq_reference
    from lipopt.network.layers import Conv2d

    net, _ = load_net(name)
    rng = np.random.default_rng(0)
    out = []
    for i, la in enumerate(net.layers):
        if not isinstance(la, Conv2d):
            continue
        op = ConvOp(la, net.shapes[i], torch.device("cpu"))
        d = torch.as_tensor((rng.random(op.in_shape) > 0.5).astype(np.float64))
        t0 = time.perf_counter()
        fast = row_norms_sq(op, d).reshape(-1)
        t_fast = time.perf_counter() - t0
        n = op.n_out
        rows = None if max_rows is None or n <= max_rows else np.sort(rng.choice(n, max_rows, replace=False))
        t0 = time.perf_counter()
        ref = row_norms_sq_reference(op, d, rows=rows).reshape(-1)
        t_ref = time.perf_counter() - t0
        k = n if rows is None else rows.size
        t_ref_all = t_ref * n / k
        f = fast if rows is None else fast[torch.as_tensor(rows)]
        rel = float(((f - ref).abs() / ref.abs().clamp_min(1e-300)).max())
        out.append({"net": name, "layer": i, "shape": "x".join(map(str, op.in_shape)), "rows": n,
                    "compared": k, "one_pass_s": t_fast, "reference_s": t_ref_all,
                    "extrapolated": rows is not None, "speedup": t_ref_all / max(t_fast, 1e-9),
                    "max_rel": rel})
    return out


NET_ALIASES = {"cifar10": "cifar", "vgg": "vgg16"}


def main(argv: list[str] | None = None) -> int:
    from benchmarks import split_names, write_result

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("--nets", nargs="+", default=["lenet,cifar"],
                    help="lenet, cifar (cifar10), vgg16, alexnet: separated by spaces or commas")
    ap.add_argument("--eps", default="1e-3", help="radius, or several separated by commas")
    ap.add_argument("--baseline", action="store_true",
                    help="also time the previous certificates (dense Cholesky, per-frequency K^H K) first")
    ap.add_argument("--threads", type=int, default=2, help="BLAS / torch threads")
    ap.add_argument("--fast", action="store_true",
                    help="also run with exact spectral norms on small layers only")
    ap.add_argument("--power-iters", type=int, default=None, help="power-iteration estimate iterations")
    ap.add_argument("--rownorms", action="store_true", help="one-pass vs basis-vector row norms")
    ap.add_argument("--no-local", action="store_true", help="skip the local-bound timing")
    ap.add_argument("--max-rows", type=int, default=32, help="reference rows per layer on big nets")
    ap.add_argument("--out", default=None, help="folder of the result file (default benchmarks/results)")
    args = ap.parse_args(argv)
    from lipopt.analytic._threads import limit_threads

    nets = [NET_ALIASES.get(n, n) for n in split_names(args.nets)]
    unknown = sorted(set(nets) - {"lenet", "cifar", "vgg16", "alexnet"})
    if unknown:
        ap.error(f"unknown nets {unknown}; choose from lenet, cifar (cifar10), vgg16, alexnet")
    lines: list[str] = []

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    with limit_threads(args.threads):
        if not args.no_local:
            emit(f"{'net':8} {'setting':10} {'eps':>7} {'local UPPER':>13} {'estimate':>13} {'global':>13} "
                 f"{'first_s':>8} {'warm_s':>8}  spectral methods")
            ratios: list[str] = []
            for n in nets:
                for eps in (float(e) for e in args.eps.split(",")):
                    rows = bench_local(n, eps, args.fast, args.power_iters, args.baseline)
                    for r in rows:
                        est = "-" if r["estimate"] is None else f"{r['estimate']:.6g}"
                        emit(f"{r['net']:8} {r['setting']:10} {r['eps']:>7.3g} {r['local_upper']:>13.9g} "
                             f"{est:>13} {r['global']:>13.9g} {r['first_s']:>8.3f} {r['warm_s']:>8.3f}  "
                             f"{r['methods']}")
                    by = {r["setting"]: r for r in rows}
                    if "baseline" in by:
                        b, c = by["baseline"], by["certified"]
                        ratios.append(
                            f"{n:8} {eps:>7.3g} {b['first_s'] / c['first_s']:>11.2f} "
                            f"{b['warm_s'] / c['warm_s']:>10.2f} "
                            f"{(c['local_upper'] - b['local_upper']) / b['local_upper']:>14.2e} "
                            f"{(c['global'] - b['global']) / b['global']:>14.2e}")
            if ratios:
                emit(f"\n{'net':8} {'eps':>7} {'first ratio':>11} {'warm ratio':>10} {'local rel diff':>14} "
                     f"{'global rel diff':>14}   (ratio = baseline s / default s, same process)")
                for line in ratios:
                    emit(line)
        if args.rownorms:
            emit(f"\n{'net':8} {'layer':>5} {'input':>12} {'rows':>9} {'compared':>9} {'one-pass s':>11} "
                 f"{'reference s':>12} {'speed-up':>9} {'max rel diff':>12}")
            for n in nets:
                big = n in ("vgg16", "alexnet")
                for r in bench_rownorms(n, args.max_rows if big else None):
                    star = "*" if r["extrapolated"] else " "
                    emit(f"{r['net']:8} {r['layer']:>5} {r['shape']:>12} {r['rows']:>9} {r['compared']:>9} "
                         f"{r['one_pass_s']:>11.4f} {r['reference_s']:>11.3f}{star} {r['speedup']:>9.1f} "
                         f"{r['max_rel']:>12.2e}")
            emit("* reference time extrapolated from the compared subsample of rows")
    write_result("analytic.txt", "\n".join(lines), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
