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

The spec and its networks are read in :mod:`lipopt.grid_spec`, cells run in :mod:`lipopt.grid_exec`; this
module runs a grid (resume, records, progress) and re-exports both.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipopt.grid_exec import (
    EXECUTORS,
    FORKSERVER_PRELOAD,
    HOOK_ENV,
    _json_safe_question,
    cell_payload,
    run_cell,
    run_cell_isolated,
    run_cell_subprocess,
)
from lipopt.grid_spec import (
    START_METHODS,
    Cell,
    ExecutorSpec,
    GridError,
    GridSpec,
    NetworkEntry,
    QuestionSpec,
    build_network,
    fingerprint,
    load_spec,
    parse_spec,
)
from lipopt.provenance import provenance, schema_id

__all__ = [
    "EXECUTORS", "FORKSERVER_PRELOAD", "GRID_SCHEMA", "HOOK_ENV", "RECORDS_FILE", "START_METHODS",
    "Cell", "ExecutorSpec", "GridError", "GridRun", "GridSpec", "NetworkEntry", "QuestionSpec",
    "build_network", "cell_payload", "existing_keys", "fingerprint", "load_spec", "parse_spec", "run",
    "run_cell", "run_cell_isolated", "run_cell_subprocess",
]

RECORDS_FILE = "records.jsonl"
GRID_SCHEMA = schema_id("grid")  # "lipopt.grid/1": the grid fields of a record (docs/schema.md)


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
        # the envelope of every lipopt JSON document (docs/schema.md); the record's own schema is
        # lipopt.result/N, its grid fields are versioned by grid_schema
        "provenance": provenance("grid", {"spec": spec.path, **spec.run_options(cell.seed)}, env),
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

    executor = EXECUTORS[spec.executor.kind]
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
