"""Reproduce the experiments of Avant & Morgansen (seed 001) on its MNIST and CIFAR-10 nets, in its units.

    python -m benchmarks.reproduce_avant [--nets lenet,cifar] [--points 30] [--samples 64] [--threads 1]
                                         [--tight-limit 30000]

The seed measures eps, the ball and the constants in the network's *normalised* input space
u = (x - mean) / std (lipopt's ``input_space="normalized"``: the checkpoints record their normalisation,
and lipopt's raw-pixel constant is this one divided by std). For each net and its image (the images the
seed's code ships, ``external-nets/avant``):

* Fig. 7: the certified local bound (UPPER on the nominal-point constant) on the seed's grid
  ``linspace(eps_min, eps_max, points)`` (LeNet 0.001 to 7, CIFAR-10 0.001 to 2), its power-iteration
  estimate (the seed's own number, not a bound), the global product, and two certified LOWER bounds on
  the same constant: gradient ascent on the nominal ratio (``lipopt.lower.adversarial.nominal_ratio_lower``)
  and the best of ``--samples`` uniform samples of the ball, both re-evaluated in float64 with the rounding
  allowance of ``lipopt.certify.witness.certified_pair_ratios``; drawn to ``reproduce_avant_<net>.png``
  (and ``.pdf``) with labelled axes. A second certified column (``--tight-limit``, default 30000) raises
  ``SpectralOptions.cholesky_limit`` so that every masked layer gets the tight Lanczos + Cholesky
  certificate: at the default 6000 the CIFAR-10 net's second and fourth masked convolutions (from eps
  about 0.48 the third too) fall back to the sound but looser max r x ||A||, and a ``*`` marks such rows;
* Table II: the time per local bound (wall and CPU, one call per eps after the first, which also sets up
  the global layer norms), beside the seed's 0.1 s (MNIST) and 1 s (CIFAR-10) on a GTX 1080 Ti;
* Table III: the certified radius (local bound, Prop. 6; and from the global product), LOWER bounds on the
  minimal adversarial perturbation, and the FGSM and PGD distances, UPPER bounds on it.

Writes ``reproduce_avant.txt`` and ``reproduce_avant.json`` (and per net ``reproduce_avant_<net>.txt`` and
the figures) under ``benchmarks/results/`` (:func:`benchmarks.write_result`). ``--points`` below 30 uses a
coarser grid on the same interval (the machine is shared: the CIFAR-10 bound costs seconds per eps).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import RESULTS, split_names, write_result

#: the seed's eps grids (its code: linspace(eps_min, eps_max, 30)) and its Table II times (GTX 1080 Ti)
GRIDS = {"lenet": (0.001, 7.0), "cifar": (0.001, 2.0)}
SEED_TIME_S = {"lenet": 0.1, "cifar": 1.0}
#: cholesky_limit of the second, tight column (every masked layer of the CIFAR-10 net is below it)
TIGHT_LIMIT = 30000
FILES = {"lenet": ("mnist_lenet_ckpt_99.ckpt", "mnist_8.png"),
         "cifar": ("cifar10_net_ckpt_499.ckpt", "cifar10_dog4.png")}


def load(name: str) -> tuple:
    """(network in normalised units, u0 = the image in normalised units, raw network)."""
    import lipopt
    from lipopt.cli_certify import read_input
    from lipopt.locations import external_nets
    from lipopt.network.normalization import in_input_space

    ckpt, img = FILES[name]
    avant = external_nets() / "avant"
    raw = lipopt.load(str(avant / ckpt), check=False)
    x0 = read_input(str(avant / img), raw.input_shape)
    view = in_input_space(raw, "normalized")
    return view, raw.input_normalization.to_normalized(x0), raw


def random_lower(net, u0: np.ndarray, eps: float, n: int, seed: int) -> float:
    """Best certified nominal ratio over n uniform samples of the l2 ball of radius eps around u0."""
    from lipopt.certify.witness import certified_pair_ratios
    from lipopt.spec import AllOutputs, Ball, Norm, Question, uniform_ball

    rng = np.random.default_rng(seed)
    xs = u0 + eps * uniform_ball(rng, n, u0.size)
    q = Question(Norm.L2, Norm.L2, Ball(u0, eps, Norm.L2), AllOutputs(), nominal=True)
    inside = np.linalg.norm(xs - u0, axis=1) <= eps
    return float(np.max(certified_pair_ratios(net, xs[inside], u0, q), initial=0.0))


def fgsm_distance(net, u0: np.ndarray, label: int, hi: float, steps: int = 20) -> float | None:
    """Smallest radius (bisection) at which one l2 FGSM step changes the class (IR-verified), or None."""
    from lipopt.lower.adversarial import fgsm_l2, torch_model

    model = torch_model(net)
    if not fgsm_l2(net, u0, hi, label, model=model).found:
        return None
    lo, best = 0.0, hi
    for _ in range(steps):
        mid = 0.5 * (lo + best)
        r = fgsm_l2(net, u0, mid, label, model=model)
        if r.found:
            best = float(r.distance)
        else:
            lo = mid
    return best


def _timed_bound(comp, eps: float, prefix: str, known: dict) -> dict:
    """One local bound, timed; its value is kept in ``known`` for the radius search when it has no notes."""
    w, c = time.perf_counter(), time.process_time()
    lb = comp.bound(eps)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    if not lb.notes:
        known[eps] = lb.value
    return {f"{prefix}upper": lb.value, f"{prefix}wall_s": wall, f"{prefix}cpu_s": cpu,
            f"{prefix}all_exact": lb.all_exact, f"{prefix}estimate": lb.estimate}


def _radius(net, u0: np.ndarray, comp, known: dict, prefix: str) -> dict:
    from lipopt.analytic.robustness import certified_radius

    w = time.perf_counter()
    rad = certified_radius(net, u0, computer=comp, known=known, rtol=1e-3)
    return {f"radius_{prefix}": rad.radius, f"radius_{prefix}evaluations": rad.evaluations,
            f"radius_{prefix}s": time.perf_counter() - w, f"radius_{prefix}global": rad.radius_global}


def run_net(name: str, points: int, samples: int, seed: int, tight_limit: int = TIGHT_LIMIT) -> dict:
    """The grid, the radius (the default computer and, with ``tight_limit``, a tight one) and PGD / FGSM."""
    from lipopt.analytic.local_bound import LocalBoundComputer, LocalOptions
    from lipopt.analytic.robustness import SQRT2, logit_margin
    from lipopt.analytic.spectral import SpectralOptions
    from lipopt.lower.adversarial import (
        NOMINAL_SEARCH,
        Search,
        minimal_adversarial,
        nominal_ratio_lower,
        torch_model,
    )

    net, u0, raw = load(name)
    grid = [float(e) for e in np.linspace(*GRIDS[name], points)]
    t0 = time.perf_counter()
    comps = {"local_": LocalBoundComputer(net, u0, None, None)}
    glob = comps["local_"].global_bound()
    setup_s = time.perf_counter() - t0
    tight_glob = None
    if tight_limit:
        opts = LocalOptions(spectral=SpectralOptions(cholesky_limit=tight_limit))
        comps["tight_"] = LocalBoundComputer(net, u0, None, opts)
        tight_glob = comps["tight_"].global_bound()  # its large unmasked layers tight too
    model = torch_model(net)
    rows, known = [], {k: {} for k in comps}
    for eps in grid:
        row = {"eps": eps, "global_upper": glob}
        for k, comp in comps.items():
            row.update(_timed_bound(comp, eps, k, known[k]))
        w = time.perf_counter()
        row["lower_gradient"] = nominal_ratio_lower(net, u0, eps, NOMINAL_SEARCH, model=model)[0]
        row["lower_random"] = random_lower(net, u0, eps, samples, seed)
        row["lower_wall_s"] = time.perf_counter() - w
        rows.append(row)
        extra = (f", tight {row['tight_upper']:.6g} in {row['tight_wall_s']:.2f} s" if tight_limit else "")
        print(f"{name} eps {eps:.4g}: local {row['local_upper']:.6g} (estimate {row['local_estimate']:.6g})"
              f"{extra}, global {glob:.6g}, LOWER gradient {row['lower_gradient']:.6g} random "
              f"{row['lower_random']:.6g}; bound {row['local_wall_s']:.2f} s", flush=True)
    delta, label = logit_margin(net, u0)
    radii = {}
    for k, comp in comps.items():
        radii.update(_radius(net, u0, comp, known[k], k))
    w = time.perf_counter()
    hi = max(10.0, 100 * radii["radius_local_"])
    adv = minimal_adversarial(net, u0, label, eps_max=hi, search=Search(seed=seed))
    adv_s = time.perf_counter() - w
    medians = {f"{k}time_median_s": float(np.median([r[f"{k}wall_s"] for r in rows])) for k in comps}
    return {"net": name, "input_space": "normalized", "label": label, "margin": delta,
            "std": [float(v) for v in np.unique(raw.input_normalization.std)],
            "global_upper": glob, "setup_s": setup_s, "rows": rows, **medians,
            "local_cpu_median_s": float(np.median([r["local_cpu_s"] for r in rows])),
            "seed_time_s": SEED_TIME_S[name], **radii,
            "pgd_distance": adv.distance if adv.found else None, "pgd_s": adv_s,
            "fgsm_distance": fgsm_distance(net, u0, label, hi),
            "target": delta / SQRT2, "tight_limit": tight_limit or None,
            "tight_global_upper": tight_glob}


def plot(res: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = res["rows"]
    eps = [r["eps"] for r in rows]
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.plot(eps, [r["local_upper"] for r in rows], "o-", label="local bound, default (certified UPPER)")
    if res.get("tight_limit"):
        ax.plot(eps, [r["tight_upper"] for r in rows], "d-",
                label=f"local bound, cholesky_limit {res['tight_limit']} (certified UPPER)")
    est = "tight_estimate" if res.get("tight_limit") else "local_estimate"
    ax.plot(eps, [r[est] for r in rows], "x:", label="power-iteration estimate (the seed's)")
    ax.axhline(res["global_upper"], color="k", linestyle="--", label="global product (UPPER)")
    ax.plot(eps, [r["lower_gradient"] for r in rows], "s-", label="gradient ascent (certified LOWER)")
    ax.plot(eps, [r["lower_random"] for r in rows], "^-", label="random samples (certified LOWER)")
    ax.set_yscale("log")
    ax.set_xlabel("eps: l2 radius of the ball around x0 (normalised input units, (x - mean) / std)")
    ax.set_ylabel("nominal-point Lipschitz constant (l2 to l2)")
    ax.set_title(f"{res['net']}: bound vs eps (Avant & Morgansen, Fig. 7), class {res['label']}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    paths = [RESULTS / f"reproduce_avant_{res['net']}.png", RESULTS / f"reproduce_avant_{res['net']}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return [str(p) for p in paths]


def _grid_table(res: dict, tight: bool) -> list[str]:
    def cell(r: dict, k: str) -> str:
        return f"{r[k + 'upper']:>13.6g}{' ' if r[k + 'all_exact'] else '*'} {r[k + 'wall_s']:>7.3f}"

    head_t = f" {'tight UPPER':>14} {'s':>7}" if tight else ""
    out = [f"{'eps':>8} {'local UPPER':>14} {'s':>7}{head_t} {'estimate':>12} {'global UPPER':>13} "
           f"{'LOWER grad':>11} {'LOWER rand':>11}"]
    est = "tight_estimate" if tight else "local_estimate"  # the chain closest to the seed's
    for r in res["rows"]:
        out.append(f"{r['eps']:>8.4g} {cell(r, 'local_')}{' ' + cell(r, 'tight_') if tight else ''} "
                   f"{r[est]:>12.6g} {r['global_upper']:>13.6g} {r['lower_gradient']:>11.6g} "
                   f"{r['lower_random']:>11.6g}")
    limits = "default 6000" + (f"; tight column {res['tight_limit']}" if tight else "")
    out.append(f"* some layer bounded soundly but not exactly: its smaller side is above cholesky_limit "
               f"({limits})")
    return out


def _times(res: dict, k: str, what: str) -> str:
    t = res[f"{k}time_median_s"]
    return (f"Table II, {what}: time per bound median {t:.3f} s wall; the seed: {res['seed_time_s']} s on a "
            f"GTX 1080 Ti (ratio lipopt / seed {t / res['seed_time_s']:.3g})")


def report(results: list[dict]) -> str:
    out = ["Avant & Morgansen (seed 001) in its units: eps and constants in normalised inputs "
           "(x - mean) / std", ""]
    for res in results:
        tight = bool(res.get("tight_limit"))
        out.append(f"== {res['net']}: class {res['label']}, logit margin {res['margin']:.6g}, "
                   f"std {res['std']}")
        out.extend(_grid_table(res, tight))
        first = res["rows"][0]
        out.append(f"smallest eps {first['eps']:g}: local {first['local_upper']:.6g}, global product "
                   f"{res['global_upper']:.6g} (global / local "
                   f"{res['global_upper'] / first['local_upper']:.3g})")
        out.append(_times(res, "local_", "default") + f" ({res['local_cpu_median_s']:.3f} s cpu); set-up "
                   f"and global product {res['setup_s']:.2f} s")
        if tight:
            out.append(_times(res, "tight_", f"cholesky_limit {res['tight_limit']}"))
        pgd = "none found" if res["pgd_distance"] is None else f"{res['pgd_distance']:.6g}"
        fgsm = "none found" if res["fgsm_distance"] is None else f"{res['fgsm_distance']:.6g}"
        out.append(f"Table III: minimal adversarial perturbation (l2, normalised units): LOWER bounds local "
                   f"{res['radius_local_']:.6g} ({res['radius_local_evaluations']} new bound evaluations, "
                   f"{res['radius_local_s']:.1f} s), global {res['radius_local_global']:.6g}; UPPER bounds "
                   f"PGD {pgd} ({res['pgd_s']:.1f} s), FGSM {fgsm}")
        if tight:
            out.append(f"Table III, cholesky_limit {res['tight_limit']}: LOWER bound local "
                       f"{res['radius_tight_']:.6g} ({res['radius_tight_evaluations']} new bound "
                       f"evaluations, {res['radius_tight_s']:.1f} s), global "
                       f"{res['radius_tight_global']:.6g} (global product {res['tight_global_upper']:.6g})")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default="lenet,cifar")
    ap.add_argument("--points", type=int, default=30, help="eps grid points (the seed: 30)")
    ap.add_argument("--samples", type=int, default=64, help="random samples per eps for the random LOWER")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="BLAS / torch threads (0: as they are)")
    ap.add_argument("--tight-limit", type=int, default=TIGHT_LIMIT,
                    help="also the local bound with SpectralOptions.cholesky_limit = N (every CIFAR-10 layer "
                         "tight at 30000; 0: skip)")
    args = ap.parse_args(argv)
    from lipopt.analytic._threads import limit_threads

    results = []
    with limit_threads(None if args.threads == 0 else args.threads):
        for name in split_names(args.nets):
            if name not in GRIDS:
                raise SystemExit(f"unknown net {name!r}; choose from {', '.join(GRIDS)}")
            res = run_net(name, max(2, args.points), args.samples, args.seed, args.tight_limit)
            res["figure"] = plot(res)
            results.append(res)
            write_result(f"reproduce_avant_{name}.txt", report([res]))  # per net (a later run keeps it)
    text = report(results)
    print(text)
    write_result("reproduce_avant.txt", text)
    write_result("reproduce_avant.json", json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
