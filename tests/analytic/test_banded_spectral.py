"""The band-reordered Cholesky certificate of ``lipopt.analytic.spectral`` (``SpectralOptions.banded``)
against the dense one it replaces and against exact SVDs: same certified value to 1e-9 relative, never
below the exact norm; on masked convolutions, a small conv net's local bound and the MNIST LeNet."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from lipopt.analytic.linops import ConvOp
from lipopt.analytic.local_bound import LocalBoundComputer, LocalOptions
from lipopt.analytic.spectral import SpectralOptions, _band_order, masked_norm_upper, matrix_norm_upper
from lipopt.network.layers import Conv2d, Dense, Flatten, MaxPool2d, ReLU
from lipopt.network.network import Network
from tests.paths import EXTERNAL

CPU = torch.device("cpu")
OLD = SpectralOptions(banded=False, exact_limit=0)
NEW = SpectralOptions(banded=True, exact_limit=0)


@pytest.fixture(autouse=True)
def _one_thread():
    from lipopt.analytic._threads import limit_threads

    with limit_threads(1):
        yield


def _masked_conv(seed: int, cin: int = 3, cout: int = 5, hw: int = 12, stride: int = 1):
    rng = np.random.default_rng(seed)
    la = Conv2d(rng.normal(size=(cout, cin, 3, 3)), rng.normal(size=cout), stride=stride, padding=1)
    op = ConvOp(la, (cin, hw, hw), CPU)
    r = torch.as_tensor(rng.random(op.out_shape) * (rng.random(op.out_shape) > 0.3))
    r[r > 0.6] = 1.0
    d = torch.as_tensor((rng.random(op.in_shape) > 0.2).astype(float))
    m = r.numpy().ravel()[:, None] * op.to_matrix().toarray() * d.numpy().ravel()[None]
    return op, r, d, float(np.linalg.norm(m, 2))


def test_band_order_is_a_permutation_with_the_reported_bandwidth() -> None:
    op, _, _, _ = _masked_conv(0)
    m = op.to_matrix().tocsr()
    g = (m.T @ m).tocsr()
    perm, w = _band_order(g)
    assert np.array_equal(np.sort(perm), np.arange(g.shape[0]))
    gp = g[perm][:, perm].tocoo()
    assert int(np.max(np.abs(gp.row - gp.col))) == w
    assert w < g.shape[0] // 2  # a convolution's Gram matrix has a narrow band in a good order


@pytest.mark.parametrize("seed,stride", [(0, 1), (1, 2), (2, 1)])
def test_banded_equals_dense_certificate_on_masked_convs(seed: int, stride: int) -> None:
    op, r, d, exact = _masked_conv(seed, stride=stride)
    old = masked_norm_upper(op, r, d, OLD)
    new = masked_norm_upper(op, r, d, NEW)
    assert old.method == new.method == "lanczos+cholesky"
    assert new.exact
    assert exact <= new.upper  # certified
    assert new.upper <= old.upper * (1 + 1e-9)  # no loss of tightness
    assert abs(new.upper - old.upper) <= 1e-9 * old.upper


def test_banded_path_on_a_plain_sparse_matrix_and_its_fallback() -> None:
    rng = np.random.default_rng(5)
    n = 400
    m = sp.diags([rng.normal(size=n - k) for k in range(4)], offsets=list(range(4)), format="csr")
    exact = float(np.linalg.norm(m.toarray(), 2))
    new = matrix_norm_upper(m, NEW)
    old = matrix_norm_upper(m, OLD)
    assert new is not None and old is not None
    assert exact <= new.upper <= old.upper * (1 + 1e-9)
    # a dense-pattern sparse matrix has no narrow band: the dense certificate runs (same value)
    full = sp.csr_matrix(rng.normal(size=(300, 300)))
    a = matrix_norm_upper(full, NEW)
    b = matrix_norm_upper(full, OLD)
    assert a is not None and b is not None and abs(a.upper - b.upper) <= 1e-12 * b.upper


def _small_conv_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    layers = [Conv2d(rng.normal(size=(6, 2, 3, 3)) * 0.4, rng.normal(size=6) * 0.2), ReLU(),
              Conv2d(rng.normal(size=(6, 6, 3, 3)) * 0.3, rng.normal(size=6) * 0.2), ReLU(),
              MaxPool2d(2, 2), Flatten(), Dense(rng.normal(size=(5, 6 * 6 * 6)) * 0.1, rng.normal(size=5))]
    return Network(layers, (2, 16, 16), name=f"banded{seed}")


@pytest.mark.parametrize("seed", [0, 1])
def test_local_bound_banded_equals_dense_on_a_conv_net(seed: int) -> None:
    net = _small_conv_net(seed)
    x0 = np.random.default_rng(10 + seed).normal(size=net.input_size)
    for eps in (1e-3, 0.1):
        vals = [LocalBoundComputer(net, x0, options=LocalOptions(spectral=so)).bound(eps)
                for so in (OLD, NEW)]
        assert any(b.method == "lanczos+cholesky" for b in vals[1].blocks)
        assert abs(vals[1].value - vals[0].value) <= 1e-9 * vals[0].value
        for a, b in zip(vals[0].blocks, vals[1].blocks, strict=True):
            assert abs(b.constant - a.constant) <= 1e-9 * a.constant


def test_lenet_local_bound_banded_equals_dense() -> None:
    ckpt = EXTERNAL / "avant" / "mnist_lenet_ckpt_99.ckpt"
    if not ckpt.exists():
        pytest.skip(f"{ckpt} not found")
    import lipopt
    from lipopt.cli_certify import read_input

    net = lipopt.load(str(ckpt), check=False)
    x0 = read_input(str(EXTERNAL / "avant" / "mnist_8.png"), net.input_shape)
    for eps in (1e-3, 0.05):
        old = LocalBoundComputer(net, x0, options=LocalOptions(spectral=SpectralOptions(banded=False)))
        new = LocalBoundComputer(net, x0, options=LocalOptions(spectral=SpectralOptions()))
        a, b = old.bound(eps), new.bound(eps)
        assert abs(b.value - a.value) <= 1e-9 * a.value
        assert a.all_exact == b.all_exact
        assert abs(new.global_bound() - old.global_bound()) <= 1e-9 * old.global_bound()


# ------------------------------------------------------------------------- Fourier bound from tap sums
FOURIER_CASES = [
    dict(cin=3, cout=4, k=3, stride=1, padding=1, dilation=1, groups=1, hw=(7, 6)),
    dict(cin=4, cout=6, k=3, stride=2, padding=0, dilation=1, groups=2, hw=(9, 9)),
    dict(cin=2, cout=4, k=2, stride=2, padding=1, dilation=2, groups=2, hw=(8, 7)),
    dict(cin=3, cout=3, k=3, stride=(2, 1), padding=(2, 1), dilation=(1, 2), groups=3, hw=(6, 8)),
    dict(cin=2, cout=5, k=5, stride=3, padding=2, dilation=1, groups=1, hw=(11, 10)),
    dict(cin=8, cout=3, k=3, stride=1, padding=1, dilation=1, groups=1, hw=(10, 9)),
]


@pytest.mark.parametrize("case", FOURIER_CASES)
def test_fourier_taps_bound_is_certified_and_at_most_the_baseline(case: dict) -> None:
    from lipopt.analytic.spectral import conv_fourier_upper

    rng = np.random.default_rng(6)
    g = case["groups"]
    la = Conv2d(rng.normal(size=(case["cout"], case["cin"] // g, case["k"], case["k"])), None,
                case["stride"], case["padding"], case["dilation"], g)
    shp = (case["cin"], *case["hw"])
    base = conv_fourier_upper(ConvOp(la, shp, CPU), SpectralOptions(fourier_taps=False))
    op = ConvOp(la, shp, CPU)
    taps = conv_fourier_upper(op, SpectralOptions())
    exact = float(np.linalg.norm(op.to_matrix().toarray(), 2))
    assert exact <= taps  # certified (the circular operator's norm bounds the zero-padded one)
    assert taps <= base * (1 + 1e-9)  # no loss of tightness against the baseline
    assert taps >= base * (1 - 1e-6)  # the same quantity: only the baseline's Cholesky ladder differs


def test_fourier_taps_is_the_circular_norm_when_the_torus_is_the_input() -> None:
    """A circular-size check: the max over frequencies equals ||K||_2 of the torus' circulant, computed
    here densely from the FFT blocks."""
    from lipopt.analytic.spectral import _polyphase_kernel, conv_fourier_upper

    rng = np.random.default_rng(7)
    la = Conv2d(rng.normal(size=(5, 4, 3, 3)), None, padding=0)
    op = ConvOp(la, (4, 9, 8), CPU)
    kd, nh, nw = _polyphase_kernel(op)
    khat = torch.fft.fft2(kd, s=(nh, nw)).permute(2, 3, 0, 1).reshape(-1, 5, 4)
    circ = float(torch.linalg.matrix_norm(khat, ord=2).max())
    val = conv_fourier_upper(op, SpectralOptions())
    assert circ <= val <= circ * (1 + 1e-8)


def test_trace_criterion_bounds_the_largest_eigenvalue_from_above() -> None:
    """_trace_certified (the dense, banded and batched Fourier paths' rounding argument): above
    lambda_max for a shift the factorisation accepts, and its allowance grows with the inner length."""
    from lipopt.analytic.spectral import _trace_certified

    rng = np.random.default_rng(3)
    m = rng.normal(size=(40, 30))
    g = m.T @ m
    top = float(np.linalg.eigvalsh(g)[-1])
    t = top * (1 + 1e-9)
    np.linalg.cholesky(t * np.eye(30) - g)  # accepted
    up = _trace_certified(t, np.diag(g).copy(), 30, 0.0)
    assert up >= top and up >= t
    assert _trace_certified(t, np.diag(g).copy(), 300, 0.0) > up
    assert _trace_certified(t, np.diag(g).copy(), 30, 0.0, g_factor=2.0) > up
