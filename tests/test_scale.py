"""Scale invariance of the exact methods (issue 15, "silent wrong answers"), against region enumeration.

* The normalisation the MIP methods build their models on (:mod:`lipopt.formulations.scaling`) is exact.
* The scale property: multiplying every layer's weight by c and layer k's bias by c^k multiplies the
  function, hence every EXACT / UPPER / LOWER value, by c^depth. Checked for c in {1e-6, 1e-3, 1e3, 1e6}
  and the methods milp and lp-relax (l-inf, box), miqcqp (l2, box and global), enumeration, naive and
  sampling, against the same method at c = 1 and against enumeration (independent: one LP per region).
* The audit's kinds of nets against enumeration: a neuron with tiny incoming weights (its hyperplane far
  away: the MIQCQP compactification radius was 1e7 .. 1e9 and SCIP's dual bound fell below the true
  constant), dead ReLUs, duplicated neurons, a single hidden layer.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from lipopt.formulations.scaling import normalised
from lipopt.methods import RunOptions, run_method
from lipopt.network.network import Network
from lipopt.result import BoundKind
from lipopt.spec import Box, Global, Norm, Question
from tests import nets

pytest.importorskip("pyscipopt")

SCALES = (1e-6, 1e-3, 1e3, 1e6)
OPTS = RunOptions(time_limit=10, seed=0)
RTOL = 1e-5  # bounds of solvers closed to rel_gap 1e-6; certified witnesses agree to ~1e-12
BOX = Box(-1.0, 1.0)


def scaled(net: Network, c: float) -> Network:
    """Every weight times c, layer k's bias times c^k: f_c = c^depth f exactly (up to rounding)."""
    wb = net.affine_relu_weights()
    return Network.from_weights([w * c for w, _ in wb], [b * c ** (k + 1) for k, (_, b) in enumerate(wb)])


def depth(net: Network) -> int:
    return len(net.affine_relu_weights())


def base_net() -> Network:
    return nets.random_mlp([2, 4, 3, 1], 1)


def tiny_weight_net(seed: int = 2, tiny: float = 1e-8) -> Network:
    """2-6-6-1, one first-layer neuron's incoming weights times ``tiny`` (its hyperplane at ~1/tiny)."""
    rng = np.random.default_rng(seed)
    widths = (2, 6, 6, 1)
    ws = [rng.normal(size=(widths[i + 1], widths[i])) for i in range(3)]
    bs = [rng.normal(size=widths[i + 1]) for i in range(3)]
    ws[0][0] *= tiny
    return Network.from_weights(ws, bs, name=f"tiny-weight neuron x{tiny:g}")


def dead_relu_net() -> Network:
    """3-5-4-1 with one neuron dead everywhere (zero weights, negative bias) and one dead on the box."""
    rng = np.random.default_rng(7)
    w1, b1 = rng.normal(size=(5, 3)), rng.normal(size=5)
    w1[0], b1[0] = 0.0, -1.0
    b1[1] = -np.abs(w1[1]).sum() - 0.5
    w2, b2 = rng.normal(size=(4, 5)), rng.normal(size=4)
    return Network.from_weights([w1, w2, rng.normal(size=(1, 4))], [b1, b2, rng.normal(size=1)],
                                name="dead relus")


def duplicated_net() -> Network:
    """2-4-3-1 with hidden neuron 0 duplicated (same row and bias) and its outgoing weight split."""
    wb = base_net().affine_relu_weights()
    (w1, b1), (w2, b2), (w3, b3) = wb
    w1d, b1d = np.vstack([w1, w1[:1]]), np.concatenate([b1, b1[:1]])
    w2d = np.hstack([w2, 0.3 * w2[:, :1]])
    w2d[:, 0] *= 0.7
    return Network.from_weights([w1d, w2d, w3], [b1d, b2, b3], name="duplicated neuron")


def single_layer_net() -> Network:
    return nets.random_mlp([3, 5, 1], 4)


CASES = {
    "milp/linf/box": ("milp", Question(Norm.LINF, Norm.LINF, BOX)),
    "milp/l1/box": ("milp", Question(Norm.L1, Norm.L1, BOX)),
    "lp-relax/linf/box": ("lp-relax", Question(Norm.LINF, Norm.LINF, BOX)),
    "miqcqp/linf/box": ("miqcqp", Question(Norm.LINF, Norm.LINF, BOX)),
    "miqcqp/l2/box": ("miqcqp", Question(Norm.L2, Norm.L2, BOX)),
    "miqcqp/l2/global": ("miqcqp", Question(Norm.L2, Norm.L2, Global())),
    "enumeration/linf/box": ("enumeration", Question(Norm.LINF, Norm.LINF, BOX)),
    "naive/l2/box": ("naive", Question(Norm.L2, Norm.L2, BOX)),
    "sampling/linf/box": ("sampling", Question(Norm.LINF, Norm.LINF, BOX)),
}


@functools.cache
def reference(net_key: str, q_key: str) -> float:
    """Region enumeration on the unscaled net (the independent exact value)."""
    net = NETS[net_key]()
    q = CASES[q_key][1]
    r = run_method("enumeration", net, q.bind(net), RunOptions(time_limit=60))
    assert r.ok and r.kind is BoundKind.EXACT, (r.message, r.notes)
    return float(r.value)


@functools.cache
def at_scale(case: str, c: float) -> tuple:
    method, q = CASES[case]
    net = base_net() if c == 1.0 else scaled(base_net(), c)
    r = run_method(method, net, q.bind(net), OPTS)
    return r.kind, r.value, r.lower, r.upper, r.ok, r.message


NETS = {"base": base_net, "tiny": tiny_weight_net, "dead": dead_relu_net, "duplicated": duplicated_net,
        "single": single_layer_net}


def _rel(a: float | None, b: float | None) -> float:
    if a is None or b is None:
        return math.inf if (a is None) != (b is None) else 0.0
    return abs(a - b) / max(abs(b), 1e-300)


# ----------------------------------------------------------------------------------- normalisation


@pytest.mark.parametrize("c", (1e-6, 1.0, 1e6))
def test_normalisation_is_exact(c: float) -> None:
    net = scaled(nets.random_mlp([3, 5, 4, 2], 3), c)
    nm = normalised(net)
    assert math.log2(nm.factor) == round(math.log2(nm.factor))  # a power of two: scaling is exact
    for w, _ in nm.network.affine_relu_weights():
        assert 0.5 <= np.max(np.abs(w)) <= 2.0
    x = np.random.default_rng(0).normal(size=(64, 3)) * 3
    assert np.array_equal(nm.network.forward(x) * nm.factor, net.forward(x))
    for xi in x[:8]:
        for a, b in zip(net.activation_pattern(xi), nm.network.activation_pattern(xi), strict=True):
            assert np.array_equal(a, b)


def test_normalisation_of_conv_pool_net() -> None:
    net = nets.conv_pool_net(0, channels=2)
    nm = normalised(net)
    x = np.random.default_rng(1).normal(size=(16, 1, 4, 4))
    assert np.array_equal(nm.network.forward(x) * nm.factor, net.forward(x))


# ------------------------------------------------------------------------------------ scale property


# (at c = 1e-6 the MIP methods' certified lower side rests on witness margins measured relative to the
# magnitudes that make up each pre-activation: lipopt.certify.witness.region_margin has no absolute floor)
_SCALE_PARAMS = [pytest.param(case, c) for c in SCALES for case in CASES]


@pytest.mark.parametrize("case,c", _SCALE_PARAMS)
def test_scale_property(case: str, c: float) -> None:
    kind0, value0, lower0, upper0, ok0, msg0 = at_scale(case, 1.0)
    assert ok0, msg0
    truth = reference("base", case)  # region enumeration on the same question, unscaled
    kind, value, lower, upper, ok, msg = at_scale(case, c)
    assert ok, msg
    f = c ** depth(base_net())
    assert kind is kind0, (kind, kind0, value, lower, upper)
    for got, want in ((value, value0), (lower, lower0), (upper, upper0)):
        if want is None:
            assert got is None
        else:
            assert got is not None and _rel(got / f, want) <= RTOL, (got / f, want)
    # and against the independent value: exact where EXACT, on the right side otherwise
    if kind is BoundKind.EXACT:
        assert _rel(value / f, truth) <= RTOL
    if lower is not None:
        assert lower / f <= truth * (1 + 1e-9)
    if upper is not None:
        assert upper / f >= truth * (1 - RTOL)


# ----------------------------------------------------------------------------- audit nets vs enumeration


AUDIT = [
    ("tiny", "miqcqp/l2/global"), ("tiny", "miqcqp/l2/box"), ("tiny", "milp/linf/box"),
    ("dead", "milp/linf/box"), ("dead", "miqcqp/l2/box"),
    ("duplicated", "milp/linf/box"), ("duplicated", "miqcqp/l2/global"),
    ("single", "milp/linf/box"), ("single", "miqcqp/l2/global"),
    ("tiny", "milp/l1/box"), ("dead", "milp/l1/box"), ("duplicated", "miqcqp/linf/box"),
    ("single", "miqcqp/linf/box"), ("dead", "miqcqp/linf/box"),
]


@pytest.mark.parametrize("net_key,case", AUDIT)
def test_exact_methods_match_enumeration_on_audit_nets(net_key: str, case: str) -> None:
    net = NETS[net_key]()
    method, q = CASES[case]
    truth = reference(net_key, case)
    r = run_method(method, net, q.bind(net), OPTS)
    assert r.ok, (r.message, [str(ch) for ch in r.checks])
    assert r.lower is not None and r.lower <= truth * (1 + 1e-9) + 1e-300
    assert r.upper is not None and r.upper >= truth * (1 - RTOL)
    if net_key != "duplicated" and "/l1/" not in case:  # duplicated neurons: not in general position
        assert r.kind is BoundKind.EXACT, (r.lower, r.upper, r.notes)
    if "/l1/" in case:  # the l1 objective sums the solver's feasibility slack over the gradient entries:
        assert r.gap is not None and r.gap <= 1e-5, (r.lower, r.upper)  # EXACT or a bracket within 1e-5
    if r.kind is BoundKind.EXACT:
        assert _rel(r.value, truth) <= RTOL


def test_tiny_weight_neuron_global_radius_stays_modest() -> None:
    """The far hyperplane (|b| / |w| ~ 1e8) no longer sets the compactification radius."""
    from lipopt.formulations.miqcqp_geometry import RADIUS_CAP, default_global_radius, mlp_weights

    net = tiny_weight_net()
    r = default_global_radius(*mlp_weights(net))
    assert 1.0 <= r <= RADIUS_CAP * 10


def test_ill_conditioned_radius_is_never_exact_from_the_dual_bound() -> None:
    """A user radius of 1e8 (the audit's failing regime): the dual bound is not used, the upper bound is
    the bound-propagation one, still above the true constant."""
    from lipopt.formulations.miqcqp_geometry import RADIUS_SAFE

    net = tiny_weight_net()
    q = CASES["miqcqp/l2/global"][1].bind(net)
    truth = reference("tiny", "miqcqp/l2/global")
    r = run_method("miqcqp", net, q, RunOptions(time_limit=10, seed=0, extra={"global_radius": 1e8}))
    assert r.ok, r.message
    assert r.stats["radius_conditioning"] > RADIUS_SAFE
    assert any("not used" in n for n in r.notes)
    assert r.upper is not None and r.upper >= truth * (1 - RTOL)
    assert r.lower is None or r.lower <= truth * (1 + 1e-9)


def _constant_nets() -> list[tuple[str, Network, Question]]:
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(4, 2))
    b1 = -np.abs(w1).sum(1) - 1.0  # every first-layer neuron dead on [-1, 1]^2 (alive far away)
    w2, b2, w3, b3 = rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=(1, 3)), rng.normal(size=1)
    dead_on_box = Network.from_weights([w1, w2, w3], [b1, b2, b3])
    dead_everywhere = Network.from_weights([np.zeros((4, 2)), w2, w3], [-np.ones(4), b2, b3])
    return [("dead on the box", dead_on_box, Question(Norm.L2, Norm.L2, BOX)),
            ("dead everywhere", dead_everywhere, Question(Norm.L2, Norm.L2, Global())),
            ("dead everywhere", dead_everywhere, Question(Norm.LINF, Norm.LINF, BOX))]


@pytest.mark.parametrize("i", range(3))
@pytest.mark.parametrize("method", ["milp", "miqcqp"])
def test_constant_network_is_exactly_zero(method: str, i: int) -> None:
    """L = 0 (every path through a dead ReLU): EXACT 0 with every check passed; solver tolerance noise
    (bounds padded by an absolute 1e-9 gave a MIQCQP objective of 2e-9) must not reach the record."""
    name, net, q = _constant_nets()[i]
    if method == "milp":  # l-inf / l1 input norms only
        q = Question(Norm.LINF, Norm.LINF, q.domain)
    qb = q.bind(net)
    e = run_method("enumeration", net, qb, RunOptions(time_limit=30))
    assert e.kind is BoundKind.EXACT and e.value == 0.0, name
    r = run_method(method, net, qb, OPTS)
    assert r.ok, (name, r.message, [str(ch) for ch in r.checks if not ch.passed])
    assert r.kind is BoundKind.EXACT and r.value == 0.0 and r.upper == 0.0, (name, r.lower, r.upper)


@pytest.mark.parametrize("c", [1e-12, 1e-6, 2.0 ** -20, 1e6, 1e12])
def test_witness_margin_is_scale_invariant(c: float) -> None:
    """region_margin measures each pre-activation against the magnitudes summed into it, so scaling
    the weights (and biases cumulatively) leaves it unchanged, and a point on a tie has margin 0."""
    from lipopt.certify.witness import region_margin

    mlp = base_net()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=mlp.input_size)
    m1, mc = region_margin(mlp, x), region_margin(scaled(mlp, c), x)
    assert m1 > 0 and mc == pytest.approx(m1, rel=1e-9)
    (w1, b1), *_ = mlp.affine_relu_weights()
    on_tie = np.linalg.lstsq(w1[:1], -b1[:1], rcond=None)[0]  # first hidden pre-activation = 0
    assert region_margin(scaled(mlp, c), on_tie) <= 1e-12


def test_a_witness_a_hair_outside_the_domain_does_not_certify() -> None:
    """T6 = relu(-x) on [0, 1]: its active region touches the box only at 0. With margins relative to
    the values, x = -1e-13 is well inside that region, so only an exact domain test keeps it out."""
    from lipopt.certify.witness import clip_to_domain, in_domain, point_witness

    q = Question(Norm.LINF, Norm.LINF, Box(0.0, 1.0)).bind(nets.t6())
    pw = point_witness(nets.t6(), np.array([-1e-13]), q)
    assert pw.margin > 1e-3 and not pw.in_domain and not pw.certified
    from lipopt.spec import Ball

    for norm in (Norm.LINF, Norm.L2):
        ball = Question(Norm.L2, Norm.L2, Ball(np.array([0.3, -0.7]), 0.1, norm)).bind(base_net())
        rng = np.random.default_rng(1)
        for _ in range(200):  # projected points are exactly inside, despite rounding
            assert in_domain(clip_to_domain(ball.domain.center + rng.normal(size=2), ball), ball)
