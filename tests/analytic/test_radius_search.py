"""The certified-radius search (issue 14): the same radius as decades-and-bisection to its tolerance,
every returned radius certified, in fewer bound evaluations; the certify LOWER is a real certified ratio."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt.analytic.local_bound import LocalBoundComputer
from lipopt.analytic.robustness import SQRT2, CertifySteps, certified_radius, certify, logit_margin
from lipopt.network.layers import Conv2d, Dense, Flatten, MaxPool2d, ReLU
from lipopt.network.network import Network


@pytest.fixture(autouse=True)
def _one_thread():
    from lipopt.analytic._threads import limit_threads

    with limit_threads(1):
        yield


def cnn(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    return Network([
        Conv2d(rng.normal(size=(3, 1, 3, 3)), rng.normal(size=3) * 0.1), ReLU(), MaxPool2d(2, 2),
        Flatten(), Dense(rng.normal(size=(8, 12)), rng.normal(size=8) * 0.1), ReLU(),
        Dense(rng.normal(size=(4, 8)), rng.normal(size=4)),
    ], (1, 7, 7), name="cnn")


def bisection_reference(comp: LocalBoundComputer, target: float) -> tuple[float, int]:
    """Decades from 1e3 down, then 40 bisections (the old search, a little finer)."""
    n = 0

    def ok(e: float) -> bool:
        nonlocal n
        n += 1
        return e * comp.bound(e, with_global=False).value < target

    lo = next((10.0 ** k for k in range(3, -301, -1) if ok(10.0 ** k)), 0.0)
    hi = lo * 10
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
    return lo, n


@pytest.mark.parametrize("seed", range(4))
def test_radius_matches_bisection_and_is_certified(seed: int) -> None:
    net = cnn(seed)
    x0 = np.random.default_rng(seed + 10).random(net.input_size)
    comp = LocalBoundComputer(net, x0, None, None)
    delta, _ = logit_margin(net, x0)
    target = delta / SQRT2
    for rtol in (1e-6, 1e-3):
        rad = certified_radius(net, x0, computer=comp, rtol=rtol)
        assert rad.radius > 0
        assert rad.radius * comp.bound(rad.radius, with_global=False).value < target  # certified
        assert rad.radius >= rad.radius_global * (1 - 1e-12)
        ref, n_ref = bisection_reference(comp, target)
        assert rad.radius <= ref * (1 + 1e-9)  # nothing beyond the threshold
        assert rad.radius >= ref * (1 - 2 * rtol)
        assert rad.evaluations < n_ref


def test_known_values_are_reused_and_the_top_of_the_range() -> None:
    net = cnn(1)
    x0 = np.random.default_rng(3).random(net.input_size)
    comp = LocalBoundComputer(net, x0, None, None)
    plain = certified_radius(net, x0, computer=comp, rtol=1e-3)
    known = {1e-3: comp.bound(1e-3, with_global=False).value}
    reused = certified_radius(net, x0, computer=comp, rtol=1e-3, known=known)
    assert reused.evaluations <= plain.evaluations
    assert reused.radius * comp.bound(reused.radius, with_global=False).value < plain.margin / SQRT2
    # a constant map far from any class change: the search range tops at 1e3
    wide = Network([Dense(np.array([[1e-9, 0.0], [0.0, 0.0]]), np.array([1.0, 0.0]))], (2,))
    assert certified_radius(wide, np.zeros(2)).radius == 1e3


def test_certify_lower_is_a_certified_real_ratio() -> None:
    """The certify LOWER of each row is at most the local UPPER and positive on a small conv net."""
    net = cnn(2)
    x0 = np.random.default_rng(4).random(net.input_size)
    rep = certify(net, x0, [1e-3, 0.1], steps=CertifySteps(adversarial=False))
    for r in rep.rows:
        assert 0 < r.lower <= r.local_upper * (1 + 1e-9)
    j = np.linalg.norm(net.jacobian(x0), 2)
    assert rep.rows[0].lower >= 0.9 * j  # at small eps the best ratio is about ||J(x0)||
