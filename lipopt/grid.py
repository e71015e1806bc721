"""Experiment grids: a TOML spec of networks x questions x methods x seeds, each cell run in its own
process with a hard deadline, one JSON record per cell appended to ``DIR/records.jsonl``.

The spec (paths relative to the spec file)::

    methods = ["naive", "sampling"]     # default for every question
    time_limit = 60                     # seconds per run (the child is killed at time_limit + grace)
    seeds = [0]
    networks = ["a_weights.npy", "random:8-16-1:seed=0"]

    [[questions]]
    norm = "inf"
    domain = "box:0,0.1"

    [[questions]]
    norm = "2"
    methods = ["enumeration", "naive"]  # this question's own methods

    [executor]
    kind = "local"                      # or "dask" / "ray" (with address = "...")
    jobs = 2

A cell is (network, question, method, seed). A crash of its process, a hang past the hard deadline or
an out-of-memory kill becomes a record with verdict ``error`` and no number, and the grid goes on.
Re-running a spec skips the cells that already have a record run with the same options (a changed time
limit, solver or method option reruns them; ``force=True`` reruns all). Tables show the last record of
each cell.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipopt.errors import LipoptError

__all__ = [
    "Cell", "ExecutorSpec", "GridError", "GridRun", "GridSpec", "NetworkEntry", "QuestionSpec",
    "build_network", "fingerprint", "load_spec", "parse_spec", "run", "run_cell_isolated",
    "run_cell_subprocess",
]

RECORDS_FILE = "records.jsonl"
GRID_SCHEMA = "lipopt.grid/1"
#: test-only hook read by the cell process: "sleep=SECONDS@METHOD", "exit=CODE@METHOD" or "kill@METHOD"
HOOK_ENV = "LIPOPT_GRID_TEST_HOOK"


class GridError(LipoptError, ValueError):
    """A grid spec that cannot be read (unknown key, bad value)."""


# ------------------------------------------------------------------------------------------ the spec


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

    KEYS = ("norm", "input_norm", "output_norm", "domain", "output", "nominal", "center", "methods")

    def question_kw(self) -> dict[str, Any]:
        """Keywords of :func:`lipopt.spec.make_question` (the centre read from its file if it is one)."""
        center: Any = self.center
        if isinstance(center, str):
            from lipopt.cli import _read_vector

            center = _read_vector(center)
        elif center is not None:
            center = list(center)
        return {"norm": self.norm, "input_norm": self.input_norm, "output_norm": self.output_norm,
                "domain": self.domain, "output": self.output, "nominal": self.nominal, "center": center}

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("methods")
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
    p = Path(text)
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


def parse_spec(data: Mapping[str, Any], base_dir: str | Path = ".", path: str | None = None) -> GridSpec:
    """A :class:`GridSpec` from the parsed TOML (paths relative to ``base_dir``); GridError on an unknown
    key or a bad value, naming the valid keys."""
    base = Path(base_dir)
    _check_keys("grid spec", data, GridSpec.KEYS)
    if "networks" not in data or "questions" not in data:
        raise GridError("grid spec: 'networks' and at least one [[questions]] table are required")
    nets = tuple(_network_entry(s, base) for s in _str_list("networks", data["networks"]))
    names = [n.name for n in nets]
    if len(set(names)) != len(names):  # two files with one stem: use the path as the name
        nets = tuple(dataclasses.replace(n, name=n.source) for n in nets)
    methods = _str_list("methods", data.get("methods", []))
    raw_qs = data["questions"]
    if not isinstance(raw_qs, list) or not raw_qs:
        raise GridError("grid spec: 'questions' must be one or more [[questions]] tables")
    questions = []
    for i, q in enumerate(raw_qs):
        where = f"questions[{i}]"
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
        qs = QuestionSpec(**kw)
        if not (qs.methods if qs.methods is not None else methods):
            raise GridError(f"{where}: no methods (give 'methods' globally or in the question)")
        questions.append(qs)
    from lipopt.methods import REGISTRY

    for m in {m for q in questions for m in (q.methods if q.methods is not None else methods)}:
        if m not in REGISTRY:
            raise GridError(f"unknown method {m!r}; available: {', '.join(sorted(REGISTRY))}")
    seeds = data.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool)
                                                           for s in seeds):
        raise GridError(f"seeds must be a list of integers, got {seeds!r}")
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
    executor = ExecutorSpec(kind, jobs, None if ex.get("address") is None else str(ex["address"]), start)
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
    return GridSpec(nets, tuple(questions), methods, time_limit,
                    _number("grace", data.get("grace", 30.0)), tuple(seeds),
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


# ------------------------------------------------------------------------------------------ one cell


def cell_payload(spec: GridSpec, cell: Cell) -> dict[str, Any]:
    """Everything the cell's process needs (JSON)."""
    return {"network": dataclasses.asdict(cell.network), "question": cell.question.question_kw(),
            "method": cell.method, "seed": cell.seed, "options": spec.run_options(cell.seed),
            "hook": os.environ.get(HOOK_ENV, "")}  # read here: a forkserver keeps its start environment


def _json_safe_question(kw: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    return {k: (np.asarray(v).tolist() if k == "center" and v is not None else v) for k, v in kw.items()}


def _failed_record(method: str, message: str, stop: str) -> dict[str, Any]:
    from lipopt.methods import REGISTRY
    from lipopt.result import BoundKind, LipschitzResult, StopReason, Verdict

    kind = REGISTRY[method].kind if method in REGISTRY else BoundKind.ESTIMATE
    res = LipschitzResult(method, kind, None, verdict=Verdict.ERROR, stop=StopReason(stop), message=message)
    return res.to_dict()


#: modules the forkserver imports once, so that a forked cell starts without importing them again (with
#: every registered method's module, see :func:`_forkserver`)
FORKSERVER_PRELOAD = ["lipopt.grid", "lipopt.methods", "lipopt.validation", "lipopt.analytic.linops",
                      "numpy", "scipy.linalg", "torch"]
START_METHODS = ("subprocess", "forkserver")
_FORKSERVER: Any = None
_FORKSERVER_LOCK = threading.Lock()


def run_cell_isolated(payload: dict[str, Any], deadline: float | None,
                      register: Callable[[Any], None] | None = None, start: str = "subprocess"
                      ) -> dict[str, Any]:
    """Run one cell in its own process killed at ``deadline`` seconds: a fresh interpreter
    (``start="subprocess"``: ``python -m lipopt.grid_cell``) or a process forked from a forkserver that
    has imported lipopt, numpy, scipy and torch once (``"forkserver"``: the same isolation, without the
    imports per cell). The result record as a dict, or a failed record (verdict error, no number) saying
    what happened: a crash (non-zero exit, a signal: SIGKILL is what the out-of-memory killer sends), a
    hang past the deadline, or an unreadable answer. ``register`` receives the process (then None) so
    that a Ctrl-C can kill it."""
    import tempfile

    if start not in START_METHODS:
        raise GridError(f"start method {start!r}; supported: {', '.join(START_METHODS)}")
    t0 = time.perf_counter()
    fd, out_path = tempfile.mkstemp(prefix="lipopt-cell-", suffix=".json")
    os.close(fd)
    fd, err_path = tempfile.mkstemp(prefix="lipopt-cell-", suffix=".err")
    os.close(fd)
    payload = {**payload, "question": _json_safe_question(payload["question"]), "out": out_path}
    method = payload["method"]
    try:
        if start == "subprocess":
            with open(err_path, "w") as err:
                proc = subprocess.Popen([sys.executable, "-m", "lipopt.grid_cell"], stdin=subprocess.PIPE,
                                        stdout=subprocess.DEVNULL, stderr=err, text=True,
                                        start_new_session=True)  # a terminal's Ctrl-C goes to the grid
                if register is not None:
                    register(proc)
                try:
                    proc.communicate(json.dumps(payload), timeout=deadline)
                    timed_out = False
                except subprocess.TimeoutExpired:
                    _kill(proc)
                    proc.communicate()
                    timed_out = True
            code = proc.returncode
        else:
            proc = _forkserver().Process(target=_forked_cell, args=(payload, err_path), daemon=False)
            proc.start()
            if register is not None:
                register(proc)
            proc.join(deadline)
            timed_out = proc.exitcode is None
            if timed_out:
                proc.kill()
                proc.join()
            code = proc.exitcode
        text = Path(out_path).read_text() if os.path.getsize(out_path) else ""
        err_text = Path(err_path).read_text(errors="replace")
    finally:
        if register is not None:
            register(None)
        Path(out_path).unlink(missing_ok=True)
        Path(err_path).unlink(missing_ok=True)
    return _timed(_outcome(method, deadline, timed_out, code, text, err_text), t0)


#: the subprocess start method alone (kept for callers of the first landing)
run_cell_subprocess = run_cell_isolated


def _forkserver() -> Any:
    global _FORKSERVER
    with _FORKSERVER_LOCK:
        if _FORKSERVER is None:
            import multiprocessing

            from lipopt.methods import REGISTRY

            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(FORKSERVER_PRELOAD + sorted({m.module for m in REGISTRY.values()}))
            _FORKSERVER = ctx
    return _FORKSERVER


def _forked_cell(payload: dict[str, Any], err_path: str) -> None:
    """A forkserver cell: stdout to /dev/null and stderr to ``err_path`` (as the subprocess cell), then
    :func:`run_cell`; the record goes to ``payload["out"]``."""
    os.setsid()  # its own session: a terminal's Ctrl-C goes to the grid, not the cell
    devnull = os.open(os.devnull, os.O_WRONLY)
    err = os.open(err_path, os.O_WRONLY | os.O_TRUNC)
    os.dup2(devnull, 1)
    os.dup2(err, 2)
    rec = run_cell(payload)
    with open(payload["out"], "w") as f:
        f.write(json.dumps(rec))


def _outcome(method: str, deadline: float | None, timed_out: bool, code: int | None, text: str,
             err: str) -> dict[str, Any]:
    """The record of a finished cell process (a failed one when it did not answer)."""
    if timed_out:
        why = (f"the cell's process was killed at its hard deadline of {deadline:g} s (time limit + "
               "grace) without reporting a result")
        rec = _failed_record(method, why, "time_limit")
        rec["grid_failure"] = "timeout"
        return rec
    if code != 0 or not text:
        tail = err.strip().splitlines()[-3:]
        if code is not None and code < 0:
            sig = signal.Signals(-code).name
            why = f"the cell's process was killed by {sig}"
            if sig == "SIGKILL":
                why += " (the out-of-memory killer sends SIGKILL)"
            failure = "killed"
        else:
            why = f"the cell's process exited with code {code} without a result"
            failure = "crash"
        if tail:
            why += ": " + " | ".join(tail)
        rec = _failed_record(method, why, "aborted")
        rec["grid_failure"] = failure
        return rec
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        rec = _failed_record(method, f"the cell's answer is not JSON ({exc})", "aborted")
        rec["grid_failure"] = "crash"
        return rec


def _timed(rec: dict[str, Any], t0: float) -> dict[str, Any]:
    rec["cell_wall_s"] = time.perf_counter() - t0
    return rec


def _kill(proc: Any) -> None:
    """SIGKILL the cell's session (the cell and any solver child it started), else the process."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, TypeError):
        proc.kill()


def run_cell(payload: dict[str, Any]) -> dict[str, Any]:
    """Run one cell in this process (what ``lipopt.grid_cell`` does): the record as a dict. An error
    (unreadable network, bad question or options) is a record with verdict error."""
    hook = payload.get("hook", "")
    if hook:
        action, _, method = hook.partition("@")
        if method in ("", payload["method"]):
            if action.startswith("sleep="):
                time.sleep(float(action.split("=", 1)[1]))
            elif action.startswith("exit="):
                os._exit(int(action.split("=", 1)[1]))
            elif action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
    from lipopt.methods import run_method
    from lipopt.options import RunOptions
    from lipopt.spec import make_question
    from lipopt.validation import validate_request

    method = payload["method"]
    try:
        net = build_network(NetworkEntry(**payload["network"]))
        q = make_question(**payload["question"]).bind(net)
        opts = RunOptions(**payload["options"])
        plan = validate_request(net, q, [method], opts)
        res = run_method(method, net, q, plan.options)
        rec = res.to_dict()
        rec["fingerprint"] = fingerprint(net)
    except Exception as exc:  # becomes a failed record: never a value
        rec = _failed_record(method, f"{type(exc).__name__}: {exc}", "aborted")
    return rec


# ------------------------------------------------------------------------------------------ the grid


@dataclass
class GridRun:
    """What one :func:`run` did."""

    out: Path
    total: int
    skipped: int = 0
    done: int = 0
    failed: int = 0
    interrupted: bool = False
    records: list[dict[str, Any]] = field(default_factory=list)

    @property
    def remaining(self) -> int:
        return self.total - self.skipped - self.done


def existing_keys(out: str | Path) -> set[str]:
    """Run keys (:meth:`GridSpec.run_key`) that already have a record in ``out/records.jsonl`` (an
    unreadable line, e.g. half written by a crash, is ignored: its cell runs again)."""
    keys = set()
    p = Path(out) / RECORDS_FILE
    if not p.is_file():
        return keys
    for line in p.read_text().splitlines():
        try:
            keys.add(json.loads(line)["run_key"])
        except (json.JSONDecodeError, KeyError, TypeError):
            continue
    return keys


def _fingerprints(spec: GridSpec) -> dict[str, dict[str, Any]]:
    """Per network source: its fingerprint and size (ReLUs, inputs, outputs, parameters)."""
    facts: dict[str, dict[str, Any]] = {}
    for n in spec.networks:
        try:
            net = build_network(n)
            params = sum(int(getattr(la, a).size) for la in net.layers for a in ("weight", "bias")
                         if getattr(la, a, None) is not None)
            facts[n.source] = {"fingerprint": fingerprint(net), "size": {
                "n_relus": int(net.n_relus), "input_size": int(net.input_size),
                "output_size": int(net.output_size), "n_params": params}}
        except Exception:  # the cells' own processes report why it cannot be loaded
            facts[n.source] = {"fingerprint": None, "size": None}
    return facts


def _complete(rec: dict[str, Any], spec: GridSpec, cell: Cell, env: dict[str, Any],
              facts: Mapping[str, dict[str, Any]], started: float, index: int) -> dict[str, Any]:
    rec = dict(rec)
    rec.update({
        "grid_schema": GRID_SCHEMA,
        "cell_key": cell.key,  # the last record of a cell is the one tables show
        "run_key": spec.run_key(cell),
        "cell_index": index,  # position in the spec's cell order (tables follow it)
        "network_name": cell.network.name,
        "network_source": cell.network.source,
        "fingerprint": rec.get("fingerprint") or facts[cell.network.source]["fingerprint"],
        "network_size": facts[cell.network.source]["size"],
        "question_index": cell.question_index,
        "question_spec": cell.question.to_dict(),
        "method": cell.method,
        "seed": cell.seed,
        "run_options": spec.run_options(cell.seed),
        "deadline_s": spec.deadline,
        "spec": spec.path,
        "started_at": started,
        "finished_at": time.time(),
        **env,
    })
    rec.setdefault("grid_failure", None)
    if not rec.get("question"):  # the cell's process did not answer: the question as asked (unbound)
        rec["question_unbound"] = True
        try:
            from lipopt.spec import make_question

            rec["question"] = make_question(**_json_safe_question(cell.question.question_kw())).to_dict()
        except Exception:  # a question the cell could not build either: its message says why
            rec["question"] = {}
    return rec


def run(spec: GridSpec | str | Path, out: str | Path | None = None, *, force: bool = False,
        quiet: bool = False, max_cells: int | None = None,
        progress: Callable[[str], None] | None = None) -> GridRun:
    """Run the cells of ``spec`` that have no record in ``out`` yet (``force``: all of them), appending
    one JSON line per finished cell to ``out/records.jsonl``. ``max_cells`` stops after that many
    cells (the rest stay for a later run). Ctrl-C stops cleanly: finished records are kept, running
    cells are killed and run again next time."""
    if not isinstance(spec, GridSpec):
        spec = load_spec(spec)
    out = out if out is not None else spec.out
    if out is None:
        raise GridError("no output folder: pass --out DIR (or out = \"DIR\" in the spec)")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    cells = spec.cells()
    have = set() if force else existing_keys(out_dir)
    todo = [c for c in cells if spec.run_key(c) not in have]
    result = GridRun(out_dir, len(cells), skipped=len(cells) - len(todo))
    if max_cells is not None:
        todo = todo[:max_cells]
    if not todo:
        return result
    from lipopt.provenance import environment

    env = environment()
    facts = _fingerprints(spec)
    path = out_dir / RECORDS_FILE
    bar = _Progress(len(todo), quiet, progress)
    index = {c.key: i for i, c in enumerate(cells)}

    def finish(cell: Cell, rec: dict[str, Any], started: float) -> None:
        rec = _complete(rec, spec, cell, env, facts, started, index[cell.key])
        with open(path, "a") as f:  # one line per record, flushed as it finishes
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())
        result.done += 1
        result.failed += rec.get("verdict") in ("error", "check_failed")
        result.records.append(rec)
        bar.update(cell, rec)

    executor = {"local": _run_local, "dask": _run_dask, "ray": _run_ray}[spec.executor.kind]
    try:
        executor(spec, todo, finish, bar)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
    return result


class _Progress:
    """tqdm over the cells on a terminal, one plain line per cell otherwise, nothing with ``quiet``."""

    def __init__(self, total: int, quiet: bool, callback: Callable[[str], None] | None) -> None:
        self.callback, self.quiet, self.bar = callback, quiet, None
        self.total, self.n = total, 0
        if not quiet and callback is None and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="cell", file=sys.stderr)

    def running(self, cell: Cell) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(cell.describe(), refresh=True)

    def update(self, cell: Cell, rec: dict[str, Any]) -> None:
        self.n += 1
        value = rec.get("value")
        shown = "FAILED" if rec.get("verdict") in ("error", "check_failed") else (
            "-" if value is None else f"{value:.6g} [{rec.get('kind')}]")
        line = f"[{self.n}/{self.total}] {cell.describe()}: {shown} ({rec.get('cell_wall_s', 0):.2f}s)"
        if self.callback is not None:
            self.callback(line)
        elif self.bar is not None:
            self.bar.set_postfix_str(cell.describe(), refresh=False)
            self.bar.update(1)
        elif not self.quiet:
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _run_local(spec: GridSpec, todo: list[Cell], finish: Callable[..., None], bar: _Progress) -> None:
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    running: set[Any] = set()
    lock = threading.Lock()
    stopping = threading.Event()

    def one(cell: Cell) -> tuple[dict[str, Any] | None, float]:
        started = time.time()
        if stopping.is_set():
            return None, started

        mine: list[Any] = []

        def register(p: Any) -> None:
            with lock:
                if p is not None:
                    mine.append(p)
                    running.add(p)
                elif mine:
                    running.discard(mine.pop())

        bar.running(cell)
        rec = run_cell_isolated(cell_payload(spec, cell), spec.deadline, register, spec.executor.start)
        return (None if stopping.is_set() else rec), started

    pool = ThreadPoolExecutor(max_workers=spec.executor.jobs, thread_name_prefix="lipopt-grid")
    try:
        futures = {pool.submit(one, c): c for c in todo}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                rec, started = fut.result()
                if rec is not None:
                    finish(futures[fut], rec, started)
    except KeyboardInterrupt:
        stopping.set()
        with lock:
            for p in list(running):
                _kill(p)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _run_dask(spec: GridSpec, todo: list[Cell], finish: Callable[..., None], bar: _Progress) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise GridError("executor kind 'dask' needs dask.distributed: pip install 'lipopt[dask]'") from None
    client = Client(spec.executor.address) if spec.executor.address else Client(
        n_workers=spec.executor.jobs, threads_per_worker=1, processes=True)
    futures = {}
    try:
        for c in todo:
            fut = client.submit(_dask_cell, cell_payload(spec, c), spec.deadline, spec.executor.start,
                                pure=False)
            futures[fut.key] = (c, fut)
        for fut in as_completed([f for _, f in futures.values()]):
            cell = futures[fut.key][0]
            rec, started = fut.result()
            finish(cell, rec, started)
    except KeyboardInterrupt:
        for _, f in futures.values():
            f.cancel()
        raise
    finally:
        client.close()


def _dask_cell(payload: dict[str, Any], deadline: float | None, start: str) -> tuple[dict, float]:
    started = time.time()
    return run_cell_isolated(payload, deadline, start=start), started


def _run_ray(spec: GridSpec, todo: list[Cell], finish: Callable[..., None], bar: _Progress) -> None:
    try:
        import ray
    except ImportError:
        raise GridError("executor kind 'ray' needs ray: pip install ray") from None
    if not ray.is_initialized():
        ray.init(address=spec.executor.address) if spec.executor.address else ray.init(
            num_cpus=spec.executor.jobs)
    remote = ray.remote(num_cpus=1)(_dask_cell)
    refs = {remote.remote(cell_payload(spec, c), spec.deadline, spec.executor.start): c for c in todo}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                rec, started = ray.get(ref)
                finish(refs[ref], rec, started)
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
