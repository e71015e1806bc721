"""Random small conv + pool nets: the local bound against sampled / PGD ratios, monotonicity, exactness;
one-pass row norms against the basis-vector reference; certified spectral norms against exact SVDs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipopt.analytic.linops import AvgPoolOp, ComposedOp, ConvOp, DenseOp, ReshapeOp, compose
from lipopt.analytic.local_bound import LocalBoundComputer, LocalOptions, local_bound
from lipopt.analytic.rownorms import row_norms_sq, row_norms_sq_reference
from lipopt.analytic.spectral import (
    SpectralOptions,
    conv_fourier_upper,
    masked_norm_upper,
    matrix_norm_upper,
    power_estimate,
    schur_upper,
)
from lipopt.lower.adversarial import Search, nominal_ratio_lower
from lipopt.network.layers import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, ReLU
from lipopt.network.network import Network

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _one_thread():
    from lipopt.analytic._threads import limit_threads

    with limit_threads(1):
        yield


def conv_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    layers = [
        Conv2d(rng.normal(size=(4, 2, 3, 3)) * 0.5, rng.normal(size=4) * 0.3, padding=1),
        ReLU(),
        MaxPool2d(2, 1),
        Conv2d(rng.normal(size=(4, 2, 2, 2)) * 0.5, rng.normal(size=4) * 0.3, stride=2, groups=2),
        ReLU(),
        AvgPool2d(2, 1),
        Flatten(),
        Dense(rng.normal(size=(6, 16)) * 0.5, rng.normal(size=6) * 0.3),
        ReLU(),
        Dense(rng.normal(size=(3, 6)), rng.normal(size=3)),
    ]
    return Network(layers, (2, 7, 7), name=f"conv{seed}")


def sampled_nominal_ratio(net: Network, x0: np.ndarray, eps: float, n: int,
                          rng: np.random.Generator) -> float:
    f0 = net.forward(x0)
    d = rng.normal(size=(n, x0.size))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    t = eps * rng.random(n) ** (1 / 4)
    t[: n // 4] *= 1e-3
    xs = x0 + d * t[:, None]
    fx = net.forward(xs)
    return float(np.max(np.linalg.norm(fx - f0, axis=1) / np.linalg.norm(xs - x0, axis=1)))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bound_dominates_samples_and_pgd_and_grows(seed: int) -> None:
    net = conv_net(seed)
    rng = np.random.default_rng(100 + seed)
    x0 = rng.normal(size=net.input_size)
    comp = LocalBoundComputer(net, x0)
    prev = 0.0
    for eps in (1e-3, 1e-2, 0.1, 0.5, 2.0):
        lb = comp.bound(eps)
        assert lb.value >= prev * (1 - 1e-9), "local bound must be non-decreasing in eps"
        prev = lb.value
        samp = sampled_nominal_ratio(net, x0, eps, 400, rng)
        pgd, _ = nominal_ratio_lower(net, x0, eps, Search(steps=10, restarts=1, seed=seed))
        assert lb.value >= samp * (1 - 1e-9)
        assert lb.value >= pgd * (1 - 1e-9)
        assert lb.value <= lb.global_bound * (1 + 1e-9)
        assert lb.estimate is None or lb.estimate <= lb.value * (1 + 1e-9)


def test_exact_for_single_affine_relu_layer() -> None:
    # formulations.md 4.5: no y0_i = 0 and every inactive neuron stays inactive => bound = ||J(x0)||
    rng = np.random.default_rng(5)
    w = rng.normal(size=(3, 2, 3, 3))
    b = rng.normal(size=3)
    net = Network([Conv2d(w, b, padding=1), ReLU(), Flatten()], (2, 5, 5))
    x0 = rng.normal(size=net.input_size)
    pre = Network([Conv2d(w, b, padding=1), Flatten()], (2, 5, 5)).forward(x0)
    rn = np.sqrt(row_norms_sq(ConvOp(net.layers[0], (2, 5, 5), CPU), torch.ones(2, 5, 5)).numpy().ravel())
    neg = pre < 0
    eps = 0.9 * float(np.min(-pre[neg] / rn[neg]))  # inactive neurons cannot switch on
    lb = local_bound(net, x0, eps)
    jn = float(np.linalg.norm(net.jacobian(x0), 2))
    assert lb.value == pytest.approx(jn, rel=1e-8)
    # and a tiny step along the top singular direction attains it (nominal ratio -> ||J||)
    _, _, vt = np.linalg.svd(net.jacobian(x0))
    t = 1e-7 * eps
    ratio = np.linalg.norm(net.forward(x0 + t * vt[0]) - net.forward(x0)) / t
    assert ratio == pytest.approx(lb.value, rel=1e-6)


# --------------------------------------------------------------------------------------- row norms
CONV_CASES = [
    dict(cin=3, cout=4, k=3, stride=1, padding=1, dilation=1, groups=1, hw=(7, 6)),
    dict(cin=4, cout=6, k=3, stride=2, padding=0, dilation=1, groups=2, hw=(9, 9)),
    dict(cin=2, cout=4, k=2, stride=2, padding=1, dilation=2, groups=2, hw=(8, 7)),
    dict(cin=3, cout=3, k=3, stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=3, hw=(6, 8)),
    dict(cin=2, cout=5, k=5, stride=3, padding=2, dilation=1, groups=1, hw=(11, 10)),
]


def _conv(case: dict, rng: np.random.Generator) -> tuple[Conv2d, tuple[int, int, int]]:
    g = case["groups"]
    w = rng.normal(size=(case["cout"], case["cin"] // g, case["k"], case["k"]))
    la = Conv2d(w, rng.normal(size=case["cout"]), case["stride"], case["padding"], case["dilation"], g)
    return la, (case["cin"], *case["hw"])


@pytest.mark.parametrize("case", CONV_CASES)
def test_one_pass_row_norms_equal_reference(case: dict) -> None:
    rng = np.random.default_rng(0)
    la, shp = _conv(case, rng)
    op = ConvOp(la, shp, CPU)
    m = op.to_matrix().toarray()
    x = rng.normal(size=(2, *shp))
    np.testing.assert_allclose(la.linear(x).reshape(2, -1), x.reshape(2, -1) @ m.T, atol=1e-12)
    for d in (torch.ones(shp, dtype=torch.float64),
              torch.as_tensor((rng.random(shp) > 0.4).astype(float))):
        fast = row_norms_sq(op, d).numpy().ravel()
        ref = row_norms_sq_reference(op, d, batch=7).numpy().ravel()
        exact = ((m * d.numpy().ravel()[None]) ** 2).sum(axis=1)
        np.testing.assert_allclose(fast, ref, rtol=1e-9, atol=1e-300)
        np.testing.assert_allclose(fast, exact, rtol=1e-9, atol=1e-300)
        rows = rng.choice(op.n_out, size=5, replace=False)
        np.testing.assert_allclose(row_norms_sq_reference(op, d, rows=rows).numpy(), exact[rows], rtol=1e-9)


def test_row_norms_other_ops() -> None:
    rng = np.random.default_rng(1)
    shp = (2, 6, 6)
    for la in (AvgPool2d(3, 2, 1, count_include_pad=False), AvgPool2d(2, 1), AvgPool2d(3, 1, 1)):
        op = AvgPoolOp(la, shp, CPU)
        m = op.to_matrix().toarray()
        d = torch.as_tensor((rng.random(shp) > 0.3).astype(float))
        exact = ((m * d.numpy().ravel()[None]) ** 2).sum(axis=1)
        np.testing.assert_allclose(row_norms_sq(op, d).numpy().ravel(), exact, rtol=1e-9)
        y = rng.normal(size=(1, *op.out_shape))
        np.testing.assert_allclose(op.adjoint(torch.as_tensor(y)).numpy().ravel(), y.ravel() @ m, atol=1e-12)
    dense = DenseOp(rng.normal(size=(5, 8)), None, (2, 2, 2), CPU)
    d = torch.as_tensor((rng.random((2, 2, 2)) > 0.3).astype(float))
    np.testing.assert_allclose(row_norms_sq(dense, d).numpy(),
                               ((dense.weight_np * d.numpy().ravel()) ** 2).sum(axis=1), rtol=1e-12)
    # a composition without a one-pass form (conv then avg-pool) falls back to the basis-vector reference
    conv = ConvOp(Conv2d(rng.normal(size=(3, 2, 3, 3)), None, padding=1), shp, CPU)
    pool = AvgPoolOp(AvgPool2d(2, 2), conv.out_shape, CPU)
    comp = compose([conv, pool, ReshapeOp(pool.out_shape, (pool.n_out,), CPU)], shp, CPU)
    assert isinstance(comp, ComposedOp)
    m = comp.to_matrix()
    m = m.toarray() if hasattr(m, "toarray") else m
    d = torch.as_tensor((rng.random(shp) > 0.3).astype(float))
    np.testing.assert_allclose(row_norms_sq(comp, d).numpy(), ((m * d.numpy().ravel()) ** 2).sum(axis=1),
                               rtol=1e-9)


# ---------------------------------------------------------------------------------------- spectral
@pytest.mark.parametrize("shape", [(40, 30), (300, 280), (50, 400)])
def test_matrix_tiers_bound_exact_svd(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(2)
    m = rng.normal(size=shape)
    exact = float(np.linalg.norm(m, 2))
    for opts in (SpectralOptions(), SpectralOptions(exact_limit=0)):
        b = matrix_norm_upper(m, opts)
        assert b is not None
        assert exact <= b.upper <= exact * (1 + 1e-7)
        assert b.exact


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_certified_bounds(case: dict) -> None:
    rng = np.random.default_rng(3)
    la, shp = _conv(case, rng)
    op = ConvOp(la, shp, CPU)
    m = op.to_matrix().toarray()
    exact = float(np.linalg.norm(m, 2))
    four = conv_fourier_upper(op)
    assert four >= exact * (1 - 1e-12)
    r = torch.as_tensor(rng.random(op.out_shape) * (rng.random(op.out_shape) > 0.4))
    d = torch.as_tensor((rng.random(shp) > 0.3).astype(float))
    mm = r.numpy().ravel()[:, None] * m * d.numpy().ravel()[None]
    ex_m = float(np.linalg.norm(mm, 2))
    tight = masked_norm_upper(op, r, d)
    assert ex_m <= tight.upper <= ex_m * (1 + 1e-7)
    # forced large-layer path: rigorous (>= exact) and the power-iteration value is only an estimate
    big = masked_norm_upper(op, r, d, SpectralOptions(cholesky_limit=0, power_iters=50))
    assert big.upper >= ex_m * (1 - 1e-12)
    assert not big.exact and big.method != "power"
    assert big.estimate is not None and big.estimate <= ex_m * (1 + 1e-9)
    assert schur_upper(op, r, d) >= ex_m * (1 - 1e-12)
    assert power_estimate(op, r, d, 200) <= ex_m * (1 + 1e-9)


def test_fourier_bound_close_for_large_inputs() -> None:
    rng = np.random.default_rng(4)
    la = Conv2d(rng.normal(size=(4, 3, 3, 3)), None, padding=1)
    op = ConvOp(la, (3, 16, 16), CPU)
    exact = float(np.linalg.norm(op.to_matrix().toarray(), 2))
    four = conv_fourier_upper(op)
    assert exact <= four <= exact * 1.05


def test_local_bound_large_layer_path_is_still_an_upper_bound() -> None:
    net = conv_net(7)
    x0 = np.random.default_rng(8).normal(size=net.input_size)
    tight = local_bound(net, x0, 0.3)
    loose = local_bound(net, x0, 0.3, options=LocalOptions(spectral=SpectralOptions(cholesky_limit=0)))
    assert loose.value >= tight.value * (1 - 1e-12)
    assert not loose.all_exact and tight.all_exact
