"""The networks of formulations.md section 7 (tests/nets.py) against their stated values, for the methods
enumeration (EXACT), sampling and grad-ascent (LOWER)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lipopt.methods import RunOptions, run_method
from lipopt.methods.enumeration import enumeration_value
from lipopt.result import BoundKind, Status
from tests import nets

EXACT = nets.exact_keys()
WEAK = nets.weak_keys()
NOMINAL = nets.nominal_keys()


@pytest.mark.parametrize("key", EXACT)
def test_enumeration_matches_table(key: str) -> None:
    res = run_method("enumeration", nets.network(key), nets.question(key))
    assert res.status is Status.SOLVED, res.message
    assert res.kind is BoundKind.EXACT
    assert res.ok, [str(c) for c in res.checks]
    assert res.value == pytest.approx(nets.known(key), abs=nets.tol(key))


@pytest.mark.parametrize("key", WEAK)
def test_weak_enumeration_matches_table(key: str) -> None:
    assert enumeration_value(nets.network(key), nets.question(key), strict=False) == pytest.approx(
        nets.known(key), abs=1e-9)


@pytest.mark.parametrize("key", ["T4/l2/global", "T5/l2/global", "T6/l2/box", "T7(0)/l2/global",
                                 "T7(0)/linf/global"])
def test_weak_strictly_above_exact_at_degenerate_parameters(key: str) -> None:
    """Fact B: the closed-region maximum over-estimates exactly in the degenerate cases T4-T7."""
    net, q = nets.network(key), nets.question(key)
    assert enumeration_value(net, q, strict=False) > enumeration_value(net, q) + 0.1


def test_weak_run_option_is_reported_as_upper_not_exact() -> None:
    opts = RunOptions(extra={"weak": True})
    res = run_method("enumeration", nets.t4(), nets.question("T4/l2/global"), opts)
    assert res.kind is BoundKind.UPPER and res.value == pytest.approx(2.0)
    assert "WEAK" in res.notes[0]


@pytest.mark.parametrize("key", NOMINAL)
def test_enumeration_refuses_nominal(key: str) -> None:
    res = run_method("enumeration", nets.network(key), nets.question(key))
    assert res.status is Status.NOT_APPLICABLE and "nominal" in res.message


@pytest.mark.parametrize("method", ["sampling", "grad-ascent"])
@pytest.mark.parametrize("key", EXACT)
def test_lower_methods_on_table(method: str, key: str) -> None:
    """Certified lower bounds never exceed the known value; on these tiny nets both reach it."""
    res = run_method(method, nets.network(key), nets.question(key), RunOptions(seed=0))
    assert res.ok, (res.message, [str(c) for c in res.checks])
    assert res.kind is BoundKind.LOWER
    v = nets.known(key)
    assert res.value <= v + max(nets.tol(key), 1e-9 * v)
    assert res.value >= v - max(nets.tol(key), 1e-9 * v) - (1e-6 if key.startswith("T9c") else 0.0)


@pytest.mark.parametrize("method", ["sampling", "grad-ascent"])
@pytest.mark.parametrize("key", NOMINAL)
def test_lower_methods_nominal(method: str, key: str) -> None:
    res = run_method(method, nets.network(key), nets.question(key), RunOptions(seed=0))
    assert res.ok, (res.message, [str(c) for c in res.checks])
    v = nets.known(key)
    assert res.value <= v + 1e-6
    assert res.value >= v * (1 - 1e-3)
    if method == "grad-ascent":
        assert res.value >= v - 1e-6


def test_t9b_nominal_below_pairwise_local() -> None:
    """T9b: nominal constant 1/2 < pairwise local constant 1 on the same ball."""
    nom = run_method("grad-ascent", nets.t9b(), nets.question("T9b/l2/nominal/2"))
    loc = run_method("enumeration", nets.t9b(), nets.question("T9b/l2/local/2"))
    assert nom.value == pytest.approx(0.5, abs=1e-9) and loc.value == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(nets.NAIVE_L2))
def test_naive_products_of_table(name: str) -> None:
    """The naive l2 products stated in the table, computed from the weights, bound the exact value."""
    factory = {"T1": nets.t1, "T2": nets.t2, "T2deep": nets.t2_deep, "T2b": nets.t2b, "T3": nets.t3,
               "T4": nets.t4, "T7(0)": nets.t7, "T8": nets.t8}[name]
    net = factory()
    naive = math.prod(np.linalg.norm(w, 2) for w, _ in net.affine_relu_weights())
    assert naive == pytest.approx(nets.NAIVE_L2[name], rel=1e-12)
    key = f"{name}/l2/global"
    assert nets.known(key) <= naive + 1e-12
