"""Neuron bounds: soundness by sampling and the ordering lp <= crown <= interval (lipopt.bounds)."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt.bounds import compute_bounds
from lipopt.errors import InvalidQuestionError
from lipopt.network.network import Network, stage_forward
from tests.nets import conv_pool_net, random_mlp


def _stage_values(net: Network, x: np.ndarray) -> list[np.ndarray]:
    """Outputs of every lowered stage for a batch x (B, n)."""
    return stage_forward(net.lower(), x)[0]


NETS = [
    (lambda: random_mlp([4, 12, 10, 8, 2], 0, scale=0.7), -1.0, 1.0),
    (lambda: random_mlp([3, 16, 16, 1], 3), -0.5, 0.8),
    (lambda: conv_pool_net(1, channels=2), -1.0, 1.0),
]


@pytest.mark.parametrize("k", range(len(NETS)))
@pytest.mark.parametrize("method", ["interval", "crown", "lp"])
def test_bounds_sound_by_sampling(k: int, method: str) -> None:
    make, lo, hi = NETS[k]
    net = make()
    fb = compute_bounds(net, lo, hi, method)
    rng = np.random.default_rng(k)
    n = net.input_size
    # uniform samples and box corners-ish points (extremes are where loose bounds are tight)
    x = np.vstack([rng.uniform(lo, hi, size=(4000, n)), rng.choice([lo, hi], size=(500, n))])
    for i, v in enumerate(_stage_values(net, x)):
        blo, bhi = fb.stage_bounds[i]
        assert np.all(v >= blo - 1e-12), (method, i)
        assert np.all(v <= bhi + 1e-12), (method, i)
    assert fb.method == method
    assert fb.summary()["ambiguous_neurons"] == fb.n_ambiguous


@pytest.mark.parametrize("k", range(len(NETS)))
def test_bounds_tightness_ordering(k: int) -> None:
    make, lo, hi = NETS[k]
    net = make()
    ia, cr, lp = (compute_bounds(net, lo, hi, m) for m in ("interval", "crown", "lp"))
    for i in range(len(ia.stage_bounds)):
        assert np.all(cr.stage_bounds[i][0] >= ia.stage_bounds[i][0] - 1e-12)
        assert np.all(cr.stage_bounds[i][1] <= ia.stage_bounds[i][1] + 1e-12)
        assert np.all(lp.stage_bounds[i][0] >= cr.stage_bounds[i][0] - 1e-12)
        assert np.all(lp.stage_bounds[i][1] <= cr.stage_bounds[i][1] + 1e-12)
    assert ia.n_ambiguous >= cr.n_ambiguous >= lp.n_ambiguous


def test_crown_strictly_tighter_on_deep_net() -> None:
    net = random_mlp([4, 12, 10, 8, 2], 0, scale=0.7)
    ia = compute_bounds(net, -1.0, 1.0, "interval")
    cr = compute_bounds(net, -1.0, 1.0, "crown")
    width_ia = sum(float(np.sum(h - lo)) for lo, h in ia.stage_bounds[2:])
    width_cr = sum(float(np.sum(h - lo)) for lo, h in cr.stage_bounds[2:])
    assert width_cr < width_ia


def test_unbounded_input_falls_back_to_interval() -> None:
    net = random_mlp([2, 5, 1], 0)
    for method in ("crown", "lp"):
        fb = compute_bounds(net, -np.inf, np.inf, method)
        assert fb.method == "interval"
        assert fb.n_ambiguous == 5  # every neuron with a non-zero row can switch on R^n


def test_unknown_method() -> None:
    with pytest.raises(InvalidQuestionError, match="supported"):
        compute_bounds(random_mlp([2, 3, 1], 0), 0.0, 1.0, "zonotope")
