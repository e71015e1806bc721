"""Bad inputs get a clear error before any work starts (issue 15): options, solvers, files, outputs;
single-layer (affine) networks get the exact operator norm of W or a clear NOT_APPLICABLE; a failed run
leaves no stale --json file."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.cli import main
from lipopt.errors import (
    InvalidNetworkError,
    InvalidOptionsError,
    InvalidQuestionError,
    NoApplicableMethodError,
)
from lipopt.methods import RunOptions, run_method
from lipopt.network.layers import Conv2d, Flatten
from lipopt.network.network import Network
from lipopt.spec import make_question
from lipopt.validation import validate_options, validate_request
from tests.conftest import T3


def _err(capsys: pytest.CaptureFixture[str]) -> tuple[str, str]:
    c = capsys.readouterr()
    return c.out, c.err


# ------------------------------------------------------------------------------------- options, solvers


@pytest.mark.parametrize(("args", "needle"), [
    (["--solver", "foo"], "unknown solver 'foo'; known solvers: highs, scip"),
    (["--threads", "0"], "threads must be an integer >= 1"),
    (["--threads", "-2"], "threads must be an integer >= 1"),
    (["--time-limit", "nan"], "time limit must be a positive number"),
    (["--time-limit", "0"], "time limit must be a positive number"),
    (["--time-limit", "-5"], "time limit must be a positive number"),
])
def test_bad_options_exit_2_before_loading(args: list[str], needle: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # the network file does not exist: the options are checked first, so the message is about them
    rc = main(["compute", str(tmp_path / "missing.npz"), "--methods", "naive", "-q", *args])
    out, err = _err(capsys)
    assert rc == 2
    assert needle in err and "no such file" not in err
    assert out == ""  # nothing ran, no table


@pytest.mark.parametrize(("solver", "method", "needle"), [
    ("highs", "miqcqp", "needs a solver with capability MIQCQP; solver 'highs' has LP, MILP"),
    ("highs", "miqcqp-ub", "capability MIQCQP"),
    ("clarabel", "milp", "needs a solver with capability MILP; solver 'clarabel'"),
    ("clarabel", "lp-relax", "builds pyomo models; solver 'clarabel' solves cvxpy models"),
])
def test_solver_without_the_capability_exits_2(solver: str, method: str, needle: str, t3_file: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["compute", str(t3_file), "--norm", "inf", "--methods", method, "--solver", solver, "-q"])
    out, err = _err(capsys)
    assert rc == 2 and needle in err and out == ""


def test_every_solver_method_declares_its_capability() -> None:
    from lipopt.methods import REGISTRY

    need = {n: m.needs for n, m in REGISTRY.items()}
    assert need["milp"] == "MILP" and need["lp-relax"] == "LP" and need["enumeration"] == "LP"
    assert need["miqcqp"] == need["miqcqp-ub"] == need["miqcqp-lb"] == "MIQCQP"
    assert need["naive"] is None and need["sampling"] is None and need["grad-ascent"] is None
    from lipopt_solvers import Capability

    assert REGISTRY["miqcqp"].capability() is Capability.MIQCQP


def test_no_applicable_method_exits_2_with_reasons(t3_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["compute", str(t3_file), "--methods", "local-affine,milp", "--norm", "2", "-q"])
    out, err = _err(capsys)
    assert rc == 2 and out == ""
    assert "no method applies" in err
    assert "local-affine: local-affine bounds the nominal-point constant" in err
    assert "milp: the MILP handles input norms l1 and l-inf" in err


def test_time_limit_inf_means_no_limit(t3_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert validate_options(RunOptions(time_limit=math.inf)).time_limit is None
    assert validate_options(RunOptions(time_limit=2.5)).time_limit == 2.5
    js = t3_file.parent / "o.json"
    rc = main(["compute", str(t3_file), "--methods", "naive", "--time-limit", "inf", "--json", str(js), "-q"])
    assert rc == 0
    rec = json.loads(js.read_text())["results"][0]
    # naive: product of certified layer norms, ||W1||_2 ||W2||_2 = 3 * sqrt(2) (rounded upwards)
    expect = np.linalg.norm(T3[0], 2) * np.linalg.norm(T3[1], 2)
    assert rec["kind"] == "UPPER" and expect <= rec["value"] <= expect * (1 + 1e-6)


def test_api_raises_the_same_errors() -> None:
    net = Network.from_weights(T3)
    with pytest.raises(InvalidOptionsError, match="unknown solver 'foo'"):
        lipopt.compare(net, methods=["naive"], solver="foo", norm=2)
    with pytest.raises(InvalidOptionsError, match="capability MILP"):
        lipopt.compare(net, methods=["milp"], solver="clarabel", norm="inf")
    with pytest.raises(InvalidOptionsError, match="time limit"):
        lipopt.lipschitz(net, "naive", time_limit=float("nan"), norm=2)
    with pytest.raises(InvalidOptionsError, match="threads"):
        lipopt.compare(net, methods=["naive"], options=RunOptions(threads=0), norm=2)
    with pytest.raises(InvalidOptionsError, match="seed"):
        lipopt.compare(net, methods=["naive"], options=RunOptions(seed=-1), norm=2)
    with pytest.raises(InvalidOptionsError, match="unknown method"):
        lipopt.compare(net, methods=["lipopt"], norm=2)
    q = make_question(2)
    with pytest.raises(NoApplicableMethodError, match="local-affine: "):
        validate_request(net, q, ["local-affine"], RunOptions(), require_applicable=True)
    # an explicit list without require_applicable still gives a NOT_APPLICABLE record (not raised)
    rs = lipopt.compare(net, methods=["local-affine"], norm=2)
    assert rs[0].value is None and rs[0].status.value == "not_applicable"


def test_default_set_reports_methods_the_solver_cannot_run() -> None:
    net = Network.from_weights(T3)
    plan = validate_request(net, make_question(2), None, RunOptions(solver="highs"))
    assert "miqcqp" not in plan.names and "enumeration" in plan.names
    assert "capability MIQCQP" in plan.left_out["miqcqp"]


# ------------------------------------------------------------------------------------- bad files


@pytest.mark.parametrize(("name", "needle"), [
    ("e.npy", "e.npy is empty (0 bytes): not a valid LipBaB .npy weight file"),
    ("e.npz", "e.npz is empty (0 bytes): not a valid ECLipsE .npz archive"),
    ("e.pt", "e.pt is empty (0 bytes): not a valid torch checkpoint"),
    ("e.onnx", "e.onnx is empty (0 bytes): not a valid ONNX model"),
])
def test_empty_network_files(name: str, needle: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    p = tmp_path / name
    p.write_bytes(b"")
    assert main(["compute", str(p), "--methods", "naive", "-q"]) == 2
    out, err = _err(capsys)
    assert needle in err and "supported:" in err and "Traceback" not in err and out == ""
    with pytest.raises(InvalidNetworkError, match="empty"):
        lipopt.load(p)


def test_onnx_without_a_graph(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    p = tmp_path / "nograph.onnx"
    onnx.save(onnx.ModelProto(ir_version=8), str(p))
    with pytest.raises(InvalidNetworkError, match="not a valid ONNX model: it holds no graph"):
        lipopt.load(p)


def test_truncated_npz_and_npy_pair(t3_file: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    tr = tmp_path / "tr.npz"
    tr.write_bytes(t3_file.read_bytes()[:-40])
    assert main(["compute", str(tr), "--methods", "naive", "-q"]) == 2
    err = _err(capsys)[1]
    assert "cannot read" in err and "tr.npz" in err and "truncated" in err

    ws = np.empty(2, dtype=object)
    ws[0], ws[1] = np.ones((2, 3)), np.ones((3, 1))
    bs = np.empty(2, dtype=object)
    bs[0], bs[1] = np.zeros(3), np.zeros(1)
    np.save(tmp_path / "m_weights.npy", ws, allow_pickle=True)
    np.save(tmp_path / "m_biases.npy", bs, allow_pickle=True)
    raw = (tmp_path / "m_weights.npy").read_bytes()
    (tmp_path / "m_weights.npy").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InvalidNetworkError, match=r"m_weights\.npy"):
        lipopt.load(tmp_path / "m_weights.npy")


def test_checkpoint_errors_have_no_colour_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch = pytest.importorskip("torch")
    p = tmp_path / "arr.pt"
    torch.save({"w": np.zeros(3)}, p)  # a numpy array: not allowed by weights_only=True
    assert main(["compute", str(p), "--methods", "naive", "-q"]) == 2
    err = _err(capsys)[1]
    assert "\x1b[" not in err
    assert "arr.pt" in err and "something other than tensors" in err and "Unsupported global" in err
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a torch checkpoint at all")
    assert main(["compute", str(junk), "--methods", "naive", "-q"]) == 2
    err = _err(capsys)[1]
    assert "cannot read junk.pt as a torch checkpoint" in err and "\x1b[" not in err


def test_bad_center_files(t3_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "c.npy"
    np.save(good, np.array([0.5, -0.5]))
    trunc = tmp_path / "trunc.npy"
    trunc.write_bytes(good.read_bytes()[:-4])
    empty = tmp_path / "empty.npy"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.txt"
    blank.write_text("")
    cases = [(trunc, "cannot read the file"), (empty, "cannot read the file"), (blank, "holds no numbers"),
             (tmp_path / "missing.npy", "no such file"), ("abc", "not a comma-separated list of numbers")]
    for c, needle in cases:
        rc = main(["compute", str(t3_file), "--methods", "naive", "--domain", "ball:0.1", "--center", str(c),
                   "-q"])
        out, err = _err(capsys)
        assert rc == 2 and needle in err and "--center" in err and out == "", (c, err)
    # the good file works: naive on the ball is the global product bound 3 * sqrt(2)
    assert main(["compute", str(t3_file), "--methods", "naive", "--domain", "ball:0.1", "--center", str(good),
                 "-q"]) == 0
    assert f"{3 * math.sqrt(2):.6g}" in _err(capsys)[0]


def test_margin_with_equal_indices(t3_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compute", str(t3_file), "--methods", "naive", "--output", "margin:0,0", "-q"]) == 2
    err = _err(capsys)[1]
    assert "i and j must differ" in err and "unknown output" not in err
    with pytest.raises(InvalidQuestionError, match="i and j must differ"):
        make_question(2, output="margin:1,1")


# ------------------------------------------------------------------------------------- affine networks


def _affine(seed: int = 3) -> tuple[Network, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, 4))
    return Network.from_weights([w], [rng.normal(size=3)]), w


def _norm(w: np.ndarray, norm: str) -> float:
    """Independent closed forms: l-inf: max abs row sum, l1: max abs column sum, l2: largest singular
    value."""
    if norm == "inf":
        return float(np.max(np.abs(w).sum(axis=1)))
    if norm == "1":
        return float(np.max(np.abs(w).sum(axis=0)))
    return float(np.linalg.svd(w, compute_uv=False)[0])


METHODS = ["enumeration", "milp", "lp-relax", "miqcqp", "miqcqp-ub", "miqcqp-lb", "grad-ascent", "sampling",
           "naive"]


@pytest.mark.parametrize("norm", ["inf", "1", "2"])
@pytest.mark.parametrize("domain", ["global", "box:-1,2"])
def test_single_layer_gives_the_operator_norm(norm: str, domain: str) -> None:
    net, w = _affine()
    true = _norm(w, norm)
    q = make_question(norm, domain=domain)
    for m in METHODS:
        r = run_method(m, net, q, RunOptions(extra={"restarts": 2, "steps": 5, "n_init": 20}))
        status = r.status.value
        assert status in ("solved", "not_applicable"), (m, status, r.message)
        if status == "not_applicable":
            assert r.message, m
            continue
        assert r.value is not None and not r.failed, (m, r.message)
        if r.kind.value in ("EXACT", "LOWER"):  # an affine map: every point is a maximiser
            assert r.value == pytest.approx(true, rel=1e-9), (m, r.kind)
        else:
            assert r.value >= true * (1 - 1e-9), m
        if m in ("enumeration", "milp", "lp-relax", "miqcqp"):
            assert r.kind.value == "EXACT" and all(c.passed for c in r.checks), m


def test_single_layer_scalar_outputs_and_mixed_norms() -> None:
    net, w = _affine(5)
    # margin f0 - f2 with l-inf input: the l1 norm of w0 - w2
    q = make_question("inf", output="margin:0,2")
    for m in ("enumeration", "milp", "miqcqp"):
        r = run_method(m, net, q, RunOptions())
        assert r.kind.value == "EXACT" and r.value == pytest.approx(np.abs(w[0] - w[2]).sum(), rel=1e-12), m
    # l-inf -> l2, all outputs: the max of ||W s||_2 over the 16 sign vectors s
    signs = np.array(np.meshgrid(*[[-1.0, 1.0]] * 4)).reshape(4, -1)
    true = float(np.max(np.linalg.norm(w @ signs, axis=0)))
    q = make_question(input_norm="inf", output_norm=2)
    for m in ("enumeration", "miqcqp"):
        r = run_method(m, net, q, RunOptions())
        assert r.kind.value == "EXACT" and r.value == pytest.approx(true, rel=1e-12), m


def test_single_conv_layer_is_affine_too() -> None:
    rng = np.random.default_rng(7)
    net = Network([Conv2d(rng.normal(size=(2, 1, 2, 2)), rng.normal(size=2)), Flatten()], (1, 3, 3))
    w = net.jacobian(np.zeros(9))  # the conv as an (8, 9) matrix
    for m in ("enumeration", "milp"):
        r = run_method(m, net, make_question("inf"), RunOptions())
        assert r.kind.value == "EXACT" and r.value == pytest.approx(_norm(w, "inf"), rel=1e-12), m


def test_single_layer_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, w = _affine()
    p = tmp_path / "one.npz"
    np.savez(p, w1=w)
    js = tmp_path / "one.json"
    rc = main(["compute", str(p), "--norm", "inf", "--methods", "milp,enumeration,grad-ascent", "--json",
               str(js), "-q"])
    assert rc == 0, _err(capsys)
    recs = {r["method"]: r for r in json.loads(js.read_text())["results"]}
    true = _norm(w, "inf")
    assert recs["milp"]["kind"] == "EXACT" and recs["milp"]["value"] == pytest.approx(true, rel=1e-12)
    assert recs["enumeration"]["value"] == pytest.approx(true, rel=1e-12)
    assert recs["grad-ascent"]["kind"] == "LOWER" and recs["grad-ascent"]["value"] == pytest.approx(true)


# ------------------------------------------------------------------------------------- --json files


def test_failed_run_removes_a_stale_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "out.json"
    js.write_text('{"stale": true}')
    missing = str(tmp_path / "missing.npz")
    assert main(["compute", missing, "--methods", "naive", "--json", str(js), "-q"]) == 2
    assert "no such file" in _err(capsys)[1]
    assert not js.exists()
    js.write_text('{"stale": true}')
    assert main(["compute", missing, "--threads", "0", "--json", str(js), "-q"]) == 2
    assert not js.exists()


def test_json_is_replaced_atomically(t3_file: Path, tmp_path: Path) -> None:
    js = tmp_path / "out.json"
    js.write_text('{"stale": true}')
    assert main(["compute", str(t3_file), "--methods", "naive", "--json", str(js), "-q"]) == 0
    d = json.loads(js.read_text())
    assert "stale" not in d and d["results"][0]["method"] == "naive"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "t3.npz"]  # no temp file left


def test_json_into_a_missing_folder_is_refused(t3_file: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    js = str(tmp_path / "nope" / "o.json")
    rc = main(["compute", str(t3_file), "--methods", "naive", "--json", js, "-q"])
    out, err = _err(capsys)
    assert rc == 2 and "does not exist" in err and out == ""
