"""The question: which Lipschitz constant of which map, in which norms, over which domain.

A :class:`Question` fixes
* the norm pair: input norm p and output norm q (1, 2 or inf each);
* the domain: :class:`Global` (all of R^n), :class:`Box` [lo, hi], or :class:`Ball` (l2 or l-inf ball of
  radius eps around a nominal input x0);
* the constant: the pairwise constant over the domain (global or local), or the *nominal-point*
  constant sup_{x in ball} |f(x) - f(x0)| / |x - x0| (formulations.md, section 0), which is smaller;
* the output: all outputs, one logit, a margin f_i - f_j, or a direction c (the scalar map c^T f).

``Question.bind(network)`` validates it against a network and broadcasts the domain to the input size.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field, replace
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


# ------------------------------------------------------------------------------------------ outputs


@dataclass(frozen=True)
class AllOutputs:
    kind: str = field(default="all", init=False)

    def describe(self) -> str:
        return "all outputs"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "all"}


@dataclass(frozen=True)
class Logit:
    index: int
    kind: str = field(default="logit", init=False)

    def describe(self) -> str:
        return f"logit {self.index}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "logit", "index": self.index}


@dataclass(frozen=True)
class Margin:
    """f_i - f_j."""

    i: int
    j: int
    kind: str = field(default="margin", init=False)

    def __post_init__(self) -> None:
        if self.i == self.j:
            raise InvalidQuestionError(f"margin f_i - f_j needs two different outputs (i and j must differ), "
                                       f"got i = j = {self.i}")

    def describe(self) -> str:
        return f"margin f{self.i}-f{self.j}"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "margin", "i": self.i, "j": self.j}


@dataclass(frozen=True, eq=False)
class Direction:
    """The scalar map c^T f."""

    c: Any
    kind: str = field(default="vector", init=False)

    def __post_init__(self) -> None:
        c = np.asarray(self.c, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(c)) or not np.any(c):
            raise InvalidQuestionError("output vector c must be finite and non-zero")
        object.__setattr__(self, "c", c)

    def describe(self) -> str:
        return f"c^T f (c in R^{self.c.size})"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "vector", "c": self.c.tolist()}


Output = AllOutputs | Logit | Margin | Direction


# ------------------------------------------------------------------------------------------ question


@dataclass(frozen=True, eq=False)
class Question:
    input_norm: Norm = Norm.L2
    output_norm: Norm = Norm.L2
    domain: Domain = field(default_factory=Global)
    output: Output = field(default_factory=AllOutputs)
    nominal: bool = False  # nominal-point constant around the ball centre (Avant & Morgansen)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_norm", Norm.parse(self.input_norm))
        object.__setattr__(self, "output_norm", Norm.parse(self.output_norm))
        if self.nominal and not isinstance(self.domain, Ball):
            raise InvalidQuestionError(
                "the nominal-point constant needs a ball domain around the nominal input x0"
            )

    # -- derived ---------------------------------------------------------------------------------
    @property
    def constant(self) -> str:
        """'global', 'local' (pairwise over the domain) or 'nominal'."""
        if self.nominal:
            return "nominal"
        return "global" if isinstance(self.domain, Global) else "local"

    @property
    def scalar_output(self) -> bool:
        return not isinstance(self.output, AllOutputs)

    def output_vector(self, n_out: int) -> np.ndarray | None:
        """c such that the question is about c^T f, or None for all outputs."""
        out = self.output
        if isinstance(out, AllOutputs):
            return None
        c = np.zeros(n_out)
        if isinstance(out, Logit):
            c[out.index] = 1.0
        elif isinstance(out, Margin):
            c[out.i], c[out.j] = 1.0, -1.0
        else:
            c = out.c.copy()
        return c

    def norm_label(self) -> str:
        if self.scalar_output:
            return f"{self.input_norm.label}->|.|"
        return f"{self.input_norm.label}->{self.output_norm.label}"

    def describe(self) -> str:
        return f"{self.norm_label()}, {self.domain.describe()}, {self.output.describe()}, {self.constant}"

    def with_(self, **changes: Any) -> Question:
        return replace(self, **changes)

    # -- validation ------------------------------------------------------------------------------
    def bind(self, network: Any) -> Question:
        """Check the question against a network and broadcast the domain to its input size."""
        n_in, n_out = network.input_size, network.output_size
        dom = self.domain
        if isinstance(dom, Box):
            lo, hi = dom.lo, dom.hi
            for name, arr in (("lo", lo), ("hi", hi)):
                if arr.size not in (1, n_in):
                    raise InvalidQuestionError(
                        f"box {name} has {arr.size} entries but the network has {n_in} inputs"
                    )
            dom = Box(np.broadcast_to(lo, (n_in,)).copy(), np.broadcast_to(hi, (n_in,)).copy())
        elif isinstance(dom, Ball):
            if dom.center.size != n_in:
                raise InvalidQuestionError(
                    f"ball centre has {dom.center.size} entries but the network has {n_in} inputs"
                )
        out = self.output
        if isinstance(out, Logit) and not 0 <= out.index < n_out:
            raise InvalidQuestionError(f"logit {out.index} out of range: the network has {n_out} outputs")
        if isinstance(out, Margin) and not (0 <= out.i < n_out and 0 <= out.j < n_out):
            raise InvalidQuestionError(f"margin ({out.i}, {out.j}) out of range: {n_out} outputs")
        if isinstance(out, Direction) and out.c.size != n_out:
            raise InvalidQuestionError(f"output vector has {out.c.size} entries, the network {n_out} outputs")
        return replace(self, domain=dom)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "input_norm": self.input_norm.value,
            "output_norm": self.output_norm.value,
            "domain": self.domain.to_dict(),
            "output": self.output.to_dict(),
            "nominal": self.nominal,
            "constant": self.constant,
            "description": self.describe(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Question:
        dd = d["domain"]
        if dd["kind"] == "global":
            dom: Domain = Global()
        elif dd["kind"] == "box":
            dom = Box(dd["lo"], dd["hi"])
        else:
            dom = Ball(dd["center"], dd["radius"], Norm.parse(dd["norm"]))
        od = d["output"]
        out: Output
        if od["kind"] == "all":
            out = AllOutputs()
        elif od["kind"] == "logit":
            out = Logit(int(od["index"]))
        elif od["kind"] == "margin":
            out = Margin(int(od["i"]), int(od["j"]))
        else:
            out = Direction(od["c"])
        return cls(Norm.parse(d["input_norm"]), Norm.parse(d["output_norm"]), dom, out, bool(d["nominal"]))


def make_question(
    norm: object = 2,
    *,
    input_norm: object | None = None,
    output_norm: object | None = None,
    domain: object = "global",
    output: object = "all",
    nominal: bool = False,
    center: Any = None,
) -> Question:
    """Build a Question from friendly values.

    norm: sets both norms unless input_norm / output_norm are given.
    domain: "global", a Domain, "box:LO,HI", (lo, hi), or "ball:EPS" / "ball2:EPS" (needs ``center``).
    output: "all", an int (one logit), (i, j) (margin), a vector c, an Output, or
    "logit:I" / "margin:I,J" / "vector:c1,c2,...".
    """
    p_in = Norm.parse(input_norm if input_norm is not None else norm)
    p_out = Norm.parse(output_norm if output_norm is not None else norm)
    return Question(p_in, p_out, parse_domain(domain, center), parse_output(output), nominal)


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


def parse_output(output: object) -> Output:
    if isinstance(output, AllOutputs | Logit | Margin | Direction):
        return output
    if output is None:
        return AllOutputs()
    if isinstance(output, int | np.integer):
        return Logit(int(output))
    if isinstance(output, tuple) and len(output) == 2:
        return Margin(int(output[0]), int(output[1]))
    if isinstance(output, list | np.ndarray):
        return Direction(output)
    if isinstance(output, str):
        s = output.strip().lower()
        if s == "all":
            return AllOutputs()
        head, _, rest = s.partition(":")
        try:
            if head == "logit":
                return Logit(int(rest))
            if head == "margin":
                i, j = (int(v) for v in rest.split(","))
                return Margin(i, j)
            if head in ("vector", "c"):
                return Direction([float(v) for v in rest.split(",")])
        except InvalidQuestionError:
            raise  # a well-formed output that is invalid (margin:0,0): its own message
        except ValueError:
            pass
    raise InvalidQuestionError(
        f"unknown output {output!r}; supported: all, logit:I, margin:I,J, vector:c1,...,cm"
    )
