"""HiGHS (LP, MILP) called directly through ``highspy``: the model handed over as arrays (``passModel``).

Silenced at the source: ``log_to_console`` is off unless verbose; the log still reaches lipopt through
HiGHS' logging callback (kept in memory, its tail put into the message of a failed solve) and goes to
``log_file`` when one is given. Nothing captures file descriptors.

HiGHS' thread scheduler is process-global: once a solve has fixed it, a solve with another ``threads``
value fails before solving (model status ``kNotset``, "the scheduler has already been initialized").
The backend remembers the count in use and resets the scheduler when a solve asks for another one.

The solve runs in HiGHS' own solver thread (``startSolve``) while this thread waits in short steps:
Ctrl-C (KeyboardInterrupt) and the hard deadline both cancel the solve through HiGHS' interrupt
callbacks, and the best incumbent and dual bound at that moment are kept.
"""

from __future__ import annotations

import collections
import time
from typing import Any, ClassVar

import numpy as np

from . import interrupts
from .base import Backend, Capability, Progress
from .outcome import SolveOutcome, Termination, failed_outcome, settle

_NO_THREADS = object()
_PRESOLVE_CLAIMS = ("kInfeasible", "kUnboundedOrInfeasible", "kUnbounded")
_scheduler_threads: Any = _NO_THREADS  # threads value the global scheduler was started with


class HighsBackend(Backend):
    name = "highs"
    interface = "arrays"
    capabilities = frozenset({Capability.LP, Capability.MILP})
    package = "highspy"
    modules = ("highspy",)
    description = "HiGHS LP/MILP solver, called directly through highspy (arrays, no Pyomo capture)"
    option_map: ClassVar[dict[str, str | tuple[str, ...]]] = {
        "seed": "random_seed", "time_limit": "time_limit", "rel_gap": "mip_rel_gap", "abs_gap": "mip_abs_gap",
        "threads": "threads",
        "feasibility_tol": ("primal_feasibility_tolerance", "dual_feasibility_tolerance"),
    }
    status_map: ClassVar[dict[Any, Termination]] = {
        "kOptimal": Termination.OPTIMAL,
        "kInfeasible": Termination.INFEASIBLE,
        "kUnboundedOrInfeasible": Termination.UNBOUNDED,
        "kUnbounded": Termination.UNBOUNDED,
        "kTimeLimit": Termination.TIME_LIMIT,
        "kInterrupt": Termination.INTERRUPTED,
        "kHighsInterrupt": Termination.INTERRUPTED,
        "kObjectiveBound": Termination.OTHER,
        "kObjectiveTarget": Termination.OTHER,
        "kIterationLimit": Termination.OTHER,
        "kSolutionLimit": Termination.OTHER,
        "kMemoryLimit": Termination.OTHER,
        "kUnknown": Termination.OTHER,
        "kNotset": Termination.ERROR,
        "kLoadError": Termination.ERROR,
        "kModelError": Termination.ERROR,
        "kPresolveError": Termination.ERROR,
        "kSolveError": Termination.ERROR,
        "kPostsolveError": Termination.ERROR,
        "kModelEmpty": Termination.OPTIMAL,  # no rows and no columns: the objective is the offset
    }

    def solve_arrays(self, model: Any, options: Any, progress: Progress | None = None) -> SolveOutcome:
        import highspy

        t_start = time.perf_counter()
        h = _new_highs(highspy)
        log: collections.deque[str] = collections.deque(maxlen=60)
        problem = self._configure(highspy, h, options, log)
        if problem is None and h.passModel(_to_highs_lp(highspy, model)) == highspy.HighsStatus.kError:
            problem = ("load_error", "HiGHS rejected the model: " + " ".join(log).strip()[-800:])
        if problem is not None:
            return self._failed(model, options, *problem, t_start)
        t_passed = time.perf_counter()
        best = _watch_incumbents(h, model, progress)
        interrupted, timed_out, solve_time = _run_watched(h, options.hard_deadline, t_start)
        recheck = ""
        if (not model.is_mip and not interrupted and h.getModelStatus().name in _PRESOLVE_CLAIMS
                and "presolve" not in options.extra):
            # HiGHS 1.16's presolve declares some feasible LPs infeasible (parallel rows of a conv net's
            # region LP): an LP is cheap, so such a claim is re-checked without presolve
            first = h.getModelStatus().name
            h.setOptionValue("presolve", "off")
            _, _, again = _run_watched(h, options.hard_deadline, t_start)
            solve_time += again
            recheck = f"; presolve said {first}, re-solved without presolve"
        raw = h.getModelStatus().name
        term = self.termination(raw)
        if interrupted:
            term = Termination.INTERRUPTED
        elif timed_out and term in (Termination.INTERRUPTED, Termination.OTHER):
            term = Termination.TIME_LIMIT
        info = h.getInfo()
        has_sol = int(info.primal_solution_status) == 2  # kSolutionStatusFeasible
        x = np.array(h.getSolution().col_value, dtype=np.float64) if has_sol else best.get("x")
        objective = float(info.objective_function_value) if has_sol else best.get("objective")
        if model.is_mip:
            bound, nodes = float(info.mip_dual_bound), int(info.mip_node_count)
        else:  # an LP: the optimal objective is the bound; no bound is claimed for an LP stopped early
            bound, nodes = (objective if term is Termination.OPTIMAL else None), None
        if raw == "kModelEmpty":  # no columns: the objective is the offset
            x, objective, bound = np.zeros(0), float(model.offset), float(model.offset)
        term, bound, sol_status = settle(term, objective, bound, options.rel_gap)
        message = f"highs: {raw}; incumbent={objective}, bound={bound}{recheck}"
        if term is Termination.ERROR:
            message += "; HiGHS log: " + " ".join(s.strip() for s in log)[-800:]
        return SolveOutcome(
            solver=self.name, solver_version=_version(h), termination=term, raw_status=raw, sense=model.sense,
            objective=objective, bound=bound, gap=None, has_incumbent=objective is not None, build_time=0.0,
            solve_time=solve_time, wall_time=time.perf_counter() - t_start, message=message, options=options,
            solution_status=sol_status, translate_time=model.translate_time + (t_passed - t_start),
            nodes=nodes, x=x, log=options.log_file,
        )

    def _configure(self, highspy: Any, h: Any, options: Any, log: collections.deque[str]
                   ) -> tuple[str, str] | None:
        """Logging (to ``log`` through the callback; console only when verbose), the thread scheduler,
        and the options; (raw status, message) when HiGHS rejects one."""
        global _scheduler_threads
        h.setOptionValue("output_flag", True)
        h.setOptionValue("log_to_console", bool(options.verbose and not options.log_file))
        if options.log_file:
            h.setOptionValue("log_file", str(options.log_file))
        h.cbLogging += lambda e: log.append(str(e.message))
        if _scheduler_threads is not _NO_THREADS and _scheduler_threads != options.threads:
            highspy.Highs.resetGlobalScheduler(True)
        _scheduler_threads = options.threads
        for key, value in self.native_options(options).items():
            if h.setOptionValue(str(key), value) != highspy.HighsStatus.kOk:
                return "option_error", f"HiGHS rejected option {key}={value!r}"
        return None

    def _failed(self, model: Any, options: Any, raw: str, message: str, t_start: float) -> SolveOutcome:
        return failed_outcome(self.name, self.version(), model.sense, options, Termination.ERROR, raw,
                              f"highs: {message}", wall_time=time.perf_counter() - t_start)


_banner_done = False


def _new_highs(highspy: Any) -> Any:
    """A ``Highs`` instance. HiGHS prints its copyright banner to the C stdout when the first instance
    of a process is constructed, before any option can be set; that one construction runs with file
    descriptor 1 pointed at /dev/null (a plain redirect with no reader: nothing can block on it)."""
    global _banner_done
    if _banner_done:
        return highspy.Highs()
    import os
    import sys

    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)
    _banner_done = True
    return h


def _watch_incumbents(h: Any, model: Any, progress: Progress | None) -> dict[str, Any]:
    """The best incumbent HiGHS reports while it runs (kept if the solve is cancelled), forwarded with
    the moving dual bound to ``progress``."""
    best: dict[str, Any] = {}
    if not model.is_mip:
        return best

    def improving(e: Any) -> None:
        best["x"] = np.array(e.data_out.mip_solution, dtype=np.float64)
        best["objective"] = float(e.data_out.objective_function_value)
        if progress is not None:
            progress(best["objective"], float(e.data_out.mip_dual_bound), best["x"])

    def moving(e: Any) -> None:  # called often during the MIP: the caller throttles
        progress(best.get("objective"), float(e.data_out.mip_dual_bound), None)  # type: ignore[misc]

    h.cbMipImprovingSolution += improving
    if progress is not None:
        h.cbMipInterrupt += moving
    return best


def _run_watched(h: Any, deadline: float | None, t_start: float) -> tuple[bool, bool, float]:
    """Run in HiGHS' solver thread while this one waits in short steps: Ctrl-C and the hard deadline
    cancel the solve through HiGHS' interrupt callbacks. (interrupted, timed out, solve time)."""
    h.HandleUserInterrupt = True
    interrupted = timed_out = False
    thread = h.startSolve()
    t0 = time.perf_counter()
    while True:
        try:
            done, _ = h.wait(0.05)
            if done:
                break
            if deadline is not None and time.perf_counter() - t_start > deadline and not timed_out:
                timed_out = True
                h.cancelSolve()
        except KeyboardInterrupt:
            interrupted = True
            interrupts.request()
            h.cancelSolve()
    thread.join()
    return interrupted, timed_out, time.perf_counter() - t0


def _version(h: Any) -> str:
    return f"{h.versionMajor()}.{h.versionMinor()}.{h.versionPatch()}"


def _to_highs_lp(highspy: Any, model: Any) -> Any:
    import scipy.sparse as sp

    inf = highspy.kHighsInf
    lp = highspy.HighsLp()
    n, m = model.n_cols, model.n_rows
    lp.num_col_, lp.num_row_ = n, m
    lp.sense_ = highspy.ObjSense.kMaximize if model.sense == "max" else highspy.ObjSense.kMinimize
    lp.col_cost_ = np.asarray(model.c, dtype=np.float64)
    lp.offset_ = float(model.offset)
    lp.col_lower_ = np.clip(model.col_lower, -inf, inf)
    lp.col_upper_ = np.clip(model.col_upper, -inf, inf)
    lp.row_lower_ = np.clip(model.row_lower, -inf, inf)
    lp.row_upper_ = np.clip(model.row_upper, -inf, inf)
    a = sp.csc_array(model.A)
    a.sort_indices()
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = a.indptr.astype(np.int32)
    lp.a_matrix_.index_ = a.indices.astype(np.int32)
    lp.a_matrix_.value_ = a.data.astype(np.float64)
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = n, m
    if model.is_mip:
        lp.integrality_ = [highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous
                           for b in model.integrality]
    return lp
