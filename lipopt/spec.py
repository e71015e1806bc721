"""The question: which Lipschitz constant of which map, in which norms, over which domain.

A :class:`Question` fixes
* the norm pair: input norm p and output norm q (1, 2 or inf each);
* the domain: :class:`Global` (all of R^n), :class:`Box` [lo, hi], or :class:`Ball` (l2 or l-inf ball of
  radius eps around a nominal input x0);
* the constant: the pairwise constant over the domain (global or local), or the *nominal-point*
  constant sup_{x in ball} |f(x) - f(x0)| / |x - x0| (formulations.md, section 0), which is smaller;
* the output: all outputs, one logit, a margin f_i - f_j, or a direction c (the scalar map c^T f).

``Question.bind(network)`` validates it against a network and broadcasts the domain to the input size.
The norms and domains live in :mod:`lipopt.domains` and are re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from lipopt.domains import Ball, Box, Domain, Global, Norm, parse_domain, uniform_ball, unit_directions
from lipopt.errors import InvalidQuestionError

__all__ = [
    "AllOutputs", "Ball", "Box", "Direction", "Domain", "Global", "Logit", "Margin", "Norm", "Output",
    "Question", "make_question", "parse_domain", "parse_output", "uniform_ball", "unit_directions",
]


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
    # "raw" or "normalized": the input space of the domain, eps and constant (lipopt.network.normalization)
    input_space: str = "raw"

    def __post_init__(self) -> None:
        from lipopt.network.normalization import check_input_space

        object.__setattr__(self, "input_space", check_input_space(self.input_space))
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
        text = f"{self.norm_label()}, {self.domain.describe()}, {self.output.describe()}, {self.constant}"
        return text + (", normalized input" if self.input_space == "normalized" else "")

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
            "input_space": self.input_space,
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
        return cls(Norm.parse(d["input_norm"]), Norm.parse(d["output_norm"]), dom, out, bool(d["nominal"]),
                   d.get("input_space", "raw"))


def make_question(
    norm: object = 2,
    *,
    input_norm: object | None = None,
    output_norm: object | None = None,
    domain: object = "global",
    output: object = "all",
    nominal: bool = False,
    center: Any = None,
    input_space: str = "raw",
) -> Question:
    """Build a Question from friendly values.

    norm: sets both norms unless input_norm / output_norm are given.
    domain: "global", a Domain, "box:LO,HI", (lo, hi), or "ball:EPS" / "ball2:EPS" (needs ``center``).
    output: "all", an int (one logit), (i, j) (margin), a vector c, an Output, or
    "logit:I" / "margin:I,J" / "vector:c1,c2,...".
    input_space: "raw" (default) or "normalized" (the network's normalised input (x - mean) / std; the
    domain, its centre and eps are then in that space).
    """
    p_in = Norm.parse(input_norm if input_norm is not None else norm)
    p_out = Norm.parse(output_norm if output_norm is not None else norm)
    return Question(p_in, p_out, parse_domain(domain, center), parse_output(output), nominal, input_space)


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
