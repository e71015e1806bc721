"""The `lipopt` command and the Python front door on small networks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.cli import main
from lipopt.network import Network
from lipopt.result import BoundKind, ResultSet
from tests.conftest import T3


def test_methods_and_doctor(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["methods"]) == 0
    out = capsys.readouterr().out
    for name in ("enumeration", "milp", "miqcqp", "naive", "local-affine", "sampling", "grad-ascent"):
        assert name in out
    assert main(["doctor", "--no-licences"]) == 0
    out = capsys.readouterr().out
    assert "highs" in out and "scip" in out and "gurobi" in out


def test_compute_t3_exact_l2(t3_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    js = tmp_path / "out.json"
    rc = main(["compute", str(t3_file), "--norm", "2", "--methods", "enumeration,naive,sampling",
               "--json", str(js), "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "EXACT" in out and "UPPER" in out and "LOWER" in out
    rs = ResultSet.from_json(js.read_text())
    assert rs["enumeration"].value == pytest.approx(np.sqrt(5), rel=1e-9)  # formulations.md T3
    assert rs["naive"].value == pytest.approx(3 * np.sqrt(2), rel=1e-8)  # certified: tiny safety margin
    assert rs["sampling"].value <= np.sqrt(5) * (1 + 1e-12)


def test_compute_markdown_linf_box(t3_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["compute", str(t3_file), "--norm", "inf", "--domain", "box:-1,1", "--methods",
               "milp,enumeration", "--format", "markdown", "-q"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("EXACT 3 ") == 2  # T3: l-inf input constant 3, certified by both
    assert "bracket: 3 (" in out and "<= L <= 3 (" in out  # each side named


def test_compute_bad_domain_is_a_clear_error(t3_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compute", str(t3_file), "--domain", "box:1,0", "-q"]) == 2
    assert "inverted box" in capsys.readouterr().err


def test_compute_unknown_method(t3_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compute", str(t3_file), "--methods", "lipopt", "-q"]) == 2
    assert "unknown method" in capsys.readouterr().err


def test_python_api_compare_and_auto() -> None:
    net = Network.from_weights(T3)
    rs = lipopt.compare(net, methods=["enumeration", "naive", "grad-ascent"], norm=2)
    assert rs.consistency().passed
    assert rs.best_lower == pytest.approx(np.sqrt(5), rel=1e-9)
    r = lipopt.lipschitz(net, norm="inf", domain="box:-1,1")
    assert r.kind is BoundKind.EXACT and r.value == pytest.approx(3.0, rel=1e-9)
    with pytest.raises(TypeError, match="either a Question"):
        lipopt.lipschitz(net, "naive", question=lipopt.Question(), norm=2)


def test_not_applicable_is_reported_not_raised() -> None:
    net = Network.from_weights(T3)
    rs = lipopt.compare(net, methods=["local-affine"], norm=2)  # needs a nominal ball question
    assert rs[0].value is None and rs[0].status.value == "not_applicable" and rs[0].message


def test_console_script_help() -> None:
    out = subprocess.run([sys.executable, "-m", "lipopt.cli", "--help"], capture_output=True, text=True,
                         check=True).stdout
    assert "compute" in out and "doctor" in out and "demo" in out


def test_json_is_plain(t3_file: Path, tmp_path: Path) -> None:
    js = tmp_path / "o.json"
    assert main(["compute", str(t3_file), "--methods", "naive", "--json", str(js), "-q"]) == 0
    d = json.loads(js.read_text())
    assert d["results"][0]["kind"] == "UPPER" and d["results"][0]["question"]["constant"] == "global"


def test_compute_json_carries_provenance(t3_file: Path, tmp_path: Path) -> None:
    """lipopt compute --json: schema, lipopt and solver versions, machine, timestamp, options as run."""
    import lipopt as lp

    js = tmp_path / "o.json"
    assert main(["compute", str(t3_file), "--methods", "naive", "--time-limit", "5", "--json", str(js),
                 "-q"]) == 0
    d = json.loads(js.read_text())
    prov = d["provenance"]
    assert d["schema"].startswith("lipopt.resultset/") and prov["command"] == "compute"
    assert prov["lipopt_version"] == lp.__version__ and prov["machine"]["cpu_count"] >= 1
    assert prov["options"]["time_limit"] == 5.0 and "highs" in prov["solver_versions"]
    naive = ResultSet.from_json(js.read_text())["naive"].value  # ||W2||_2 ||W1||_2 = sqrt(2) * 3
    assert naive == pytest.approx(3 * np.sqrt(2), rel=1e-6) and naive >= 3 * np.sqrt(2)
