"""Verdicts, stop reasons and kinds: every solver termination maps to the right record, a failed record
never shows a number, and the bracket rules use relative tolerances only (the same answer at every scale).

The MIP outcomes here are fakes (plain namespaces with the attributes ``make_bracket_result`` reads), so
the rules are tested without a solver; the witness behind a lower bound is a real point of a real net whose
constant is worked out by hand.
"""

from __future__ import annotations

import itertools
import json
import math
import types

import numpy as np
import pytest

from lipopt.certify.bracket import make_bracket_result
from lipopt.certify.candidates import Candidate
from lipopt.methods import post_run_checks, run_method
from lipopt.network import Network
from lipopt.result import BoundKind, LipschitzResult, ResultSet, Status, StopReason, Verdict
from lipopt.spec import Box, Norm, Question

# f(x) = relu(2 x1 + x2 + 0.5) + relu(x1 - x2 + 0.5) on [-1, 1]^2, l-inf -> |.|: the gradient's l1 norm is
# 3 (both units active: (3, 0); first only: (2, 1)), 2 (second only) or 0, so L = 3, attained at
# x = (0.5, 0.5), which lies strictly inside the region where both units are active.
W1 = np.array([[2.0, 1.0], [1.0, -1.0]])
B1 = np.array([0.5, 0.5])
W2 = np.array([[1.0, 1.0]])
L_HAND = 3.0
X_STAR = np.array([0.5, 0.5])


def _net(scale: float = 1.0) -> tuple[Network, Question]:
    """The net above with both layers' weights and biases scaled by sqrt(scale): L = 3 * scale."""
    s = math.sqrt(scale)
    net = Network.from_weights([W1 * s, W2 * s], [B1 * s, None])
    return net, Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0)).bind(net)


TERMINATIONS = ["optimal", "time_limit", "gap_limit", "infeasible", "unbounded", "interrupted",
                "license_limit", "not_available", "numerical_error", "error", "other"]

# the expected (verdict, stop reason) of a run whose only solve ended with each termination
EXPECTED = {
    "optimal": (Verdict.OK, StopReason.COMPLETED),
    "time_limit": (Verdict.OK, StopReason.TIME_LIMIT),
    "gap_limit": (Verdict.OK, StopReason.GAP_LIMIT),
    "interrupted": (Verdict.OK, StopReason.INTERRUPTED),
    "license_limit": (Verdict.OK, StopReason.LICENCE_LIMIT),
    "not_available": (Verdict.SOLVER_MISSING, StopReason.NOT_RUN),
    "infeasible": (Verdict.ERROR, StopReason.INFEASIBLE),  # the domain is never empty
    "unbounded": (Verdict.ERROR, StopReason.SOLVER_FAILED),
    "numerical_error": (Verdict.ERROR, StopReason.SOLVER_FAILED),
    "error": (Verdict.ERROR, StopReason.SOLVER_FAILED),
    "other": (Verdict.ERROR, StopReason.SOLVER_FAILED),
}


def fake_outcome(term: str, objective: float | None, bound: float | None) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        termination=types.SimpleNamespace(value=term), objective=objective, bound=bound,
        has_incumbent=objective is not None, raw_status=f"raw {term}", solver="fake", solver_version="0",
        solve_time=0.25, message=f"fake solver says {term}")


def _run(term: str, incumbent: bool, bound: float | None, scale: float = 1.0,
         fallback: float | None = None) -> LipschitzResult:
    net, q = _net(scale)
    obj = L_HAND * scale if incumbent else None
    cands = [Candidate(x=X_STAR.copy(), objective=obj, label="incumbent")] if incumbent else []
    res = make_bracket_result("milp", net, q, [fake_outcome(term, obj, bound)], cands,
                              fallback_uppers=[fallback])
    return post_run_checks(res)


def _assert_invariants(r: LipschitzResult) -> None:
    """What every record must satisfy, whatever happened."""
    if r.verdict is not Verdict.OK or any(not c.passed for c in r.checks):
        assert r.value is None and r.lower is None and r.upper is None and not r.ok
    if r.value is not None:
        assert r.verdict is Verdict.OK and r.kind in (BoundKind.EXACT, BoundKind.UPPER, BoundKind.LOWER)
    if r.lower is not None and r.upper is not None:
        assert r.lower <= r.upper
    if r.kind is BoundKind.EXACT and r.value is not None:
        assert r.upper - r.lower <= r.rel_tol * abs(r.upper)
    if r.upper is not None:
        assert r.upper >= 0
    d = json.loads(r.to_json())
    assert d["schema"] == "lipopt.result/2" and d["verdict"] == r.verdict.value and d["stop"] == r.stop.value
    if r.failed:
        assert d["value"] is None and d["lower"] is None and d["upper"] is None
    back = LipschitzResult.from_dict(d)
    assert back.to_dict() == r.to_dict()


@pytest.mark.parametrize(("term", "incumbent", "has_bound"),
                         list(itertools.product(TERMINATIONS, (True, False), (True, False))))
def test_every_termination_maps_to_verdict_stop_and_kind(term: str, incumbent: bool, has_bound: bool) -> None:
    r = _run(term, incumbent, L_HAND if has_bound else None)
    verdict, stop = EXPECTED[term]
    _assert_invariants(r)
    assert r.stop is stop, (r.stop, r.notes)
    assert r.raw_status == f"raw {term}" and r.solver == "fake"
    if verdict is not Verdict.OK:
        assert r.verdict is verdict
        assert r.value is None and not r.ok
        assert r.failed is (verdict is Verdict.ERROR)
        if incumbent:  # the certified witness value is kept aside, labelled unverified
            assert r.unverified_value == pytest.approx(L_HAND, rel=1e-12)
        return
    if incumbent and has_bound:  # certified 3 meets the dual bound 3
        assert r.verdict is Verdict.OK and r.kind is BoundKind.EXACT and r.value == pytest.approx(L_HAND)
    elif has_bound:
        assert r.verdict is Verdict.OK and r.kind is BoundKind.UPPER and r.value == L_HAND and r.lower is None
    elif incumbent:
        assert r.verdict is Verdict.OK and r.kind is BoundKind.LOWER and r.value == pytest.approx(L_HAND)
        assert r.upper is None
    elif stop is StopReason.COMPLETED:  # "optimal" with neither a bound nor an incumbent is no answer
        assert r.verdict is Verdict.ERROR and r.value is None and r.failed
    else:  # stopped at a limit before anything was found: honest, no number
        assert r.verdict is Verdict.OK and r.value is None and not r.ok and not r.failed


@pytest.mark.parametrize("term", ["optimal", "time_limit", "interrupted"])
def test_open_bracket_is_an_upper_bound(term: str) -> None:
    r = _run(term, True, 3.5)
    _assert_invariants(r)
    assert r.ok and r.kind is BoundKind.UPPER and r.value == 3.5
    assert r.lower == pytest.approx(L_HAND) and r.gap == pytest.approx(0.5 / 3.5)


def test_fallback_upper_is_used_when_the_solver_gave_no_bound() -> None:
    r = _run("time_limit", True, None, fallback=4.0)
    _assert_invariants(r)
    assert r.kind is BoundKind.UPPER and (r.lower, r.upper) == (pytest.approx(L_HAND), 4.0)
    r = _run("error", True, None, fallback=4.0)  # an errored solve shows nothing, not even the fallback
    assert r.verdict is Verdict.ERROR and r.value is None and r.upper is None


@pytest.mark.parametrize("scale", [1e-8, 1.0, 1e8])
def test_bracket_rules_are_scale_invariant(scale: float) -> None:
    """The same relative situation gives the same verdict and kind at every scale."""
    L = L_HAND * scale
    # the issue-15 case: HiGHS reports a dual bound of -0 below a certified lower bound of ~1e-8
    r = _run("optimal", True, -0.0, scale)
    _assert_invariants(r)
    assert r.verdict is Verdict.CHECK_FAILED and r.value is None and r.kind is not None
    assert any(c.name == "lower <= upper" and not c.passed for c in r.checks)
    # a dual bound 1e-3 (relative) below the certified lower bound: a contradiction, never EXACT
    r = _run("optimal", True, L * (1 - 1e-3), scale)
    assert r.verdict is Verdict.CHECK_FAILED and r.value is None
    # within the solver's relative tolerance: raised to the lower bound, EXACT, tolerance widened to say so
    r = _run("optimal", True, L * (1 - 1e-7), scale)
    _assert_invariants(r)
    assert r.ok and r.kind is BoundKind.EXACT and r.value == pytest.approx(L, rel=1e-12)
    assert r.rel_tol >= 1e-7 * (1 - 1e-6) and any("raised" in n for n in r.notes)
    # a gap of 1e-5 relative is not closed at the default 1e-6 tolerance, at any scale
    r = _run("optimal", True, L * (1 + 1e-5), scale)
    assert r.ok and r.kind is BoundKind.UPPER and r.lower == pytest.approx(L, rel=1e-12)
    r = _run("optimal", True, L * (1 + 1e-7), scale)
    assert r.ok and r.kind is BoundKind.EXACT


def test_negative_upper_bound_is_a_failed_check() -> None:
    for term in ("optimal", "time_limit"):
        r = _run(term, False, -1e-3)
        _assert_invariants(r)
        assert r.verdict is Verdict.CHECK_FAILED and r.value is None
        assert any(c.name == "upper >= 0" and not c.passed for c in r.checks)


def test_dual_bound_below_incumbent_is_a_failed_check() -> None:
    """A maximisation whose dual bound is below its own incumbent objective: the bound is garbage."""
    net, q = _net()
    out = fake_outcome("optimal", 3.0, 2.0)
    r = make_bracket_result("milp", net, q, [out], [])
    assert r.verdict is Verdict.CHECK_FAILED and r.value is None
    assert any(c.name.startswith("dual bound >= incumbent") and not c.passed for c in r.checks)


def test_pieces_combine_to_the_worst_verdict_and_stop() -> None:
    net, q = _net()
    cand = [Candidate(x=X_STAR.copy(), objective=3.0)]
    outs = [fake_outcome("optimal", 3.0, 3.0), fake_outcome("time_limit", None, 2.5)]
    r = make_bracket_result("milp", net, q, outs, cand)
    assert r.ok and r.stop is StopReason.TIME_LIMIT and r.kind is BoundKind.EXACT and r.upper == 3.0
    outs = [fake_outcome("optimal", 3.0, 3.0), fake_outcome("numerical_error", None, 2.5)]
    r = make_bracket_result("milp", net, q, outs, cand)
    assert r.verdict is Verdict.ERROR and r.stop is StopReason.SOLVER_FAILED and r.value is None
    assert "numerical_error" in r.message and "raw numerical_error" in r.raw_status


# ---- the record itself ----------------------------------------------------------------------------------

def test_record_never_shows_a_value_after_an_error_or_failed_check() -> None:
    r = LipschitzResult("milp", BoundKind.EXACT, 1.0, Status.ERROR)  # the "EXACT 1 ... error" of issue 8
    assert r.verdict is Verdict.ERROR and r.value is None and r.unverified_value == 1.0 and r.failed
    assert r.status is Status.ERROR
    r = LipschitzResult("milp", BoundKind.EXACT, 1.0)
    assert r.ok and (r.lower, r.upper) == (1.0, 1.0)
    r.add_check("witness re-evaluated", False, "off by 10%")
    assert r.verdict is Verdict.CHECK_FAILED and r.value is None and r.lower is None and r.upper is None
    assert r.unverified_value == 1.0 and r.unverified_lower == r.unverified_upper == 1.0
    r.status = Status.SOLVED  # a failed check cannot be overwritten
    assert r.verdict is Verdict.CHECK_FAILED and r.value is None


def test_exact_only_when_the_bracket_is_closed() -> None:
    r = LipschitzResult("x", BoundKind.EXACT, 2.0, lower=1.9, upper=2.0)
    assert r.kind is BoundKind.UPPER and r.value == 2.0 and r.lower == 1.9
    r = LipschitzResult.from_bracket("x", BoundKind.EXACT, 2.0 * (1 - 1e-7), 2.0)
    assert r.kind is BoundKind.EXACT and r.value == 2.0 * (1 - 1e-7)
    r = LipschitzResult.from_bracket("x", BoundKind.EXACT, 2.0 * (1 - 1e-7), 2.0, rel_tol=1e-8)
    assert r.kind is BoundKind.UPPER
    r = LipschitzResult.from_bracket("x", BoundKind.EXACT, 0.0, 0.0)
    assert r.kind is BoundKind.EXACT and r.value == 0.0
    r = LipschitzResult.from_bracket("x", BoundKind.EXACT, 3.265e-12, 2.904e-12)  # issue 15, global l-inf
    assert r.verdict is Verdict.CHECK_FAILED and r.value is None
    r = LipschitzResult.from_bracket("x", BoundKind.EXACT, None, None, stop=StopReason.TIME_LIMIT)
    assert r.verdict is Verdict.OK and r.value is None and r.kind is BoundKind.EXACT and not r.ok
    r = LipschitzResult.from_bracket("x", BoundKind.EXACT, None, None)
    assert r.verdict is Verdict.ERROR and r.message


def test_estimate_is_never_a_bound() -> None:
    r = LipschitzResult("h", BoundKind.ESTIMATE, 10.0)
    assert r.ok and r.kind is BoundKind.ESTIMATE and r.lower is None and r.upper is None
    rs = ResultSet([r, LipschitzResult("n", BoundKind.UPPER, 5.0)])
    assert rs.best_upper == 5.0 and rs.best_lower is None and rs.exit_code() == 0


def test_legacy_status_round_trip() -> None:
    for st in Status:
        r = LipschitzResult("x", BoundKind.UPPER, 1.0, st)
        assert r.status is st, (st, r.verdict, r.stop)
        assert (r.value is None) is (st not in (Status.SOLVED, Status.TIME_LIMIT, Status.GAP_LIMIT,
                                                Status.LICENSE_LIMIT))


def test_consistency_is_relative_and_exit_codes() -> None:
    def rs_of(*records: LipschitzResult) -> ResultSet:
        return ResultSet(list(records))

    # 3.265e-12 > 2.904e-12 by 12 %: the old absolute floor 1e-9 called this consistent
    rs = rs_of(LipschitzResult("sampling", BoundKind.LOWER, 3.265e-12),
               LipschitzResult("lp-relax", BoundKind.UPPER, 2.904e-12))
    assert not rs.consistency().passed and rs.exit_code() == 3
    rs = rs_of(LipschitzResult("sampling", BoundKind.LOWER, 3e-12 * (1 + 1e-7)),
               LipschitzResult("lp-relax", BoundKind.UPPER, 3e-12))
    assert rs.consistency().passed and rs.exit_code() == 0
    rs = rs_of(LipschitzResult("sampling", BoundKind.LOWER, 1.0),
               LipschitzResult("milp", BoundKind.EXACT, 1.0, Status.ERROR))
    assert rs.consistency().passed and rs.exit_code() == 4 and [r.method for r in rs.failed] == ["milp"]
    rs = rs_of(LipschitzResult("sampling", BoundKind.LOWER, 1.0),
               LipschitzResult("milp", BoundKind.EXACT, None, Status.NOT_APPLICABLE, message="l2"))
    assert rs.exit_code() == 0


@pytest.mark.parametrize("fmt", ["text", "markdown", "latex", "csv"])
def test_tables_show_failed_records_as_failed(fmt: str) -> None:
    bad = LipschitzResult("milp", BoundKind.EXACT, 1.23456, Status.ERROR, message="boom")
    chk = LipschitzResult("miqcqp", BoundKind.EXACT, 7.65432)
    chk.add_check("witness", False, "mismatch")
    rs = ResultSet([LipschitzResult("sampling", BoundKind.LOWER, 0.5), bad, chk])
    out = rs.table(fmt).replace("\\_", "_")  # LaTeX escapes underscores
    assert "1.23456" not in out and "7.65432" not in out  # the unverified numbers never appear
    assert "FAILED" in out and "error" in out and "check_failed" in out
    assert "completed" in out  # the stop reason is a column
    rows = {rec["method"]: rec for rec in rs.to_records()}
    assert rows["milp"]["kind"] == "FAILED" and rows["milp"]["value"] is None
    assert rows["sampling"]["kind"] == "LOWER" and rows["sampling"]["verdict"] == "ok"
    d = json.loads(rs.to_json())
    assert d["schema"] == "lipopt.resultset/2" and [r["value"] for r in d["results"]] == [0.5, None, None]
    assert ResultSet.from_json(rs.to_json()).exit_code() == 4


def test_run_method_records_verdict_for_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception inside a method is an ERROR record with no value, whatever the method declared."""
    from lipopt import methods

    info = methods.get_method("naive")

    def boom(*a: object, **k: object) -> LipschitzResult:
        raise RuntimeError("formulation bug")

    monkeypatch.setattr(methods.MethodInfo, "runner", lambda self: boom)
    net, q = _net()
    r = run_method(info.name, net, q)
    assert r.verdict is Verdict.ERROR and r.stop is StopReason.ABORTED and r.value is None
    assert "formulation bug" in r.message and r.declared_kind is BoundKind.UPPER


# ---- a real MILP at a small scale ------------------------------------------------------------------------

def test_milp_at_small_scale_is_exact_or_an_honest_bracket() -> None:
    """4-8-1 net with weights x 1e-4 (L ~ 1e-7): never EXACT below the enumeration value (issue 15)."""
    pytest.importorskip("highspy")
    rng = np.random.default_rng(0)
    ws = [rng.normal(size=(8, 4)) * 1e-4, rng.normal(size=(1, 8)) * 1e-4]
    net = Network.from_weights(ws, [None, None])
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0))
    ref = run_method("enumeration", net, q)
    assert ref.ok and ref.kind is BoundKind.EXACT and 1e-8 < ref.value < 1e-6
    r = run_method("milp", net, q)
    _assert_invariants(r)
    if r.kind is BoundKind.EXACT and r.value is not None:
        assert r.value == pytest.approx(ref.value, rel=1e-6), (r.notes, r.checks)
    else:
        assert r.ok, (r.verdict, r.checks, r.notes, r.message)
        assert r.lower is not None and r.upper is not None
        assert r.lower <= ref.value * (1 + 1e-6) and r.upper >= ref.value * (1 - 1e-6)


# ---- the command line -------------------------------------------------------------------------------------

def _patched_naive(monkeypatch: pytest.MonkeyPatch, make: object) -> None:
    from lipopt import methods

    real = methods.MethodInfo.runner

    def runner(self: methods.MethodInfo) -> object:
        return (lambda net, q, opts: make()) if self.name == "naive" else real(self)

    monkeypatch.setattr(methods.MethodInfo, "runner", runner)


def test_compute_exit_code_on_failed_and_contradicting_records(
        tmp_path: object, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from pathlib import Path

    from lipopt.cli import main

    p = Path(str(tmp_path)) / "net.npz"
    np.savez(p, w1=W1, w2=W2)  # bias-free: L = 3 on every domain (both units active at (0.5, 0.5))
    args = ["compute", str(p), "--norm", "inf", "--domain", "box:-1,1", "--methods", "naive,sampling", "-q"]
    assert main(args) == 0

    def failed() -> LipschitzResult:
        r = LipschitzResult("naive", BoundKind.UPPER, 8.765, Status.SOLVED)
        r.add_check("layer norms re-evaluated", False, "mismatch")
        return r

    _patched_naive(monkeypatch, failed)
    capsys.readouterr()
    assert main(args) == 4
    out = capsys.readouterr().out
    assert "FAILED" in out and "8.765" not in out

    _patched_naive(monkeypatch, lambda: LipschitzResult("naive", BoundKind.UPPER, 1e-3))  # below L = 3
    assert main(args) == 3
    assert "INCONSISTENT" in capsys.readouterr().out
