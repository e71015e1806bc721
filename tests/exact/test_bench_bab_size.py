"""benchmarks/bench_bab_size.py: its nets, and a short run whose brackets hold the enumerated constant."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.paths import benchmark_module


def test_the_sweeps_are_the_asked_architectures() -> None:
    mod = benchmark_module("bench_bab_size")
    assert mod.nets([8, 16], [1, 2], 16) == [("width", [8, 8, 1]), ("width", [8, 16, 1]),
                                             ("depth", [8, 16, 16, 1])]


def test_a_short_run_holds_the_enumerated_constant(tmp_path: Path) -> None:
    """Tiny sweeps with HiGHS: each row's bracket contains region enumeration's exact value of the same
    question on the same seeded net; the table and the plot are written."""
    from benchmarks.bench_milp import random_net
    from lipopt.methods import RunOptions, run_method
    from lipopt.spec import Box, Logit, Norm, Question

    mod = benchmark_module("bench_bab_size")
    assert mod.main(["--limit", "10", "--solvers", "highs", "--widths", "5", "--depths", "2",
                     "--depth-width", "4", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "bab_size.md").read_text()
    assert "8-5-1" in text and "8-4-4-1" in text
    assert (tmp_path / "bab_size.png").stat().st_size > 0
    q = Question(Norm.LINF, Norm.LINF, Box(-np.ones(8), np.ones(8)), Logit(0))
    for sweep, arch in mod.nets([5], [2], 4):
        row = mod.run(10.0, ["highs"], [(sweep, arch)])[0]
        exact = run_method("enumeration", random_net(arch, 0), q, RunOptions(time_limit=60)).value
        assert row["ok"] and row["closed"]
        assert row["lower"] <= exact * (1 + 1e-9) and row["upper"] >= exact * (1 - 1e-9)
