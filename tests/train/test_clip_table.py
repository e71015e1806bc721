"""benchmarks/clip_table.py end to end on a tiny problem (digits, a 64-8-10 net, 2 epochs, 3 rows).

The issue's test: the written nets load with lipopt.load and their exact constants (region enumeration:
8 ReLUs) lie between the certified lower and upper bounds the table reports, globally and on each local
ball; the checkpoint and the local columns are in the rendered table with their kinds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.paths import benchmark_module

pytest.importorskip("torch")
pytest.importorskip("sklearn")
pytest.importorskip("matplotlib")


def _module():
    return benchmark_module("clip_table")


@pytest.mark.slow  # ~40 s: three trainings, LipSDP and enumeration per net
def test_clip_table_brackets_contain_exact_constants(tmp_path, capsys):
    from lipopt.methods import RunOptions, run_method
    from lipopt.network.load import load
    from lipopt.spec import Ball, Norm, make_question

    rc = _module().main(["--data", "digits", "--epochs", "3", "--hidden", "8", "--targets", "0.8",
                         "--time-limit", "10", "--local-points", "2", "--local-eps-l2", "0.5",
                         "--timing-repeats", "0", "--select", "target", "--out", str(tmp_path),
                         "--format", "markdown"])
    assert rc == 0
    text = capsys.readouterr().out
    for col in ("local l2 LOWER", "local l2 UPPER", "local linf UPPER", "nominal l2 UPPER (local-affine)",
                "cert. radius l2 (local bound)", "epoch"):
        assert col in text
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert [r["row"] for r in saved["rows"]] == ["Standard", "Weight Reg.80", "CLIP80"]
    opts = RunOptions(time_limit=120)
    x_test = _x_test()
    for row in saved["rows"]:
        net = load(tmp_path / row["file"])
        exact = run_method("enumeration", net, make_question(2), opts)
        assert exact.kind.value == "EXACT"
        assert row["lower_l2"] <= exact.value * (1 + 1e-9) <= row["upper_l2"] * (1 + 1e-9) ** 2
        assert row["select_rule"] == "target"
        for p in row["local"]["per_point"]:
            x0 = np.asarray(x_test[p["index"]], dtype=np.float64).reshape(-1)
            for norm, eps in (("l2", 0.5), ("linf", 0.1)):
                n = Norm.parse(norm)
                ex = run_method("enumeration", net, make_question(n, domain=Ball(x0, eps, n)), opts)
                assert ex.kind.value == "EXACT"
                assert p[f"local_lower_{norm}"] <= ex.value * (1 + 1e-9)
                assert ex.value <= p[f"local_upper_{norm}"] * (1 + 1e-9)
    assert (tmp_path / "accuracy_vs_upper.png").is_file()


def _x_test():
    from lipopt.train.data import load_data

    return load_data("digits", seed=0).x_test
