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
