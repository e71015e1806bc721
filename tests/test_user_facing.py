"""Regression tests for what a user sees (issue 16): version, batch-dimension input shapes, method="auto",
exact-method notes in compare, and the question's parts as CSV / DataFrame columns."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import lipopt
import lipopt.cli

ROOT = Path(__file__).resolve().parent.parent


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
