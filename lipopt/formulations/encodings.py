"""The big-M encodings of one neuron, written once and shared by the MILP (:mod:`.common`) and the
MIQCQP (:mod:`.miqcqp`) models (formulations.md 2.2; the LeakyReLU rows are derived in
``docs/methods.md``).

* :func:`activation_rows` - ``h = max(z, alpha z)`` (ReLU: alpha = 0) for an ambiguous neuron,
  ``z in [l, u]`` with ``l < 0 < u`` and the binary ``d = 1[z >= 0]``::

      h >= z,   h >= alpha z,   h <= alpha z + (1 - alpha) u d,   h <= z - (1 - alpha) l (1 - d).

  d = 1 forces h = z >= 0 and d = 0 forces h = alpha z, z <= 0: the closed activation regions. For
  alpha = 0, ``h >= 0`` is the variable's bound and the rows are the classic four.
* :func:`margin_rows` - the epsilon margin of the MIQCQP lower-bound problem: ``z >= eps d + l (1 - d)``
  and ``z <= u d - eps (1 - d)``.
* :func:`switch_rows` - ``hat = d y`` for ``y in [lam, mu]`` (four rows with the bounds of y as big-M):
  the backward (gradient) and forward-mode (direction) passes through a neuron or a max-pool selector.
* :func:`slope_form` - the derivative through an activation with slope ``alpha + (1 - alpha) d``:
  ``alpha y + (1 - alpha) hat``.

``rows`` is a :class:`lipopt.formulations.forms.Rows`; every row is keyed by ``key`` and its role, so a
written model's row says which neuron and which inequality it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lipopt.formulations.forms import Form, combine


def activation_rows(rows: Any, key: tuple, h: Any, z: Any, d: Any, lo: float, hi: float,
                    alpha: float = 0.0) -> int:
    """``h = max(z, alpha z)`` for ``z in [lo, hi]``, ``lo < 0 < hi``, with the binary ``d`` (see the module
    docstring). ``h`` and ``z`` are Pyomo variables or expressions. Returns the number of rows."""
    a = float(alpha)
    rows.add(h >= z, *key, "ge_z")
    n = 1
    if a != 0.0:
        rows.add(h >= a * z, *key, "ge_az")
        n += 1
    rows.add((h <= float(hi) * d) if a == 0.0 else (h <= a * z + (1.0 - a) * float(hi) * d), *key, "le_ua")
    rows.add(h <= z - (1.0 - a) * float(lo) * (1 - d), *key, "le_z_la")
    return n + 2


def activation_output_bounds(lo: np.ndarray, hi: np.ndarray, alpha: float = 0.0
                             ) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``max(z, alpha z)`` for ``z in [lo, hi]`` (the function is increasing)."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    return np.where(lo > 0, lo, alpha * lo), np.where(hi > 0, hi, alpha * hi)


def margin_rows(rows: Any, key: tuple, z: Any, d: Any, lo: float, hi: float, eps: float) -> int:
    """The margin ``(2 d - 1) z >= eps`` of an ambiguous neuron by big-M with ``z in [lo, hi]``."""
    rows.add(z >= float(eps) * d + float(lo) * (1 - d), *key, "margin_on")
    rows.add(z <= float(hi) * d - float(eps) * (1 - d), *key, "margin_off")
    return 2


def switch_rows(rows: Any, key: tuple, hat: Any, y: Any, d: Any, lam: float, mu: float) -> int:
    """``hat = d * y`` for ``y in [lam, mu]`` and ``d in {0, 1}``: four big-M rows (formulations.md 2.2).
    ``y`` is a Pyomo variable or expression."""
    lb, mb = min(float(lam), 0.0), max(float(mu), 0.0)
    rows.add(hat <= y - lb * (1 - d), *key, "le_y")
    rows.add(hat >= y - mb * (1 - d), *key, "ge_y")
    rows.add(hat >= lb * d, *key, "ge_la")
    rows.add(hat <= mb * d, *key, "le_ma")
    return 4


def switch_bounds(lam: np.ndarray, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of ``d * y`` for ``y in [lam, mu]``, ``d in {0, 1}``."""
    return np.minimum(lam, 0.0), np.maximum(mu, 0.0)


def slope_form(y: Form, hat: Form, alpha: float) -> Form:
    """``alpha y + (1 - alpha) hat``: the derivative through an activation whose slope is
    ``alpha + (1 - alpha) d`` (``hat = d y``); ``hat`` itself for ReLU."""
    if alpha == 0.0:
        return hat
    return combine([y, hat], np.array([float(alpha), 1.0 - float(alpha)]))
