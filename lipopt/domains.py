"""Norms and input domains: :class:`Norm` (l1, l2, l-inf), the domains :class:`Global` (all of R^n),
:class:`Box` [lo, hi] and :class:`Ball` (an l2 or l-inf ball around a nominal input), each owning its
membership test, clipping, sampling and bounding box, and :func:`parse_domain` (the CLI's and the grid
spec's ``global`` / ``box:LO,HI`` / ``ball:EPS[,NORM]``). Re-exported by :mod:`lipopt.spec`.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.errors import InvalidQuestionError


class Norm(enum.Enum):
    L1 = "1"
    L2 = "2"
    LINF = "inf"

    @property
    def p(self) -> float:
        return {"1": 1.0, "2": 2.0, "inf": math.inf}[self.value]

    @property
    def dual(self) -> Norm:
        return {Norm.L1: Norm.LINF, Norm.L2: Norm.L2, Norm.LINF: Norm.L1}[self]

    @property
    def label(self) -> str:
        return {"1": "l1", "2": "l2", "inf": "linf"}[self.value]

    def of(self, v: np.ndarray) -> float:
        """The norm of a vector."""
        return float(np.linalg.norm(np.ravel(v), ord=self.p))

    @classmethod
    def parse(cls, value: object) -> Norm:
        if isinstance(value, Norm):
            return value
        key = str(value).strip().lower().replace("-", "").replace("_", "")
        table = {"1": cls.L1, "1.0": cls.L1, "l1": cls.L1, "2": cls.L2, "2.0": cls.L2, "l2": cls.L2,
                 "inf": cls.LINF, "linf": cls.LINF, "infinity": cls.LINF, "max": cls.LINF}
        if key not in table:
            raise InvalidQuestionError(f"unknown norm {value!r}; supported: 1, 2, inf (also l1, l2, linf)")
        return table[key]


# ------------------------------------------------------------------------------------------ domains


@dataclass(frozen=True)
class Global:
    """All of R^n: the global Lipschitz constant."""

    kind: str = field(default="global", init=False)

    def describe(self) -> str:
        return "global"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "global"}

    def contains(self, x: np.ndarray, tol: float = 0.0) -> bool:
        return True

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float64).copy()

    def bounding_box(self) -> None:
        """None: R^n has no bounding box."""
        return None

    def sample(self, rng: np.random.Generator, n: int, dim: int, scale: float = 1.0) -> np.ndarray:
        """Where to look in R^n (a heuristic, the domain has no uniform distribution): half uniform in
        [-scale, scale]^dim, half at log-uniform radii in [scale, 1000 scale] in random directions."""
        n1 = (n + 1) // 2
        a = rng.uniform(-scale, scale, size=(n1, dim))
        dirs = unit_directions(rng, n - n1, dim, Norm.L2)
        radii = scale * 10.0 ** rng.uniform(0.0, 3.0, size=(n - n1, 1))
        return np.vstack([a, dirs * radii])


@dataclass(frozen=True, eq=False)
class Box:
    """The box lo <= x <= hi (scalars broadcast to the input size on ``bind``)."""

    lo: Any
    hi: Any
    kind: str = field(default="box", init=False)

    def __post_init__(self) -> None:
        lo = np.atleast_1d(np.asarray(self.lo, dtype=np.float64)).reshape(-1)
        hi = np.atleast_1d(np.asarray(self.hi, dtype=np.float64)).reshape(-1)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise InvalidQuestionError("box bounds must be finite numbers (use the global domain for R^n)")
        if lo.size != hi.size and lo.size != 1 and hi.size != 1:
            raise InvalidQuestionError(f"box bounds have different sizes: lo {lo.size}, hi {hi.size}")
        lo_b, hi_b = np.broadcast_arrays(lo, hi)
        if np.any(lo_b > hi_b):
            i = int(np.argmax(lo_b > hi_b))
            raise InvalidQuestionError(f"inverted box: lo[{i}] = {lo_b[i]} > hi[{i}] = {hi_b[i]}")
        if np.any(lo_b == hi_b):
            i = int(np.argmax(lo_b == hi_b))
            raise InvalidQuestionError(
                f"empty box: lo[{i}] = hi[{i}] = {lo_b[i]} (the box must have a non-empty interior)"
            )
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)

    def describe(self) -> str:
        lo, hi = np.unique(self.lo), np.unique(self.hi)
        if lo.size == 1 and hi.size == 1:
            return f"box [{lo[0]:g}, {hi[0]:g}]^{max(self.lo.size, self.hi.size)}"
        return f"box ({self.lo.size}-dim)"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "box", "lo": self.lo.tolist(), "hi": self.hi.tolist()}

    @property
    def center(self) -> np.ndarray:
        return (self.lo + self.hi) / 2

    def contains(self, x: np.ndarray, tol: float = 0.0) -> bool:
        """Exact membership by default (see :func:`lipopt.certify.witness.in_domain`)."""
        x = np.ravel(x)
        return bool(np.all(x >= self.lo - tol) and np.all(x <= self.hi + tol))

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(np.asarray(x, dtype=np.float64), self.lo, self.hi)

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.lo, self.hi

    def sample(self, rng: np.random.Generator, n: int, dim: int, scale: float = 1.0) -> np.ndarray:
        """n points uniform in the box (``scale`` is unused: the box is bounded)."""
        return rng.uniform(self.lo, self.hi, size=(n, dim))


@dataclass(frozen=True, eq=False)
class Ball:
    """The ball |x - center|_norm <= radius (norm 2 or inf)."""

    center: Any
    radius: float
    norm: Norm = Norm.LINF
    kind: str = field(default="ball", init=False)

    def __post_init__(self) -> None:
        c = np.asarray(self.center, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(c)):
            raise InvalidQuestionError("ball centre must be finite")
        r = float(self.radius)
        if not math.isfinite(r) or r <= 0:
            raise InvalidQuestionError(f"ball radius must be a positive finite number, got {self.radius!r}")
        norm = Norm.parse(self.norm)
        if norm is Norm.L1:
            raise InvalidQuestionError("l1 balls are not supported as domains; use an l2 or l-inf ball")
        object.__setattr__(self, "center", c)
        object.__setattr__(self, "radius", r)
        object.__setattr__(self, "norm", norm)

    def describe(self) -> str:
        return f"{self.norm.label} ball r={self.radius:g}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "ball", "center": self.center.tolist(), "radius": self.radius,
                "norm": self.norm.value}

    def box(self) -> Box:
        """The smallest box containing the ball."""
        return Box(self.center - self.radius, self.center + self.radius)

    def contains(self, x: np.ndarray, tol: float = 0.0) -> bool:
        """Exact membership by default (see :func:`lipopt.certify.witness.in_domain`)."""
        return self.norm.of(np.ravel(x) - self.center) <= self.radius + tol

    def clip(self, x: np.ndarray) -> np.ndarray:
        """The projection (l-inf) or radial scaling (l2) of x into the ball, stepped inside past the
        rounding of ``center + d`` so that :meth:`contains` holds exactly."""
        x = np.asarray(x, dtype=np.float64)
        c, r = self.center, self.radius
        d = x.reshape(-1) - c
        if self.norm is Norm.LINF:
            y = c + np.clip(d, -r, r)
            for _ in range(8):  # rounding of c + d can leave |y - c| a few ulps above r: step inward
                out = np.abs(y - c) > r
                if not out.any():
                    break
                y[out] = np.nextafter(y[out], c[out])
            return y.reshape(x.shape)
        n = float(np.linalg.norm(d))
        if n <= r:
            return x.copy()
        shrink = 1.0
        y = c + d * (r / n)
        while np.linalg.norm(y - c) > r:  # the same for the l2 ball, shrinking the step
            shrink *= 1 - 4 * np.finfo(np.float64).eps
            y = c + d * (shrink * r / n)
        return y.reshape(x.shape)

    def bounding_box(self) -> tuple[np.ndarray, np.ndarray]:
        return self.center - self.radius, self.center + self.radius

    def sample(self, rng: np.random.Generator, n: int, dim: int, scale: float = 1.0) -> np.ndarray:
        """n points uniform in the ball (``scale`` is unused)."""
        if self.norm is Norm.LINF:
            return self.center + rng.uniform(-self.radius, self.radius, size=(n, dim))
        return self.center + uniform_ball(rng, n, dim) * self.radius


def unit_directions(rng: np.random.Generator, n: int, dim: int, norm: Norm) -> np.ndarray:
    """n random directions of unit ``norm`` (l2: uniform on the sphere; l-inf: on the cube's faces)."""
    if norm is Norm.LINF:
        t = rng.uniform(-1.0, 1.0, size=(n, dim))
        return t / np.maximum(np.max(np.abs(t), axis=1, keepdims=True), 1e-300)
    t = rng.normal(size=(n, dim))
    return t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-300)


def uniform_ball(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    """n points uniform in the unit l2 ball."""
    return unit_directions(rng, n, dim, Norm.L2) * rng.uniform(size=(n, 1)) ** (1.0 / dim)


Domain = Global | Box | Ball


def parse_domain(domain: object, center: Any = None) -> Domain:
    if isinstance(domain, Global | Box | Ball):
        return domain
    if isinstance(domain, tuple) and len(domain) == 2:
        return Box(domain[0], domain[1])
    if not isinstance(domain, str):
        raise InvalidQuestionError(f"cannot read domain {domain!r}")
    s = domain.strip().lower()
    if s in ("global", "r^n", "rn"):
        return Global()
    head, _, rest = s.partition(":")
    try:
        if head == "box":
            lo, hi = (float(v) for v in rest.split(","))
            return Box(lo, hi)
        if head in ("ball", "ballinf", "balllinf", "ball2", "balll2"):
            if center is None:
                raise InvalidQuestionError("a ball domain needs a centre (the nominal input x0)")
            norm = Norm.L2 if head in ("ball2", "balll2") else Norm.LINF
            if "," in rest:
                eps, nstr = rest.split(",")
                norm = Norm.parse(nstr)
                rest = eps
            return Ball(center, float(rest), norm)
    except ValueError as exc:
        if isinstance(exc, InvalidQuestionError):
            raise
        raise InvalidQuestionError(f"cannot read domain {domain!r}: {exc}") from None
    raise InvalidQuestionError(
        f"unknown domain {domain!r}; supported: global, box:LO,HI, ball:EPS[,NORM] (with a centre)"
    )
