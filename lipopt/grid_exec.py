"""How grid cells run: each cell in its own process with a hard deadline (a fresh interpreter or a process
forked from a forkserver), what a crash, a kill or a hang becomes (a failed record, no number), the cell
itself (:func:`run_cell`, what ``python -m lipopt.grid_cell`` runs), and the executors that run the cells
of a grid: local threads, dask or ray (the table ``EXECUTORS``, keyed by ``[executor] kind``)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lipopt.grid_spec import (
    START_METHODS,
    Cell,
    GridError,
    GridSpec,
    NetworkEntry,
    build_network,
    fingerprint,
)

if TYPE_CHECKING:
    from lipopt.grid import _Progress

#: test-only hook read by the cell process: "sleep=SECONDS@METHOD", "exit=CODE@METHOD" or "kill@METHOD"
HOOK_ENV = "LIPOPT_GRID_TEST_HOOK"


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
        from lipopt.network.normalization import in_input_space

        net = build_network(NetworkEntry(**payload["network"]))
        q = make_question(**payload["question"])
        run_net = in_input_space(net, q.input_space)  # the network of the question's input space
        q = q.bind(run_net)
        opts = RunOptions(**payload["options"])
        plan = validate_request(run_net, q, [method], opts)
        res = run_method(method, run_net, q, plan.options)
        rec = res.to_dict()
        rec["fingerprint"] = fingerprint(net)
    except Exception as exc:  # becomes a failed record: never a value
        rec = _failed_record(method, f"{type(exc).__name__}: {exc}", "aborted")
    return rec


# ------------------------------------------------------------------------------------------ executors


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


#: ``[executor] kind`` -> executor(spec, todo, finish, bar)
EXECUTORS: dict[str, Callable[[GridSpec, list[Cell], Callable[..., None], _Progress], None]] = {
    "local": _run_local, "dask": _run_dask, "ray": _run_ray,
}
