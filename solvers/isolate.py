"""Process isolation: a solve in a child process that is killed at the hard deadline.

The child is a fresh interpreter (``python -m lipopt_solvers.isolate``: no main module is re-run, no
torch or solver threads are inherited). It reads the pickled (solver, :class:`ArrayModel`, options)
from its stdin, solves, and writes length-prefixed pickled messages to a private copy of its stdout:
each improvement of incumbent or bound as it happens (HiGHS' improving-solution callback), then the
final outcome. Its own file descriptor 1 points at stderr, so a verbose solver log cannot corrupt the
messages. The parent waits on the pipe with ``select`` (no reader thread) until the outcome arrives
or ``options.hard_deadline`` passes; then it kills the child and returns the best bracket the child
had reported, with ``Termination.TIME_LIMIT``. A child that dies (a crash, an out-of-memory kill)
gives ``Termination.ERROR`` with the exit code or signal; Ctrl-C in the parent kills the child and
gives ``Termination.INTERRUPTED`` with the bracket so far.
"""

from __future__ import annotations

import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from typing import Any

from . import interrupts
from .outcome import SolutionStatus, SolveOutcome, Termination

__all__ = ["solve_isolated"]

_HEADER = struct.Struct("<Q")


def _write(fd: int, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(_HEADER.pack(len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


class _Reader:
    """Length-prefixed messages from a pipe, read without blocking past a timeout."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.eof = False

    def poll(self, timeout: float) -> list[Any]:
        if not self.eof:
            ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
            if ready:
                chunk = os.read(self.fd, 1 << 20)
                if chunk:
                    self.buf += chunk
                else:
                    self.eof = True
        msgs = []
        while len(self.buf) >= _HEADER.size:
            (n,) = _HEADER.unpack_from(self.buf)
            if len(self.buf) < _HEADER.size + n:
                break
            msgs.append(pickle.loads(bytes(self.buf[_HEADER.size:_HEADER.size + n])))
            del self.buf[:_HEADER.size + n]
        return msgs


def _death(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        hint = " (possibly out of memory)" if -code == signal.SIGKILL else ""
        return f"killed by signal {name}{hint}"
    return f"exit code {code}"


def solve_isolated(solver: str, arrays: Any, options: Any, version: str | None,
                   progress: Any = None) -> SolveOutcome:
    """Solve ``arrays`` with ``solver`` in a child process under ``options.hard_deadline``."""
    import dataclasses

    inner = dataclasses.replace(options, isolate=False)
    payload = pickle.dumps((solver, arrays, inner), protocol=pickle.HIGHEST_PROTOCOL)
    t_start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", "from lipopt_solvers.isolate import _main; _main()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None,
        start_new_session=True,  # Ctrl-C at the terminal reaches the parent only
    )
    deadline = options.hard_deadline
    last: dict[str, Any] = {}
    final: SolveOutcome | None = None
    reason: tuple[Termination, str, str] | None = None
    try:
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(payload)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        reader = _Reader(proc.stdout.fileno())
        while final is None and reason is None:
            elapsed = time.perf_counter() - t_start
            if deadline is not None and elapsed > deadline:
                reason = (Termination.TIME_LIMIT, "killed_at_deadline",
                          f"{solver}: stopped by force {elapsed:.1f}s after the start (hard deadline "
                          f"{deadline:.1f}s for a {options.time_limit}s limit)")
                break
            wait = 0.2 if deadline is None else min(0.2, deadline - elapsed)
            for msg in reader.poll(wait):
                if msg[0] == "progress":
                    if msg[3] is not None or "x" not in last:
                        last.update(objective=msg[1], x=msg[3])
                    last["bound"] = msg[2]
                    if progress is not None:
                        progress(msg[1], msg[2], None)
                elif msg[0] == "done":
                    final = msg[1]
                else:
                    reason = (Termination.ERROR, "child_error", f"{solver} (isolated): {msg[1]}")
            if final is None and reason is None and reader.eof:
                proc.wait(5.0)
                reason = (Termination.ERROR, "child_died",
                          f"{solver} (isolated): the solver process died ({_death(proc.returncode)})")
    except KeyboardInterrupt:
        interrupts.request()
        reason = (Termination.INTERRUPTED, "interrupted", f"{solver} (isolated): interrupted by Ctrl-C")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    wall = time.perf_counter() - t_start
    if final is not None:
        final.isolated = True
        final.wall_time = wall
        return final
    term, raw, message = reason  # type: ignore[misc]
    objective, bound = last.get("objective"), last.get("bound")
    if term is Termination.ERROR:
        bound = None  # a bound from a process that failed is not trusted
    return SolveOutcome(
        solver=solver, solver_version=version, termination=term, raw_status=raw, sense=arrays.sense,
        objective=objective, bound=bound, gap=None, has_incumbent=objective is not None, build_time=0.0,
        solve_time=wall, wall_time=wall, message=f"{message}; last reported incumbent={objective}, "
        f"bound={bound}", options=options, solution_status=SolutionStatus.FEASIBLE if objective is not None
        else SolutionStatus.NONE, translate_time=arrays.translate_time, x=last.get("x"), isolated=True,
    )


def _main() -> None:
    """The child: read the job from stdin, report on a private copy of stdout."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    out_fd = os.dup(1)
    os.dup2(2, 1)  # anything a solver prints goes to stderr, never into the message pipe
    solver, arrays, options = pickle.loads(sys.stdin.buffer.read())
    from .catalog import get_solver

    sent = [0.0]

    def progress(objective: float | None, bound: float | None, x: Any) -> None:
        now = time.monotonic()  # a new incumbent always goes; a moving bound at most twice a second
        if x is not None or now - sent[0] >= 0.5:
            sent[0] = now
            _write(out_fd, ("progress", objective, bound, x))

    try:
        out = get_solver(solver).solve_arrays(arrays, options, progress)
        _write(out_fd, ("done", out))
    except BaseException as exc:  # reported to the parent as an ERROR outcome
        _write(out_fd, ("error", f"{type(exc).__name__}: {exc}"))
    finally:
        os.close(out_fd)
