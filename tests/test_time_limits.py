"""RunOptions.time_limit bounds every phase of naive, sampling and grad-ascent (issue 15).

With a tiny limit on a net whose unlimited run takes clearly longer (measured here, in the same process), the
limited record must still be sound and of its kind (a LOWER bound below a certified upper bound of the same
question, an UPPER bound above a certified lower bound), stop with ``StopReason.TIME_LIMIT``, say so in a
note, and take less wall time than the unlimited run (a ratio, never a wall-clock threshold).
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from lipopt.deadline import Deadline
from lipopt.methods import RunOptions, run_method
from lipopt.network.network import Network
from lipopt.result import BoundKind, StopReason, Verdict
from lipopt.spec import AllOutputs, Ball, Box, Global, Norm, Question

TINY = 0.05


def _random_net(sizes: list[int], seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(b, a)) / np.sqrt(a) for a, b in itertools.pairwise(sizes)]
    bs = [0.1 * rng.normal(size=b) for b in sizes[1:]]
    return Network.from_weights(ws, bs)


def _q(domain=None, nominal: bool = False) -> Question:
    return Question(Norm.L2, Norm.L2, domain or Global(), AllOutputs(), nominal=nominal)


def _timed_out(r, kind: BoundKind) -> None:
    assert r.verdict is Verdict.OK, (r.verdict, r.message, [str(c) for c in r.checks])
    assert r.stop is StopReason.TIME_LIMIT
    assert r.kind is kind and r.value is not None
    assert any("time limit" in n for n in r.notes), r.notes
    assert all(c.passed for c in r.checks)


def _pair(method: str, net: Network, q: Question, **extra):
    """(unlimited record, limited record); the unlimited one runs first (imports and caches warm)."""
    full = run_method(method, net, q, RunOptions(extra=extra))
    assert full.ok and full.stop is StopReason.COMPLETED, (full.message, full.stop)
    lim = run_method(method, net, q, RunOptions(time_limit=TINY, extra=extra))
    return full, lim


def test_naive_time_limit_falls_back_to_a_cheaper_sound_upper_bound() -> None:
    net = _random_net([784, 1024, 1024, 10])
    q = _q()
    full, lim = _pair("naive", net, q)
    _timed_out(lim, BoundKind.UPPER)
    assert lim.wall_time < full.wall_time
    # sound: above a certified lower bound (and above the tight certified product, being looser)
    low = run_method("sampling", net, q, RunOptions(extra={"n_samples": 20}))
    assert low.kind is BoundKind.LOWER and low.value is not None
    assert lim.value >= low.value
    assert lim.value >= full.value * (1 - 1e-9)
    late = [f for f in lim.stats["factors"] if "time limit" in str(f["method"])]
    assert late, lim.stats["factors"]
    for f in late:  # every replaced factor is above the layer's true spectral norm
        w = net.layers[f["layer"]].weight
        assert f["value"] >= np.linalg.norm(w, 2)


def test_sampling_time_limit_keeps_a_certified_lower_bound() -> None:
    net = _random_net([784, 256, 256, 10], seed=1)
    q = _q()
    full, lim = _pair("sampling", net, q, n_samples=1000)
    _timed_out(lim, BoundKind.LOWER)
    assert lim.wall_time < full.wall_time
    assert 0 < lim.stats["n_evaluated"] < 1000
    upper = run_method("naive", net, q)
    assert upper.kind is BoundKind.UPPER
    assert lim.value <= upper.value
    assert full.value <= upper.value


def test_grad_ascent_time_limit_keeps_a_certified_lower_bound() -> None:
    net = _random_net([100, 64, 64, 10], seed=2)
    q = _q()
    full, lim = _pair("grad-ascent", net, q, steps=100)
    _timed_out(lim, BoundKind.LOWER)
    assert lim.wall_time < full.wall_time
    upper = run_method("naive", net, q)
    assert lim.value <= upper.value
    # the witness re-evaluates to the value (a real point or pair)
    assert lim.witness is not None and lim.witness["kind"] in ("point", "pair")


@pytest.mark.parametrize("method", ["sampling", "grad-ascent"])
def test_nominal_and_box_questions_under_a_time_limit(method: str) -> None:
    net = _random_net([100, 64, 64, 10], seed=3)
    upper = run_method("naive", net, _q())
    for q in (_q(Ball(np.zeros(100), 1.0, Norm.L2), nominal=True), _q(Box(-1.0, 1.0))):
        opts = RunOptions(time_limit=1e-4, extra={"n_samples": 20_000, "n_init": 20_000})
        r = run_method(method, net, q, opts)
        _timed_out(r, BoundKind.LOWER)
        assert r.value <= upper.value


def test_no_time_limit_changes_nothing() -> None:
    """A limit that does not bind gives the same value as no limit, and stops COMPLETED."""
    net = _random_net([10, 16, 16, 2], seed=4)
    q = _q(Box(-1.0, 1.0))
    a = run_method("sampling", net, q, RunOptions(extra={"n_samples": 200}))
    b = run_method("sampling", net, q, RunOptions(time_limit=600.0, extra={"n_samples": 200}))
    assert a.value == b.value and b.stop is StopReason.COMPLETED


def test_evaluate_until_is_a_prefix_of_the_full_evaluation() -> None:
    from lipopt.lower.batch import evaluate_until

    x = np.arange(10_000, dtype=float).reshape(-1, 1)

    def slow(rows: np.ndarray) -> np.ndarray:
        time.sleep(1e-5 * len(rows))
        return rows[:, 0] * 2.0

    dl = Deadline.start(0.02)
    v = evaluate_until(slow, x, dl, "test", min_rows=5)
    assert 5 <= len(v) < len(x)
    np.testing.assert_array_equal(v, 2.0 * x[: len(v), 0])
    assert dl.hit and "test" in dl.note()
    assert len(evaluate_until(slow, x[:100], Deadline.start(None), "test")) == 100


def test_quick_spectral_bounds_are_sound() -> None:
    from lipopt.analytic.spectral import _dense_quick_upper

    rng = np.random.default_rng(5)
    for shape in [(1, 7), (30, 5), (64, 64), (200, 50)]:
        w = rng.normal(size=shape) * rng.uniform(0.1, 10.0)
        assert _dense_quick_upper(w) >= np.linalg.norm(w, 2)
    w = np.zeros((3, 4))
    w[1, 2] = -2.5  # rank one: the bound is attained
    assert _dense_quick_upper(w) == pytest.approx(2.5, rel=1e-9) and _dense_quick_upper(w) >= 2.5


def test_miqcqp_bound_tightening_time_limit_keeps_sound_bounds() -> None:
    """LP tightening stopped at once keeps CROWN bounds: they contain the tight ones and every sample."""
    from lipopt.formulations.miqcqp_geometry import input_set, layer_bounds
    from lipopt.methods.miqcqp import warm_start

    net = _random_net([6, 24, 24, 1], seed=6)
    q = Question(Norm.L2, Norm.L2, Box(-1.0, 1.0), AllOutputs()).bind(net)
    iset = input_set(net, q, None)
    tight = layer_bounds(net, q, iset)
    quick = layer_bounds(net, q, iset, time_limit=0.0)
    xs = np.random.default_rng(7).uniform(-1, 1, size=(500, 6))
    h = xs
    for k, (w, b) in enumerate(net.affine_relu_weights()[:-1]):
        z = h @ w.T + b
        assert np.all(quick.z_lo[k] <= tight.z_lo[k] + 1e-12)
        assert np.all(quick.z_hi[k] >= tight.z_hi[k] - 1e-12)
        assert np.all(z >= quick.z_lo[k] - 1e-9) and np.all(z <= quick.z_hi[k] + 1e-9)
        h = np.maximum(z, 0.0)
    ws = warm_start(net, q, 200_000, 0, deadline=time.perf_counter())  # out of time at once
    assert 0 < ws.n_samples < 200_000 and ws.value is not None


def test_miqcqp_does_not_build_its_model_past_the_limit() -> None:
    """A limit used up by the bounds and the warm start: P_UB is not even built; the record is the warm
    start's certified LOWER side with the bound-propagation UPPER bound, stopped at the time limit, and
    it takes less time than a run that builds and solves the model."""
    pytest.importorskip("pyscipopt")
    net = _random_net([20, 64, 64, 1], seed=1)
    q = Question(Norm.L2, Norm.L2, Box(-1.0, 1.0), AllOutputs()).bind(net)
    full = run_method("miqcqp", net, q, RunOptions(time_limit=20))
    r = run_method("miqcqp", net, q, RunOptions(time_limit=1e-3))
    assert r.verdict is Verdict.OK and r.stop is StopReason.TIME_LIMIT, (r.message, r.notes)
    assert any("before P_UB was built" in n for n in r.notes) and "ub_model" not in r.stats
    assert r.upper is not None and full.lower is not None and r.upper >= full.lower * (1 - 1e-9)
    if r.lower is not None and full.upper is not None:
        assert r.lower <= full.upper * (1 + 1e-9)
    assert r.wall_time < full.wall_time
