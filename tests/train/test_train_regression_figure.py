"""benchmarks/clip_regression.py: the regression figure (learned functions at several lambdas).

Light: a 16-16 net, 40 epochs, three lambdas. Checks that the figure and its record are written, that
every curve's certified bounds are consistent (grid pair LOWER <= enumeration EXACT <= naive UPPER), and
that the constant decreases as lambda grows (the paper's Proposition 2, on the exact constants).
"""

from __future__ import annotations

import json

import pytest

from tests.paths import benchmark_module

pytest.importorskip("torch")
pytest.importorskip("matplotlib")


def _module():
    return benchmark_module("clip_regression")


def test_regression_figure_and_monotone_constants(tmp_path, capsys):
    mod = _module()
    rc = mod.main(["--lams", "0,0.3,3", "--hidden", "16,16", "--epochs", "40", "--out", str(tmp_path)])
    assert rc == 0
    png = tmp_path / "regression.png"
    assert png.is_file() and png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "regression.pdf").is_file()
    rec = json.loads((tmp_path / "regression.json").read_text())
    curves = rec["curves"]
    assert [c["lam"] for c in curves] == [0.0, 0.3, 3.0]
    for c in curves:
        assert c["consistent"]
        assert c["exact"] is not None  # enumeration closes on a 1-D 16-16 net
        assert c["lower"] <= c["exact"] * (1 + 1e-9) and c["exact"] <= c["upper"] * (1 + 1e-9)
    exact = [c["exact"] for c in curves]
    assert exact[0] > exact[1] > exact[2]
    assert "lambda 0.3" in capsys.readouterr().out
