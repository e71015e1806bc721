"""The solver layer as the methods and the command line use it: options passed through verbatim,
isolated solves, and one Ctrl-C that stops a run and keeps what was certified."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.cli import main
from lipopt.methods import RunOptions, run_method
from lipopt.result import BoundKind, StopReason, Verdict
from lipopt.spec import make_question
from tests import nets

pytest.importorskip("highspy")


def _small() -> tuple[lipopt.Network, object]:
    net = nets.random_mlp([3, 6, 1], seed=4)
    return net, make_question("inf", domain="box:-1,1")


def _enumerated(net: lipopt.Network, q: object) -> float:
    r = run_method("enumeration", net, q)
    assert r.kind is BoundKind.EXACT, r.message
    return r.value


def test_solver_params_reach_highs_from_the_milp() -> None:
    net, q = _small()
    bad = run_method("milp", net, q, RunOptions(solver="highs", solver_params={"no_such_option": 1}))
    assert bad.verdict is not Verdict.OK and bad.value is None
    assert "no_such_option" in bad.message
    # a real HiGHS parameter passes through and the answer stays exact
    ok = run_method("milp", net, q, RunOptions(solver="highs", solver_params={"presolve": "off"}))
    assert ok.kind is BoundKind.EXACT and ok.value == pytest.approx(_enumerated(net, q), rel=1e-6)


def test_solver_params_reach_scip_from_the_milp() -> None:
    pytest.importorskip("pyscipopt")
    from lipopt_solvers import interrupts

    interrupts.request()  # a Ctrl-C left over from an earlier run must not make this one skip its solves
    net, q = _small()
    bad = run_method("milp", net, q, RunOptions(solver="scip", solver_params={"no/such/param": 1}))
    assert bad.value is None and "no/such/param" in bad.message


def test_isolated_milp_matches_in_process() -> None:
    net, q = _small()
    iso = run_method("milp", net, q, RunOptions(isolate=True, time_limit=60))
    assert iso.kind is BoundKind.EXACT and iso.value == pytest.approx(_enumerated(net, q), rel=1e-6)


def test_cli_solver_option_and_isolate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    net, q = _small()
    (w1, b1), (w2, b2) = net.affine_relu_weights()
    path = tmp_path / "net.npz"
    np.savez(path, w1=w1, b1=b1, w2=w2, b2=b2)
    js = tmp_path / "out.json"
    code = main(["compute", str(path), "--norm", "inf", "--domain", "box:-1,1", "--methods", "milp",
                 "--solver-option", "presolve=off", "--solver-option", "mip_heuristic_effort=0.1",
                 "--isolate", "--json", str(js), "-q"])
    assert code == 0, capsys.readouterr()
    rec = json.loads(js.read_text())["results"][0]
    assert rec["kind"] == "EXACT" and rec["value"] == pytest.approx(_enumerated(net, q), rel=1e-6)
    solves = [s for p in rec["stats"]["pieces"] for s in p.get("solves", [])]
    assert solves and all(s["isolated"] for s in solves)
    assert main(["compute", str(path), "--methods", "milp", "--norm", "inf", "--domain", "box:-1,1",
                 "--solver-option", "presolve"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_ctrl_c_outside_a_solver_stops_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A Ctrl-C in a method's own code (bounds, sampling): that method is reported as interrupted,
    the records before it keep their certified values, the rest are not run, the exit code is 130."""
    import lipopt.api as api

    net, q = _small()
    real = api.run_method

    def fake(name: str, *a: object, **k: object) -> object:
        if name == "sampling":
            raise KeyboardInterrupt
        return real(name, *a, **k)

    monkeypatch.setattr(api, "run_method", fake)
    rs = lipopt.compare(net, methods=["naive", "sampling", "grad-ascent"], question=q)
    assert rs.interrupted and rs.exit_code() == 130
    naive, samp, grad = rs["naive"], rs["sampling"], rs["grad-ascent"]
    assert naive.kind is BoundKind.UPPER and naive.value is not None
    assert samp.value is None and samp.stop is StopReason.INTERRUPTED
    assert grad.value is None and grad.stop is StopReason.NOT_RUN
    assert json.loads(rs.to_json())["interrupted"] is True


def test_ctrl_c_during_highs_keeps_the_bracket() -> None:
    """SIGINT while HiGHS works on a net it cannot close quickly: the MILP record keeps its certified
    bracket (a valid lower <= upper), says it was interrupted, and the next method is not run."""
    net = nets.random_mlp([8, 32, 32, 1], seed=0)
    q = make_question("inf", domain="box:-1,1")
    timer = threading.Timer(4.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        rs = lipopt.compare(net, methods=["milp", "naive"], question=q, time_limit=60)
    finally:
        timer.cancel()
    milp = rs["milp"]
    assert rs.interrupted and rs.exit_code() == 130
    assert milp.stop is StopReason.INTERRUPTED, (milp.stop, milp.message)
    naive_upper = run_method("naive", net, q).value
    if milp.lower is not None:  # the certified side survives, and it is below a sound upper bound
        assert milp.lower <= naive_upper * (1 + 1e-9)
    if milp.upper is not None:
        assert milp.lower is None or milp.lower <= milp.upper
    assert rs["naive"].value is None and rs["naive"].stop is StopReason.NOT_RUN


def _read_back(path: Path, solver: str) -> float:
    if solver == "highs":
        import highspy

        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.readModel(str(path))
        h.run()
        assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        return float(h.getInfo().objective_function_value)
    import pyscipopt

    m = pyscipopt.Model()
    m.hideOutput()
    m.readProblem(str(path))
    m.optimize()
    assert m.getStatus() == "optimal"
    return float(m.getObjVal())


def test_written_models_solve_to_the_same_optimum(tmp_path: Path) -> None:
    """--write-model: the MILP (HiGHS .lp / .mps) and the MIQCQP (SCIP, quadratic rows) files read back
    into HiGHS and SCIP and solve to the optimum behind the record's value (times the scale factor)."""
    pytest.importorskip("pyscipopt")
    net, q = _small()
    r = run_method("milp", net, q, RunOptions(write_model=str(tmp_path / "milp")))
    files = sorted((tmp_path / "milp").iterdir())
    assert [f.suffix for f in files] == [".lp", ".mps"] and r.kind is BoundKind.EXACT
    factor = r.stats["scale"]["factor"]
    text = files[0].read_text()
    assert "stage1.relu(" in text and "stage0.z_def(" in text  # rows say which stage and neuron they encode
    for f in files:
        for solver in ("highs", "scip"):
            assert factor * _read_back(f, solver) == pytest.approx(r.value, rel=1e-6)
    q2 = make_question("2", domain="box:-1,1")
    r2 = run_method("miqcqp", net, q2, RunOptions(write_model=str(tmp_path / "miqcqp")))
    assert r2.kind is BoundKind.EXACT
    for f in sorted((tmp_path / "miqcqp").iterdir()):  # quadratic rows: SCIP reads its own files
        optimum = _read_back(f, "scip")  # one output: the objective is linear, c^T J u with ||u||_2 <= 1
        assert r2.stats["scale"]["factor"] * optimum == pytest.approx(r2.value, rel=1e-5)


@pytest.mark.parametrize(("method", "norm", "solver"), [
    ("milp", "inf", "highs"), ("milp", "inf", "scip"), ("milp", "inf", "pyomo-highs"),
    ("lp-relax", "inf", "highs"), ("miqcqp", "2", "scip"), ("miqcqp", "2", "pyomo-scip"),
])
def test_every_backend_that_solves_pyomo_models_is_accepted(method: str, norm: str, solver: str,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """The direct backends and the Pyomo-contrib ones both take a method's Pyomo model; the answer is the
    same (enumeration's) whichever is chosen."""
    pytest.importorskip("pyscipopt")
    net, _ = _small()
    q = make_question(norm, domain="box:-1,1")
    r = lipopt.compare(net, methods=[method], question=q, solver=solver)[method]
    assert r.verdict is Verdict.OK and r.solver == solver, r.message
    exact = _enumerated(net, q)
    if r.kind is BoundKind.EXACT:
        assert r.value == pytest.approx(exact, rel=1e-5)
    else:
        assert r.kind is BoundKind.UPPER and r.value >= exact * (1 - 1e-6)


def test_a_conic_solver_is_refused_for_a_pyomo_model() -> None:
    from lipopt.errors import InvalidOptionsError

    net, q = _small()
    with pytest.raises(InvalidOptionsError, match=r"milp.*clarabel"):
        lipopt.compare(net, methods=["milp"], question=q, solver="clarabel")


@pytest.mark.parametrize("isolate", [False, True], ids=["in-process", "isolated"])
def test_mip_progress_lines_show_incumbent_and_bound(isolate: bool, capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    """With progress on, a MILP that takes a while reports its incumbent and dual bound as they move,
    in the original network's units; the reported incumbents never exceed the record's upper bound."""
    import re

    net = nets.random_mlp([8, 32, 32, 1], seed=0)
    q = make_question("inf", domain="box:-1,1")
    r = run_method("milp", net, q, RunOptions(time_limit=4, progress=True, isolate=isolate))
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "milp" in ln and "bound" in ln]
    assert lines, err
    incumbents = [float(m) for m in re.findall(r"incumbent ~ (-?[0-9][0-9.e+-]*) \(ESTIMATE\)", err)]
    assert all("(UPPER)" in ln for ln in lines if "bound -" not in ln)
    if r.upper is not None:
        assert all(v <= r.upper * (1 + 1e-6) for v in incumbents)


def test_progress_reporter_throttles_and_converts_units(capsys: pytest.CaptureFixture[str]) -> None:
    from lipopt.progress import solve_reporter

    rep = solve_reporter("milp row 0", lambda v: 2 * v, every=3600)
    rep(None, 10.0)
    rep(1.0, 9.0)  # within the throttle window: not printed
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "incumbent -, bound 20 (UPPER)" in err[0]


def test_enumeration_of_a_conv_net_whose_region_lp_trips_highs_presolve() -> None:
    """HiGHS 1.16's presolve declares some feasible region LPs of a small conv net infeasible (parallel
    rows); the LP backend re-checks such a claim without presolve, so enumeration gives the exact global
    l2 constant, which the MIQCQP confirms, and a truly infeasible LP stays infeasible."""
    import lipopt_solvers as ls

    from lipopt.network.layers import Conv2d, Dense, Flatten, ReLU
    from lipopt.spec import Norm, Question

    rng = np.random.default_rng(4)
    layers = [Conv2d(rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2)), ReLU(), Flatten(),
              Dense(rng.normal(size=(1, 8)), rng.normal(size=1))]
    net = lipopt.Network(layers, (1, 3, 3), name="conv")
    q = Question(Norm.L2, Norm.L2)
    e = run_method("enumeration", net, q)
    assert e.kind is BoundKind.EXACT, e.message
    pytest.importorskip("pyscipopt")
    m = run_method("miqcqp", net, q)
    assert m.lower is not None and m.upper is not None
    assert m.lower * (1 - 1e-6) <= e.value <= m.upper * (1 + 1e-6)
    bad = ls.solve_lp([1.0], A_ub=[[1.0]], b_ub=[-1.0], bounds=(0, None))
    assert bad.termination is ls.Termination.INFEASIBLE
