"""Interior points of activation regions: the certified LOWER side of every MIP solve."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt.certify.regions import certify_pattern, pattern_at, region_constraints
from lipopt.network import Network
from lipopt.spec import make_question


def _random_net(seed: int) -> Network:
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(5, 3)), rng.normal(size=(4, 5)), rng.normal(size=(2, 4))]
    bs = [rng.normal(size=5), rng.normal(size=4), rng.normal(size=2)]
    return Network.from_weights(ws, bs)


@pytest.mark.parametrize("seed", range(4))
def test_pattern_at_random_point_is_certified_with_its_jacobian(seed: int) -> None:
    net = _random_net(seed)
    q = make_question(2, domain="box:-1,1").bind(net)
    x = np.random.default_rng(100 + seed).uniform(-1, 1, 3)
    relu, pools = pattern_at(net, x)
    w = certify_pattern(net, q, relu, pools)
    assert w is not None and w.certified and np.all(np.abs(w.x) <= 1)
    np.testing.assert_allclose(w.value, np.linalg.norm(net.jacobian(x), 2), rtol=1e-12)
    # the interior point has the same pattern as x
    for a, b in zip(pattern_at(net, w.x)[0], relu, strict=True):
        np.testing.assert_array_equal(a, b)


def test_degenerate_pattern_of_t4_certifies_nothing() -> None:
    # relu(x) - relu(2x): the pattern (on, off) is the single point x = 0 (formulations.md T4)
    net = Network.from_weights([np.array([[1.0], [2.0]]), np.array([[1.0, -1.0]])])
    q = make_question(2, domain="box:-1,1").bind(net)
    assert certify_pattern(net, q, [np.array([True, False])]) is None
    assert certify_pattern(net, q, [np.array([True, True])]).value == pytest.approx(1.0)


def test_region_touching_box_only_on_boundary_t6() -> None:
    # relu(-x) on [0, 1]: the active pattern meets the box only at x = 0 (T6)
    net = Network.from_weights([np.array([[-1.0]]), np.array([[1.0]])])
    q = make_question(2, domain="box:0,1").bind(net)
    assert certify_pattern(net, q, [np.array([True])]) is None
    g = make_question(2).bind(net)
    assert certify_pattern(net, g, [np.array([True])]).value == pytest.approx(1.0)


def test_identically_zero_neuron_row_dropped() -> None:
    # a hidden neuron with zero weights and zero bias: both states give the same Jacobian
    net = Network.from_weights([np.array([[1.0], [0.0]]), np.array([[1.0, 5.0]])])
    assert region_constraints(net, [np.array([True, True])]) is not None
    q = make_question(2).bind(net)
    assert certify_pattern(net, q, [np.array([True, False])]).value == pytest.approx(1.0)


def test_point_witness_allows_for_float64_rounding() -> None:
    """The witness value is the float64 Jacobian norm lowered by a rounding allowance: below the raw
    value, by a relative amount that is tiny and the same at every weight scale."""
    from lipopt.certify.witness import jacobian_rounding, point_witness
    from lipopt.norms import jacobian_norm
    from lipopt.spec import Box, Norm, Question

    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((16, 5)), rng.standard_normal((16, 16)), rng.standard_normal((3, 16))]
    q = Question(Norm.L2, Norm.L2, Box(-1.0, 1.0))
    x = rng.uniform(-1, 1, 5)
    rel = []
    for scale in (1.0, 1e8):
        net = Network.from_weights([w * scale for w in ws])
        raw = jacobian_norm(net.jacobian(x), q)
        pw = point_witness(net, x, q)
        assert 0 < jacobian_rounding(net, x, q) and pw.value < raw
        rel.append((raw - pw.value) / raw)
    assert all(r < 1e-10 for r in rel)
    assert rel[0] == pytest.approx(rel[1], rel=1e-3)  # scale invariant
