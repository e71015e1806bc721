"""Method "grad-ascent" (LOWER): projected gradient ascent on the Jacobian norm, with restarts.

ReLU Jacobians are piecewise constant, so their gradient in x is zero. Two searches are combined:

1. ascent on the Jacobian norm of a *smoothed* network (softplus / logsumexp with a temperature annealed
   geometrically towards 0), started from the best of a small batch of sampled points and from random ones;
2. CLIP-style ascent on the pair quotient |f(u) - f(v)| / |u - v| of the exact network (formulations.md
   section 5, Algorithm 1: accept a step only if the quotient grows, step x1.3 on success and /1.3 on
   failure), started from pairs (x, x + h v) at the best points along their maximising directions v.

Points and pairs are projected onto the domain after every step. The reported value is certified in float64:
the exact Jacobian norm at a point inside a linear region (``point_witness``) or a pair ratio, whichever is
larger. Nominal-point questions: ascent on |f(x) - f(x0)| / |x - x0| over the ball, certified by
``pair_ratio(x, x0)``.

Options (``RunOptions.extra``): restarts (8), steps (200), seed (``RunOptions.seed``), n_init (1000
sampled starting candidates: the same points as ``sampling`` with the same seed and count, so grad-ascent
is never below it), lr (Adam step as a fraction of the per-start length scale, 0.02), pair_steps (= steps),
global_radius. ``RunOptions.progress`` shows a tqdm bar on a terminal, a line every 5 s otherwise.

Time limit (``RunOptions.time_limit``; every phase counts, the torch import included): the starting
candidates are evaluated until a quarter of the budget is used (at least ``restarts`` of them), the smoothed
ascent runs until half of what is left, the pair ascent until 60 % of what is left then, and the rest is for
certification. Each phase stops at its share and passes on what it has; the value is the certified LOWER
bound of the points and pairs reached by then, and the record stops with ``StopReason.TIME_LIMIT``. The
clock is read between steps, and one candidate is always certified, so a tiny limit can be overrun by
about one ascent step and one certification.

Limitation: a local search. A maximising region that is a thin sliver, or far away in the global domain
(Fact C), is found only if a start lands near it.

The mathematics as implemented: ``docs/methods.md#grad-ascent``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from lipopt.certify.points import (
    Certified,
    certify_best,
    input_scale,
    nominal_candidates,
    nominal_ratios,
    norm_direction,
    sample_domain,
)
from lipopt.certify.witness import certified_pair_ratio, clip_to_domain, in_domain
from lipopt.deadline import Deadline
from lipopt.lower.batch import batch_jacobian_norms, evaluate_until
from lipopt.network.network import Network
from lipopt.options import MethodOptions, RunOptions
from lipopt.progress import iterate
from lipopt.result import BoundKind, LipschitzResult, Status
from lipopt.spec import Norm, Question

GAMMA = 1.3  # CLIP reg_decay


@dataclass(frozen=True)
class Options(MethodOptions):
    restarts: int = 8
    steps: int = 200
    pair_steps: int | None = None  # default: steps
    seed: int | None = None  # default: RunOptions.seed
    n_init: int = 1000
    lr: float = 0.02
    global_radius: float | None = None  # sampling scale of the starting points for the global domain


def applicable(network: Network, question: Question) -> str | None:
    return None


def run(network: Network, question: Question, options: RunOptions) -> LipschitzResult:
    t0 = time.perf_counter()
    dl = Deadline.start(options.time_limit, t0)
    import torch

    q = question.bind(network)
    o = Options.from_run(options, "grad-ascent")
    cfg = {
        "restarts": int(o.restarts),
        "steps": int(o.steps),
        "seed": int(options.seed if o.seed is None else o.seed),
        "n_init": int(o.n_init),
        "lr": float(o.lr),
        "pair_steps": int(o.steps if o.pair_steps is None else o.pair_steps),
        "global_radius": o.global_radius,
    }
    rng = np.random.default_rng(cfg["seed"])
    torch.manual_seed(cfg["seed"])
    if q.constant == "nominal":
        res = _run_nominal(network, q, cfg, rng, options, dl)
    else:
        res = _run_pairwise(network, q, cfg, rng, options, dl)
    res.options = {**cfg, "time_limit": options.time_limit}
    dl.mark(res)
    res.wall_time = time.perf_counter() - t0
    return res


# ------------------------------------------------------------------------------------------ pairwise


def _starts(network: Network, q: Question, cfg: dict, rng: np.random.Generator,
            options: RunOptions, dl: Deadline) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    gr = cfg["global_radius"]
    n = max(cfg["n_init"], cfg["restarts"])
    r = cfg["restarts"]
    cand = sample_domain(network, q, n, rng, None if gr is None else float(gr))
    vals = evaluate_until(lambda xs: batch_jacobian_norms(network, xs, q), cand, dl.share(0.25),
                          "starting candidates", min_rows=r)
    cand = cand[: len(vals)]
    top = list(np.argsort(-vals, kind="stable")[: (r + 1) // 2])
    rest = [i for i in rng.permutation(len(cand)) if i not in set(top)][: r - len(top)]
    idx = np.array(top + rest, dtype=int)
    return cand[idx], cand, vals


def _run_pairwise(network: Network, q: Question, cfg: dict, rng: np.random.Generator,
                  options: RunOptions, dl: Deadline) -> LipschitzResult:
    import torch

    from lipopt.lower.torch_net import Adam, TorchStages, jacobian_fn, project, torch_norm

    scale = input_scale(network, q)
    x0, pool_x, pool_v = _starts(network, q, cfg, rng, options, dl)
    pool_x, pool_v = [pool_x], [pool_v]
    ts = TorchStages(network, options.device)
    jac = jacobian_fn(ts, q, network.output_size)
    # x = x0 + s * d with a per-start length s (far-away starts of the global domain move proportionally)
    xs = torch.tensor(x0, device=options.device)
    row_scale = np.maximum(scale, np.max(np.abs(x0), axis=1, initial=0.0)) if q.constant == "global" else (
        np.full(len(x0), scale))
    srow = torch.tensor(row_scale[:, None], device=options.device)
    d = torch.zeros_like(xs, requires_grad=True)
    zs = [s for s in ts.pre_activation_scales(xs) if s > 0]
    z_scale = float(np.median(zs)) if zs else 1.0
    steps = cfg["steps"]
    opt = Adam(d, lr=cfg["lr"])
    dl_smooth = dl.share(0.5)
    pooled = True  # the current iterate is in the pool
    for k in iterate(steps, "grad-ascent (smoothed)", enabled=options.progress):
        if dl_smooth.expired():
            dl.stopped(f"smoothed ascent (step {k} of {steps})")
            break
        temperature = 0.3 * z_scale * (1e-4 ** (k / max(1, steps - 1)))
        opt.zero_grad()
        obj = torch_norm(jac(xs + srow * d, temperature), q)
        if not obj.requires_grad:  # the Jacobian does not depend on x (an affine network): nothing to climb
            break
        (-obj.sum()).backward()
        if d.grad is not None:
            d.grad = torch.nan_to_num(d.grad, nan=0.0, posinf=0.0, neginf=0.0)
        opt.step()
        with torch.no_grad():
            d.copy_((project(xs + srow * d, q) - xs) / srow)
        pooled = False
        if k % 10 == 9 or k == steps - 1:
            xn = (xs + srow * d).detach().cpu().numpy().copy()
            pool_x.append(xn)
            pool_v.append(batch_jacobian_norms(network, xn, q))
            pooled = True
    if not pooled:  # stopped at the time limit between two pool updates: keep the last iterate
        xn = (xs + srow * d).detach().cpu().numpy().copy()
        pool_x.append(xn)
        pool_v.append(batch_jacobian_norms(network, xn, q))
    px, pv = np.vstack(pool_x), np.concatenate(pool_v)
    pair_best, pair_stats = _pair_phase(network, q, ts, _Pool(px, pv), cfg, scale, options, dl)
    px = np.vstack([px, pair_stats.pop("points")])
    pv = np.concatenate([pv, batch_jacobian_norms(network, px[len(pv):], q)])
    cert = certify_best(network, px, pv, q, rng, scale, deadline=dl)
    stats: dict[str, Any] = {"candidates": len(pv), "best_candidate": float(np.max(pv)), **pair_stats}
    if pair_best is not None and (cert is None or pair_best.value > cert.value):
        cert = pair_best
    if cert is None:
        if dl.hit:  # out of time before a candidate was certified: no number, honestly
            return LipschitzResult("grad-ascent", BoundKind.LOWER, None, Status.TIME_LIMIT, stats=stats,
                                   message="time limit reached before a candidate was certified")
        return LipschitzResult("grad-ascent", BoundKind.LOWER, None, Status.ERROR, stats=stats,
                               message="no candidate could be certified")
    res = LipschitzResult("grad-ascent", BoundKind.LOWER, cert.value, Status.SOLVED, stats=stats,
                          witness={**cert.witness, "kind": cert.how}, notes=list(cert.notes))
    from lipopt.methods.sampling import _check_witness

    _check_witness(res, network, q, cert.witness, cert.how)
    return res


@dataclass(frozen=True)
class _Pool:
    """The candidate points of the ascent (one per row) and their Jacobian norms."""

    x: np.ndarray
    v: np.ndarray


def _pair_phase(network: Network, q: Question, ts: Any, pool: _Pool, cfg: dict, scale: float,
                options: RunOptions, dl: Deadline | None = None) -> tuple[Certified | None, dict[str, Any]]:
    """CLIP Algorithm 1 on pairs started along the maximising directions of the best points of the pool."""
    import torch

    from lipopt.lower.torch_net import project

    px, pv = pool.x, pool.v
    r = cfg["restarts"]
    order = np.argsort(-pv, kind="stable")
    starts = []
    for i in order:
        if len(starts) == r:
            break
        if all(np.linalg.norm(px[i] - px[j]) > 1e-9 * scale for j in starts):
            starts.append(int(i))
    u0 = px[starts]
    # the starts' full Jacobians in one batched reverse pass (network.jacobian is one forward pass per
    # input direction: 2 s per point on a 784-input conv net)
    import dataclasses

    from lipopt.lower.batch import batch_jacobians
    from lipopt.spec import AllOutputs

    jacs = batch_jacobians(network, u0, dataclasses.replace(q, output=AllOutputs()))
    v0 = np.array([clip_to_domain(u + 1e-3 * scale * norm_direction(jac, q), q) for u, jac in zip(u0, jacs,
                                                                                                     strict=True)])
    c = q.output_vector(network.output_size)
    ct = None if c is None else torch.tensor(c, device=options.device)

    def quotient(u, v):
        d = ts.forward(u) - ts.forward(v)
        num = (d @ ct).abs() if ct is not None else torch.linalg.vector_norm(d, ord=q.output_norm.p, dim=1)
        den = torch.linalg.vector_norm(u - v, ord=q.input_norm.p, dim=1)
        return num / torch.clamp(den, min=1e-300)

    u = torch.tensor(u0, device=options.device)
    v = torch.tensor(v0, device=options.device)
    with torch.no_grad():
        best_q = quotient(u, v)
    step = torch.full((len(starts),), 0.01 * scale, dtype=torch.float64, device=options.device)
    min_dist = 1e-5 * scale  # closer pairs: the quotient is dominated by rounding noise
    accepted = 0
    dl_pairs = (dl or Deadline()).share(0.6)
    for k in iterate(cfg["pair_steps"], "grad-ascent (pairs)", enabled=options.progress):
        if dl_pairs.expired():
            dl_pairs.stopped(f"pair ascent (step {k} of {cfg['pair_steps']})")
            break
        uu, vv = u.clone().requires_grad_(True), v.clone().requires_grad_(True)
        qq = quotient(uu, vv)
        gu, gv = torch.autograd.grad(qq.sum(), [uu, vv])
        gn = torch.sqrt((gu**2).sum(1) + (gv**2).sum(1)).clamp(min=1e-300)
        with torch.no_grad():
            nu = project(u + (step / gn)[:, None] * gu, q)
            nv = project(v + (step / gn)[:, None] * gv, q)
            new_q = quotient(nu, nv)
            dist = torch.linalg.vector_norm(nu - nv, ord=q.input_norm.p, dim=1)
            ok = (new_q > best_q) & torch.isfinite(new_q) & (dist >= min_dist)
            u = torch.where(ok[:, None], nu, u)
            v = torch.where(ok[:, None], nv, v)
            best_q = torch.where(ok, new_q, best_q)
            step = torch.where(ok, step * GAMMA, step / GAMMA)
            accepted += int(ok.sum())
    un, vn = u.cpu().numpy(), v.cpu().numpy()
    best: Certified | None = None
    for a, b in zip(un, vn, strict=True):
        if not (in_domain(a, q) and in_domain(b, q)):
            continue
        val = certified_pair_ratio(network, a, b, q)
        if best is None or val > best.value:
            best = Certified(val, {"x": a.tolist(), "y": b.tolist()}, "pair", notes=["CLIP pair quotient"])
    return best, {"pair_accepted_steps": accepted, "best_pair": None if best is None else best.value,
                  "points": np.vstack([un, vn])}


# ------------------------------------------------------------------------------------------ nominal


def _run_nominal(network: Network, q: Question, cfg: dict, rng: np.random.Generator,
                 options: RunOptions, dl: Deadline | None = None) -> LipschitzResult:
    import torch

    from lipopt.lower.torch_net import TorchStages, project

    dom = q.domain
    x0 = dom.center  # type: ignore[union-attr]
    dl = dl or Deadline()
    r = cfg["restarts"]
    cand = nominal_candidates(network, q, max(cfg["n_init"], cfg["restarts"]), rng)  # sampling's points
    vals = evaluate_until(lambda xs: nominal_ratios(network, xs, q), cand, dl.share(0.25),
                          "starting candidates", min_rows=r)
    cand = cand[: len(vals)]
    idx = np.argsort(-vals, kind="stable")[:r]
    ts = TorchStages(network, options.device)
    x0t = torch.tensor(x0, device=options.device)
    f0 = ts.forward(x0t).detach()
    c = q.output_vector(network.output_size)
    ct = None if c is None else torch.tensor(c, device=options.device)

    def ratio(x):
        d = ts.forward(x) - f0
        num = (d @ ct).abs() if ct is not None else torch.linalg.vector_norm(d, ord=q.output_norm.p, dim=1)
        den = torch.linalg.vector_norm(x - x0t, ord=q.input_norm.p, dim=1)
        return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))

    x = torch.tensor(cand[idx], device=options.device)
    with torch.no_grad():
        best_q = ratio(x)
    radius = float(dom.radius)  # type: ignore[union-attr]
    step = torch.full((len(idx),), 0.05 * radius, dtype=torch.float64, device=options.device)
    dl_ascent = dl.share(0.8)
    for k in iterate(cfg["steps"], "grad-ascent (nominal)", enabled=options.progress):
        if dl_ascent.expired():
            dl.stopped(f"ascent (step {k} of {cfg['steps']})")
            break
        xx = x.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(ratio(xx).sum(), [xx])
        with torch.no_grad():
            nx = project(x + step[:, None] * _ascent_direction(g, q.input_norm), q)
            nq = ratio(nx)
            ok = (nq > best_q) & torch.isfinite(nq)
            x = torch.where(ok[:, None], nx, x)
            best_q = torch.where(ok, nq, best_q)
            step = torch.where(ok, step * GAMMA, step / GAMMA)
    xs = np.vstack([x.cpu().numpy(), cand[idx[:1]]])
    best_val, best_x = -1.0, None
    for xc in xs:
        xc = clip_to_domain(xc, q)
        if not in_domain(xc, q):
            continue
        val = certified_pair_ratio(network, xc, x0, q)
        if val > best_val:
            best_val, best_x = val, xc
    if best_x is None:
        return LipschitzResult("grad-ascent", BoundKind.LOWER, None, Status.ERROR,
                               message="no point in the ball")
    res = LipschitzResult("grad-ascent", BoundKind.LOWER, best_val, Status.SOLVED,
                          witness={"x": best_x.tolist(), "x0": x0.tolist(), "kind": "nominal pair"},
                          stats={"best_sampled": float(vals[idx[0]])})
    res.add_check("witness in domain", in_domain(best_x, q), "")
    again = certified_pair_ratio(network, best_x, x0, q)
    res.add_check("ratio re-evaluated in float64", best_val == again, f"{again:.12g}")
    return res


def _ascent_direction(g: Any, norm: Norm) -> Any:
    """The steepest-ascent step of unit ``norm`` for gradient rows ``g``: sign(g) in l-inf (the corner
    of the box, PGD's step), g / |g|_2 otherwise."""
    import torch

    if norm is Norm.LINF:
        return torch.sign(g)
    return g / torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp(min=1e-300)
