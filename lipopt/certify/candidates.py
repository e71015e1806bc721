"""Incumbents of a MIP as certified LOWER bounds (formulations.md, Fact A).

Each incumbent is a :class:`Candidate`: its ReLU pattern and max-pool winners read from the binaries, and
its input x. The pattern's region is handed to :func:`lipopt.certify.regions.certify_pattern`, which finds
an interior point of the region inside the domain; the network's real float64 Jacobian norm there is a
certified lower bound. If the region has no interior (a degenerate pattern: T4, where the MIP optimum 2
lives only at x = 0), the incumbent x itself and a few points around it are re-evaluated
(:func:`lipopt.certify.witness.point_witness`); any of them strictly inside a linear region of the domain
certifies its own Jacobian norm. :func:`certify_candidates` returns the best certificate and the notes.

The mathematics as implemented: ``docs/methods.md#candidates``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.network.network import Network
from lipopt.spec import Question

__all__ = ["Candidate", "CandidateReport", "LowerCertificate", "certify_candidates"]


@dataclass
class Candidate:
    """One incumbent of a MIP: its activation pattern and input point (either may be missing).

    ``relu_states[k]``: booleans of the k-th ReLU stage of ``network.lower()`` (True = active, the
    binary a = 1; stable neurons filled in from the bounds). ``pool_winners[k]``: flat input index of the
    selected winner of each window of the k-th max-pool stage. ``objective``: the solver's objective value
    of this incumbent (used for the consistency check only, never as a bound)."""

    relu_states: list[np.ndarray] | None = None
    pool_winners: list[np.ndarray] | None = None
    x: np.ndarray | None = None
    objective: float | None = None
    label: str = ""


@dataclass
class LowerCertificate:
    value: float
    x: np.ndarray
    source: str  # "region interior" | "incumbent point" | "near incumbent"
    margin: float
    candidate: int
    label: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"x": self.x.tolist(), "value": self.value, "source": self.source, "margin": self.margin,
                "candidate": self.label or self.candidate}


@dataclass
class CandidateReport:
    best: LowerCertificate | None
    notes: list[str] = field(default_factory=list)
    degenerate: list[int] = field(default_factory=list)  # candidates whose region has no interior
    region_values: dict[int, float] = field(default_factory=dict)  # candidate -> certified ||J_s||


def _probe_points(x: np.ndarray, question: Question, n: int, radius: float, seed: int) -> list[np.ndarray]:
    from lipopt.certify.witness import clip_to_domain

    rng = np.random.default_rng(seed)
    scale = radius * max(1.0, float(np.max(np.abs(x))) if x.size else 1.0)
    return [clip_to_domain(x + scale * rng.uniform(-1, 1, size=x.shape), question) for _ in range(n)]


def certify_candidates(
    network: Network,
    question: Question,
    candidates: Sequence[Candidate],
    *,
    n_probe: int = 24,
    probe_radius: float = 1e-5,
    seed: int = 0,
) -> CandidateReport:
    """The best certified lower bound obtainable from the candidates (see the module docstring).

    ``question`` must be bound to the network and have the domain in which witnesses are valid (for a
    bias-free global question the box [-1, 1]^n may be passed: a witness there is valid globally)."""
    from lipopt.certify.regions import certify_pattern
    from lipopt.certify.witness import point_witness

    rep = CandidateReport(None)

    def offer(value: float, x: np.ndarray, source: str, margin: float, i: int, label: str) -> None:
        if rep.best is None or value > rep.best.value:
            rep.best = LowerCertificate(float(value), np.asarray(x, dtype=np.float64), source, float(margin),
                                        i, label)

    for i, cand in enumerate(candidates):
        name = cand.label or f"incumbent {i}"
        region_ok = False
        if cand.relu_states is not None:
            try:
                rw = certify_pattern(network, question, cand.relu_states, cand.pool_winners)
            except Exception as exc:  # a failing LP certifies nothing; say so
                rw = None
                rep.notes.append(f"{name}: region LP failed ({type(exc).__name__}: {exc})")
            if rw is not None and rw.certified:
                region_ok = True
                rep.region_values[i] = rw.value
                offer(rw.value, rw.x, "region interior", rw.margin, i, cand.label)
            else:
                rep.degenerate.append(i)
                rep.notes.append(
                    f"{name}: the incumbent's activation pattern has no interior in the domain (a "
                    "degenerate or boundary-only pattern), so it certifies no lower bound by itself"
                )
        if not region_ok and cand.x is not None:
            x0 = np.asarray(cand.x, dtype=np.float64).reshape(-1)
            found = False
            pw = point_witness(network, x0, question)
            if pw.certified:
                found = True
                offer(pw.value, x0, "incumbent point", pw.margin, i, cand.label)
            else:  # on a region boundary: the regions around it (one of them carries the MIP value)
                for p in _probe_points(x0, question, n_probe, probe_radius, seed + i):
                    pw = point_witness(network, p, question)
                    if pw.certified:
                        found = True
                        offer(pw.value, p, "near incumbent", pw.margin, i, cand.label)
            if not found:
                rep.notes.append(f"{name}: no point at or near the incumbent lies inside a linear region")
    return rep
