"""Check that an imported IR network reproduces its source: outputs and Jacobians at seeded points.

A *reference* is a function ``ref(x, dirs) -> (y, jv)``: ``x`` is one input of the network's input shape,
``dirs`` a batch of directions ``(k, *input_shape)``; it returns the source's output ``y`` (flat, length
``out``) and the directional derivatives ``jv`` (k, out), i.e. ``J @ d`` for every direction. References
are independent of the IR: torch autograd in float64 for torch modules, a numpy evaluation of the raw
arrays for the file formats, a numpy interpreter for ONNX graphs.

Small networks are compared on the full Jacobian (directions = the identity, IR side ``net.jacobian``);
big ones on Jacobian-vector products along a few random directions, which keeps the check cheap.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lipopt.errors import EquivalenceError
from lipopt.network.layers import ACTIVATION_LAYERS, MaxPool2d
from lipopt.network.network import Network

Reference = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
Sampler = Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]


@dataclass(frozen=True)
class EquivalenceReport:
    source: str
    points: int
    mode: str  # "full Jacobian" or "k Jacobian-vector products"
    max_output_error: float
    max_jacobian_error: float
    skipped_points: int


def ir_jvp(net: Network, x: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IR output at x and directional derivatives along ``dirs``: see ``Network.jvp``."""
    return net.jvp(x, dirs)


def _ambiguous(net: Network, x: np.ndarray, rtol: float = 1e-7) -> bool:
    """True if x lies (numerically) on a ReLU / LeakyReLU kink or a max-pool tie, where Jacobians may
    differ."""
    h = np.asarray(x, dtype=np.float64).reshape(1, *net.input_shape)
    for la in net.layers:
        if isinstance(la, ACTIVATION_LAYERS):
            scale = max(float(np.max(np.abs(h))), 1e-300)
            if np.any((np.abs(h) <= rtol * scale) & (h != 0)):
                return True
        elif isinstance(la, MaxPool2d):
            win = la.windows(h.shape[1:])
            flat = h.reshape(-1)
            vals = np.sort(np.where(win >= 0, flat[np.maximum(win, 0)], -np.inf), axis=1)
            if vals.shape[1] > 1:
                top, second = vals[:, -1], vals[:, -2]
                scale = max(float(np.max(np.abs(flat))), 1e-300)
                if np.any((top - second <= rtol * scale) & (np.abs(top) > rtol * scale)):
                    return True
        h = la.forward(h)
    return False


def default_sampler(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return rng.standard_normal(shape)


def uniform_sampler(lo: float, hi: float) -> Sampler:
    def sample(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return rng.uniform(lo, hi, size=shape)

    return sample


@dataclass(frozen=True)
class CheckOptions:
    """How :func:`check_equivalence` samples and what it tolerates.

    ``n_points`` defaults to 3 (full-Jacobian mode, ``n_in * widest layer <= max_full_work``), else 2;
    big networks are compared on ``n_directions`` Jacobian-vector products per point."""

    n_points: int | None = None
    rtol: float = 1e-9
    seed: int = 0
    n_directions: int = 4
    max_full_work: float = 1e6


def check_equivalence(net: Network, reference: Reference, *, source: str = "source model",
                      sampler: Sampler | None = None, options: CheckOptions | None = None
                      ) -> EquivalenceReport:
    """Compare ``net`` with ``reference`` at ``options.n_points`` seeded random inputs (see
    :class:`CheckOptions`); raise EquivalenceError.

    Errors are measured relative to the largest reference magnitude (outputs: max |y|; Jacobian: max |J v|)
    and must stay below ``rtol``. Points on a ReLU kink or max-pool tie are replaced by fresh ones."""
    opts = options or CheckOptions()
    n_points, rtol, seed, n_directions = opts.n_points, opts.rtol, opts.seed, opts.n_directions
    rng = np.random.default_rng(seed)
    sampler = sampler or default_sampler
    n_in = net.input_size
    widest = max(int(np.prod(s)) for s in net.shapes)
    full = n_in * widest <= opts.max_full_work
    mode = "full Jacobian" if full else f"{n_directions} Jacobian-vector products"
    if n_points is None:
        n_points = 3 if full else 2
    max_out = max_jac = 0.0
    done = skipped = tries = 0
    while done < n_points:
        tries += 1
        if tries > 4 * n_points + 10:
            raise EquivalenceError(
                f"equivalence check of {source}: could not find {n_points} points off ReLU kinks and "
                "max-pool ties"
            )
        x = np.asarray(sampler(rng, net.input_shape), dtype=np.float64).reshape(net.input_shape)
        if full:
            dirs = np.eye(n_in).reshape(n_in, *net.input_shape)
        else:
            dirs = rng.standard_normal((n_directions, *net.input_shape))
        y_ref, jv_ref = reference(x, dirs)
        y_ref = np.asarray(y_ref, dtype=np.float64).reshape(-1)
        jv_ref = np.asarray(jv_ref, dtype=np.float64).reshape(dirs.shape[0], -1)
        y_ir = net.forward(x).reshape(-1)
        if y_ir.shape != y_ref.shape:
            raise EquivalenceError(
                f"the imported network has {y_ir.size} outputs but {source} has {y_ref.size}"
            )
        jv_ir = net.jacobian(x).T if full else ir_jvp(net, x, dirs)[1]
        err_y = float(np.max(np.abs(y_ir - y_ref))) / max(float(np.max(np.abs(y_ref))), 1e-12)
        err_j = float(np.max(np.abs(jv_ir - jv_ref))) / max(float(np.max(np.abs(jv_ref))), 1e-12)
        if err_y > rtol:
            raise EquivalenceError(
                f"the imported network does not reproduce {source}: max relative output error {err_y:.3e} "
                f"(tolerance {rtol:.0e}) at a random input (seed {seed})"
            )
        if err_j > rtol:
            if _ambiguous(net, x):
                skipped += 1
                continue
            raise EquivalenceError(
                f"the imported network does not reproduce {source}: max relative Jacobian error {err_j:.3e} "
                f"({mode}, tolerance {rtol:.0e}) at a random input (seed {seed})"
            )
        max_out, max_jac = max(max_out, err_y), max(max_jac, err_j)
        done += 1
    return EquivalenceReport(source, n_points, mode, max_out, max_jac, skipped)


# ------------------------------------------------------------------------------------------------
# numpy references for raw weight arrays (independent of the IR code)


def mlp_reference(
    weights: list[np.ndarray],
    biases: list[np.ndarray | None],
    layout: str = "out_in",
    pre: Callable[[np.ndarray], np.ndarray] | None = None,
    pre_scale: np.ndarray | None = None,
) -> Reference:
    """ReLU chain on the raw arrays: ``layout='out_in'`` computes W @ h, ``'in_out'`` computes h @ W.

    ``pre`` is an optional input transform x -> pre(x) with linear part ``pre_scale`` (element-wise)."""
    ws = [np.asarray(w, dtype=np.float64) for w in weights]
    bs = [None if b is None else np.asarray(b, dtype=np.float64).reshape(-1) for b in biases]

    def ref(x: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h = np.asarray(x, dtype=np.float64).reshape(1, -1)
        d = np.asarray(dirs, dtype=np.float64).reshape(dirs.shape[0], -1)
        if pre is not None:
            h = pre(h)
            d = d * np.asarray(pre_scale).reshape(1, -1)
        for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
            if layout == "out_in":
                h, d = h @ w.T, d @ w.T
            else:
                h, d = h @ w, d @ w
            if b is not None:
                h = h + b
            if i < len(ws) - 1:
                d = d * (h > 0)
                h = np.maximum(h, 0.0)
        return h.reshape(-1), d

    return ref


def torch_reference(module: object, input_shape: tuple[int, ...]) -> Reference:
    """Float64 torch autograd reference of a module (deep-copied, eval mode)."""
    import copy

    import torch

    mod = copy.deepcopy(module).double().eval()  # type: ignore[attr-defined]

    def ref(x: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # reverse mode, one backward pass per output (no vmap / forward-AD start-up costs)
        k = dirs.shape[0]
        xt = torch.tensor(np.asarray(x, dtype=np.float64).reshape(1, *input_shape), requires_grad=True)
        with torch.enable_grad():
            y = mod(xt).reshape(-1)
            rows = []
            for i in range(y.numel()):
                (g,) = torch.autograd.grad(y[i], xt, retain_graph=i < y.numel() - 1, allow_unused=True)
                rows.append(np.zeros(xt.numel()) if g is None else g.detach().numpy().reshape(-1))
        jac = np.stack(rows)  # (out, in)
        return y.detach().numpy(), np.asarray(dirs, dtype=np.float64).reshape(k, -1) @ jac.T

    return ref
