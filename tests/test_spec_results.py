"""The question, results (JSON round trip), tables and the cross-method consistency check."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from lipopt.errors import InvalidQuestionError
from lipopt.network import Network
from lipopt.result import BoundKind, LipschitzResult, ResultSet, Status, StopReason, Verdict
from lipopt.spec import Ball, Box, Direction, Global, Logit, Margin, Norm, Question, make_question
from tests.paths import ROOT


def _net() -> Network:
    return Network.from_weights([np.ones((3, 2)), np.ones((2, 3))])


def test_norm_parsing_and_duals() -> None:
    assert Norm.parse("inf") is Norm.LINF and Norm.parse("l1") is Norm.L1 and Norm.parse(2) is Norm.L2
    assert Norm.LINF.dual is Norm.L1 and Norm.L2.dual is Norm.L2
    with pytest.raises(InvalidQuestionError, match="supported: 1, 2, inf"):
        Norm.parse("3")


def test_box_errors() -> None:
    with pytest.raises(InvalidQuestionError, match="inverted box"):
        Box(1.0, 0.0)
    with pytest.raises(InvalidQuestionError, match="empty box"):
        Box([0.0, 1.0], [1.0, 1.0])
    with pytest.raises(InvalidQuestionError, match="finite"):
        Box(-np.inf, 1.0)
    with pytest.raises(InvalidQuestionError, match="2 inputs"):
        make_question(2, domain=Box([0, 0, 0], [1, 1, 1])).bind(_net())


def test_ball_and_nominal_rules() -> None:
    with pytest.raises(InvalidQuestionError, match="positive"):
        Ball([0, 0], 0.0)
    with pytest.raises(InvalidQuestionError, match="needs a ball"):
        Question(domain=Box(0, 1), nominal=True)
    with pytest.raises(InvalidQuestionError, match="centre"):
        make_question(2, domain="ball:0.1")
    q = make_question(2, domain="ball:0.1,2", center=[0.5, 0.5], nominal=True).bind(_net())
    assert q.constant == "nominal" and q.domain.norm is Norm.L2


def test_outputs_and_vectors() -> None:
    net = _net()
    assert make_question(output="all").output_vector(2) is None
    np.testing.assert_array_equal(make_question(output=1).bind(net).output_vector(2), [0, 1])
    np.testing.assert_array_equal(make_question(output="margin:1,0").bind(net).output_vector(2), [-1, 1])
    np.testing.assert_array_equal(make_question(output="vector:2,3").bind(net).output_vector(2), [2, 3])
    with pytest.raises(InvalidQuestionError, match="out of range"):
        Question(output=Logit(5)).bind(net)
    with pytest.raises(InvalidQuestionError, match="differ"):
        Margin(1, 1)
    with pytest.raises(InvalidQuestionError, match="non-zero"):
        Direction([0.0, 0.0])


@pytest.mark.parametrize("q", [
    Question(),
    make_question("inf", domain="box:0,0.1", output="margin:0,1"),
    make_question(2, domain="ball:0.5,inf", center=[1, 2], output="vector:1,-2"),
    make_question(2, domain="ball:0.5,2", center=[1, 2], nominal=True, output=0),
])
def test_question_round_trip(q: Question) -> None:
    d = q.to_dict()
    q2 = Question.from_dict(json.loads(json.dumps(d)))
    assert q2.to_dict() == d


def test_result_json_round_trip_and_kinds() -> None:
    r = LipschitzResult("milp", BoundKind.UPPER, 2.5, Status.TIME_LIMIT, lower=2.0, upper=2.5,
                        raw_status="time limit", solver="highs", witness={"x": np.array([0.1, 0.2])},
                        stats={"ambiguous": np.int64(3)})
    r.add_check("witness re-evaluated", True, "float64")
    r2 = LipschitzResult.from_json(r.to_json())
    assert r2.to_dict() == r.to_dict()
    assert r2.kind is BoundKind.UPPER and r2.status is Status.TIME_LIMIT and r2.gap == pytest.approx(0.2)
    e = LipschitzResult("enumeration", BoundKind.EXACT, 1.5)
    assert (e.lower, e.upper) == (1.5, 1.5)


def test_result_record_carries_verdict_stop_and_schema() -> None:
    r = LipschitzResult("milp", BoundKind.EXACT, None, lower=2.0, upper=2.0 * (1 + 1e-9),
                        verdict=Verdict.OK, stop=StopReason.INTERRUPTED)
    assert r.kind is BoundKind.EXACT and r.value == 2.0 and r.status is Status.TIME_LIMIT
    d = r.to_dict()
    assert d["schema"] == "lipopt.result/2" and d["verdict"] == "ok" and d["stop"] == "interrupted"
    assert d["rel_tol"] == 1e-6 and d["abs_tol"] == 0.0
    # a record written before verdicts existed (status only, no schema) still loads
    old = {k: v for k, v in d.items() if k not in ("schema", "verdict", "stop", "rel_tol", "abs_tol",
                                                   "declared_kind", "unverified_value", "unverified_lower",
                                                   "unverified_upper")}
    old["status"] = "check_failed"
    r2 = LipschitzResult.from_dict(old)
    assert r2.verdict is Verdict.CHECK_FAILED and r2.value is None and r2.unverified_value == 2.0
    with pytest.raises(ValueError, match="schema"):
        LipschitzResult.from_dict({**d, "schema": "something/1"})


def test_failed_check_marks_result_untrusted() -> None:
    r = LipschitzResult("x", BoundKind.LOWER, 3.0)
    r.add_check("lower <= upper", False, "3 > 2")
    assert r.status is Status.CHECK_FAILED and not r.ok
    assert r.verdict is Verdict.CHECK_FAILED and r.value is None and r.unverified_value == 3.0


def _set() -> ResultSet:
    return ResultSet([
        LipschitzResult("enumeration", BoundKind.EXACT, 2.0, question=Question().to_dict()),
        LipschitzResult("naive", BoundKind.UPPER, 3.0),
        LipschitzResult("sampling", BoundKind.LOWER, 1.5),
        LipschitzResult("heuristic", BoundKind.ESTIMATE, 10.0),
    ], title="t")


def test_resultset_bracket_ignores_estimates() -> None:
    rs = _set()
    assert rs.best_lower == 2.0 and rs.best_upper == 2.0 and rs.consistency().passed
    rs.append(LipschitzResult("bad-upper", BoundKind.UPPER, 1.0))
    assert not rs.consistency().passed


@pytest.mark.parametrize("fmt", ["text", "markdown", "latex", "csv"])
def test_tables_show_kind_and_ratio(fmt: str) -> None:
    out = _set().table(fmt)
    for name in ("enumeration", "naive", "sampling", "heuristic"):
        assert name in out
    if fmt == "latex":  # a paper's column: the kind as its mark (=, <=, >=, ~), no declared-kind column
        assert "$=$~" in out and r"$\approx$~" in out and "declared" not in out
    else:
        assert "EXACT" in out and "ESTIMATE" in out
    if fmt != "csv":
        assert "1.500" in out  # naive / best lower = 3 / 2
    else:
        assert "1.5" in out.splitlines()[2]


def test_dataframe() -> None:
    pytest.importorskip("pandas")
    df = _set().to_dataframe()
    assert list(df["kind"]) == ["EXACT", "UPPER", "LOWER", "ESTIMATE"]
    assert df.loc[df.method == "naive", "ratio_to_best_lower"].item() == pytest.approx(1.5)


def test_import_lipopt_is_light() -> None:
    code = ("import sys, lipopt, lipopt.spec, lipopt.result, lipopt.methods, lipopt.network; "
            "heavy = {'torch', 'cvxpy', 'pyomo', 'highspy', 'pyscipopt', 'gurobipy', 'scs', 'clarabel', "
            "'onnx', 'pandas'}; "
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in heavy); "
            "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_global_default_question() -> None:
    q = Question()
    assert isinstance(q.domain, Global) and q.constant == "global" and q.norm_label() == "l2->l2"


def test_every_package_on_disk_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """setup.py finds the packages (setuptools.find_packages) and pyproject.toml maps solvers/ to
    lipopt_solvers: every package folder on disk is in the list a wheel is built from."""
    import runpy
    import tomllib

    import setuptools

    root = ROOT
    seen: dict = {}
    monkeypatch.setattr(setuptools, "setup", lambda **kw: seen.update(kw))
    monkeypatch.chdir(root)
    runpy.run_path(str(root / "setup.py"))
    found = set(seen["packages"])
    on_disk = {".".join(p.parent.relative_to(root).parts) for p in (root / "lipopt").rglob("__init__.py")}
    assert on_disk <= found, sorted(on_disk - found)
    package_dir = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    assert "lipopt_solvers" in found and package_dir["lipopt_solvers"] == "solvers"
    assert (root / "solvers" / "__init__.py").exists()


def test_domains_own_contains_clip_sample_and_bounding_box() -> None:
    from lipopt.spec import Ball, Box, Global, Norm

    rng = np.random.default_rng(0)
    box = Box(np.array([0.0, -1.0]), np.array([1.0, 2.0]))
    pts = box.sample(rng, 200, 2)
    assert all(box.contains(p) for p in pts) and not box.contains(np.array([1.0 + 1e-15, 0.0]))
    assert box.contains(box.clip(np.array([5.0, -5.0])))
    assert np.array_equal(box.clip([5.0, -5.0]), [1.0, -1.0])
    assert [a.tolist() for a in box.bounding_box()] == [[0.0, -1.0], [1.0, 2.0]]
    for norm in (Norm.L2, Norm.LINF):
        ball = Ball(np.array([0.3, -0.7]), 0.1, norm)
        pts = ball.sample(rng, 200, 2)
        assert all(ball.contains(p) for p in pts)
        far = ball.clip(np.array([3.0, 4.0]))
        assert ball.contains(far) and norm.of(far - ball.center) == pytest.approx(0.1, rel=1e-12)
        lo, hi = ball.bounding_box()
        assert np.all(pts >= lo) and np.all(pts <= hi)
    g = Global()
    assert g.contains(np.array([1e300])) and g.bounding_box() is None
    pts = g.sample(rng, 100, 3, scale=2.0)
    assert pts.shape == (100, 3) and np.max(np.abs(pts[:50])) <= 2.0


# -- what a user sees in a table (issue 16) ----------------------------------------------------------


def test_rows_show_their_own_bracket_and_the_footer_names_its_sources() -> None:
    """A time-limited exact method shows its bracket on its own row; the footer names each side's record."""
    from lipopt.result import BoundKind, LipschitzResult, ResultSet, StopReason, Verdict

    mip = LipschitzResult.from_bracket("milp", BoundKind.EXACT, 2.5, 4.0, Verdict.OK, StopReason.TIME_LIMIT)
    done = StopReason.COMPLETED
    low = LipschitzResult.from_bracket("sampling", BoundKind.LOWER, 3.0, None, Verdict.OK, done)
    up = LipschitzResult.from_bracket("naive", BoundKind.UPPER, None, 5.0, Verdict.OK, done)
    na = LipschitzResult("enumeration", BoundKind.EXACT, None, verdict=Verdict.NOT_APPLICABLE, message="no")
    rs = ResultSet([mip, low, up, na])
    text = rs.table("text")
    milp_line = next(ln for ln in text.splitlines() if ln.startswith("milp"))
    assert "[2.5, 4]" in milp_line and "EXACT" in milp_line and "UPPER 4" in milp_line  # declared vs got
    assert "bracket: 3 (sampling) <= L <= 4 (milp)" in text
    latex = rs.table("latex", caption="Bounds", label="tab:b", columns=["method", "certified", "bracket"])
    assert "enumeration" not in latex  # not-applicable rows are left out of a paper table ...
    assert "enumeration" in rs.table("latex", show_not_applicable=True)  # ... unless asked
    assert r"\caption{Bounds" in latex and r"\label{tab:b}" in latex and r"\toprule" in latex
    assert r"$\le$~4" in latex and "ratio" not in latex
    # default LaTeX columns: milp stopped at its time limit, so verdict and stop are shown; without it, the
    # dropped not-applicable row alone adds neither
    assert "stop" in rs.table("latex").split(r"\midrule")[0]
    head = ResultSet([low, up, na]).table("latex").split(r"\midrule")[0]
    assert "verdict" not in head and "stop" not in head and "method" in head and "time" in head
    with pytest.raises(ValueError, match="available"):
        rs.table("text", columns=["method", "nonsense"])


@pytest.mark.parametrize("t,text", [(3e-4, "0.3 ms"), (0.0251, "25.1 ms"), (3.07, "3.07 s"),
                                    (283.0, "4 min 43 s"), (3900.0, "1 h 05 min"), (None, "-")])
def test_times_in_sensible_units(t, text) -> None:
    from lipopt.tables import format_time

    assert format_time(t) == text
