"""Regression tests for what a user sees (issue 16): version, batch-dimension input shapes, method="auto",
exact-method notes in compare, and the question's parts as CSV / DataFrame columns."""

from __future__ import annotations

import itertools
import tomllib

import pytest

import lipopt
import lipopt.cli
from tests import nets
from tests.paths import ROOT

ROOT = ROOT


def _pyproject_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return tomllib.load(fh)["project"]["version"]


# -- 1. version ------------------------------------------------------------------------------------

def test_cli_version_prints_pyproject_version(capsys):
    with pytest.raises(SystemExit) as info:
        lipopt.cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"lipopt {_pyproject_version()}"


def test_doctor_shows_lipopt_version(capsys):
    assert lipopt.cli.main(["doctor", "--no-licences"]) == 0
    first = capsys.readouterr().out.splitlines()[0].split()
    assert first[:2] == ["lipopt", _pyproject_version()]


def test_dunder_version_is_pyproject_version():
    assert lipopt.__version__ == _pyproject_version()


# -- 2. input_shape with a batch dimension ----------------------------------------------------------

def _cnn():
    import torch
    import torch.nn as nn

    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 3)).double()


def test_load_accepts_a_leading_batch_dimension_of_one():
    import numpy as np
    import torch

    model = _cnn()
    net = lipopt.load(model, input_shape=(1, 1, 8, 8))
    assert net.input_shape == (1, 8, 8)
    x = np.random.default_rng(1).standard_normal((1, 1, 8, 8))
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy().reshape(-1)
    np.testing.assert_allclose(net.forward(x.reshape(-1)), ref, rtol=1e-10, atol=1e-12)
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    assert lipopt.load(mlp, input_shape=(1, 4)).input_shape == (4,)


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (8, 8)])
def test_load_says_which_input_shape_the_cnn_expects(shape):
    from lipopt.errors import InvalidNetworkError

    with pytest.raises(InvalidNetworkError) as info:
        lipopt.load(_cnn(), input_shape=shape)
    msg = str(info.value)
    assert f"input_shape {shape} does not fit" in msg
    assert "without the batch dimension" in msg
    assert "the model expects input_shape=(1, 8, 8)" in msg


def test_load_stays_strict_after_dropping_the_batch_dimension():
    import torch.nn as nn

    from lipopt.errors import InvalidNetworkError

    with pytest.raises(InvalidNetworkError) as info:  # 9x9 images do not fit Linear(72, 3)
        lipopt.load(_cnn(), input_shape=(1, 1, 9, 9))
    assert "without the leading 1, (1, 9, 9)" in str(info.value)
    assert "expects 72 input features" in str(info.value)
    mlp = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with pytest.raises(InvalidNetworkError, match=r"the model expects input_shape=\(4,\)"):
        lipopt.load(mlp, input_shape=(1, 5))


# -- 3. method="auto" falls through and says what it chose -------------------------------------------

def _mlp(sizes, seed):
    import numpy as np

    from lipopt.network.network import Network

    rng = np.random.default_rng(seed)
    pairs = list(itertools.pairwise(sizes))
    ws = [rng.standard_normal((o, i)) / (1 if k == 0 else 2) for k, (i, o) in enumerate(pairs)]
    bs = [rng.standard_normal(o) / 2 for o in sizes[1:]]
    return Network.from_weights(ws, bs)


def test_auto_falls_through_when_enumeration_refuses():
    from lipopt.options import RunOptions

    net = _mlp([2, 16, 16, 2], seed=3)  # 32 ReLUs: over enumeration's default limit of 20
    res = lipopt.lipschitz(net, "auto", norm="inf", domain=(-1.0, 1.0))
    assert res.method == "milp" and res.verdict.value == "ok" and res.kind.value == "EXACT"
    assert any(n.startswith("auto: chose milp: the first applicable exact method") for n in res.notes)
    passed = [n for n in res.notes if n.startswith("auto: passed over")]
    assert len(passed) == 1 and "enumeration (not_applicable: region enumeration refused" in passed[0]
    # independently: region enumeration with its limit raised
    ref = lipopt.lipschitz(net, "enumeration", norm="inf", domain=(-1.0, 1.0),
                           options=RunOptions(extra={"enumeration": {"max_relus": 40}}))
    assert ref.kind.value == "EXACT"
    assert res.value == pytest.approx(ref.value, rel=1e-6)


def test_auto_preference_order():
    from lipopt.auto import preference
    from lipopt.methods import applicable_methods
    from lipopt.spec import make_question

    net = _mlp([2, 6, 6, 1], seed=5)

    def order(**kw):
        q = make_question(**kw).bind(net)
        return preference(net, q, applicable_methods(net, q))

    box = order(norm="inf", domain=(-1.0, 1.0))
    assert box[:3] == ["enumeration", "milp", "miqcqp"] and box[-1] == "naive"
    l2 = order(norm=2)
    assert l2[:2] == ["enumeration", "miqcqp"] and "milp" not in l2 and l2[-1] == "naive"
    glob = order(norm="inf")  # with biases milp only bounds the global constant: after miqcqp
    assert glob[:3] == ["enumeration", "miqcqp", "milp"]


def test_auto_uses_an_upper_bound_when_no_exact_method_applies():
    import numpy as np


    net = _mlp([2, 6, 6, 1], seed=5)
    res = lipopt.lipschitz(net, "auto", norm=2, nominal=True, domain="ball:0.1", center=[0.1, 0.2])
    assert res.kind.value == "UPPER" and res.verdict.value == "ok"
    assert any(n.startswith(f"auto: chose {res.method}: no exact method applies") for n in res.notes)
    naive = lipopt.lipschitz(net, "naive", norm=2, nominal=True, domain="ball:0.1", center=[0.1, 0.2])
    assert naive.kind.value == "UPPER" and res.value <= naive.value * (1 + 1e-9)
    # independently: ratios |f(x) - f(x0)| / |x - x0| at points of the ball are below the UPPER bound
    x0 = np.array([0.1, 0.2])
    rng = np.random.default_rng(0)
    dirs = rng.standard_normal((200, 2))
    xs = x0 + dirs / np.linalg.norm(dirs, axis=1, keepdims=True) * 0.1 * rng.uniform(0.01, 1, (200, 1))
    ratios = [np.linalg.norm(net.forward(x) - net.forward(x0)) / np.linalg.norm(x - x0) for x in xs]
    assert 0 < max(ratios) <= res.value * (1 + 1e-9)


# -- 4. a method that can only bound what another answers exactly ------------------------------------

def test_compare_says_milp_only_bounds_what_miqcqp_answers_exactly():
    net = _mlp([2, 6, 6, 1], seed=5)  # global l-inf question of a network with biases
    rs = lipopt.compare(net, norm="inf", domain="global")
    by = {r.method: r for r in rs}
    milp, miqcqp, enum = by["milp"], by["miqcqp"], by["enumeration"]
    assert milp.kind.value == "UPPER" and miqcqp.kind.value == "EXACT" and enum.kind.value == "EXACT"
    assert miqcqp.value == pytest.approx(enum.value, rel=1e-6)  # two exact methods agree
    assert milp.value >= miqcqp.value * (1 - 1e-9)
    assert any("miqcqp answers this question exactly" in n for n in milp.notes)
    assert not any("answers this question exactly" in n for r in rs if r.method != "milp" for n in r.notes)


def test_no_exact_alternative_note_where_milp_is_exact():
    net = _mlp([2, 6, 6, 1], seed=5)
    res = lipopt.lipschitz(net, "milp", norm="inf", domain=(-1.0, 1.0))
    assert res.kind.value == "EXACT"
    assert not any("answers this question exactly" in n for n in res.notes)


def test_auto_prefers_miqcqp_to_milp_on_a_global_question_with_biases():
    from lipopt.options import RunOptions

    net = _mlp([2, 6, 6, 1], seed=5)
    small = RunOptions(extra={"enumeration": {"max_relus": 4}})  # enumeration refuses: 12 ReLUs > 4
    res = lipopt.lipschitz(net, "auto", norm="inf", options=small)
    assert res.method == "miqcqp" and res.kind.value == "EXACT"
    chose = next(n for n in res.notes if n.startswith("auto: chose"))
    assert "milp after the exact methods: milp can only bound" in chose
    ref = lipopt.lipschitz(net, "enumeration", norm="inf")
    assert ref.kind.value == "EXACT" and res.value == pytest.approx(ref.value, rel=1e-6)


# -- 5. the question's parts, time limit and seed as CSV / DataFrame columns --------------------------

def test_dataframe_carries_the_question_time_limit_and_seed():
    from lipopt.spec import Ball, Logit, Norm, Question

    net = _mlp([2, 6, 6, 3], seed=5)
    q = Question(Norm.L2, Norm.LINF, Ball([0.1, 0.2], 0.25, Norm.LINF), Logit(1), nominal=False)
    rs = lipopt.compare(net, ["naive", "sampling"], q, time_limit=30.0, seed=7)
    df = rs.to_dataframe()
    for col in ("input_norm", "output_norm", "domain", "radius", "scope", "output", "time_limit", "seed"):
        assert col in df.columns
    assert list(df["method"]) == ["naive", "sampling"]
    assert set(df["input_norm"]) == {"l2"} and set(df["output_norm"]) == {"linf"}
    assert set(df["domain"]) == {"linf ball r=0.25"} and set(df["radius"]) == {0.25}
    assert set(df["scope"]) == {"local"} and set(df["output"]) == {"logit 1"}
    assert set(df["time_limit"]) == {30.0} and set(df["seed"]) == {7}
    glob = lipopt.compare(net, ["naive"], norm="inf").to_dataframe().iloc[0]
    assert (glob["scope"], glob["domain"], glob["output"], glob["input_norm"]) == (
        "global", "global", "all outputs", "linf")
    assert glob["time_limit"] is None and glob["seed"] == 0  # no limit; the default seed
    nominal = lipopt.compare(net, ["naive"], norm=2, nominal=True, domain="ball:0.1", center=[0.0, 0.0])
    assert nominal.to_dataframe().iloc[0]["scope"] == "nominal"


def test_cli_csv_has_the_question_columns(tmp_path, capsys):
    import csv
    import io

    import numpy as np

    path = tmp_path / "t3.npz"  # ECLipsE layout: w1, w2 (out x in), no biases
    np.savez(path, w1=np.array([[1.0, 2.0], [2.0, 1.0]]), w2=np.array([[1.0, -1.0]]))
    rc = lipopt.cli.main(["compute", str(path), "--methods", "naive,enumeration", "--norm", "inf", "--domain",
                          "box:-1,1", "--time-limit", "20", "--seed", "3", "--format", "csv", "-q"])
    assert rc == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["method"] for r in rows] == ["naive", "enumeration"]
    for r in rows:
        assert (r["input_norm"], r["output_norm"], r["domain"], r["scope"], r["output"]) == (
            "linf", "linf", "box [-1, 1]^2", "local", "all outputs")
        assert float(r["time_limit"]) == 20.0 and int(r["seed"]) == 3 and r["radius"] == ""
    # by hand: gradients [1 -1] diag(s) [[1 2] [2 1]] have l1 norms 2 (both active), 3 (one active; both
    # one-active regions meet the box's interior), 0: the l-inf constant on the box is 3
    enum = next(r for r in rows if r["method"] == "enumeration")
    assert enum["kind"] == "EXACT" and float(enum["value"]) == pytest.approx(3.0, rel=1e-9)


def test_bab_and_first_order_lipsdp_print_progress_lines_off_a_terminal(capfd: pytest.CaptureFixture[str]
                                                                        ) -> None:
    """bab and LipSDP's first-order descent, both runs of minutes on real nets, printed nothing: now plain
    lines (first at once, then every 5 s) with the certified bracket (bab) or the descent's value so far
    (an ESTIMATE until certified), and nothing with progress off."""
    from lipopt.methods import RunOptions, run_method
    from lipopt.spec import Box, Norm, Question

    net = nets.random_mlp([3, 8, 8, 1], seed=2)
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0))
    r = run_method("bab", net, q, RunOptions(progress=True))
    err = capfd.readouterr().err
    assert r.ok and "bab: incumbent" in err and "(UPPER)" in err
    assert "ESTIMATE" not in err  # its incumbents are certified lower bounds
    run_method("bab", net, q, RunOptions(progress=False))
    assert capfd.readouterr().err == ""
    q2 = Question(Norm.L2, Norm.L2)
    opts = {"sdp_algorithm": "first-order", "sdp_first_order_min_size": 0, "sdp_fo_iterations": 50}
    r = run_method("lipsdp-neuron", net, q2, RunOptions(progress=True, extra=opts))
    err = capfd.readouterr().err
    assert r.ok and "lipsdp-neuron (first-order descent): incumbent ~" in err and "(ESTIMATE)" in err
    run_method("lipsdp-neuron", net, q2, RunOptions(progress=False, extra=opts))
    assert capfd.readouterr().err == ""
