"""SCIP (LP, MILP, nonconvex MIQCQP) called directly through ``pyscipopt`` from arrays.

Silenced at the source (``hideOutput``); a verbose solve logs to the console or to ``log_file``
(``setLogfile``), never through a captured pipe (pyscipopt holds the GIL while SCIP writes, so a
Python reader thread on a full pipe deadlocks the process). The solve runs with the GIL released
(``optimizeNogil``), so a watchdog thread can stop it at the hard deadline (``interruptSolve``); SCIP
catches Ctrl-C itself and stops with status ``userinterrupt``, keeping incumbent and dual bound.
A quadratic objective becomes a free variable ``t`` with ``t <= f(x)`` (max) or ``t >= f(x)`` (min).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, ClassVar

import numpy as np

from . import interrupts
from .base import Backend, Capability, Progress
from .outcome import SolveOutcome, Termination, failed_outcome, settle


class ScipBackend(Backend):
    name = "scip"
    interface = "arrays"
    capabilities = frozenset({Capability.LP, Capability.MILP, Capability.MIQCQP})
    package = "pyscipopt"
    modules = ("pyscipopt",)
    description = "SCIP (global MINLP incl. nonconvex MIQCQP), called directly through pyscipopt"
    option_map: ClassVar[dict[str, str | tuple[str, ...]]] = {  # SCIP itself is single-threaded
        "seed": "randomization/randomseedshift", "time_limit": "limits/time", "rel_gap": "limits/gap",
        "abs_gap": "limits/absgap", "feasibility_tol": "numerics/feastol",
    }
    status_map: ClassVar[dict[Any, Termination]] = {
        "optimal": Termination.OPTIMAL,
        "timelimit": Termination.TIME_LIMIT,
        "gaplimit": Termination.GAP_LIMIT,
        "infeasible": Termination.INFEASIBLE,
        "unbounded": Termination.UNBOUNDED,
        "inforunbd": Termination.UNBOUNDED,
        "userinterrupt": Termination.INTERRUPTED,
        "terminate": Termination.INTERRUPTED,
        "nodelimit": Termination.OTHER,
        "totalnodelimit": Termination.OTHER,
        "stallnodelimit": Termination.OTHER,
        "memlimit": Termination.OTHER,
        "sollimit": Termination.OTHER,
        "bestsollimit": Termination.OTHER,
        "restartlimit": Termination.OTHER,
        "primallimit": Termination.OTHER,
        "duallimit": Termination.OTHER,
        "unknown": Termination.ERROR,
    }

    def solve_arrays(self, model: Any, options: Any, progress: Progress | None = None) -> SolveOutcome:
        import pyscipopt as ps

        t_start = time.perf_counter()
        m = ps.Model()
        m.hideOutput(not options.verbose or bool(options.log_file))
        if options.log_file:
            m.setLogfile(str(options.log_file))
            m.hideOutput(False)
        for key, value in self.native_options(options).items():
            try:
                m.setParam(str(key), value)
            except Exception as exc:  # unknown key or bad value: say which
                return failed_outcome(self.name, self.version(), model.sense, options, Termination.ERROR,
                                      "option_error", f"scip: option {key}={value!r} rejected ({exc})",
                                      wall_time=time.perf_counter() - t_start)
        cols = _build(ps, m, model)
        t_built = time.perf_counter()

        timed_out = threading.Event()
        timer = None
        if options.hard_deadline is not None:
            def stop() -> None:
                timed_out.set()
                try:
                    m.interruptSolve()
                except Exception:
                    pass

            timer = threading.Timer(max(0.0, options.hard_deadline - (t_built - t_start)), stop)
            timer.daemon = True
            timer.start()
        t0 = time.perf_counter()
        beat = _heartbeat(progress)
        try:
            m.optimizeNogil()
        except KeyboardInterrupt:
            interrupts.request()
            raw_override = "userinterrupt"
        else:
            raw_override = None
        finally:
            if timer is not None:
                timer.cancel()
            beat.set()
        solve_time = time.perf_counter() - t0
        raw = raw_override or str(m.getStatus())
        term = self.termination(raw)
        if term is Termination.INTERRUPTED:
            if timed_out.is_set():
                term = Termination.TIME_LIMIT
            else:
                interrupts.request()
        objective = bound = x = None
        if m.getNSols() > 0:
            sol = m.getBestSol()
            objective = float(m.getSolObjVal(sol))
            x = np.array([m.getSolVal(sol, v) for v in cols], dtype=np.float64)
        if term is not Termination.INFEASIBLE:
            bound = float(m.getDualbound())
        term, bound, sol_status = settle(term, objective, bound, options.rel_gap)
        if progress is not None and objective is not None:
            progress(objective, bound, x)
        return SolveOutcome(
            solver=self.name, solver_version=self.version(), termination=term, raw_status=raw,
            sense=model.sense, objective=objective, bound=bound, gap=None,
            has_incumbent=objective is not None, build_time=0.0, solve_time=solve_time,
            wall_time=time.perf_counter() - t_start,
            message=f"scip: {raw}; incumbent={objective}, bound={bound}", options=options,
            solution_status=sol_status, translate_time=model.translate_time + (t_built - t_start),
            nodes=int(m.getNNodes()), x=x, log=options.log_file,
        )


def _bnd(v: float) -> float | None:
    return None if math.isinf(v) else float(v)


def _expr(ps: Any, cols: list[Any], idx: np.ndarray, val: np.ndarray, qi=None, qj=None, qv=None) -> Any:
    terms = [float(a) * cols[j] for j, a in zip(idx.tolist(), val.tolist(), strict=True)]
    if qv is not None:
        terms += [float(a) * cols[i] * cols[j] for i, j, a in zip(qi.tolist(), qj.tolist(), qv.tolist(),
                                                                     strict=True)]
    return ps.quicksum(terms)


def _add_ranged(m: Any, expr: Any, lo: float, hi: float, name: str = "") -> None:
    if lo == hi:
        m.addCons(expr == float(hi), name=name)
    elif math.isinf(lo) and math.isinf(hi):
        return
    elif math.isinf(lo):
        m.addCons(expr <= float(hi), name=name)
    elif math.isinf(hi):
        m.addCons(expr >= float(lo), name=name)
    else:
        m.addCons((expr <= float(hi)) >= float(lo), name=name)


def build_scip_model(model: Any) -> tuple[Any, list[Any]]:
    """A silent pyscipopt model of ``model`` (for writing files) and its columns."""
    import pyscipopt as ps

    m = ps.Model()
    m.hideOutput(True)
    return m, _build(ps, m, model)


def _build(ps: Any, m: Any, model: Any) -> list[Any]:
    import scipy.sparse as sp

    from .files import safe_names

    cnames = safe_names(model.col_names, "x", model.n_cols)
    rnames = safe_names(model.row_names, "r", model.n_rows)
    qnames = safe_names(model.quad_names, "q", len(model.quad_rows))
    cols = [m.addVar(name=nm, lb=_bnd(lo), ub=_bnd(hi), vtype="I" if integ else "C")
            for nm, lo, hi, integ in zip(cnames, model.col_lower, model.col_upper, model.integrality,
                                         strict=True)]
    a = sp.csr_array(model.A)
    for i in range(model.n_rows):
        s, e = a.indptr[i], a.indptr[i + 1]
        _add_ranged(m, _expr(ps, cols, a.indices[s:e], a.data[s:e]), model.row_lower[i], model.row_upper[i],
                    rnames[i])
    for k, q in enumerate(model.quad_rows):
        expr = _expr(ps, cols, q.idx, q.val, q.qi, q.qj, q.qv)
        _add_ranged(m, expr, model.quad_lower[k], model.quad_upper[k], qnames[k])
    nz = np.flatnonzero(model.c)
    lin = _expr(ps, cols, nz, model.c[nz])
    oq = model.objective_quad
    if oq is not None and oq.qv.size:
        t = m.addVar(lb=None, ub=None, vtype="C")
        f = lin + _expr(ps, cols, oq.idx, oq.val, oq.qi, oq.qj, oq.qv)
        m.addCons(t - f <= 0 if model.sense == "max" else t - f >= 0)
        lin = 1.0 * t
    m.setObjective(lin, sense="maximize" if model.sense == "max" else "minimize")
    if model.offset:
        m.addObjoffset(float(model.offset))
    return cols


#: seconds between the liveness calls of a long SCIP solve (SCIP's incumbent and bound are read only at
#: the end: its API may not be called from another thread while it solves)
HEARTBEAT = 10.0


def _heartbeat(progress: Progress | None, every: float = HEARTBEAT) -> threading.Event:
    """Call ``progress(None, None, None)`` every ``every`` seconds until the returned event is set, so that
    a caller's progress lines show a long solve is alive (no numbers: none can be read safely)."""
    done = threading.Event()
    if progress is None:
        return done

    def beat() -> None:
        while not done.wait(every):
            try:
                progress(None, None, None)
            except Exception:  # a progress printer must never break a solve
                return

    threading.Thread(target=beat, daemon=True, name="scip-heartbeat").start()
    return done
