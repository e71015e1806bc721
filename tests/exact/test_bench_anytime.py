"""benchmarks/bench_anytime.py: the bracket read off an anytime history at a budget, its table and plot,
and one short real run checked against the record it came from."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.paths import benchmark_module


def test_bracket_at_is_the_best_of_the_rows_so_far() -> None:
    mod = benchmark_module("bench_anytime")
    hist = [[0.5, None, 9.0], [1.0, 2.0, 7.0], [3.0, 1.5, 8.0], [5.0, 3.0, 4.0]]
    assert mod.bracket_at(hist, 0.1) == (None, None)
    assert mod.bracket_at(hist, 0.5) == (None, 9.0)
    assert mod.bracket_at(hist, 4.0) == (2.0, 7.0)  # a looser later row never loosens the bracket
    assert mod.bracket_at(hist, 10.0) == (3.0, 4.0)
    assert mod.bracket_at([[1.0, math.inf, math.nan]], 2.0) == (None, None)


def test_unknown_cases_are_refused_with_the_list() -> None:
    mod = benchmark_module("bench_anytime")
    with pytest.raises(SystemExit):
        mod.main(["--cases", "nosuchcase", "--limit", "1"])


def test_a_short_run_reads_the_records_own_bracket(tmp_path: Path) -> None:
    """random [8, 32, 32, 1], l-inf on [-1, 1]^8, 3 s: every method's bracket at the limit is its
    record's, nested in any earlier one; the table marks a tightest row; the plot is written."""
    mod = benchmark_module("bench_anytime")
    rows = mod.run(["random832-inf"], 3.0, [1.0, 3.0])
    assert {r["method"] for r in rows} == {"miqcqp", "milp", "bab"}
    for r in rows:
        lo, up = r[3.0]
        assert (lo, up) == r["final"]
        assert lo is None or up is None or lo <= up
        lo1, up1 = r[1.0]
        if lo1 is not None and lo is not None:
            assert lo >= lo1
        if up1 is not None and up is not None:
            assert up <= up1 * (1 + 1e-9)
    text = mod.render(rows, [1.0, 3.0])
    assert "**" in text and "random832-inf" in text
    mod.plot(rows, tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 0
