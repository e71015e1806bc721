"""The rounding allowance of certified pair ratios (lipopt.certify.witness.forward_error and
certified_pair_ratios): it covers the real float64 rounding (checked against exact rational
arithmetic), it is tight enough for a lower bound on conv nets with large forward magnitudes (where the
old width-times-magnitude allowance left 0), and what it certifies stays below exact constants."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from lipopt.certify.witness import UNIT_ROUNDOFF, certified_pair_ratio, certified_pair_ratios, forward_error
from lipopt.network.layers import AvgPool2d, Conv2d, Dense, Flatten, LeakyReLU, MaxPool2d, ReLU
from lipopt.network.network import Network
from lipopt.spec import AllOutputs, Ball, Direction, Norm, Question


@pytest.fixture(autouse=True)
def _one_thread():
    from lipopt.analytic._threads import limit_threads

    with limit_threads(1):
        yield


# ------------------------------------------------------------------------------------------ exact evaluation


def _exact_conv(la: Conv2d, x: list) -> list:
    """x: nested [C][H][W] of Fractions; la without groups/dilation subtleties beyond what is used here."""
    c_out, c_in, kh, kw = la.weight.shape
    (sh, sw), (ph, pw) = la.stride, la.padding
    h, w = len(x[0]), len(x[0][0])
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    out = []
    for o in range(c_out):
        chan = []
        for i in range(ho):
            row = []
            for j in range(wo):
                s = Fraction(float(la.bias[o]))
                for c in range(c_in):
                    for a in range(kh):
                        for b in range(kw):
                            r, t = i * sh + a - ph, j * sw + b - pw
                            if 0 <= r < h and 0 <= t < w:
                                s += Fraction(float(la.weight[o, c, a, b])) * x[c][r][t]
                row.append(s)
            chan.append(row)
        out.append(chan)
    return out


def _exact_pool(la: MaxPool2d | AvgPool2d, x: list) -> list:
    kh, kw = la.kernel_size
    sh, sw = la.stride
    h, w = len(x[0]), len(x[0][0])
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    out = []
    for chan in x:
        rows = []
        for i in range(ho):
            row = []
            for j in range(wo):
                vals = [chan[i * sh + a][j * sw + b] for a in range(kh) for b in range(kw)]
                row.append(max(vals) if isinstance(la, MaxPool2d) else sum(vals) / len(vals))
            rows.append(row)
        out.append(rows)
    return out


def exact_forward(net: Network, x: np.ndarray) -> list[Fraction]:
    """The network in exact rational arithmetic (its float64 weights taken as exact rationals)."""
    h: list = [Fraction(float(v)) for v in np.ravel(x)]
    if len(net.input_shape) == 3:
        c, hh, ww = net.input_shape
        h = [[[h[(k * hh + i) * ww + j] for j in range(ww)] for i in range(hh)] for k in range(c)]

    def elementwise(v, fn):
        return [elementwise(a, fn) for a in v] if isinstance(v, list) else fn(v)

    for la in net.layers:
        if isinstance(la, Conv2d):
            h = _exact_conv(la, h)
        elif isinstance(la, MaxPool2d | AvgPool2d):
            h = _exact_pool(la, h)
        elif isinstance(la, Flatten):
            h = [v for chan in h for row in chan for v in row]
        elif isinstance(la, Dense):
            h = [Fraction(float(la.bias[i])) + sum(Fraction(float(la.weight[i, j])) * h[j]
                                                   for j in range(len(h))) for i in range(la.weight.shape[0])]
        elif isinstance(la, ReLU):
            h = elementwise(h, lambda v: max(v, Fraction(0)))
        elif isinstance(la, LeakyReLU):
            alpha = Fraction(float(la.negative_slope))
            h = elementwise(h, lambda v, a=alpha: v if v > 0 else a * v)
        else:  # pragma: no cover
            raise TypeError(type(la))
    return h


def tiny_conv(seed: int, bias_scale: float = 0.1, leaky: bool = False) -> Network:
    rng = np.random.default_rng(seed)
    act = LeakyReLU(0.1) if leaky else ReLU()
    return Network([
        Conv2d(rng.normal(size=(2, 1, 3, 3)), rng.normal(size=2) * bias_scale), act, MaxPool2d(2, 1),
        Conv2d(rng.normal(size=(2, 2, 2, 2)), rng.normal(size=2) * bias_scale, padding=1), ReLU(),
        AvgPool2d(2, 1), Flatten(), Dense(rng.normal(size=(3, 8)), rng.normal(size=3)),
    ], (1, 5, 5), name="tiny-conv")


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("leaky", [False, True])
def test_forward_error_covers_the_exact_rounding(seed: int, leaky: bool) -> None:
    """|fl f(x) - f(x)| <= err, f evaluated exactly in rationals, including inputs with heavy
    cancellation (a large constant added to the input), and the bound is not vacuous."""
    net = tiny_conv(seed, leaky=leaky)
    rng = np.random.default_rng(10 + seed)
    for shift in (0.0, 1e6):
        x = rng.normal(size=net.input_size) + shift
        fe = forward_error(net, x, margins=True)
        np.testing.assert_array_equal(fe.out, net.forward(x))
        exact = exact_forward(net, x)
        real_err = np.array([abs(Fraction(float(o)) - e) for o, e in zip(fe.out, exact, strict=True)], float)
        assert np.all(real_err <= fe.err)
        scale = 1.0 + np.max(np.abs(fe.out)) + shift * 100
        assert np.all(fe.err < 1e-11 * scale)  # a rounding bound, not a magnitude
        # the certified pair ratio at a very close pair is at most the exact ratio (all in rationals)
        v = rng.normal(size=net.input_size)
        y = x + 1e-9 * (1 + shift) * v / np.linalg.norm(v)
        q = Question(Norm.L2, Norm.L2, Ball(x, 1.0, Norm.L2), AllOutputs(), nominal=True)
        cert = certified_pair_ratio(net, y, x, q)
        exact_y = exact_forward(net, y)
        num2 = sum((a - b) ** 2 for a, b in zip(exact_y, exact, strict=True))
        den2 = sum((Fraction(float(a)) - Fraction(float(b))) ** 2 for a, b in zip(y, x, strict=True))
        assert Fraction(cert) ** 2 * den2 <= num2
        if shift == 0.0:
            assert cert > 0


def test_forward_error_margin_certifies_signs() -> None:
    """A margin above 1 means every computed sign equals the exact one (checked on a dense net whose
    pre-activations are computed exactly here); a pre-activation at exactly 0 gives margin 0."""
    rng = np.random.default_rng(0)
    net = Network.from_weights([rng.normal(size=(6, 3)), rng.normal(size=(2, 6))], [rng.normal(size=6), None])
    x = rng.normal(size=3)
    fe = forward_error(net, x, margins=True)
    assert fe.margin[0] > 1
    w, b = net.layers[0].weight, net.layers[0].bias
    z = [Fraction(float(b[i])) + sum(Fraction(float(w[i, j])) * Fraction(float(x[j])) for j in range(3))
         for i in range(6)]
    computed = w @ x + b
    assert all((zi > 0) == (ci > 0) for zi, ci in zip(z, computed, strict=True))
    tie = Network.from_weights([np.array([[1.0], [-1.0]]), np.array([[1.0, 1.0]])])
    assert forward_error(tie, np.zeros(1), margins=True).margin[0] == 0.0


def _legacy_allowance_ratio(net: Network, x: np.ndarray, y: np.ndarray, q: Question) -> float:
    """The old allowance (before issue 14): 4 eps (sum of all widths + 4) |c|_1 m (M(x) + M(y)) with
    M = max |W_L| ... |W_1| |x| + |b| terms; kept here to show what it left."""
    def magnitude(v: np.ndarray) -> float:
        h = np.abs(v).reshape(1, -1)
        for s in net.lower():
            if hasattr(s, "weight"):
                w = s.weight
                wa = abs(w) if hasattr(w, "toarray") else np.abs(w)
                h = np.asarray((wa @ h.T).T) + np.abs(s.bias)
            elif hasattr(s, "windows"):
                h = np.where(s.windows >= 0, h[:, np.maximum(s.windows, 0)], 0.0).max(axis=2)
        return float(np.max(h))

    dx = float(np.linalg.norm(x - y))
    ratio = float(np.linalg.norm(net.forward(x) - net.forward(y))) / dx
    width = sum(s.shape[1] for s in net.lower() if hasattr(s, "weight"))
    err = 4.0 * np.finfo(float).eps * (width + 4) * net.output_size * (magnitude(x) + magnitude(y))
    return max(0.0, (ratio * dx - err) / dx)


def big_magnitude_conv(seed: int = 0) -> Network:
    """A conv net whose first layer adds a large constant that the second removes (forward magnitudes
    near 1e10 while the function itself has moderate values and slopes)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(4, 1, 3, 3))
    big = 1e8
    w2 = rng.normal(size=(4, 4, 3, 3))
    b2 = -big * w2.sum(axis=(1, 2, 3))  # conv2 of the constant big-plane, removed by the bias
    return Network([
        Conv2d(w1, np.full(4, big)), ReLU(), Conv2d(w2, b2), ReLU(), MaxPool2d(2, 2), Flatten(),
        Dense(rng.normal(size=(10, 4 * 2 * 2)), rng.normal(size=10)),
    ], (1, 8, 8), name="big-magnitude-conv")


def test_lower_bound_positive_where_the_old_allowance_left_zero() -> None:
    from lipopt.lower.adversarial import nominal_ratio_lower

    net = big_magnitude_conv()
    x0 = np.random.default_rng(1).random(net.input_size)
    eps = 1e-3
    q = Question(Norm.L2, Norm.L2, Ball(x0, eps, Norm.L2), AllOutputs(), nominal=True)
    v = np.linalg.svd(net.jacobian(x0))[2][0]
    y = x0 + eps * v
    assert _legacy_allowance_ratio(net, y, x0, q) == 0.0
    new = certified_pair_ratio(net, y, x0, q)
    raw = np.linalg.norm(net.forward(y) - net.forward(x0)) / np.linalg.norm(y - x0)
    assert 0.9 * raw < new <= raw
    low, _ = nominal_ratio_lower(net, x0, eps)
    assert low > 0.5 * np.linalg.norm(net.jacobian(x0), 2)
    from lipopt.analytic.local_bound import LocalBoundComputer

    assert low <= LocalBoundComputer(net, x0, None, None).bound(eps).value * (1 + 1e-9)


def test_pair_ratio_below_the_exact_local_constant_on_a_tiny_conv_net() -> None:
    """Certified nominal ratios (the certify LOWER) never exceed the exact local constant on the ball
    (enumeration of the regions: the pairwise constant, which is at least the nominal one) nor the
    analytic local bound."""
    import lipopt
    from lipopt.analytic.local_bound import LocalBoundComputer
    from lipopt.lower.adversarial import nominal_ratio_lower

    rng = np.random.default_rng(0)
    net = Network([
        Conv2d(rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2) * 0.3), ReLU(), MaxPool2d(2, 1), Flatten(),
        Dense(rng.normal(size=(2, 2)), rng.normal(size=2)),
    ], (1, 3, 3), name="tiny")
    x0 = rng.random(net.input_size)
    for eps in (0.05, 0.5):
        exact = lipopt.lipschitz(net, method="enumeration", norm=2, domain=f"ball2:{eps}", center=x0)
        assert exact.upper is not None
        low, x = nominal_ratio_lower(net, x0, eps)
        assert 0 < low <= exact.upper * (1 + 1e-9)
        assert low <= LocalBoundComputer(net, x0, None, None).bound(eps).value * (1 + 1e-9)
        assert np.linalg.norm(x - x0) <= eps * (1 + 1e-12)


def test_batched_ratios_equal_single_ones_and_scalar_outputs() -> None:
    net = tiny_conv(1)
    rng = np.random.default_rng(2)
    x0 = rng.normal(size=net.input_size)
    xs = x0 + 1e-3 * rng.normal(size=(5, net.input_size))
    for out in (AllOutputs(), Direction(np.array([1.0, -2.0, 0.5]))):
        for p in (Norm.L2, Norm.LINF, Norm.L1):
            q = Question(p, p, Ball(x0, 1.0, Norm.L2), out, nominal=True)
            batch = certified_pair_ratios(net, xs, x0, q)
            single = [certified_pair_ratio(net, x, x0, q) for x in xs]
            np.testing.assert_allclose(batch, single, rtol=1e-9, atol=1e-12)  # batched BLAS: other sums
            d = net.forward(xs) - net.forward(x0)
            c = q.output_vector(3)
            num = np.abs(d @ c) if c is not None else np.linalg.norm(d, ord=p.p, axis=1)
            raw = num / np.linalg.norm(xs - x0, ord=p.p, axis=1)
            assert np.all(batch <= raw) and np.all(batch >= raw * (1 - 1e-6))
    assert certified_pair_ratio(net, x0, x0, q) == 0.0


def test_allowance_is_tiny_relative_and_covers_the_smallest_pairs() -> None:
    """At pair distances down to 1e-7 the certified ratio stays within a few u * magnitude / distance
    of the raw ratio; at 0 distance (x == y) it is 0."""
    net = tiny_conv(0)
    x0 = np.random.default_rng(3).normal(size=net.input_size)
    q = Question(Norm.L2, Norm.L2, Ball(x0, 1.0, Norm.L2), AllOutputs(), nominal=True)
    v = np.random.default_rng(4).normal(size=net.input_size)
    v /= np.linalg.norm(v)
    fe = forward_error(net, x0)
    for t in (1e-2, 1e-5, 1e-7):
        y = x0 + t * v
        raw = np.linalg.norm(net.forward(y) - net.forward(x0)) / np.linalg.norm(y - x0)
        got = certified_pair_ratio(net, y, x0, q)
        assert got <= raw
        assert raw - got <= 3 * np.linalg.norm(fe.err) / t + 1e3 * UNIT_ROUNDOFF * raw
