"""Method region-climb (LOWER): below the enumerated constant in every norm and domain, its witness a
certified interior point, at the constant on most small nets, honest under a time limit, clear refusals."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt.certify.witness import point_witness
from lipopt.errors import InvalidOptionsError
from lipopt.methods import RunOptions, run_method
from lipopt.methods.enumeration import enumeration_value
from lipopt.network.layers import Dense, Flatten, MaxPool2d, ReLU
from lipopt.network.network import Network
from lipopt.result import BoundKind, StopReason
from lipopt.spec import Ball, Box, Global, Norm, Question
from tests import nets

FAST = RunOptions(seed=0, threads=1, extra={"region-climb": {"n_samples": 300, "climb_time": 5.0}})
CASES = [  # widths, seed, bias, domain, norm
    ([2, 4, 3, 1], 0, True, "global", Norm.L2), ([2, 4, 3, 1], 1, True, "box", Norm.LINF),
    ([3, 5, 1], 1, False, "global", Norm.L1), ([3, 5, 1], 3, True, "ball", Norm.L2),
    ([2, 5, 5, 2], 0, True, "box", Norm.LINF), ([2, 5, 5, 2], 1, False, "box", Norm.L2),
    ([3, 6, 5, 1], 4, True, "box", Norm.LINF), ([3, 6, 5, 1], 5, True, "linf-ball", Norm.LINF),
]


def _domain(name: str, n: int):
    return {"global": Global(), "box": Box(-1.0, 1.0), "ball": Ball(np.full(n, 0.2), 0.6, Norm.L2),
            "linf-ball": Ball(np.full(n, -0.1), 0.7, Norm.LINF)}[name]


def _id(c: tuple) -> str:
    return f"{'-'.join(map(str, c[0]))}-s{c[1]}-{c[3]}-{c[4].name}"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_below_the_exact_constant_with_a_certified_witness(case: tuple) -> None:
    widths, seed, bias, dom, p = case
    net = nets.random_mlp(widths, seed, bias)
    q = Question(p, p, _domain(dom, widths[0]))
    r = run_method("region-climb", net, q, FAST)
    assert r.ok and r.kind is BoundKind.LOWER and r.upper is None, (r.message, r.checks)
    assert r.value <= enumeration_value(net, q) * (1 + 1e-9) + 1e-12
    assert all(c.passed for c in r.checks) and len(r.checks) == 2
    cq = q if not isinstance(q.domain, Global) or bias else q.with_(domain=Box(-1.0, 1.0))
    pw = point_witness(net, np.asarray(r.witness["x"]), cq.bind(net))
    assert pw.certified and pw.value == pytest.approx(r.value, rel=1e-12)


def test_reaches_the_constant_on_most_small_nets() -> None:
    hits = 0
    for widths, seed, bias, dom, p in CASES:
        net = nets.random_mlp(widths, seed, bias)
        q = Question(p, p, _domain(dom, widths[0]))
        hits += run_method("region-climb", net, q, FAST).value >= enumeration_value(net, q) * (1 - 1e-9)
    assert hits >= 0.75 * len(CASES)


def test_a_time_limit_keeps_a_certified_value_and_says_so() -> None:
    net = nets.random_mlp([5, 10, 10, 1], 7, bias=True)
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0))
    r = run_method("region-climb", net, q, RunOptions(seed=0, threads=1, time_limit=0.05))
    assert r.ok and r.value is not None and r.stop is StopReason.TIME_LIMIT
    assert any("starts in" in n and "time limit" in n for n in r.notes)
    assert r.stats["climbs"] < r.stats["climb_starts"]
    full = run_method("region-climb", net, q, RunOptions(seed=0, threads=1, extra={"climb_time": 120.0}))
    assert full.stop is StopReason.COMPLETED and full.stats["climbs"] == full.stats["climb_starts"]
    assert full.value >= r.value * (1 - 1e-12)


def test_refusals() -> None:
    net = nets.random_mlp([3, 5, 1], 0, True)
    q = Question(Norm.L2, Norm.L2, Box(-1.0, 1.0))
    for bad in ({"n_samples": -1}, {"climb_starts": 1.5}, {"climb_time": 0}, {"climb_tme": 1.0}):
        with pytest.raises(InvalidOptionsError, match=r"climb_t|n_samples|climb_starts"):
            run_method("region-climb", net, q, RunOptions(extra={"region-climb": bad}))
    nominal = Question(Norm.L2, Norm.L2, Ball(np.zeros(3), 0.5, Norm.L2), nominal=True)
    r = run_method("region-climb", net, nominal)
    assert not r.ok and r.value is None and "region-climb" in r.message and "nominal" in r.message
    pool = Network([MaxPool2d(2, 2), Flatten(), Dense(np.ones((1, 4)), None), ReLU()], (1, 4, 4))
    r = run_method("region-climb", pool, Question(Norm.L2, Norm.L2, Box(0.0, 1.0)))
    assert not r.ok and r.value is None and "max-pooling" in r.message
