"""Linear regions of a fixed activation pattern: an interior point and the certified Jacobian norm there.

For a pattern s (ReLU states per ReLU stage, and optionally the max-pool winners), the closed region
R_s is the polyhedron {x : (2 s_i - 1) z_i(x) >= 0}, on which f is affine with Jacobian J_s. If R_s
intersected with the domain has an interior point x*, the real Jacobian of the network at x* is J_s and
||J_s|| is a certified lower bound on the Lipschitz constant (formulations.md, Fact A). This module
finds such a point by the margin LP of formulations.md section 6 (rows normalised, so t is a geometric
margin) and re-evaluates the Jacobian there in float64. It is how a MIP incumbent, which usually sits on
region boundaries, becomes a certified LOWER bound.

The mathematics as implemented: ``docs/methods.md#regions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lipopt.certify.witness import PointWitness, point_witness
from lipopt.network.network import Network, stage_forward
from lipopt.network.stages import AffineStage, MaxPoolStage, activation_slopes, is_activation
from lipopt.spec import Question

#: geometric margin below which a region is treated as having no interior
INTERIOR_TOL = 1e-9


@dataclass
class RegionWitness:
    x: np.ndarray
    margin: float  # margin of x in unit-domain coordinates (distance to the nearest region / domain face)
    witness: PointWitness  # float64 re-evaluation at x

    @property
    def value(self) -> float:
        return self.witness.value

    @property
    def certified(self) -> bool:
        return self.margin > INTERIOR_TOL and self.witness.certified


def region_constraints(
    network: Network, relu_states: Sequence[np.ndarray], pool_winners: Sequence[np.ndarray] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Rows (G, h) with the region {x : G x + h >= 0}; None if a degenerate row makes it empty.

    ``relu_states[k]`` are the booleans of the k-th activation (ReLU / LeakyReLU) stage;
    ``pool_winners[k]`` the flat input index of the winner of each window of the k-th max-pool stage."""
    n0 = network.input_size
    m = np.eye(n0)
    c = np.zeros(n0)
    rows: list[np.ndarray] = []
    offs: list[np.ndarray] = []
    k_relu = k_pool = 0
    for s in network.lower():
        if isinstance(s, AffineStage):
            w = s.weight
            m = np.asarray(w @ m)  # type: ignore[operator]
            c = np.asarray(w @ c).reshape(-1) + s.bias  # type: ignore[operator]
        elif is_activation(s):  # ReLU / LeakyReLU: slope 1 where active, alpha where not
            st = np.asarray(relu_states[k_relu], dtype=bool).reshape(-1)
            k_relu += 1
            sign = np.where(st, 1.0, -1.0)
            rows.append(sign[:, None] * m)
            offs.append(sign * c)
            slope = activation_slopes(s, st)
            m = m * slope[:, None]
            c = c * slope
        else:
            assert isinstance(s, MaxPoolStage)
            if pool_winners is None:
                raise ValueError("the network has max-pool layers: pool_winners are required")
            win = np.asarray(pool_winners[k_pool]).reshape(-1)
            k_pool += 1
            for j in range(s.out_size):
                others = [i for i in s.windows[j] if i >= 0 and i != win[j]]
                if others:
                    rows.append(m[win[j]][None, :] - m[others])
                    offs.append(c[win[j]] - c[others])
            m = m[win]
            c = c[win]
    if not rows:
        return np.zeros((0, n0)), np.zeros(0)
    g = np.vstack(rows)
    h = np.concatenate(offs)
    norms = np.linalg.norm(g, axis=1)
    zero = norms <= 1e-14 * max(1.0, float(np.max(norms)))
    if np.any(zero & (h < 0)):
        return None  # a degenerate row with the wrong sign: the pattern's region is empty
    return g[~zero], h[~zero]


def interior_point(network: Network, question: Question, relu_states: Sequence[np.ndarray],
                   pool_winners: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, float] | None:
    """Maximise the geometric margin t over the region intersected with the domain (t <= 1).

    The margin problem is the one region enumeration solves (:mod:`lipopt.exact.interior`): the domain
    is mapped to a unit box / ball (an l2 ball is an SOCP), rows are normalised, and the returned margin
    is recomputed in float64 at the solver's point. Returns (x*, margin) or None if the pattern's region
    is empty because of a degenerate row."""
    from lipopt.exact.interior import solve_margin, unit_domain

    cons = region_constraints(network, relu_states, pool_winners)
    if cons is None:
        return None
    g, h = cons
    dom = unit_domain(question, network.input_size)
    # x = xc + d * y:  g x + h = (g * d) y + (g xc + h), then rows normalised in y-coordinates
    gy = g * dom.d[None, :]
    hy = g @ dom.xc + h
    norms = np.linalg.norm(gy, axis=1)
    sol = solve_margin(gy / norms[:, None], hy / norms, dom)
    return dom.to_x(sol.y), sol.margin


def certify_pattern(network: Network, question: Question, relu_states: Sequence[np.ndarray],
                    pool_winners: Sequence[np.ndarray] | None = None) -> RegionWitness | None:
    """Interior point of the pattern's region in the domain and the real Jacobian norm there, or None
    if the region has no interior inside the domain (then the pattern certifies nothing)."""
    found = interior_point(network, question, relu_states, pool_winners)
    if found is None:
        return None
    x, t = found
    if t <= INTERIOR_TOL:
        return None
    return RegionWitness(x, t, point_witness(network, x, question))


def pattern_at(network: Network, x: np.ndarray) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Activation states (z > 0) and max-pool winners at x, from the lowered stages."""
    stages = network.lower()
    _, states = stage_forward(stages, np.asarray(x, dtype=np.float64).reshape(1, -1))
    relu = [st[0] for s, st in zip(stages, states, strict=True) if is_activation(s)]
    pools = [st[0] for s, st in zip(stages, states, strict=True) if isinstance(s, MaxPoolStage)]
    return relu, pools
