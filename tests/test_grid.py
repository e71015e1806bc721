"""Experiment grids (lipopt.grid), their records and the tables rendered from them (lipopt.records)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lipopt import grid, records
from lipopt.errors import LipoptError
from tests import nets
from tests.paths import ROOT

NETS = ["random:2-6-1:seed=0", "random:2-4-4-1:seed=1"]
METHODS = ["naive", "sampling", "enumeration"]
SPEC = f"""
methods = {json.dumps(METHODS)}
time_limit = 30
grace = 10
seeds = [0]
networks = {json.dumps(NETS)}

[[questions]]
norm = "inf"
domain = "box:0,0.1"

[[questions]]
norm = "2"
domain = "global"

[executor]
kind = "local"
jobs = 2
"""


def _write(tmp: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


def _lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / grid.RECORDS_FILE).read_text().splitlines()]


@pytest.fixture(scope="module")
def small_grid(tmp_path_factory):
    """The 2 nets x 2 questions x 3 methods grid, stopped after 5 cells and resumed."""
    tmp = tmp_path_factory.mktemp("grid")
    spec = grid.load_spec(_write(tmp, SPEC))
    out = tmp / "out"
    first = grid.run(spec, out, quiet=True, max_cells=5)
    second = grid.run(spec, out, quiet=True)
    return spec, out, first, second


# ------------------------------------------------------------------------------------------ the spec


def test_issue_example_spec_parses(tmp_path):
    spec = grid.load_spec(_write(tmp_path, """
methods = ["milp", "naive", "sampling"]
time_limit = 60
seeds = [0]
networks = ["a_weights.npy", "b.onnx"]

[[questions]]
norm = "inf"
domain = "box:0,0.1"

[[questions]]
norm = "2"
domain = "global"
methods = ["miqcqp", "naive", "grad-ascent"]

[executor]
kind = "local"
jobs = 2
"""))
    assert [n.source for n in spec.networks] == [str(tmp_path / "a_weights.npy"), str(tmp_path / "b.onnx")]
    assert spec.executor == grid.ExecutorSpec("local", 2, None)
    assert spec.deadline == 60 + spec.grace
    cells = spec.cells()
    assert len(cells) == 2 * (3 + 3)
    assert {c.method for c in cells if c.question_index == 1} == {"miqcqp", "naive", "grad-ascent"}
    assert len({c.key for c in cells}) == len(cells)


@pytest.mark.parametrize("text, needle", [
    ('networks = ["random:2-2-1"]\nmethods = ["naive"]\ntime_limt = 3\n[[questions]]\nnorm = "2"\n',
     "'time_limt'; valid keys: "),
    ('networks = ["random:2-2-1"]\nmethods = ["naive"]\n[[questions]]\nnrom = "2"\n', "'nrom'"),
    ('networks = ["random:2-2-1"]\nmethods = ["naive"]\n[[questions]]\n[executor]\nkind = "slurm"\n',
     "supported: local, dask, ray"),
    ('networks = ["random:2-2-1"]\nmethods = ["naiv"]\n[[questions]]\n', "unknown method 'naiv'"),
    ('networks = ["random:2-x-1"]\nmethods = ["naive"]\n[[questions]]\n', "random:SIZES"),
])
def test_bad_spec_is_refused_with_the_valid_names(tmp_path, text, needle):
    with pytest.raises(grid.GridError, match=None) as exc:
        grid.load_spec(_write(tmp_path, text))
    assert needle in str(exc.value)
    if "valid keys" in needle:
        assert "time_limit" in str(exc.value) and "networks" in str(exc.value)


def test_random_networks_are_seeded_and_fingerprinted():
    a, b = grid.build_network(NETS[0]), grid.build_network(NETS[0])
    c = grid.build_network("random:2-6-1:seed=1")
    assert a.shapes == b.shapes and a.input_size == 2 and a.output_size == 1
    assert grid.fingerprint(a) == grid.fingerprint(b) != grid.fingerprint(c)


# ------------------------------------------------------------------------------------------ the grid


def test_interrupted_grid_resumes_to_one_record_per_cell(small_grid):
    spec, out, first, second = small_grid
    cells = spec.cells()
    assert len(cells) == 12
    assert first.done == 5 and first.remaining == 7
    assert second.skipped == 5 and second.done == 7 and second.remaining == 0
    recs = _lines(out)
    assert sorted(r["cell_key"] for r in recs) == sorted(c.key for c in cells)  # exactly one per cell
    again = grid.run(spec, out, quiet=True)  # nothing left to do
    assert again.done == 0 and again.skipped == 12 and len(_lines(out)) == 12
    for r in recs:
        assert r["verdict"] == "ok", r["message"]
        assert r["lipopt_version"] and r["solver_versions"]["highs"]
        assert r["machine"]["cpu_count"] == os.cpu_count()
        net = grid.build_network(r["network_source"])
        assert r["fingerprint"] == grid.fingerprint(net)
        assert r["network_size"]["n_relus"] == net.n_relus == sum(int(s) for s in r["network_name"][7:].split(
            ":")[0].split("-")[1:-1])
        assert r["run_options"]["seed"] == r["seed"] == 0 and r["run_options"]["time_limit"] == 30
        assert r["cell_wall_s"] >= r["wall_time"] > 0


def test_records_equal_direct_runs_and_bracket_each_other(small_grid):
    import lipopt

    _, out, _, _ = small_grid
    recs = _lines(out)
    for r in recs:
        qs = r["question_spec"]
        direct = lipopt.lipschitz(grid.build_network(r["network_source"]), r["method"], seed=0, time_limit=30,
                                  norm=qs["norm"], domain=qs["domain"])
        assert direct.kind.value == r["kind"]
        assert math.isclose(direct.value, r["value"], rel_tol=1e-9)
    by = {(r["network_name"], r["question_index"], r["method"]): r["value"] for r in recs}
    for net in NETS:
        for qi in (0, 1):  # sampled lower <= exact <= naive upper
            assert by[net, qi, "sampling"] <= by[net, qi, "enumeration"] * (1 + 1e-9)
            assert by[net, qi, "enumeration"] <= by[net, qi, "naive"] * (1 + 1e-9)


def test_force_reruns_and_load_keeps_one_record_per_cell(tmp_path):
    spec = grid.parse_spec({"networks": [NETS[0]], "methods": ["sampling"], "questions": [{"norm": "2"}],
                            "executor": {"start": "forkserver"}})
    out = tmp_path / "out"
    grid.run(spec, out, quiet=True)
    res = grid.run(spec, out, quiet=True, force=True)
    assert res.done == 1 and len(_lines(out)) == 2
    df = records.load(out)
    assert len(df) == 1 and df.iloc[0]["kind"] == "LOWER"
    longer = dataclasses.replace(spec, time_limit=50.0)  # run differently: not the same record
    assert grid.run(longer, out, quiet=True).done == 1 and grid.run(longer, out, quiet=True).done == 0
    df = records.load(out)
    assert len(df) == 1 and df.iloc[0]["record"]["run_options"]["time_limit"] == 50.0


# ------------------------------------------------------------------------------------------ failures


def _one_cell_spec(**kw):
    data = {"networks": [NETS[0]], "methods": ["sampling", "naive"], "questions": [{"norm": "2"}],
            "time_limit": 1, "grace": 3, **kw}
    return grid.parse_spec(data)


@pytest.mark.parametrize("hook, failure, stop, words, start", [
    ("exit=3@naive", "crash", "aborted", "exited with code 3", "subprocess"),
    ("kill@naive", "killed", "aborted", "SIGKILL", "subprocess"),
    ("sleep=60@naive", "timeout", "time_limit", "hard deadline of 4 s", "subprocess"),
    ("kill@naive", "killed", "aborted", "SIGKILL", "forkserver"),
    ("sleep=60@naive", "timeout", "time_limit", "hard deadline of 4 s", "forkserver"),
])
def test_crashing_or_hanging_cell_becomes_a_failed_record(tmp_path, monkeypatch, hook, failure, stop, words,
                                                          start):
    monkeypatch.setenv(grid.HOOK_ENV, hook)
    out = tmp_path / "out"
    t0 = time.perf_counter()
    res = grid.run(_one_cell_spec(executor={"start": start}), out, quiet=True)
    elapsed = time.perf_counter() - t0
    assert res.done == 2 and res.failed == 1  # the grid went on
    recs = {r["method"]: r for r in _lines(out)}
    bad, good = recs["naive"], recs["sampling"]
    assert bad["verdict"] == "error" and bad["stop"] == stop and bad["grid_failure"] == failure
    assert words in bad["message"]
    assert bad["value"] is None and bad["lower"] is None and bad["upper"] is None
    assert good["verdict"] == "ok" and good["kind"] == "LOWER" and good["value"] > 0
    if failure == "timeout":
        assert elapsed < 30  # killed at the deadline, not after the 60 s sleep
    text = records.table(out, fmt="csv")
    row = next(csv.DictReader(io.StringIO(text)))
    expected = "failed (time-out)" if failure == "timeout" else "failed"
    assert row["naive"] == expected  # a failed record shows no number
    assert row["sampling"].startswith(">= ")


def test_failed_cells_stay_in_their_question_row(tmp_path, monkeypatch):
    monkeypatch.setenv(grid.HOOK_ENV, "exit=3@naive")
    spec = grid.parse_spec({"networks": [NETS[0]], "methods": ["sampling", "naive"],
                            "questions": [{"norm": "inf", "domain": "box:0,0.1"}, {"norm": "2"}],
                            "executor": {"jobs": 2, "start": "forkserver"}})
    grid.run(spec, tmp_path / "out", quiet=True)
    rows = list(csv.DictReader(io.StringIO(records.table(tmp_path / "out", fmt="csv"))))
    assert len(rows) == 2  # one per question: the failed cells did not open rows of their own
    for row in rows:
        assert row["naive"] == "failed" and row["sampling"].startswith(">= ")
    assert "box [0, 0.1]^2" in rows[0]["network / question"]


def test_unreadable_network_file_fails_its_cells_only(tmp_path):
    (tmp_path / "bogus.npy").write_text("not a network")
    spec = grid.parse_spec({"networks": ["bogus.npy", NETS[0]], "methods": ["naive"],
                            "questions": [{"norm": "2"}], "executor": {"start": "forkserver"}}, tmp_path)
    res = grid.run(spec, tmp_path / "out", quiet=True)
    assert res.done == 2 and res.failed == 1
    recs = {r["network_name"]: r for r in _lines(tmp_path / "out")}
    assert recs["bogus"]["verdict"] == "error" and recs["bogus"]["value"] is None
    assert recs["bogus"]["message"]
    assert recs[NETS[0]]["verdict"] == "ok"


def test_ctrl_c_keeps_finished_records_and_resume_completes(tmp_path):
    spec_path = _write(tmp_path, "\n".join([
        f"networks = {json.dumps([NETS[0]])}", 'methods = ["sampling", "naive"]', "time_limit = 30",
        '[[questions]]', 'norm = "2"', "[executor]", "jobs = 1"]))
    out = tmp_path / "out"
    env = {**os.environ, grid.HOOK_ENV: "sleep=60@naive"}
    cmd = [sys.executable, "-m", "lipopt.cli", "grid", str(spec_path), "--out", str(out), "-q"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    path = out / grid.RECORDS_FILE
    deadline = time.time() + 40
    while time.time() < deadline and not (path.is_file() and path.read_text().strip()):
        time.sleep(0.1)
    time.sleep(0.5)  # the naive cell is now sleeping
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    recs = _lines(out)
    assert [r["method"] for r in recs] == ["sampling"]  # the killed cell left no record
    res = grid.run(grid.load_spec(spec_path), out, quiet=True)
    assert res.skipped == 1 and res.done == 1
    assert sorted(r["method"] for r in _lines(out)) == ["naive", "sampling"]


# ------------------------------------------------------------------------------------------ tables


def _parse_cell(text: str) -> tuple[str, float]:
    mark, _, number = text.partition(" ")
    return mark, float(number.split()[0])


def test_table_values_equal_the_records(small_grid):
    _, out, _, _ = small_grid
    recs = _lines(out)
    marks = {"EXACT": "=", "UPPER": "<=", "LOWER": ">="}
    table = list(csv.reader(io.StringIO(records.table(out, fmt="csv"))))
    header, body = table[0], table[1:]
    assert header[0] == "network / question" and sorted(header[1:]) == sorted(METHODS)
    assert len(body) == 4
    seen = 0
    for r in recs:
        desc = r["question"]["description"]
        row = next(b for b in body if b[0] == f"{r['network_name']} / {desc}")
        mark, value = _parse_cell(row[header.index(r["method"])])
        assert mark == marks[r["kind"]]
        assert math.isclose(value, r["value"], rel_tol=1e-5)
        seen += 1
    assert seen == 12
    ratio = list(csv.reader(io.StringIO(records.table(out, value="ratio", fmt="csv"))))
    for row in ratio[1:]:  # the reference is the best certified lower bound: enumeration's exact value
        assert _parse_cell(row[ratio[0].index("enumeration")]) == ("=", 1.0)
        assert _parse_cell(row[ratio[0].index("naive")])[1] >= 1.0


def test_table_formats(small_grid):
    _, out, _, _ = small_grid
    latex = records.table(out, fmt="latex")
    lines = latex.strip().splitlines()
    # network and question in their own wrapped columns (40 % of the line), then one per method
    assert lines[2] == r"\begin{tabular}{p{0.20\linewidth}p{0.20\linewidth}rrr}" and lines[-1] == r"\endgroup"
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert latex.count(rule) == 1
    rows = [ln for ln in lines if ln.endswith(r"\\")]
    assert len(rows) == 5 and all(ln.count("&") == 4 for ln in rows)
    assert r"$\ell_\infty\to\ell_\infty$" in latex and r"$^{2}$" in latex  # questions in paper notation
    framed = records.table(out, fmt="latex", caption="Exact vs bounds", label="tab:grid")
    assert r"\caption{Exact vs bounds}" in framed and r"\label{tab:grid}" in framed
    assert r"\textbf{" in latex and r"$\le$" in latex and r"$\ge$" in latex
    md = records.table(out, fmt="markdown", rows="network,question", cols="method")
    assert md.count("**") == 2 * 4  # the tightest certified upper bound of each row (the exact value)
    text = records.table(out, value="time")
    assert " s" in text
    with pytest.raises(LipoptError, match="available"):
        records.table(out, rows="nonsense")


def test_cli_grid_and_table(small_grid, capsys):
    from lipopt.cli import main

    spec, out, _, _ = small_grid
    assert main(["grid", spec.path, "--out", str(out), "--jobs", "1", "-q"]) == 0  # all recorded: no run
    assert main(["grid", spec.path, "--out", str(out), "--jobs", "0", "-q"]) == 2
    capsys.readouterr()
    assert main(["table", str(out), "--format", "markdown", "--value", "ratio"]) == 0
    shown = capsys.readouterr().out
    assert shown.startswith("| network / question |") and shown.count("\n") == 6


# ------------------------------------------------------------------------------------------ executors


def _same_records(a: Path, b: Path, n: int) -> None:
    ra = {r["cell_key"]: r for r in _lines(a)}
    rb = {r["cell_key"]: r for r in _lines(b)}
    assert len(rb) == n and rb.keys() <= ra.keys()
    for k in rb:
        assert (ra[k]["kind"], ra[k]["verdict"]) == (rb[k]["kind"], rb[k]["verdict"])
        assert math.isclose(ra[k]["value"], rb[k]["value"], rel_tol=1e-12)


def test_forkserver_start_gives_the_same_records(small_grid, tmp_path):
    spec, out, _, _ = small_grid
    fspec = dataclasses.replace(spec, networks=spec.networks[1:],
                                executor=grid.ExecutorSpec("local", 2, None, "forkserver"))
    res = grid.run(fspec, tmp_path / "fork", quiet=True)
    assert res.done == 6 and res.failed == 0
    _same_records(out, tmp_path / "fork", 6)


def test_dask_executor_gives_the_same_records(small_grid, tmp_path):
    distributed = pytest.importorskip("distributed")
    spec, out, _, _ = small_grid
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        dspec = dataclasses.replace(spec, networks=spec.networks[:1],  # half the grid: 6 cells
                                    executor=grid.ExecutorSpec("dask", 2, cluster.scheduler_address))
        res = grid.run(dspec, tmp_path / "dask", quiet=True)
    assert res.done == 6 and res.failed == 0
    _same_records(out, tmp_path / "dask", 6)


def test_ray_executor_gives_the_same_records(small_grid, tmp_path):
    ray = pytest.importorskip("ray")
    spec, out, _, _ = small_grid
    ray.init(num_cpus=2)
    try:
        rspec = dataclasses.replace(spec, executor=grid.ExecutorSpec("ray", 2, None))
        res = grid.run(rspec, tmp_path / "ray", quiet=True)
    finally:
        ray.shutdown()
    assert res.done == 12
    _same_records(out, tmp_path / "ray", 12)


def test_readme_example_spec_parses():
    import tomllib

    from lipopt.methods import check_method_options
    from lipopt.options import RunOptions

    text = (ROOT / "README.md").read_text()
    block = text.split("### Experiment grids", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    spec = grid.parse_spec(tomllib.loads(block), "/nonexistent")
    assert len(spec.cells()) == 2 * (3 + 3) * 2 and spec.solver == "highs"
    check_method_options(RunOptions(extra=spec.options))  # the method options are real names


@pytest.mark.parametrize("name", ["exact", "tightness"])
def test_shipped_grids_parse_and_name_existing_files(name):
    root = ROOT
    spec = grid.load_spec(root / "benchmarks" / "grids" / f"{name}.toml")
    files = [n for n in spec.networks if not n.is_random]
    if not Path(files[0].source).parent.parent.is_dir():
        pytest.skip("../shared/external-nets is not there")
    assert all(Path(n.source).is_file() for n in files)
    assert spec.time_limit == (600 if name == "exact" else 120) and len(spec.cells()) > 100


def test_bracket_plot_writes_png_and_pdf(small_grid, tmp_path):
    from lipopt.cli import main

    _, out, _, _ = small_grid
    paths = records.plot(out, kind="bracket", out=tmp_path / "fig")
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    assert paths[0].read_bytes().startswith(b"\x89PNG") and paths[1].read_bytes().startswith(b"%PDF")
    assert main(["plot", str(out), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli.png").stat().st_size > 1000
    for kind in ("ratio-vs-size", "time-vs-size"):
        png, pdf = records.plot(out, kind=kind, out=tmp_path / kind)
        assert png.stat().st_size > 1000 and pdf.read_bytes().startswith(b"%PDF")
    with pytest.raises(LipoptError, match="supported: bracket"):
        records.plot(out, kind="nonsense", out=tmp_path / "x")


def test_anytime_histories_and_plot(tmp_path):
    """bab and a one-MIP milp keep their certified bracket over time; the last row is the record's
    bracket, the uppers are valid (never below the exact value) and the plot is written."""
    from lipopt.methods import run_method
    from lipopt.network.network import Network
    from lipopt.options import RunOptions
    from lipopt.spec import make_question

    rng = np.random.default_rng(4)
    net = Network.from_weights([rng.standard_normal((8, 3)), rng.standard_normal((6, 8)),
                                rng.standard_normal((1, 6))], [rng.standard_normal(8), None, None])
    q = make_question("inf", domain="box:-1,1")
    exact = run_method("enumeration", net, q).value
    lines = []
    for m in ("bab", "milp"):
        r = run_method(m, net, q, RunOptions(time_limit=20))
        hist = r.stats["history"]
        assert hist[-1][1:] == [r.lower, r.upper]
        assert all(row[2] is None or row[2] >= exact * (1 - 1e-6) for row in hist)
        assert all(row[1] is None or row[1] <= exact * (1 + 1e-6) for row in hist)
        lines.append(json.dumps({**r.to_dict(), "network_name": "n", "cell_key": m}))
    (tmp_path / "records.jsonl").write_text("\n".join(lines) + "\n")
    png, pdf = records.plot(tmp_path, kind="anytime", out=tmp_path / "anytime")
    assert png.stat().st_size > 1000 and pdf.read_bytes().startswith(b"%PDF")
    ts, ups = records._steps([[0.0, None, 5.0], [1.0, None, 4.0], [2.0, 1.0, 4.5]], 2, min)
    assert ts == [0.0, 1.0, 2.0] and ups == [5.0, 4.0, 4.0]  # best so far


def test_time_beside_values_and_python_entry_points(small_grid):
    import lipopt

    _, out, _, _ = small_grid
    assert lipopt.grid.run is grid.run and lipopt.records.table is records.table
    df = records.load(out)
    rows = list(csv.DictReader(io.StringIO(records.table(df, fmt="csv", time=True))))
    first = df.iloc[0]
    cell = next(r for r in rows if r["network / question"].startswith(first["network"]))[first["method"]]
    assert cell.endswith(f"({first['method_time_s']:.3g} s)")


def test_forkserver_preload_modules_exist():
    import importlib.util

    from lipopt.methods import REGISTRY

    for name in grid.FORKSERVER_PRELOAD + [m.module for m in REGISTRY.values()]:
        assert importlib.util.find_spec(name) is not None, name  # a moved module would be skipped silently


def test_records_as_parquet(small_grid, tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    from lipopt.cli import main

    _, out, _, _ = small_grid
    assert main(["table", str(out), "--parquet", str(tmp_path / "r.parquet")]) == 0
    back = pd.read_parquet(tmp_path / "r.parquet")
    df = records.load(out)
    assert len(back) == len(df) and list(back["method"]) == list(df["method"])
    assert back["value"].equals(df["value"].astype(float)) or np.allclose(
        back["value"].astype(float), df["value"].astype(float), equal_nan=True)
    assert json.loads(back["record"][0])["method"] == df["record"][0]["method"]


def _pdflatex(body: str, tmp: Path) -> str:
    """Compile ``body`` in a one-column article with booktabs only; the log (asserts it compiled)."""
    doc = ("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + body
           + "\n\\end{document}\n")
    (tmp / "t.tex").write_text(doc)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp,
                         capture_output=True, text=True, timeout=120)
    log = (tmp / "t.log").read_text(errors="replace")
    assert run.returncode == 0 and (tmp / "t.pdf").exists(), log[-3000:]
    return log


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_latex_tables_compile_with_booktabs_and_fit_the_column(small_grid, tmp_path):
    """The grid's table and a compare table with caption and label compile with pdflatex and booktabs
    alone, without an overfull box in a one-column article."""
    from lipopt import compare

    _, out, _, _ = small_grid
    grid_table = records.table(out, fmt="latex")
    rs = compare(nets.random_mlp([2, 4, 1], seed=0), ["naive", "sampling", "enumeration"], norm="inf")
    body = grid_table + "\n\n" + rs.table("latex", caption="Bounds", label="tab:b")
    log = _pdflatex(body, tmp_path)
    assert "Overfull \\hbox" not in log, [ln for ln in log.splitlines() if "Overfull" in ln]
    assert "Undefined control sequence" not in log
