"""LeakyReLU max(x, alpha x), 0 <= alpha < 1, through every method: hand-computed constants, region
enumeration as the reference for the exact methods, the bounds from the right side, and the GLipSDP
ONNX models (LeakyReLU with scaling Mul nodes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.errors import InvalidNetworkError
from lipopt.methods import run_method
from lipopt.network import Dense, LeakyReLU, LeakyReLUStage, Network, ReLU
from lipopt.options import RunOptions
from lipopt.result import BoundKind
from lipopt.spec import Ball, Box, Global, Norm, Question
from tests.paths import EXTERNAL

OPTS = RunOptions(time_limit=60, threads=1)
SHARED = EXTERNAL


def leaky_net(sizes: list[int], alpha: float, seed: int, bias: bool = True) -> Network:
    rng = np.random.default_rng(seed)
    layers: list = []
    for k in range(len(sizes) - 1):
        b = rng.standard_normal(sizes[k + 1]) * 0.5 if bias else None
        layers.append(Dense(rng.standard_normal((sizes[k + 1], sizes[k])), b))
        if k < len(sizes) - 2:
            layers.append(LeakyReLU(alpha))
    return Network(layers, (sizes[0],), name=f"leaky{sizes}a{alpha}s{seed}")


def _abs_like(alpha: float) -> Network:
    """f(x) = leaky(x) + leaky(-x) = (1 - alpha) |x|: the constant is 1 - alpha on any domain meeting 0."""
    return Network([Dense(np.array([[1.0], [-1.0]]), None), LeakyReLU(alpha),
                    Dense(np.array([[1.0, 1.0]]), None)], (1,))


# -- the IR ---------------------------------------------------------------------------------------


def test_layer_forward_jacobian_and_lowering() -> None:
    net = _abs_like(0.25)
    assert net.forward(np.array([2.0]))[0] == pytest.approx(1.5)
    assert net.forward(np.array([-2.0]))[0] == pytest.approx(1.5)
    assert net.jacobian(np.array([3.0]))[0, 0] == pytest.approx(0.75)
    assert net.jacobian(np.array([-3.0]))[0, 0] == pytest.approx(-0.75)
    stages = net.lower()
    assert isinstance(stages[1], LeakyReLUStage) and stages[1].alpha == 0.25
    assert net.has_leaky and net.n_relus == 2


@pytest.mark.parametrize("alpha", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_slope_is_refused(alpha: float) -> None:
    with pytest.raises(InvalidNetworkError, match="0 <= alpha < 1"):
        LeakyReLU(alpha)


def test_alpha_zero_is_relu() -> None:
    """LeakyReLU(0) and ReLU give the same values and the same exact constant."""
    a = leaky_net([2, 4, 1], 0.0, seed=3)
    b = Network([a.layers[0], ReLU(), a.layers[2]], (2,))
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0))
    ra, rb = run_method("enumeration", a, q, OPTS), run_method("enumeration", b, q, OPTS)
    assert ra.value == pytest.approx(rb.value, rel=1e-12)


# -- hand-computed constants ------------------------------------------------------------------------


@pytest.mark.parametrize("method,norm", [("enumeration", Norm.L2), ("milp", Norm.LINF), ("milp", Norm.L1),
                                         ("miqcqp", Norm.L2), ("miqcqp", Norm.LINF), ("bab", Norm.L2)])
@pytest.mark.parametrize("alpha", [0.1, 0.5])
def test_abs_like_exact(method: str, norm: Norm, alpha: float) -> None:
    q = Question(norm, norm, Box(-1.0, 1.0))
    r = run_method(method, _abs_like(alpha), q, OPTS)
    assert r.kind is BoundKind.EXACT, r.message
    assert r.value == pytest.approx(1.0 - alpha, rel=1e-6)


def test_inactive_region_only_has_slope_alpha() -> None:
    """On [-2, -1] the neuron of leaky(x) is always inactive: the constant is alpha exactly."""
    net = Network([Dense(np.array([[1.0]]), None), LeakyReLU(0.3), Dense(np.array([[1.0]]), None)], (1,))
    q = Question(Norm.LINF, Norm.LINF, Box(-2.0, -1.0))
    for m in ("enumeration", "milp", "miqcqp", "bab"):
        r = run_method(m, net, q, OPTS)
        assert r.kind is BoundKind.EXACT and r.value == pytest.approx(0.3, rel=1e-9), (m, r.message)
    assert run_method("naive", net, q, OPTS).upper >= 0.3


# -- exact methods against region enumeration ----------------------------------------------------------

CASES = [([2, 5, 1], 0.1, 0, True), ([3, 4, 3, 1], 0.2, 1, True), ([2, 6, 2], 0.05, 2, False),
         ([3, 5, 4, 2], 0.3, 3, True)]


@pytest.mark.parametrize("sizes,alpha,seed,bias", CASES)
@pytest.mark.parametrize("norm", [Norm.LINF, Norm.L1, Norm.L2])
def test_exact_methods_agree_with_enumeration(sizes, alpha, seed, bias, norm) -> None:
    net = leaky_net(sizes, alpha, seed, bias)
    domains = [Box(-1.0, 1.0)] + ([Global()] if not bias else [])
    for dom in domains:
        q = Question(norm, norm, dom)
        ref = run_method("enumeration", net, q, OPTS)
        assert ref.kind is BoundKind.EXACT, ref.message
        exact_methods = ["bab"] + (["milp"] if norm is not Norm.L2 else [])
        if norm is not Norm.L1 or sizes[-1] == 1:
            exact_methods.append("miqcqp")
        for m in exact_methods:
            r = run_method(m, net, q, OPTS)
            assert r.verdict.value == "ok", (m, r.message)
            assert r.lower <= ref.value * (1 + 1e-6) and r.upper >= ref.value * (1 - 1e-6), (m, dom)
            if r.kind is BoundKind.EXACT:
                assert r.value == pytest.approx(ref.value, rel=1e-5), (m, dom)


@pytest.mark.parametrize("sizes,alpha,seed,bias", CASES[:3])
def test_bounds_from_the_right_side(sizes, alpha, seed, bias) -> None:
    net = leaky_net(sizes, alpha, seed, bias)
    q = Question(Norm.L2, Norm.L2, Box(-1.0, 1.0))
    exact = run_method("enumeration", net, q, OPTS).value
    for m in ("naive", "lipsdp-neuron", "lipsdp-layer", "lipsdp-local"):
        r = run_method(m, net, q, OPTS)
        assert r.verdict.value == "ok", (m, r.message)
        assert r.upper >= exact * (1 - 1e-7), m
    for m in ("sampling", "grad-ascent"):
        r = run_method(m, net, q, OPTS)
        assert r.verdict.value == "ok" and r.lower <= exact * (1 + 1e-9), m


def test_local_affine_bound_holds_for_leaky() -> None:
    """The nominal-point bound against the difference quotients of sampled points of the ball."""
    net = leaky_net([3, 8, 6, 2], 0.2, seed=5)
    x0 = np.array([0.1, -0.2, 0.3])
    eps = 0.5
    q = Question(Norm.L2, Norm.L2, Ball(x0, eps, Norm.L2), nominal=True)
    r = run_method("local-affine", net, q, OPTS)
    assert r.verdict.value == "ok", r.message
    rng = np.random.default_rng(0)
    d = rng.standard_normal((4000, 3))
    d *= (eps * rng.uniform(0, 1, (4000, 1)) ** (1 / 3)) / np.linalg.norm(d, axis=1, keepdims=True)
    f0 = net.forward(x0)
    ratios = np.linalg.norm(net.forward(x0 + d) - f0, axis=1) / np.linalg.norm(d, axis=1)
    assert r.upper >= ratios.max() * (1 - 1e-9)


def test_bounds_contain_values_and_gradients() -> None:
    from lipopt.bounds import compute_bounds
    from lipopt.bounds.interval import backward_interval

    net = leaky_net([3, 6, 5, 1], 0.15, seed=7)
    lo, hi = -np.ones(3), np.ones(3)
    xs = np.random.default_rng(1).uniform(-1, 1, (500, 3))
    from lipopt.network.network import stage_forward

    outs, _ = stage_forward(net.lower(), xs)
    for method in ("interval", "crown", "lp"):
        fb = compute_bounds(net, lo, hi, method=method)
        for (blo, bhi), v in zip(fb.stage_bounds, outs, strict=True):
            assert np.all(v >= blo[None] - 1e-12) and np.all(v <= bhi[None] + 1e-12), method
        bb = backward_interval(fb, np.ones(1), np.ones(1))
        grads = np.array([net.jacobian(x)[0] for x in xs[:100]])
        glo, ghi = bb.grad_input
        assert np.all(grads >= glo - 1e-12) and np.all(grads <= ghi + 1e-12), method


def test_written_milp_names_the_leaky_rows(tmp_path: Path) -> None:
    net = _abs_like(0.2)
    bm = lipopt.build_model(net, "milp", norm="inf", domain="box:-1,1")
    files = bm.write(tmp_path)
    text = next(f for f in files if f.suffix == ".lp").read_text()
    assert "ge_az" in text  # the h >= alpha z row of an ambiguous LeakyReLU neuron
    assert bm.value(bm.solve()[0].objective) == pytest.approx(0.8, rel=1e-6)


# -- the GLipSDP ONNX models ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["mlp_L3_W16.onnx", "cnn_C3_CH8.onnx"])
def test_glipsdp_onnx_gets_a_sound_bracket(name: str) -> None:
    path = SHARED / "glipsdp" / name
    if not path.exists():
        pytest.skip(f"{path} not present")
    net = lipopt.load(path)
    q = Question(Norm.L2, Norm.L2, Box(0.0, 1.0))
    # the CNN (6,272 neurons, convolutions as sparse matrices) keeps to the cheap methods in the default suite
    methods = ["naive", "sampling"] + (["grad-ascent", "lipsdp-neuron"] if name.startswith("mlp") else [])
    rs = lipopt.compare(net, methods, q, options=RunOptions(time_limit=8, seed=0))
    uppers = [r.upper for r in rs if r.upper is not None]
    lowers = [r.lower for r in rs if r.lower is not None and r.declared_kind is BoundKind.LOWER]
    assert all(r.verdict.value == "ok" for r in rs), [(r.method, r.message) for r in rs]
    assert uppers and lowers and max(lowers) > 0
    assert max(lowers) <= min(uppers) * (1 + 1e-9)


@pytest.mark.parametrize("alpha", [0.3, 0.9])
def test_lipsdp_uses_the_slopes_alpha_to_one(alpha: float) -> None:
    """LeakyReLU in LipSDP's loop form (max(z, a z) = a z + (1 - a) relu(z): slopes [a, 1]) against the
    exact constant by region enumeration and the [0, 1] sector form (first-order path): exact <= loop <=
    sector, and as a -> 1 (a nearly linear net) the loop form closes on the exact value where the sector
    form cannot. Locally on a box: lipsdp-local (loop) >= the exact local constant."""
    net = leaky_net([3, 6, 5, 2], alpha, seed=1)
    q = Question(Norm.L2, Norm.L2)
    exact = run_method("enumeration", net, q, OPTS)
    assert exact.kind is BoundKind.EXACT
    loop = run_method("lipsdp-neuron", net, q, RunOptions(extra={"sdp_algorithm": "solver"}))
    sector = run_method("lipsdp-neuron", net, q, RunOptions(
        extra={"sdp_algorithm": "first-order", "sdp_first_order_min_size": 0}))
    assert loop.ok and sector.ok
    assert loop.stats["leaky_form"] == "loop" and sector.stats["leaky_form"] == "sector"
    assert exact.value <= loop.value * (1 + 1e-7) and loop.value <= sector.value * (1 + 1e-6)
    if alpha == 0.9:
        assert loop.value <= 1.01 * exact.value < sector.value / 1.05
    assert run_method("lipsdp-neuron", net, q).stats["leaky_form"] == "loop"  # auto: it fits the solver
    fast = run_method("lipsdp-fast", net, q)
    assert fast.ok and fast.stats["leaky_form"] == "sector" and fast.value >= exact.value
    qb = Question(Norm.L2, Norm.L2, Box(-0.3, 0.3))
    local_exact = run_method("enumeration", net, qb, OPTS)
    local = run_method("lipsdp-local", net, qb)
    assert local.ok and local_exact.value <= local.value * (1 + 1e-7) <= loop.value * (1 + 1e-6)
