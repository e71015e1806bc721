"""The grid spec: the TOML spec of networks x questions x methods x seeds read and validated into a
:class:`GridSpec` (see :mod:`lipopt.grid` for the format), its cells, and the networks it names (a file or a
``random:`` generator) with their fingerprints. Every unknown key or bad value is a :class:`GridError`
naming what is valid."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipopt.errors import LipoptError

#: how a cell's process starts (``[executor] start``)
START_METHODS = ("subprocess", "forkserver")


class GridError(LipoptError, ValueError):
    """A grid spec that cannot be read (unknown key, bad value)."""


def _check_keys(where: str, data: Mapping[str, Any], valid: Sequence[str]) -> None:
    unknown = sorted(set(data) - set(valid))
    if unknown:
        raise GridError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; valid keys: "
                        f"{', '.join(sorted(valid))}")


@dataclass(frozen=True)
class NetworkEntry:
    """A network of the grid: a file (absolute path) or a generator ``random:SIZES[:seed=N][:bias=0|1]``
    (``random:8-16-1:seed=0``: a dense ReLU net 8 -> 16 -> 1 from a seeded generator)."""

    source: str
    name: str

    @property
    def is_random(self) -> bool:
        return self.source.startswith("random:")


@dataclass(frozen=True)
class QuestionSpec:
    norm: str = "2"
    input_norm: str | None = None
    output_norm: str | None = None
    domain: str = "global"
    output: str = "all"
    nominal: bool = False
    center: tuple[float, ...] | str | None = None  # numbers, or a file (absolute path)
    methods: tuple[str, ...] | None = None
    input_space: str = "raw"  # or "normalized" (lipopt.network.normalization)

    KEYS = ("norm", "input_norm", "output_norm", "domain", "output", "nominal", "center", "methods",
            "input_space")

    def question_kw(self) -> dict[str, Any]:
        """Keywords of :func:`lipopt.spec.make_question` (the centre read from its file if it is one)."""
        center: Any = self.center
        if isinstance(center, str):
            from lipopt.cli import _read_vector

            center = _read_vector(center)
        elif center is not None:
            center = list(center)
        kw = {"norm": self.norm, "input_norm": self.input_norm, "output_norm": self.output_norm,
              "domain": self.domain, "output": self.output, "nominal": self.nominal, "center": center}
        if self.input_space != "raw":
            kw["input_space"] = self.input_space
        return kw

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("methods")
        if d["input_space"] == "raw":  # raw questions keep the keys (and cell keys) they had
            d.pop("input_space")
        if isinstance(d["center"], tuple):
            d["center"] = list(d["center"])
        return d


@dataclass(frozen=True)
class ExecutorSpec:
    kind: str = "local"  # local | dask | ray
    jobs: int = 1
    address: str | None = None
    start: str = "subprocess"  # how a cell's process starts: subprocess | forkserver

    KEYS = ("kind", "jobs", "address", "start")


@dataclass(frozen=True)
class Cell:
    network: NetworkEntry
    question_index: int
    question: QuestionSpec
    method: str
    seed: int

    @property
    def key(self) -> str:
        """Identifies the cell across runs of the spec (resume)."""
        return json.dumps({"network": self.network.source, "question": self.question.to_dict(),
                           "method": self.method, "seed": self.seed}, sort_keys=True)

    def describe(self) -> str:
        return f"{self.network.name} q{self.question_index} {self.method} seed={self.seed}"


@dataclass(frozen=True)
class GridSpec:
    networks: tuple[NetworkEntry, ...]
    questions: tuple[QuestionSpec, ...]
    methods: tuple[str, ...] = ()
    time_limit: float | None = None
    grace: float = 30.0  # seconds past time_limit before the cell's process is killed
    seeds: tuple[int, ...] = (0,)
    solver: str | None = None
    threads: int | None = None
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)  # method options (RunOptions.extra)
    solver_options: dict[str, Any] = field(default_factory=dict)  # verbatim to the solver
    executor: ExecutorSpec = ExecutorSpec()
    out: str | None = None  # where records go (absolute path), unless --out says otherwise
    path: str | None = None  # the spec file

    KEYS = ("networks", "questions", "methods", "time_limit", "grace", "seeds", "solver", "threads", "device",
            "options", "solver_options", "executor", "out")

    def methods_of(self, q: QuestionSpec) -> tuple[str, ...]:
        return q.methods if q.methods is not None else self.methods

    def cells(self) -> list[Cell]:
        return [Cell(net, i, q, m, s) for net in self.networks for i, q in enumerate(self.questions)
                for m in self.methods_of(q) for s in self.seeds]

    @property
    def deadline(self) -> float | None:
        """Hard deadline of one cell's process (None: no limit)."""
        return None if self.time_limit is None else self.time_limit + self.grace

    def run_key(self, cell: Cell) -> str:
        """The cell and how it is run (time limit, grace, solver, options): a record counts as done on
        resume only when all of these match, so a changed time limit reruns the cells."""
        return json.dumps({"cell": cell.key, "options": self.run_options(cell.seed), "grace": self.grace},
                          sort_keys=True, default=str)

    def run_options(self, seed: int) -> dict[str, Any]:
        """The :class:`lipopt.options.RunOptions` fields of a cell's run."""
        return {"time_limit": self.time_limit, "seed": seed, "solver": self.solver, "threads": self.threads,
                "device": self.device, "extra": dict(self.options),
                "solver_params": dict(self.solver_options), "isolate": False}


def _str_list(where: str, v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise GridError(f"{where} must be a list of strings, got {v!r}")
    return tuple(v)


def _number(where: str, v: Any, positive: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or (positive and not v > 0):
        raise GridError(f"{where} must be a {'positive ' if positive else ''}number, got {v!r}")
    return float(v)


def _network_entry(text: str, base: Path) -> NetworkEntry:
    if text.startswith("random:"):
        _random_params(text)  # refuse a malformed generator before anything runs
        return NetworkEntry(text, text)
    from lipopt.locations import resolve

    p = resolve(text)  # "external:<rel>": the external networks' folder (lipopt.locations)
    if not p.is_absolute():
        p = base / p
    return NetworkEntry(str(p.resolve()), p.stem.removesuffix("_weights"))


def _random_params(text: str) -> tuple[list[int], int, bool]:
    parts = text.split(":")
    try:
        sizes = [int(s) for s in parts[1].split("-")]
        seed, bias = 0, True
        for extra in parts[2:]:
            key, _, val = extra.partition("=")
            if key == "seed":
                seed = int(val)
            elif key == "bias":
                bias = val.strip().lower() not in ("0", "false", "no")
            else:
                raise ValueError(f"unknown parameter {key!r}")
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError("need at least two sizes >= 1")
    except (ValueError, IndexError) as exc:
        raise GridError(f"network {text!r}: {exc}; expected random:SIZES[:seed=N][:bias=0|1], e.g. "
                        "random:8-16-1:seed=0") from None
    return sizes, seed, bias


def _networks(data: Mapping[str, Any], base: Path) -> tuple[NetworkEntry, ...]:
    nets = tuple(_network_entry(s, base) for s in _str_list("networks", data["networks"]))
    names = [n.name for n in nets]
    if len(set(names)) != len(names):  # two files with one stem: use the path as the name
        nets = tuple(dataclasses.replace(n, name=n.source) for n in nets)
    return nets


def _question(where: str, q: Any, base: Path, methods: tuple[str, ...]) -> QuestionSpec:
    """One [[questions]] table (``methods``: the spec's default methods)."""
    if not isinstance(q, Mapping):
        raise GridError(f"{where} must be a table")
    _check_keys(where, q, QuestionSpec.KEYS)
    kw: dict[str, Any] = {}
    for k in ("norm", "input_norm", "output_norm", "domain", "output"):
        if k in q:
            kw[k] = str(q[k])
    if "nominal" in q:
        if not isinstance(q["nominal"], bool):
            raise GridError(f"{where}.nominal must be true or false")
        kw["nominal"] = q["nominal"]
    if "center" in q:
        c = q["center"]
        if isinstance(c, str):
            cp = Path(c) if Path(c).is_absolute() else base / c
            kw["center"] = str(cp.resolve())
        elif isinstance(c, list):
            kw["center"] = tuple(_number(f"{where}.center", v, positive=False) for v in c)
        else:
            raise GridError(f"{where}.center must be a list of numbers or a file")
    if "methods" in q:
        kw["methods"] = _str_list(f"{where}.methods", q["methods"])
    if "input_space" in q:
        from lipopt.network.normalization import INPUT_SPACES

        if q["input_space"] not in INPUT_SPACES:
            raise GridError(f"{where}.input_space must be one of {', '.join(INPUT_SPACES)}, "
                            f"got {q['input_space']!r}")
        kw["input_space"] = q["input_space"]
    qs = QuestionSpec(**kw)
    if not (qs.methods if qs.methods is not None else methods):
        raise GridError(f"{where}: no methods (give 'methods' globally or in the question)")
    return qs


def _questions(data: Mapping[str, Any], base: Path, methods: tuple[str, ...]) -> tuple[QuestionSpec, ...]:
    raw_qs = data["questions"]
    if not isinstance(raw_qs, list) or not raw_qs:
        raise GridError("grid spec: 'questions' must be one or more [[questions]] tables")
    questions = [_question(f"questions[{i}]", q, base, methods) for i, q in enumerate(raw_qs)]
    from lipopt.methods import REGISTRY

    for m in {m for q in questions for m in (q.methods if q.methods is not None else methods)}:
        if m not in REGISTRY:
            raise GridError(f"unknown method {m!r}; available: {', '.join(sorted(REGISTRY))}")
    return tuple(questions)


def _seeds(data: Mapping[str, Any]) -> tuple[int, ...]:
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise GridError(f"seeds must be a list of integers, got {seeds!r}")
    return tuple(seeds)


def _executor(data: Mapping[str, Any]) -> ExecutorSpec:
    ex = data.get("executor", {})
    if not isinstance(ex, Mapping):
        raise GridError("[executor] must be a table")
    _check_keys("[executor]", ex, ExecutorSpec.KEYS)
    kind = str(ex.get("kind", "local"))
    if kind not in ("local", "dask", "ray"):
        raise GridError(f"[executor] kind {kind!r}; supported: local, dask, ray")
    jobs = ex.get("jobs", 1)
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise GridError(f"[executor] jobs must be an integer >= 1, got {jobs!r}")
    start = str(ex.get("start", "subprocess"))
    if start not in START_METHODS:
        raise GridError(f"[executor] start {start!r}; supported: {', '.join(START_METHODS)}")
    return ExecutorSpec(kind, jobs, None if ex.get("address") is None else str(ex["address"]), start)


def _run_settings(data: Mapping[str, Any], base: Path) -> tuple[float | None, int | None, str | None]:
    """(time_limit, threads, out) checked, in this order, with the options tables."""
    time_limit = data.get("time_limit")
    time_limit = None if time_limit is None else _number("time_limit", time_limit)
    for k in ("options", "solver_options"):
        if not isinstance(data.get(k, {}), Mapping):
            raise GridError(f"{k} must be a table")
    threads = data.get("threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise GridError(f"threads must be an integer >= 1, got {threads!r}")
    out = data.get("out")
    if out is not None:
        out = str((Path(out) if Path(out).is_absolute() else base / out).resolve())
    return time_limit, threads, out


def parse_spec(data: Mapping[str, Any], base_dir: str | Path = ".", path: str | None = None) -> GridSpec:
    """A :class:`GridSpec` from the parsed TOML (paths relative to ``base_dir``); GridError on an unknown
    key or a bad value, naming the valid keys."""
    base = Path(base_dir)
    _check_keys("grid spec", data, GridSpec.KEYS)
    if "networks" not in data or "questions" not in data:
        raise GridError("grid spec: 'networks' and at least one [[questions]] table are required")
    nets = _networks(data, base)
    methods = _str_list("methods", data.get("methods", []))
    questions = _questions(data, base, methods)
    seeds = _seeds(data)
    executor = _executor(data)
    time_limit, threads, out = _run_settings(data, base)
    return GridSpec(nets, questions, methods, time_limit,
                    _number("grace", data.get("grace", 30.0)), seeds,
                    None if data.get("solver") is None else str(data["solver"]), threads,
                    str(data.get("device", "cpu")), dict(data.get("options", {})),
                    dict(data.get("solver_options", {})), executor, out, path)


def load_spec(path: str | Path) -> GridSpec:
    """Read a TOML grid spec (paths in it are relative to the spec file)."""
    import tomllib

    p = Path(path)
    try:
        with open(p, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{p}: not valid TOML: {exc}") from None
    return parse_spec(data, p.resolve().parent, str(p.resolve()))


# ------------------------------------------------------------------------------------------ networks


def build_network(entry: NetworkEntry | str) -> Any:
    """The :class:`lipopt.network.network.Network` of a grid entry (a file or a ``random:`` generator:
    weights N(0, 1 / fan_in), biases N(0, 0.1^2), from ``numpy.random.default_rng(seed)``)."""
    source = entry.source if isinstance(entry, NetworkEntry) else entry
    name = entry.name if isinstance(entry, NetworkEntry) else source
    if source.startswith("random:"):
        import numpy as np

        from lipopt.network.network import Network

        sizes, seed, bias = _random_params(source)
        rng = np.random.default_rng(seed)
        ws = [rng.standard_normal((o, i)) / np.sqrt(i) for i, o in itertools.pairwise(sizes)]
        bs = [0.1 * rng.standard_normal(o) if bias else None for o in sizes[1:]]
        return Network.from_weights(ws, bs, name=name)
    from lipopt.network.load import load

    return load(source, name=name)


def fingerprint(net: Any) -> str:
    """sha256 of the network's layer types, shapes and float64 weight bytes."""
    import numpy as np

    h = hashlib.sha256()
    h.update(repr(tuple(net.input_shape)).encode())
    for layer in net.layers:
        h.update(type(layer).__name__.encode())
        for attr in ("weight", "bias"):
            v = getattr(layer, attr, None)
            if v is not None:
                a = np.ascontiguousarray(np.asarray(v, dtype=np.float64))
                h.update(repr(a.shape).encode())
                h.update(a.tobytes())
        for attr in ("stride", "padding", "dilation", "groups", "kernel_size"):
            if hasattr(layer, attr):
                h.update(repr(getattr(layer, attr)).encode())
    return h.hexdigest()
