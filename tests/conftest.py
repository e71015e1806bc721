"""Fixtures shared by the test modules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

#: formulations.md's T3 (2-2-1, no biases): global l2 constant sqrt(5), l-inf input constant 3
T3 = [np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([[1.0, -1.0]])]


@pytest.fixture()
def t3_file(tmp_path: Path) -> Path:
    """T3 saved in ECLipsE's layout (w1, w2 as out x in, no biases)."""
    p = tmp_path / "t3.npz"
    np.savez(p, w1=T3[0], w2=T3[1])
    return p
