"""Adversarial examples (FGSM, PGD in l2) and nominal-point lower bounds from real pairs.

* :func:`fgsm_l2` / :func:`pgd_l2` search x in the l2 ball around x0 that changes the predicted class.
  A success is re-checked in float64 on the IR (``network.forward``); its distance |x - x0|_2 is then
  an UPPER bound on the minimal adversarial perturbation. :func:`minimal_adversarial` shrinks it by
  bisection on the radius.
* :func:`nominal_ratio_lower` maximises |f(x) - f(x0)|_2 / |x - x0|_2 over the ball (projected gradient
  ascent from the top singular direction of J(x0) and random starts, several radii, one batch). Every
  reported value is the float64 IR ratio of a real point of the ball less its rounding allowance: a
  certified LOWER bound on the nominal-point constant.
torch is imported inside the functions.

The mathematics as implemented: ``docs/methods.md#adversarial``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.certify.witness import certified_pair_ratios
from lipopt.network.layers import AvgPool2d, Conv2d, Dense, Flatten, LeakyReLU, MaxPool2d, ReLU
from lipopt.network.network import Network
from lipopt.network.stages import dispatch
from lipopt.spec import AllOutputs, Ball, Direction, Norm, Question


def torch_model(network: Network, device: str = "cpu") -> Callable[[Any], Any]:
    """A differentiable float64 torch function for the IR network: (B, *input_shape) -> (B, out)."""
    import torch

    from lipopt.analytic.linops import layer_op, resolve_device
    from lipopt.analytic.local_bound import _maxpool

    dev, _ = resolve_device(device)

    def linear(la: Any, i: int) -> Callable[[Any], Any]:
        return layer_op(la, network.shapes[i], dev).affine

    def leaky(la: Any, i: int) -> Callable[[Any], Any]:
        return lambda x: torch.nn.functional.leaky_relu(x, la.negative_slope)

    table: dict[type, Callable[[Any, int], Callable[[Any], Any]]] = {
        Dense: linear, Conv2d: linear, AvgPool2d: linear, Flatten: linear,
        ReLU: lambda la, i: torch.relu, LeakyReLU: leaky,
        MaxPool2d: lambda la, i: (lambda x: _maxpool(la, x)),
    }
    steps = [dispatch(table, la, "the torch model")(la, i) for i, la in enumerate(network.layers)]

    def f(x: Any) -> Any:
        h = x.reshape(x.shape[0], *network.input_shape)
        for s in steps:
            h = s(h)
        return h.reshape(h.shape[0], -1)

    f.device = dev  # type: ignore[attr-defined]
    return f


@dataclass(frozen=True)
class Search:
    """How a projected-gradient search runs: iterations per start, random restarts, the seed of the random
    starts and the torch device."""

    steps: int = 50
    restarts: int = 2
    seed: int = 0
    device: str = "cpu"


#: the default search of :func:`nominal_ratio_lower` (fewer steps per start: it runs at several radii)
NOMINAL_SEARCH = Search(steps=30)


@dataclass
class AdversarialResult:
    found: bool
    x: np.ndarray | None  # the adversarial input (flat), verified on the IR
    distance: float | None  # |x - x0|_2: an upper bound on the minimal adversarial perturbation
    label: int
    new_label: int | None
    method: str
    evaluations: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


def _margin_loss(out: Any, label: int) -> Any:
    import torch

    other = out.clone()
    other[:, label] = -torch.inf
    return other.max(dim=1).values - out[:, label]


def _project(x: Any, x0: Any, eps: float, clip: tuple[float, float] | None) -> Any:
    import torch

    d = x - x0
    n = torch.linalg.vector_norm(d.reshape(d.shape[0], -1), dim=1).clamp_min(1e-300)
    d = d * torch.clamp(eps / n, max=1.0).reshape(-1, *([1] * (d.dim() - 1)))
    x = x0 + d
    if clip is not None:
        x = x.clamp(*clip)
    return x


def _verify(network: Network, x0: np.ndarray, x: np.ndarray, label: int,
            eps: float) -> tuple[bool, int, float]:
    pred = int(np.argmax(network.forward(x)))
    dist = float(np.linalg.norm(x - x0))
    return pred != label and dist <= eps * (1 + 1e-12), pred, dist


def fgsm_l2(network: Network, x0: np.ndarray, eps: float, label: int | None = None,
            device: str = "cpu", clip: tuple[float, float] | None = None,
            model: Callable[[Any], Any] | None = None) -> AdversarialResult:
    """One l2 gradient step of length eps on the margin loss."""
    import torch

    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    label = int(np.argmax(network.forward(x0))) if label is None else int(label)
    f = model or torch_model(network, device)
    xt0 = torch.as_tensor(x0, dtype=torch.float64, device=f.device).reshape(1, -1)  # type: ignore[attr-defined]
    x = xt0.clone().requires_grad_(True)
    loss = _margin_loss(f(x), label).sum()
    (g,) = torch.autograd.grad(loss, x)
    gn = torch.linalg.vector_norm(g)
    if gn == 0:
        return AdversarialResult(False, None, None, label, None, "fgsm-l2", 1)
    xa = _project(xt0 + eps * g / gn, xt0, eps, clip).detach().cpu().numpy().reshape(-1)
    ok, pred, dist = _verify(network, x0, xa, label, eps)
    return AdversarialResult(ok, xa if ok else None, dist if ok else None, label, pred if ok else None,
                             "fgsm-l2", 1)


def pgd_l2(network: Network, x0: np.ndarray, eps: float, label: int | None = None,
           search: Search = Search(), *, step_size: float | None = None,
           clip: tuple[float, float] | None = None,
           model: Callable[[Any], Any] | None = None) -> AdversarialResult:
    """Projected gradient ascent (normalised l2 steps) on the margin loss; the first restart starts at x0,
    the others at random points of the sphere, all restarts run together as one batch. Stops at the
    first IR-verified class change."""
    import torch

    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    label = int(np.argmax(network.forward(x0))) if label is None else int(label)
    steps, restarts, seed = search.steps, search.restarts, search.seed
    f = model or torch_model(network, search.device)
    dev = f.device  # type: ignore[attr-defined]
    xt0 = torch.as_tensor(x0, dtype=torch.float64, device=dev).reshape(1, -1)
    alpha = step_size or 2.5 * eps / max(1, steps)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    # all restarts at once, one row each (the rows are independent: the gradient of the summed loss is
    # each row's gradient); row 0 starts at x0, the others at random points of the sphere
    starts = [xt0.clone()]
    for _ in range(1, max(1, restarts)):
        z = torch.randn(xt0.shape, generator=gen, dtype=torch.float64).to(dev)
        starts.append(_project(xt0 + eps * z / torch.linalg.vector_norm(z), xt0, eps, clip))
    x = torch.cat(starts, dim=0)
    evals = 0
    best_loss = -np.inf

    def first_verified(xb: Any, rows: Any) -> AdversarialResult | None:
        for i in rows:
            xa = xb[i].detach().cpu().numpy().reshape(-1)
            ok, pred, dist = _verify(network, x0, xa, label, eps)
            if ok:
                return AdversarialResult(True, xa, dist, label, pred, "pgd-l2", evals)
        return None

    for _ in range(steps):
        x = x.detach().requires_grad_(True)
        loss = _margin_loss(f(x), label)
        evals += x.shape[0]
        (g,) = torch.autograd.grad(loss.sum(), x)
        lv = loss.detach().cpu().numpy()
        best_loss = max(best_loss, float(lv.max()))
        if np.any(lv > 0):
            got = first_verified(x, np.flatnonzero(lv > 0))
            if got is not None:
                return got
        gn = torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(1e-300)
        x = _project(x.detach() + alpha * g / gn, xt0, eps, clip)
    evals += x.shape[0]
    got = first_verified(x, range(x.shape[0]))
    if got is not None:
        return got
    return AdversarialResult(False, None, None, label, None, "pgd-l2", evals,
                             [{"best_margin_loss": best_loss}] if np.isfinite(best_loss) else [])


def minimal_adversarial(network: Network, x0: np.ndarray, label: int | None = None, eps_max: float = 10.0,
                        bisection_steps: int = 12, search: Search = Search(),
                        clip: tuple[float, float] | None = None) -> AdversarialResult:
    """Smallest radius at which PGD finds an IR-verified adversarial example (bisection on the radius);
    the returned distance is an upper bound on the minimal adversarial l2 perturbation."""
    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    label = int(np.argmax(network.forward(x0))) if label is None else int(label)
    model = torch_model(network, search.device)
    best = fgsm_l2(network, x0, eps_max, label, search.device, clip, model)
    pg = pgd_l2(network, x0, eps_max, label, search, clip=clip, model=model)
    evals = best.evaluations + pg.evaluations
    if pg.found and (not best.found or pg.distance < best.distance):  # type: ignore[operator]
        best = pg
    if not best.found:
        return AdversarialResult(False, None, None, label, None, "pgd-l2 bisection", evals)
    lo, hi = 0.0, float(best.distance)  # type: ignore[arg-type]
    for _ in range(bisection_steps):
        mid = 0.5 * (lo + hi)
        r = pgd_l2(network, x0, mid, label, search, clip=clip, model=model)
        evals += r.evaluations
        if r.found:
            best, hi = r, float(r.distance)  # type: ignore[arg-type]
        else:
            lo = mid
    best.method = "pgd-l2 bisection"
    best.evaluations = evals
    return best


def nominal_ratio_lower(network: Network, x0: np.ndarray, eps: float, search: Search = NOMINAL_SEARCH,
                        c: np.ndarray | None = None,
                        model: Callable[[Any], Any] | None = None) -> tuple[float, np.ndarray | None]:
    """Best IR-evaluated |f(x)-f(x0)| / |x-x0| (l2; |c^T .| for a scalar output) over points x of the
    closed l2 ball of radius eps around x0: a LOWER bound on the nominal-point constant. Returns
    (ratio, x).

    Projected gradient ascent on the ratio from +-v (v: the top right-singular direction of J(x0), by
    power iteration) and ``search.restarts`` random directions, at the radii eps, eps/4, eps/32 and
    eps/1000, all (radius, start) ascents as one batch; each ascent's best point is certified in one
    batched float64 pass (:func:`lipopt.certify.witness.certified_pair_ratios`: the ratio less the
    rounding allowance of the actual evaluation), so the value is a real, certified ratio."""
    import torch

    x0 = np.asarray(x0, dtype=np.float64).reshape(-1)
    steps, restarts, seed = search.steps, search.restarts, search.seed
    f = model or torch_model(network, search.device)
    dev = f.device  # type: ignore[attr-defined]
    xt0 = torch.as_tensor(x0, dtype=torch.float64, device=dev).reshape(1, -1)
    ct = None if c is None else torch.as_tensor(np.asarray(c, dtype=np.float64), device=dev)
    with torch.no_grad():
        f0 = f(xt0)

    def ratio(x: Any) -> Any:
        df = f(x) - f0
        num = (df @ ct).abs() if ct is not None else torch.linalg.vector_norm(df, dim=1)
        return num / torch.linalg.vector_norm(x - xt0, dim=1).clamp_min(1e-300)

    # top right-singular direction of J(x0) by power iteration with autograd (JVP via double VJP)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    v = torch.randn(xt0.shape, generator=gen, dtype=torch.float64).to(dev)
    x_req = xt0.clone().requires_grad_(True)
    out = f(x_req)
    if ct is not None:
        out = out @ ct.reshape(-1, 1)
    for _ in range(20):
        v = v / torch.linalg.vector_norm(v).clamp_min(1e-300)
        u = torch.zeros_like(out, requires_grad=True)
        (vjp,) = torch.autograd.grad(out, x_req, u, create_graph=True)
        (jv,) = torch.autograd.grad(vjp, u, v, retain_graph=True)
        (v,) = torch.autograd.grad(out, x_req, jv, retain_graph=True)
    v = v / torch.linalg.vector_norm(v).clamp_min(1e-300)
    starts = [v, -v]
    for _ in range(max(0, restarts)):
        z = torch.randn(xt0.shape, generator=gen, dtype=torch.float64).to(dev)
        starts.append(z / torch.linalg.vector_norm(z))
    q = _nominal_question(x0, eps, c)
    radii = [eps, eps / 4, eps / 32, eps * 1e-3]
    # every (radius, start) ascent runs as one row of a batch: the rows are independent (the ratio of
    # each row depends on that row alone, so the gradient of the sum is the gradient of each row)
    s0 = torch.cat(starts, dim=0)
    rad = torch.tensor([r for r in radii for _ in starts], dtype=torch.float64, device=dev).reshape(-1, 1)
    x = xt0 + rad * s0.repeat(len(radii), 1)
    best_t = torch.full((x.shape[0],), -1.0, dtype=torch.float64, device=dev)
    cand = x.detach().clone()
    for it in range(steps + 1):
        x = x.detach().requires_grad_(True)
        val = ratio(x)
        with torch.no_grad():
            better = val > best_t
            best_t = torch.where(better, val, best_t)
            cand = torch.where(better[:, None], x, cand)
        if it == steps:
            break
        (g,) = torch.autograd.grad(val.sum(), x)
        gn = torch.linalg.vector_norm(g, dim=1, keepdim=True).clamp_min(1e-300)
        x = _project_rows(x.detach() + 0.2 * rad * g / gn, xt0, rad)
    cands = cand.detach().cpu().numpy()
    vals = _ir_ratios(network, q, x0, cands, eps)
    if not vals.size or vals.max() <= 0:
        return 0.0, None
    i = int(np.argmax(vals))
    return float(vals[i]), cands[i]


def _project_rows(x: Any, x0: Any, rad: Any) -> Any:
    """Each row of x projected onto the l2 ball of its own radius (rad: (B, 1)) around x0."""
    import torch

    d = x - x0
    n = torch.linalg.vector_norm(d, dim=1, keepdim=True).clamp_min(1e-300)
    return x0 + d * torch.clamp(rad / n, max=1.0)


def _nominal_question(x0: np.ndarray, eps: float, c: np.ndarray | None) -> Question:
    out = AllOutputs() if c is None else Direction(c)
    return Question(Norm.L2, Norm.L2, Ball(x0, eps, Norm.L2), out, nominal=True)


def _ir_ratios(network: Network, q: Question, x0: np.ndarray, xs: np.ndarray, eps: float) -> np.ndarray:
    """The float64 ratios |f(x)-f(x0)| / |x-x0| of the rows of xs less their rounding allowance
    (:func:`lipopt.certify.witness.certified_pair_ratios`, one batched pass); 0 outside the ball."""
    xs = np.asarray(xs, dtype=np.float64).reshape(-1, x0.size)
    dx = np.linalg.norm(xs - x0[None, :], axis=1)
    ok = (dx > 0) & (dx <= eps * (1 + 1e-12))
    out = np.zeros(len(xs))
    if np.any(ok):
        out[ok] = certified_pair_ratios(network, xs[ok], x0, q)
    return out

