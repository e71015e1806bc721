"""The documented location of the external networks (``lipopt.locations``): ``external:`` paths in
``lipopt.load``, the CLI and grid files, ``$LIPOPT_EXTERNAL_NETS``, and a clear error when missing; and the
benchmarks' shared helpers (names by spaces or commas, results under benchmarks/results/)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.locations import ENV, external_nets, resolve
from tests import nets
from tests.paths import ROOT


def _folder_with_a_net(tmp_path: Path) -> tuple[Path, lipopt.Network]:
    net = nets.random_mlp([3, 5, 2], seed=1)
    (tmp_path / "mine").mkdir()
    ws = [w for w, _ in net.affine_relu_weights()]
    bs = [b for _, b in net.affine_relu_weights()]
    np.savez(tmp_path / "mine" / "net.npz", **{f"w{i + 1}": w for i, w in enumerate(ws)})
    return tmp_path, lipopt.Network.from_weights(ws, [np.zeros_like(b) for b in bs])


def test_external_prefix_reads_from_the_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, expected = _folder_with_a_net(tmp_path)
    monkeypatch.setenv(ENV, str(folder))
    assert external_nets() == folder and resolve("external:mine/net.npz") == folder / "mine" / "net.npz"
    assert resolve("plain/path.npz") == Path("plain/path.npz")
    net = lipopt.load("external:mine/net.npz")
    x = np.random.default_rng(0).normal(size=(4, 3))
    np.testing.assert_allclose(net.forward(x), expected.forward(x), rtol=1e-12)


def test_missing_folder_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV, str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match=ENV):
        lipopt.load("external:lipsdp/random_weights.mat")
    with pytest.raises(FileNotFoundError, match="set LIPOPT_EXTERNAL_NETS"):
        external_nets(required=True)
    assert not external_nets().is_dir()  # not required: the path, for callers that skip


def test_default_is_the_shared_folder_beside_the_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV, raising=False)
    default = ROOT.parent / "shared" / "external-nets"
    if default.is_dir():
        assert external_nets() == default


def test_cli_and_grid_files_take_external_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lipopt.grid_spec import parse_spec

    folder, _ = _folder_with_a_net(tmp_path)
    monkeypatch.setenv(ENV, str(folder))
    spec = parse_spec({"networks": ["external:mine/net.npz"], "questions": [{"norm": "inf"}],
                       "methods": ["naive"]}, tmp_path / "elsewhere", "inline")
    assert Path(spec.networks[0].source) == (folder / "mine" / "net.npz").resolve()
    run = subprocess.run([sys.executable, "-m", "lipopt", "compute", "external:mine/net.npz", "--norm", "inf",
                          "--methods", "naive"], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                         env={**os.environ, ENV: str(folder)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "naive" in run.stdout


def test_benchmark_helpers(tmp_path: Path) -> None:
    from benchmarks import split_names, write_result

    assert split_names(["lenet", "cifar10"]) == split_names(["lenet,cifar10"]) == ["lenet", "cifar10"]
    assert split_names("a, b,,c") == ["a", "b", "c"] and split_names(None) == []
    p = write_result("x.md", "table", tmp_path / "res")
    assert p.read_text() == "table\n"


def test_bench_analytic_takes_nets_separated_by_spaces() -> None:
    from tests.paths import benchmark_module

    mod = benchmark_module("bench_analytic")
    with pytest.raises(SystemExit):
        mod.main(["--nets", "lenet", "nosuchnet", "--no-local"])
