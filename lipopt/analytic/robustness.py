"""Adversarial certification with the local bound (Avant & Morgansen, Prop. 6; formulations.md 4.3).

With the top-1 minus top-2 logit margin Delta at x0, no x with |x - x0|_2 <= eps changes the class if
eps * L(x0, eps) < Delta / sqrt(2) (the smallest output change flipping the top-1 class has l2 norm
Delta / sqrt 2). :func:`certified_radius` finds the largest such eps to a relative tolerance: the
global-bound radius (or decades below it) and target / L gives a bracket, closed by regula falsi where
L is smooth and bisection where it jumps; the returned radius itself satisfies the inequality with the
certified bound (so the certificate holds regardless of the search). The global-bound radius
Delta / (sqrt(2) L_global) is reported beside it. :func:`certify` evaluates the local bound on a list of
radii, with lower bounds (PGD on the nominal ratio) and an adversarial example (upper bound on the
minimal adversarial distance), and :func:`plot_report` draws bound vs eps (matplotlib, Agg).

The mathematics as implemented: ``docs/methods.md#robustness``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lipopt.analytic.local_bound import LocalBoundComputer, LocalOptions
from lipopt.network.network import Network
from lipopt.progress import Steps

SQRT2 = math.sqrt(2.0)
#: in :func:`certified_radius`: an apparent slope of log(eps L(eps)) in log eps above this over the bracket
#: is taken for a jump of L inside it (bisection), below it for a smooth stretch (regula falsi)
JUMP_SLOPE = 8.0


@dataclass
class CertifiedRadius:
    radius: float  # local-bound certified radius (eps * L(eps) < Delta / sqrt 2 holds at it)
    radius_global: float  # Delta / (sqrt 2 L_global)
    margin: float  # Delta = top-1 minus top-2 logit at x0
    label: int
    bound_at_radius: float | None
    evaluations: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def logit_margin(network: Network, x0: np.ndarray) -> tuple[float, int]:
    out = network.forward(np.asarray(x0, dtype=np.float64))
    order = np.argsort(out)[::-1]
    if out.size < 2:
        raise ValueError("certification needs at least two outputs (classes)")
    return float(out[order[0]] - out[order[1]]), int(order[0])


def certified_radius(network: Network, x0: np.ndarray, *, options: LocalOptions | None = None,
                     bisection_steps: int = 30, computer: LocalBoundComputer | None = None,
                     known: dict[float, float] | None = None, rtol: float = 1e-6) -> CertifiedRadius:
    """Largest eps with eps * L(x0, eps) < Delta / sqrt 2, to a relative ``rtol``.

    Every value returned satisfies the inequality with the certified bound L (evaluated there), so the
    certificate holds whatever the search does. The search: a first admissible eps at the global-bound
    radius (or the decades below it), then, since L is nondecreasing in eps, eps * L(eps) >= target at
    target / L(lo), which brackets the threshold at the cost of one evaluation. The bracket is closed by
    regula falsi on h = log(eps L(eps) / target) in log eps, each step followed by a probe a relative
    ``rtol`` beyond it (on a smooth stretch the two usually close the bracket), and by bisection where
    h's slope over the bracket says that L jumps inside it (the local bound jumps where a unit turns
    unstable; the threshold often sits on such a jump). ``known``: bound values already computed at
    some eps (the rows of :func:`certify`), reused. The old search (decades from 1e3 down, then 30
    bisections) took 36 evaluations on the MNIST LeNet."""
    comp = computer or LocalBoundComputer(network, x0, None, options)
    delta, label = logit_margin(network, x0)
    if delta <= 0:
        return CertifiedRadius(0.0, 0.0, delta, label, None, 0)
    glob = comp.global_bound()
    rs = _RadiusSearch(comp, delta / SQRT2, dict(known or {}))
    r_glob = rs.target / glob if glob > 0 else math.inf

    def done(eps: float) -> CertifiedRadius:
        return CertifiedRadius(eps, r_glob, delta, label, rs.cache.get(eps), rs.evals)

    lo = rs.first_admissible(r_glob)
    if lo is None:
        return done(0.0)
    if lo == RADIUS_MAX:  # the top of the search range
        return done(lo)
    lo, hi = rs.bracket(lo)
    if hi is None:
        return done(lo)
    return done(rs.close(lo, hi, bisection_steps, rtol))


#: the largest radius searched
RADIUS_MAX = 1e3


@dataclass
class _RadiusSearch:
    """The state of :func:`certified_radius`'s search: the bound values computed (``cache``, seeded with
    the known ones) and how many evaluations were new."""

    comp: Any
    target: float
    cache: dict[float, float]
    evals: int = 0

    def value(self, eps: float) -> float:
        if eps not in self.cache:
            self.evals += 1
            self.cache[eps] = self.comp.bound(eps, with_global=False).value
        return self.cache[eps]

    def ok(self, eps: float) -> bool:
        return eps * self.value(eps) < self.target

    def h(self, eps: float) -> float:
        return math.log(max(eps * self.value(eps), 1e-300) / self.target)

    def first_admissible(self, r_glob: float) -> float | None:
        """An eps satisfying the inequality: the largest known one, the global-bound radius, or the first
        decade below it that does (None when none down to 1e-300)."""
        known_ok = [e for e in self.cache if e <= RADIUS_MAX and e * self.cache[e] < self.target]
        start = min(r_glob, RADIUS_MAX) if math.isfinite(r_glob) and r_glob > 0 else None
        lo = max(known_ok) if known_ok else None
        if start is not None and (lo is None or start > lo) and self.ok(start):
            lo = start
        if lo is None:
            top = 2 if start is None else min(2, math.floor(math.log10(start)))
            for k in range(top, -301, -1):
                if self.ok(10.0 ** k):
                    return 10.0 ** k
        return lo

    def bracket(self, lo: float) -> tuple[float, float | None]:
        """(lo, hi) with lo admissible and hi not (L nondecreasing: target / L(lo) is a first guess);
        hi None when the inequality still holds at the top of the range (lo is then that top)."""
        not_ok = [e for e in self.cache if e > lo and e * self.cache[e] >= self.target]
        hi = min(not_ok) if not_ok else min(RADIUS_MAX, self.target / self.value(lo))
        if hi <= lo:  # L not monotone in the computed values: walk up until the inequality fails
            hi = lo * 2
        while self.ok(hi):
            if hi >= RADIUS_MAX:
                return hi, None
            lo, hi = hi, min(RADIUS_MAX, max(hi * 2, self.target / self.value(hi)))
        return lo, hi

    def close(self, lo: float, hi: float, steps: int, rtol: float) -> float:
        """Shrink [lo, hi] to a relative ``rtol``: regula falsi on h in log eps with a probe ``rtol``
        beyond each step where L is smooth, bisection where h's slope says that L jumps inside."""
        h_lo, h_hi = self.h(lo), self.h(hi)
        for _ in range(steps):
            if hi <= lo * (1 + rtol):
                break
            t_lo, t_hi = math.log(lo), math.log(hi)
            slope = (h_hi - h_lo) / (t_hi - t_lo)  # >= 1 where L is nondecreasing and continuous
            if not 0 < slope <= JUMP_SLOPE:  # L jumps inside the bracket (at this scale): bisect
                mid = math.exp(0.5 * (t_lo + t_hi))
                probe = False
            else:  # regula falsi in log eps, then a probe rtol beyond it to close the bracket
                t = t_lo - h_lo / slope
                mid = math.exp(min(max(t, t_lo + 0.01 * (t_hi - t_lo)), t_hi - 0.01 * (t_hi - t_lo)))
                probe = t_hi - t_lo < 64 * math.log1p(rtol)  # near the end: the probe may close it
            if not lo < mid < hi:
                mid = 0.5 * (lo + hi)
            if self.ok(mid):
                lo, h_lo = mid, self.h(mid)
                nxt = min(hi, lo * (1 + rtol) * (1 - 1e-12))
            else:
                hi, h_hi = mid, self.h(mid)
                nxt = max(lo, hi / (1 + rtol) * (1 + 1e-12))
            if probe and lo < nxt < hi:
                if self.ok(nxt):
                    lo, h_lo = nxt, self.h(nxt)
                else:
                    hi, h_hi = nxt, self.h(nxt)
        return lo


@dataclass
class CertifyRow:
    eps: float
    local_upper: float
    local_estimate: float | None
    global_upper: float
    lower: float  # best IR-evaluated nominal ratio (LOWER bound on the nominal constant)
    certified: bool  # eps * local_upper < Delta / sqrt 2
    time_s: float


@dataclass
class RobustnessReport:
    network: str
    label: int
    margin: float
    rows: list[CertifyRow]
    radius: CertifiedRadius | None
    adversarial_distance: float | None  # PGD: upper bound on the minimal adversarial l2 distance
    adversarial_label: int | None
    notes: list[str] = field(default_factory=list)
    input_space: str = "raw"  # the units of eps, the bounds, the radius and the distances

    def to_dict(self) -> dict[str, Any]:
        return {"network": self.network, "input_space": self.input_space, "label": self.label,
                "margin": self.margin,
                "rows": [dict(r.__dict__) for r in self.rows],
                "radius": None if self.radius is None else self.radius.to_dict(),
                "adversarial_distance": self.adversarial_distance,
                "adversarial_label": self.adversarial_label,
                "notes": list(self.notes)}

    def table(self) -> str:
        lines = [f"{self.network}: class {self.label}, logit margin {self.margin:.6g}",
                 f"{'eps':>10} {'local UPPER':>14} {'estimate':>12} {'global UPPER':>14} {'LOWER':>12} "
                 f"{'certified':>9} {'time_s':>8}"]
        for r in self.rows:
            est = "-" if r.local_estimate is None else f"{r.local_estimate:.6g}"
            lines.append(f"{r.eps:>10.4g} {r.local_upper:>14.6g} {est:>12} {r.global_upper:>14.6g} "
                         f"{r.lower:>12.6g} {('yes' if r.certified else 'no'):>9} {r.time_s:>8.3f}")
        if self.radius is not None:
            lines.append(f"certified l2 radius: local {self.radius.radius:.6g}, "
                         f"global {self.radius.radius_global:.6g}")
        if self.adversarial_distance is not None:
            lines.append(f"adversarial example found at l2 distance {self.adversarial_distance:.6g} "
                         f"(class {self.adversarial_label}): minimal perturbation <= this")
        else:
            lines.append("adversarial search: no class change found (or not run)")
        lines.extend(self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class CertifySteps:
    """What :func:`certify` runs beside the local bound: PGD lower bounds on the nominal ratio at each eps
    (``lower``), the certified radius, a PGD adversarial example (its search confined to ``clip``, raw
    input units), and the seed of the searches."""

    lower: bool = True
    radius: bool = True
    adversarial: bool = True
    seed: int = 0
    clip: tuple[float, float] | None = None
    #: BLAS / OpenMP / torch threads while certifying (None: leave them as they are). One thread by
    #: default: the tensors of one input are small, and on a busy 2-core machine OpenMP's spinning
    #: threads made one local bound 27x slower (2.4 s against 0.09 s on the MNIST LeNet)
    threads: int | None = 1
    #: relative precision of the certified radius (bound evaluations: about log2(bracket / rtol) where the
    #: bound jumps at the threshold, a handful where it is smooth); every radius returned is certified
    radius_rtol: float = 1e-3


def certify(network: Network, x0: np.ndarray, eps_list: list[float], *, options: LocalOptions | None = None,
            steps: CertifySteps = CertifySteps(), global_bound: float | None = None,
            input_space: str = "raw", progress: bool | Steps = False) -> RobustnessReport:
    """Local bound at each eps (certified UPPER on the nominal-point constant), global bound, lower bounds
    from real pairs, the certified radius and a PGD adversarial example (``steps``: which of these run).
    ``options``: the local bound's options (its ``device`` runs the searches too). ``global_bound``: the
    global product of an earlier call on the same network and options (it does not depend on x0), reused.
    ``input_space="normalized"``: ``x0`` and ``steps.clip`` are raw inputs, mapped to u = (x - mean) / std
    of the network's recorded normalisation; eps, the bounds, the radius and the distances are in u.
    ``progress``: a bar over the eps rows on a terminal, a line per row and phase on stderr otherwise
    (:class:`lipopt.progress.Steps`; one can be passed in)."""
    from lipopt.analytic._threads import limit_threads
    from lipopt.network.normalization import check_input_space, clip_in_space, in_input_space

    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    opts = options or LocalOptions()
    clip = steps.clip
    space = check_input_space(input_space)
    if space == "normalized" and getattr(network, "input_space", "raw") != "normalized":
        view = in_input_space(network, space)  # the clear error when no normalisation is recorded
        norm = network.input_normalization
        x0 = norm.to_normalized(x0)
        clip = None if clip is None else clip_in_space(clip, norm, opts.device)
        network = view
    with limit_threads(steps.threads):
        return _certify(network, x0, eps_list, opts, steps, clip, global_bound, space, progress)


def _certify(network: Network, x0: np.ndarray, eps_list: list[float], opts: LocalOptions,
             steps: CertifySteps, clip: tuple[float, float] | None, global_bound: float | None, space: str,
             progress: bool | Steps) -> RobustnessReport:
    from lipopt.lower.adversarial import Search, minimal_adversarial

    comp = LocalBoundComputer(network, x0, None, opts)
    if global_bound is not None:
        comp._global = float(global_bound)
    delta, label = logit_margin(network, x0)
    bar = progress if isinstance(progress, Steps) else Steps("certify", len(eps_list), bool(progress), "eps")
    try:
        rows, known = _eps_rows(network, x0, eps_list, comp, delta, steps, opts, bar)
        t0 = time.perf_counter()
        rad = (certified_radius(network, x0, computer=comp, known=known, rtol=steps.radius_rtol)
               if steps.radius else None)
        if rad is not None:
            bar.note(f"certified radius {rad.radius:.6g} (LOWER bound on the minimal perturbation; "
                     f"{rad.evaluations} bound evaluations) in {time.perf_counter() - t0:.1f}s")
        adv_d, adv_l = None, None
        if steps.adversarial:
            t0 = time.perf_counter()
            hi = max(10.0, 100.0 * rad.radius) if rad else 10.0
            adv = minimal_adversarial(network, x0, label, eps_max=hi,
                                      search=Search(seed=steps.seed, device=opts.device), clip=clip)
            if adv.found:
                adv_d, adv_l = adv.distance, adv.new_label
            found = (f"distance {adv_d:.6g} (UPPER bound on the minimal perturbation)" if adv_d is not None
                     else "no class change")
            bar.note(f"adversarial search: {found} in {time.perf_counter() - t0:.1f}s")
    finally:
        if bar is not progress:
            bar.close()
    notes = ["local UPPER bounds the nominal-point constant |f(x)-f(x0)|/|x-x0| (l2) on the ball, "
             "not the pairwise local constant; LOWER = best real ratio found"]
    if comp.device_warning:
        notes.append(comp.device_warning)
    if rad is not None and adv_d is not None and adv_d < rad.radius:
        notes.append("INCONSISTENT: adversarial example inside the certified radius")
    if space == "normalized":
        notes.append("input space: normalized ((x - mean) / std): eps, the radius, the bounds and the "
                     "adversarial distance are in normalized units")
    return RobustnessReport(network.name or "network", label, delta, rows, rad, adv_d, adv_l, notes, space)


def _eps_rows(network: Network, x0: np.ndarray, eps_list: list[float], comp: LocalBoundComputer,
              delta: float, steps: CertifySteps, opts: LocalOptions, bar: Steps
              ) -> tuple[list[CertifyRow], dict[float, float]]:
    """One :class:`CertifyRow` per eps (sorted): the local bound, the global one and the PGD lower bound;
    and the local products (not capped by the global one) by eps, for :func:`certified_radius`."""
    from lipopt.lower.adversarial import NOMINAL_SEARCH, nominal_ratio_lower, torch_model

    glob = comp.global_bound()
    model = torch_model(network, opts.device) if steps.lower else None
    nominal = replace(NOMINAL_SEARCH, seed=steps.seed, device=opts.device)
    rows = []
    known: dict[float, float] = {}
    for eps in sorted(float(e) for e in eps_list):
        t0 = time.perf_counter()
        lb = comp.bound(eps)
        if lb.value < lb.global_bound or not lb.notes:  # the local product itself, not the global cap
            known[eps] = lb.value
        low = 0.0
        if steps.lower:
            low = nominal_ratio_lower(network, x0, eps, nominal, model=model)[0]
        rows.append(CertifyRow(eps, lb.value, lb.estimate, glob, low, eps * lb.value < delta / SQRT2,
                               time.perf_counter() - t0))
        lower = f", best real ratio {low:.6g} (LOWER)" if steps.lower else ""
        bar.done(f"eps {eps:g}", f"local bound {lb.value:.6g} (UPPER){lower} in {rows[-1].time_s:.1f}s")
    return rows, known


def _estimate_gap(report: RobustnessReport) -> float | None:
    """The largest relative gap between the power-iteration estimate and the local bound over the eps
    rows (None when a row has no estimate)."""
    if not report.rows or any(r.local_estimate is None for r in report.rows):
        return None
    return max(abs(r.local_estimate - r.local_upper) / max(abs(r.local_upper), 1e-300)  # type: ignore[operator]
               for r in report.rows)


#: below this relative gap the estimate is not drawn apart from the bound (it would sit on top of it on a
#: log axis); the legend states the gap instead
ESTIMATE_MERGE_RTOL = 5e-3


def _readable_log_ticks(ax: Any, which: str) -> None:
    """On a log axis spanning less than a decade: plain-number ticks (no 10^0.1 labels, no empty axis)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullFormatter

    lo, hi = sorted(ax.get_ylim() if which == "y" else ax.get_xlim())
    if lo <= 0 or hi / lo >= 10:
        return
    ticks = [t for t in MaxNLocator(5).tick_values(lo, hi) if lo <= t <= hi and t > 0]
    if len(ticks) < 2:
        ticks = [lo, hi]
    axis = ax.yaxis if which == "y" else ax.xaxis
    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.4g}"))
    axis.set_minor_formatter(NullFormatter())


def _figure(report: RobustnessReport) -> tuple[Any, Any]:
    """The figure and axes of :func:`plot_report` (not saved, not closed): local bound vs eps (log-log),
    the PGD lower bounds, the certified bracket [LOWER, local UPPER] shaded, the global bound."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = [r.eps for r in report.rows]
    ups = [r.local_upper for r in report.rows]
    lows = [r.lower for r in report.rows]
    fig, ax = plt.subplots(figsize=(6, 4))
    gap = _estimate_gap(report)
    merged = gap is not None and gap <= ESTIMATE_MERGE_RTOL
    label = "local bound (UPPER)"
    if merged:
        label += (" = power-iteration estimate" if gap <= 1e-9 else
                  f"; power-iteration estimate within {gap:.1e} (relative)")
    ax.plot(eps, ups, "o-", label=label)
    if gap is not None and not merged:
        ax.plot(eps, [r.local_estimate for r in report.rows], "x:", label="power-iteration estimate")
    glob = [r.global_upper for r in report.rows]
    if len(set(glob)) == 1:  # the global bound does not depend on eps: a horizontal line, seen at one eps too
        ax.axhline(glob[0], color="k", linestyle="--", label="global bound (UPPER)")
    else:
        ax.plot(eps, glob, "k--", label="global bound (UPPER)")
    if any(v > 0 for v in lows):
        ax.plot(eps, lows, "s-", label="best real ratio (LOWER)")
        kw = {"alpha": 0.2, "label": "certified bracket [LOWER, local UPPER]"}
        if len(eps) == 1:  # one eps: the bracket as a bar (fill_between would have no width)
            ax.vlines(eps, lows, ups, linewidth=8, **kw)
        else:
            ax.fill_between(eps, [v if v > 0 else u for v, u in zip(lows, ups, strict=True)], ups,
                            where=[v > 0 for v in lows], **kw)
    ax.set_xscale("log")
    ax.set_yscale("log")
    units = ("normalized input units, (x - mean) / std" if report.input_space == "normalized"
             else "raw input units")
    ax.set_xlabel(f"eps: l2 radius of the ball around x0 ({units})")
    ax.set_ylabel("nominal-point Lipschitz constant (l2 to l2)")
    ax.set_title(f"{report.network}: class {report.label} (margin {report.margin:.4g}), l2 norm, "
                 f"{report.input_space} inputs", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _readable_log_ticks(ax, "y")
    _readable_log_ticks(ax, "x")
    return fig, ax


def plot_report(report: RobustnessReport, path: str | list[str]) -> list[str]:
    """Local bound vs eps (:func:`_figure`) written to ``path``: a ``.png`` or ``.pdf`` path writes both
    (the other beside it), a list writes each of its paths. Returns the paths written."""
    from pathlib import Path

    import matplotlib.pyplot as plt

    if isinstance(path, str | Path):
        p = Path(path)
        both = p.suffix.lower() in (".png", ".pdf")
        paths = [p.with_suffix(".png"), p.with_suffix(".pdf")] if both else [p]
    else:
        paths = [Path(q) for q in path]
    fig, _ax = _figure(report)
    try:
        for q in paths:
            fig.savefig(q, dpi=150)
    finally:
        plt.close(fig)
    return [str(q) for q in paths]
