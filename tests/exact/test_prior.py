"""The exact methods' prior bounds (lipopt.exact.prior): the cheap methods' certified bounds as cut-offs,
starts and the cap of the reported bracket (issue 13, "the reported bracket is never looser than the best
of them")."""

from __future__ import annotations

import pytest

import lipopt
from lipopt.exact import prior as prior_mod
from lipopt.methods import RunOptions, run_method
from lipopt.result import BoundKind, LipschitzResult, Verdict
from lipopt.spec import Box, Global, Norm, Question
from tests import nets
from tests.paths import EXTERNAL

MNIST = EXTERNAL / "lipsdp" / "mnist_weights.mat"


def _has(mod: str) -> bool:
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


HAS_SCIP = _has("pyscipopt")


def _contains(r: LipschitzResult, value: float, rtol: float = 1e-6) -> bool:
    tol = rtol * max(1.0, abs(value))
    return r.lower is not None and r.upper is not None and r.lower <= value + tol and r.upper >= value - tol


def _history_ends_at_bracket(r: LipschitzResult) -> None:
    hist = r.stats.get("history")
    if hist:
        assert hist[-1][1:] == [r.lower, r.upper], (hist[-1], r.lower, r.upper)


# ------------------------------------------------------------------------ the prior's own rules


def test_small_networks_run_only_the_millisecond_methods() -> None:
    """Below SLOW_MIN_UNITS activation units the exact methods close in about a second themselves: only
    naive and lipsdp-fast run, and the record says why the others did not."""
    net = nets.random_mlp([3, 6, 5, 2], seed=1)
    pr = prior_mod.gather(net, Question(Norm.L2, Norm.L2), RunOptions(time_limit=20), fraction=0.25)
    ran = {row["method"]: row for row in pr.runs}
    assert "activation units" in ran["grad-ascent"]["skipped"] and pr.lower is None
    assert "activation units" in ran["region-climb"]["skipped"]
    assert "activation units" in ran["lipsdp-neuron"]["skipped"]
    assert "activation units" in ran["naive"]["skipped"]  # its torch import: a second on a cold start
    assert "skipped" not in ran["lipsdp-fast"] and pr.upper is not None and pr.upper.method == "lipsdp-fast"


def test_gather_sides_are_certified_and_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prior_mod, "SLOW_MIN_UNITS", 0)  # grad-ascent and lipsdp-neuron on a tiny net too
    net = nets.random_mlp([3, 6, 5, 2], seed=1)
    q = Question(Norm.L2, Norm.L2)
    # a 10 s box: on a loaded 2-core machine naive and lipsdp-neuron took 3.5 s of a 5 s box, and the
    # lower side then had none left
    pr = prior_mod.gather(net, q, RunOptions(time_limit=40, seed=0), fraction=0.25)
    assert pr.upper is not None and pr.upper.method in ("naive", "lipsdp-fast", "lipsdp-neuron")
    assert pr.lower is not None and pr.lower.method in ("region-climb", "grad-ascent")
    assert pr.lower.value <= pr.upper.value
    assert {row["method"] for row in pr.runs} == {"naive", "lipsdp-fast", "lipsdp-neuron", "region-climb",
                                                   "grad-ascent"}
    exact = run_method("enumeration", net, q)
    assert exact.kind.value == "EXACT" and pr.lower.value <= exact.value * (1 + 1e-9)
    assert pr.time <= pr.budget + 5.0  # the cheap methods overrun their box by their final check only
    fast = run_method("lipsdp-fast", net, q, RunOptions())
    assert pr.upper.value <= fast.upper * (1 + 1e-12)


def test_local_question_uses_the_global_upper_bounds() -> None:
    """A local l2 question: LipSDP is asked the global question (its value caps the local constant)."""
    net = nets.random_mlp([3, 6, 2], seed=2)
    q = Question(Norm.L2, Norm.L2, Box(-0.5, 0.5))
    pr = prior_mod.gather(net, q, RunOptions(time_limit=20), fraction=0.25, lowers=False)
    ran = {row["method"]: row for row in pr.runs}
    assert "skipped" not in ran["lipsdp-fast"], ran
    assert pr.upper is not None


def test_inapplicable_methods_contribute_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """l-inf: LipSDP is not applicable; naive (applicable everywhere) is then the upper side."""
    monkeypatch.setattr(prior_mod, "SLOW_MIN_UNITS", 0)  # naive runs on a tiny net too
    net = nets.random_mlp([3, 5, 2], seed=3)
    pr = prior_mod.gather(net, Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0)), RunOptions(time_limit=20),
                          fraction=0.25)
    ran = {row["method"]: row for row in pr.runs}
    assert ran["lipsdp-fast"]["skipped"].startswith("not applicable")
    assert pr.upper is not None and pr.upper.method == "naive"


def test_a_raising_method_contributes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import lipopt.methods.lipsdp_fast as fast
    import lipopt.methods.naive as naive

    def boom(*_a: object, **_k: object) -> LipschitzResult:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(fast, "run", boom)
    monkeypatch.setattr(naive, "applicable", boom)  # raising in the applicability test, too
    monkeypatch.setattr(prior_mod, "SLOW_MIN_UNITS", 0)  # every cheap method runs on a tiny net
    net = nets.random_mlp([3, 5, 2], seed=4)
    q = Question(Norm.L2, Norm.L2)
    pr = prior_mod.gather(net, q, RunOptions(time_limit=10), fraction=0.2)
    ran = {row["method"]: row for row in pr.runs}
    assert "skipped" in ran["lipsdp-fast"] and "injected failure" in ran["lipsdp-fast"]["skipped"]
    assert "injected failure" in ran["naive"]["skipped"]
    assert pr.upper is None or pr.upper.method == "lipsdp-neuron"


def test_exact_method_with_a_raising_cheap_method_is_unharmed(monkeypatch: pytest.MonkeyPatch) -> None:
    """lipsdp-fast raising inside bab's prior: bab's record is ok, contains the exact value and names no
    lipsdp-fast side."""
    import lipopt.methods.lipsdp_fast as fast

    def boom(*_a: object, **_k: object) -> LipschitzResult:
        raise RuntimeError("injected failure")

    monkeypatch.setattr(fast, "run", boom)
    net = nets.random_mlp([2, 5, 4, 1], seed=0)
    q = Question(Norm.L2, Norm.L2)
    exact = run_method("enumeration", net, q, RunOptions(time_limit=60))
    r = run_method("bab", net, q, RunOptions(time_limit=20))
    assert r.ok and _contains(r, exact.value)
    assert "lipsdp-fast" not in r.stats["bracket_sources"].values()
    ran = {row["method"]: row for row in r.stats["prior"]["runs"]}
    assert "injected failure" in ran["lipsdp-fast"]["skipped"]


def test_a_witness_that_fails_its_recheck_contributes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    import lipopt.methods.grad_ascent as ga

    net = nets.random_mlp([3, 5, 2], seed=5)

    def fake(network: object, question: object, options: object) -> LipschitzResult:
        # a claimed lower bound whose witness is outside the domain
        return LipschitzResult.from_bracket("grad-ascent", BoundKind.LOWER, 1e6, None,
                                            witness={"x": [50.0, 50.0, 50.0], "kind": "point"})

    monkeypatch.setattr(ga, "run", fake)
    monkeypatch.setattr(prior_mod, "SLOW_MIN_UNITS", 0)
    q = Question(Norm.L2, Norm.L2, Box(-1.0, 1.0))
    pr = prior_mod.gather(net, q, RunOptions(time_limit=10), fraction=0.2, uppers=False,
                          lowers=("grad-ascent",))
    assert pr.lower is None
    assert "did not re-evaluate" in pr.runs[-1]["skipped"]
    pr = prior_mod.gather(net, q, RunOptions(time_limit=10), fraction=0.2, uppers=False)  # region-climb too
    ran = {row["method"]: row for row in pr.runs}
    assert "did not re-evaluate" in ran["grad-ascent"]["skipped"]
    assert pr.lower is not None and pr.lower.method == "region-climb"
    assert pr.lower.value <= run_method("enumeration", net, q).value * (1 + 1e-9)


def test_inconsistent_prior_is_reported_not_hidden() -> None:
    """A prior lower bound above the method's own certified upper bound fails the record."""
    res = LipschitzResult.from_bracket("milp", BoundKind.EXACT, 1.0, 2.0,
                                       stats={"history": [[0.1, 1.0, 2.0]]})
    pr = prior_mod.Prior(lower=prior_mod.PriorSide(3.0, "grad-ascent", {"x": [0.0], "kind": "point"}),
                         upper=prior_mod.PriorSide(5.0, "naive"))
    out = prior_mod.merge(res, pr, "milp")
    assert out.verdict is Verdict.CHECK_FAILED
    assert out.value is None and out.lower is None and out.upper is None  # nothing shown as a bound
    assert any(c.name == "prior bounds consistent" and not c.passed for c in out.checks)
    assert "3" in out.stats["inconsistent"][0] and "grad-ascent" in out.stats["inconsistent"][0]
    # the prior's own sides crossing, too
    res = LipschitzResult.from_bracket("bab", BoundKind.EXACT, 1.0, 9.0)
    pr = prior_mod.Prior(lower=prior_mod.PriorSide(4.0, "grad-ascent", {"x": [0.0], "kind": "point"}),
                         upper=prior_mod.PriorSide(3.5, "lipsdp-fast"))
    assert prior_mod.merge(res, pr, "bab").verdict is Verdict.CHECK_FAILED


def test_merge_takes_the_better_sides_and_names_them() -> None:
    res = LipschitzResult.from_bracket("miqcqp", BoundKind.EXACT, 2.0, 9.0,
                                       stats={"history": [[0.5, None, 12.0], [1.0, 2.0, 9.0]]})
    res.wall_time = 1.0
    pr = prior_mod.Prior(lower=prior_mod.PriorSide(2.5, "grad-ascent", {"x": [0.1], "kind": "point"}),
                         upper=prior_mod.PriorSide(3.0, "lipsdp-fast"), time=0.2)
    out = prior_mod.merge(res, pr, "miqcqp")
    assert out.ok and (out.lower, out.upper) == (2.5, 3.0)
    assert out.stats["bracket_sources"] == {"lower": "grad-ascent", "upper": "lipsdp-fast"}
    assert out.witness["source"] == "grad-ascent"
    assert any("lipsdp-fast" in n for n in out.notes)
    hist = out.stats["history"]
    assert hist[0] == [0.2, 2.5, 3.0] and hist[-1][1:] == [2.5, 3.0]
    assert all(up <= 3.0 for _t, _lo, up in hist)
    # closing within the tolerance: EXACT with the prior's witness
    res = LipschitzResult.from_bracket("bab", BoundKind.EXACT, 2.0, 9.0)
    pr = prior_mod.Prior(lower=prior_mod.PriorSide(3.0, "grad-ascent", {"x": [0.1], "kind": "point"}),
                         upper=prior_mod.PriorSide(3.0 * (1 + 1e-9), "lipsdp-neuron"))
    out = prior_mod.merge(res, pr, "bab")
    assert out.kind is BoundKind.EXACT and out.value == 3.0


# --------------------------------------------------------------- every exact method, tiny nets

EXACT_CASES = [
    ("milp", Norm.LINF, Box(-1.0, 1.0)),
    ("milp", Norm.L1, Global()),
    ("bab", Norm.L2, Global()),
    ("bab", Norm.LINF, Box(-1.0, 1.0)),
    pytest.param("miqcqp", Norm.L2, Global(), marks=pytest.mark.skipif(not HAS_SCIP, reason="no SCIP")),
    pytest.param("miqcqp", Norm.L2, Box(-1.0, 1.0),
                 marks=pytest.mark.skipif(not HAS_SCIP, reason="no SCIP")),
]


@pytest.mark.parametrize("method,norm,domain", EXACT_CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_bracket_contains_the_enumerated_value(method: str, norm: Norm, domain: object, seed: int) -> None:
    net = nets.random_mlp([2, 5, 4, 1], seed=seed, bias=True)
    q = Question(norm, norm, domain)
    exact = run_method("enumeration", net, q, RunOptions(time_limit=60))
    assert exact.kind is BoundKind.EXACT, exact.message
    for on in (True, False):
        r = run_method(method, net, q, RunOptions(time_limit=30, extra={"prior_bounds": on}))
        assert r.ok, (method, on, r.message, [str(c) for c in r.checks if not c.passed])
        assert _contains(r, exact.value), (method, on, r.lower, r.upper, exact.value)
        _history_ends_at_bracket(r)
        srcs = r.stats.get("bracket_sources")
        if on:
            assert srcs is not None and "prior" in r.stats
            if r.kind is BoundKind.EXACT:
                assert r.witness is not None and "x" in r.witness
        else:
            assert "prior" not in r.stats
            assert srcs == {"lower": method if r.lower is not None else None,
                            "upper": method if r.upper is not None else None}


def test_option_is_validated() -> None:
    from lipopt.errors import InvalidOptionsError

    net = nets.random_mlp([2, 3, 1], seed=0)
    with pytest.raises(InvalidOptionsError, match="prior_time"):
        run_method("bab", net, Question(Norm.L2, Norm.L2), RunOptions(extra={"bab": {"prior_time": 3}}))
    with pytest.raises(InvalidOptionsError):
        from lipopt.methods import check_method_options

        check_method_options(RunOptions(extra={"milp": {"prior_bound": True}}), ["milp"])


def test_bab_stops_when_its_lower_bound_meets_the_cap() -> None:
    """An upper cap equal to the constant (a prior upper bound that is tight): the search stops as soon as
    its certified lower bound reaches it, after fewer nodes than the search that proves it."""
    from lipopt.exact.bab import BabSettings, run_bab

    net = nets.random_mlp([4, 12, 10, 1], seed=3)
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0)).bind(net)
    full = run_bab(net, q, BabSettings(time_limit=60))
    assert full.stop in ("completed", "gap")
    capped = run_bab(net, q, BabSettings(time_limit=60, upper_cap=full.upper))
    assert capped.stop == "gap" and capped.stats.get("stopped_at_cap") == full.upper
    assert capped.stats["nodes"] < full.stats["nodes"]
    assert capped.lower >= full.upper * (1 - 1e-6)


# ------------------------------------------------------------------ the 784-50-10 net (issue 13)


@pytest.mark.skipif(not MNIST.exists(), reason="no LipSDP MNIST net")
@pytest.mark.skipif(not HAS_SCIP, reason="no SCIP")
def test_miqcqp_on_mnist_is_capped_by_lipsdp_fast() -> None:
    """784-50-10, global l2: miqcqp alone ends at [~23.5, 85.1] in a few seconds; with the prior its
    upper side is at most the lipsdp-fast value (computed here independently) and says so."""
    net = lipopt.load(str(MNIST))
    q = Question(Norm.L2, Norm.L2)
    fast = run_method("lipsdp-fast", net, q, RunOptions())
    assert fast.ok and fast.upper is not None
    r = run_method("miqcqp", net, q, RunOptions(time_limit=10))
    assert r.ok, r.message
    assert r.upper <= fast.upper * (1 + 1e-12)
    assert r.stats["bracket_sources"]["upper"] in ("lipsdp-fast", "lipsdp-neuron")
    assert r.stats["own_bracket"][1] > fast.upper  # the MIQCQP's own dual bound is far looser
    assert any("from lipsdp" in n for n in r.notes)
    _history_ends_at_bracket(r)
    assert r.wall_time < 10 + 5


def _interrupting_naive(monkeypatch: pytest.MonkeyPatch, absorbed: bool) -> None:
    """naive (the prior's first method on an l-inf question) meets a Ctrl-C: absorbed, as a solver
    backend does (the flag raised, its record ok), or raised as KeyboardInterrupt."""
    from lipopt_solvers import interrupts

    import lipopt.methods.naive as naive

    real = naive.run

    def hit(*a: object, **k: object) -> LipschitzResult:
        if not absorbed:
            raise KeyboardInterrupt
        res = real(*a, **k)
        interrupts.request()
        return res

    monkeypatch.setattr(naive, "run", hit)


@pytest.mark.parametrize("absorbed", [True, False], ids=["absorbed", "raised"])
@pytest.mark.parametrize("method", ["bab", "milp", pytest.param("miqcqp", marks=pytest.mark.skipif(
    not HAS_SCIP, reason="pyscipopt is not installed"))])
def test_ctrl_c_in_the_prior_phase_stops_the_exact_method(monkeypatch: pytest.MonkeyPatch, method: str,
                                                           absorbed: bool) -> None:
    """A Ctrl-C during the cheap methods is not lost: the prior phase stops (no later cheap method runs),
    the exact search does not start, and the record says INTERRUPTED with a valid bracket."""
    from lipopt_solvers import interrupts

    from lipopt.result import StopReason

    _interrupting_naive(monkeypatch, absorbed)
    monkeypatch.setattr(prior_mod, "SLOW_MIN_UNITS", 0)  # naive and grad-ascent would run after it
    net = nets.random_mlp([3, 6, 5, 1], seed=2)
    q = Question(Norm.LINF, Norm.LINF, Box([-1.0] * 3, [1.0] * 3))
    exact = run_method("enumeration", net, q, RunOptions(time_limit=60))
    try:
        r = run_method(method, net, q, RunOptions(time_limit=60))
    finally:
        interrupts.clear()
    assert r.stop is StopReason.INTERRUPTED, (r.stop, r.message, r.notes)
    assert r.stats["prior"]["interrupted"] is True
    runs = r.stats["prior"]["runs"]
    at = [row["method"] for row in runs].index("naive")
    assert runs[at]["interrupted"] is True
    assert runs[at + 1:] and all(row.get("skipped") == "interrupted (Ctrl-C)" for row in runs[at + 1:])
    assert r.ok and (r.upper is None or r.upper >= exact.value * (1 - 1e-9))
    assert r.lower is None or r.lower <= exact.value * (1 + 1e-9)
    if method == "bab":
        assert r.stats["nodes"] == 0


def test_bab_leaves_region_climb_to_itself_and_milp_runs_it() -> None:
    """``bab`` climbs over regions itself: its prior runs grad-ascent only on the lower side; ``milp``'s
    prior runs region-climb first. Both brackets contain the constant that each other certifies."""
    net = nets.random_mlp([3, 20, 20, 1], seed=3)  # 40 activation units: the lower methods run
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0))
    b = run_method("bab", net, q, RunOptions(time_limit=15, seed=0, threads=1))
    m = run_method("milp", net, q, RunOptions(time_limit=15, seed=0, threads=1))
    ran_b = [row.get("method") for row in b.stats["prior"]["runs"]]
    ran_m = [row.get("method") for row in m.stats["prior"]["runs"]]
    assert "grad-ascent" in ran_b and "region-climb" not in ran_b
    assert ran_m.index("region-climb") < ran_m.index("grad-ascent")
    assert b.ok and m.ok and b.lower <= m.upper * (1 + 1e-6) and m.lower <= b.upper * (1 + 1e-6)
