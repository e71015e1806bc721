"""Benchmark of ``lipopt certify``'s parts and of the certified LOWER bound's rounding allowance (issue 14).

    python -m benchmarks.bench_certify [--nets lenet,cifar] [--eps 0.001] [--legacy-allowance]

For each network (the Avant checkpoints and their images):

* **allowance**: the certified pair ratio along the top singular direction of J(x0) at pair distance
  eps (|f(x) - f(x0)| / |x - x0| less its float64 rounding allowance), with the running-error allowance
  of ``lipopt.certify.witness.certified_pair_ratios`` and, with ``--legacy-allowance`` (LeNet always; on
  the CIFAR-10 net it took 377 s), the old width-times-magnitude allowance (:func:`legacy_pair_ratio`,
  kept here as the baseline) in the same process: allowance per unit distance, certified value, time, and
  the speed-up as a ratio;
* **certify phases**: the local bound at eps, the global product, the certified LOWER (PGD on the nominal
  ratio, :func:`lipopt.lower.adversarial.nominal_ratio_lower`), the certified radius (the bracketing
  search of :func:`lipopt.analytic.robustness.certified_radius` against the old decades-and-30-bisections,
  :func:`legacy_radius`, both on the same bound computer) and the adversarial search, each timed, with
  one thread and with the threads as they are (``--threads-baseline``), as ratios;
* the whole ``lipopt certify`` on the net's image in a fresh process, wall and CPU time.

CPU time (``time.process_time``) is given beside wall time: on a shared machine the wall time of the same
work varies several-fold with the load, the CPU time much less. Writes ``bench_certify.txt`` under
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import split_names, write_result

# ------------------------------------------------------------------------------------------ baselines


def legacy_pair_ratio(network, x: np.ndarray, y: np.ndarray, question) -> float:
    """The certified pair ratio before issue 14: |f(x)-f(y)|/|x-y| less 4 eps (sum of all affine widths +
    4) |c|_1 m (M(x) + M(y)), with M(v) the largest entry of |W_L| ... |W_1| |v| + |b| over the lowered
    (sparse, for convolutions) stages."""
    from lipopt.network.network import AffineStage
    from lipopt.norms import output_distance

    def magnitude(v: np.ndarray) -> float:
        h = np.abs(np.asarray(v, dtype=np.float64).reshape(1, -1))
        for s in network.lower():
            if isinstance(s, AffineStage):
                w = s.weight
                wa = abs(w) if hasattr(w, "toarray") else np.abs(w)
                h = np.asarray((wa @ h.T).T) + np.abs(s.bias)
            elif hasattr(s, "windows"):
                win = s.windows
                h = np.where(win >= 0, h[:, np.maximum(win, 0)], 0.0).max(axis=2)
        return float(np.max(h)) if h.size else 0.0

    dx = float(np.linalg.norm(x - y, ord=question.input_norm.p))
    ratio = output_distance(network.forward(x), network.forward(y), question) / dx
    width = sum(s.shape[1] for s in network.lower() if isinstance(s, AffineStage))
    m = question.output_vector(network.output_size)
    cnorm = 1.0 if m is None else float(np.sum(np.abs(m)))
    out_dim = network.output_size if m is None else 1
    err = 4.0 * np.finfo(float).eps * (width + 4) * cnorm * out_dim * (magnitude(x) + magnitude(y))
    return max(0.0, (ratio * dx - err) / dx * (1 - 1e-15))


def legacy_radius(comp, target: float) -> tuple[float, int]:
    """The certified radius search before issue 14: decades from 1e3 down, then 30 bisections."""
    evals = 0

    def ok(eps: float) -> bool:
        nonlocal evals
        evals += 1
        return eps * comp.bound(eps, with_global=False).value < target

    lo = None
    for k in range(3, -301, -1):
        if ok(10.0 ** k):
            lo = 10.0 ** k
            break
    if lo is None or lo == 1e3:
        return (lo or 0.0), evals
    hi = lo * 10
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo, evals


# ------------------------------------------------------------------------------------------ timing


class Timer:
    def __enter__(self) -> Timer:
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c

    def __str__(self) -> str:
        return f"{self.wall:8.2f} s wall {self.cpu:8.2f} s cpu"


def load(name: str) -> tuple:
    import lipopt
    from lipopt.cli_certify import read_input
    from lipopt.locations import external_nets

    avant = external_nets() / "avant"
    ckpt, img = (("mnist_lenet_ckpt_99.ckpt", "mnist_8.png") if name == "lenet"
                 else ("cifar10_net_ckpt_499.ckpt", "cifar10_dog4.png"))
    net = lipopt.load(str(avant / ckpt), check=False)
    return net, read_input(str(avant / img), net.input_shape)


def bench_allowance(name: str, net, x0: np.ndarray, eps: float, legacy: bool) -> list[str]:
    from lipopt.certify.witness import certified_pair_ratio, forward_error
    from lipopt.spec import AllOutputs, Ball, Norm, Question

    q = Question(Norm.L2, Norm.L2, Ball(x0, eps, Norm.L2), AllOutputs(), nominal=True)
    v = np.linalg.svd(net.jacobian(x0))[2][0]
    y = x0 + eps * v
    raw = float(np.linalg.norm(net.forward(y) - net.forward(x0)) / np.linalg.norm(y - x0))
    with Timer() as t_new:
        new = certified_pair_ratio(net, y, x0, q)
    fe = forward_error(net, x0, margins=True)
    lines = [f"{name}: pair along the top singular direction of J(x0) at distance {eps:g}: raw ratio "
             f"{raw:.9g}, ||J(x0)||_2 {np.linalg.norm(net.jacobian(x0), 2):.9g}",
             f"  forward error bound at x0 (running error analysis): max {fe.err.max():.3g}, "
             f"margin {float(fe.margin[0]) if fe.margin is not None else float('nan'):.3g}",
             f"  new allowance: certified {new:.9g} (allowance {raw - new:.3g} per unit distance) {t_new}"]
    if legacy:
        with Timer() as t_old:
            old = legacy_pair_ratio(net, y, x0, q)
        lines.append(f"  old allowance: certified {old:.9g} (allowance {raw - old:.3g} per unit distance) "
                     f"{t_old}")
        lines.append(f"  allowance ratio old / new {(raw - old) / max(raw - new, 1e-300):.3g}, "
                     f"time ratio old / new {t_old.wall / max(t_new.wall, 1e-9):.3g} (wall), "
                     f"{t_old.cpu / max(t_new.cpu, 1e-9):.3g} (cpu)")
    return lines


def bench_phases(name: str, net, x0: np.ndarray, eps: float, threads: int | None,
                 legacy_radius_too: bool) -> list[str]:
    from lipopt.analytic._threads import limit_threads
    from lipopt.analytic.local_bound import LocalBoundComputer
    from lipopt.analytic.robustness import SQRT2, certified_radius, logit_margin
    from lipopt.lower.adversarial import NOMINAL_SEARCH, Search, minimal_adversarial, nominal_ratio_lower

    lines = [f"{name}: certify phases, threads={'as they are' if threads is None else threads}"]
    with limit_threads(threads):
        with Timer() as t_init:
            comp = LocalBoundComputer(net, x0, None, None)
        with Timer() as t_glob:
            glob = comp.global_bound()
        with Timer() as t_bound:
            lb = comp.bound(eps)
        with Timer() as t_low:
            low, _ = nominal_ratio_lower(net, x0, eps, NOMINAL_SEARCH)
        delta, label = logit_margin(net, x0)
        known = {eps: lb.value} if not lb.notes else {}
        with Timer() as t_rad:
            rad = certified_radius(net, x0, computer=comp, known=known, rtol=1e-4)
        with Timer() as t_adv:
            adv = minimal_adversarial(net, x0, label, eps_max=max(10.0, 100 * rad.radius), search=Search())
        lines += [f"  set-up               {t_init}",
                  f"  global product       {t_glob}  {glob:.9g}",
                  f"  local bound eps={eps:g} {t_bound}  {lb.value:.9g} (estimate {lb.estimate:.9g})",
                  f"  certified LOWER      {t_low}  {low:.9g}",
                  f"  certified radius     {t_rad}  {rad.radius:.9g} ({rad.evaluations} bound evaluations)",
                  f"  adversarial search   {t_adv}  "
                  + (f"{adv.distance:.6g}" if adv.found else "no class change")]
        if legacy_radius_too:
            with Timer() as t_old:
                r_old, n_old = legacy_radius(comp, delta / SQRT2)
            lines.append(f"  old radius search    {t_old}  {r_old:.9g} ({n_old} bound evaluations); "
                         f"evaluations old / new {n_old / max(rad.evaluations, 1):.3g}, time old / new "
                         f"{t_old.wall / max(t_rad.wall, 1e-9):.3g} (wall) "
                         f"{t_old.cpu / max(t_rad.cpu, 1e-9):.3g} (cpu), relative difference "
                         f"{abs(r_old - rad.radius) / r_old:.2g}")
    return lines


def bench_whole(name: str, eps: float) -> list[str]:
    """``lipopt certify`` on the net and its image in a fresh process (imports, loading with the
    equivalence check, and no warm caches counted): wall time and the child's CPU time."""
    import resource
    import subprocess

    from lipopt.locations import external_nets

    avant = external_nets() / "avant"
    ckpt, img = (("mnist_lenet_ckpt_99.ckpt", "mnist_8.png") if name == "lenet"
                 else ("cifar10_net_ckpt_499.ckpt", "cifar10_dog4.png"))
    cmd = [sys.executable, "-m", "lipopt", "certify", str(avant / ckpt), "--input", str(avant / img),
           "--eps", f"{eps:g}", "-q"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    w = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - w
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    lines = [f"{name}: whole `lipopt certify` (fresh process: imports, load, bound, global, LOWER, radius, "
             f"PGD) at eps {eps:g}: {wall:8.2f} s wall {cpu:8.2f} s cpu (exit {done.returncode})"]
    lines += ["  " + ln for ln in done.stdout.strip().splitlines()[1:4]]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default="lenet", help="lenet, cifar (comma-separated)")
    ap.add_argument("--eps", type=float, default=0.001)
    ap.add_argument("--legacy-allowance", action="store_true",
                    help="also the old allowance on the CIFAR-10 net (377 s there; LeNet always)")
    ap.add_argument("--legacy-radius", action="store_true",
                    help="also the old radius search (36 bound evaluations) as a baseline")
    ap.add_argument("--threads-baseline", action="store_true",
                    help="also the phases with the threads as they are (the baseline of one thread)")
    ap.add_argument("--skip-whole", action="store_true")
    args = ap.parse_args(argv)
    out: list[str] = []
    for name in split_names(args.nets):
        with Timer() as t_load:
            net, x0 = load(name)
        out.append(f"== {name} (loaded in {t_load})")
        out += bench_allowance(name, net, x0, args.eps, args.legacy_allowance or name == "lenet")
        out += bench_phases(name, net, x0, args.eps, 1, args.legacy_radius)
        if args.threads_baseline:
            out += bench_phases(name, net, x0, args.eps, None, False)
        if not args.skip_whole:
            out += bench_whole(name, args.eps)
        print(f"{name} done", flush=True)
    text = "\n".join(out)
    print(text)
    write_result("bench_certify.txt", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
