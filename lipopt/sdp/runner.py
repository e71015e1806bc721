"""The run of a LipSDP method: chain, solve through the solver layer, float64 certification, record.

Shared by ``lipsdp-neuron``, ``lipsdp-layer`` and ``lipsdp-local``. A value is reported (UPPER) only when
the float64 eigen-check of :func:`lipopt.sdp.lipsdp.certify` passes, at the solver's rho or at a repaired
one; otherwise the record has verdict error and no bound (the solver's value is kept as
``unverified_value``). Options: :class:`lipopt.sdp.lipsdp.LipSDPOptions` (``RunOptions.extra``).

Per piece (the whole network, or the pieces of :func:`lipopt.sdp.lipsdp.plan_pieces`): the solver
(Clarabel, or SCS above ``sdp_clarabel_max_size``), the dense or chordal form, one solve; with SCS on a
deep net a re-solve on the rebalanced LMI; while the hidden block of the LMI at the multipliers is not
negative definite, re-solves with a margin on it; then :func:`lipopt.sdp.lipsdp.certify`. Whatever was
solved, the certificate is always of the original LMI at the multipliers mapped back.

The mathematics as implemented: ``docs/methods.md#lipsdp``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from lipopt.errors import NotApplicableError
from lipopt.methods import RunOptions
from lipopt.network.network import Network
from lipopt.result import BoundKind, LipschitzResult, StopReason, Verdict
from lipopt.sdp.chain import EPS
from lipopt.sdp.lipsdp import LipSDPOptions, refusal
from lipopt.spec import Question


def lipsdp_options(options: RunOptions, method: str) -> LipSDPOptions:
    return LipSDPOptions.from_run(options, method)


def applicable_global(network: Network, question: Question, options: LipSDPOptions | None = None
                      ) -> str | None:
    return refusal(network, question, options)


def applicable_local(network: Network, question: Question, options: LipSDPOptions | None = None
                     ) -> str | None:
    if question.constant == "global":
        return ("lipsdp-local bounds the constant on a box or ball domain (the global question is "
                "lipsdp-neuron's)")
    return refusal(network, question, options, local=True)


def run_lipsdp(method: str, network: Network, question: Question, options: RunOptions, form: str,
               local: bool = False) -> LipschitzResult:
    from lipopt.analytic._threads import limit_threads

    with limit_threads(options.threads):
        return _run(method, network, question, options, form, local)


def _fail(method: str, verdict: Verdict, stop: StopReason, message: str, **fields) -> LipschitzResult:
    return LipschitzResult.from_bracket(method, BoundKind.UPPER, None, None, verdict=verdict, stop=stop,
                                        message=message, **fields)


def _run(method: str, network: Network, question: Question, options: RunOptions, form: str,
         local: bool) -> LipschitzResult:
    from lipopt.deadline import Deadline
    from lipopt.sdp.lipsdp import chain_from_matrices, domain_box, slope_intervals

    t0 = time.perf_counter()
    dl = Deadline.start(options.time_limit, t0)
    sopts = lipsdp_options(options, method)
    notes: list[str] = []
    loop = _leaky_loop(network, form, options, sopts, local)
    if loop:
        notes.append("LeakyReLU max(x, alpha x) = alpha x + (1 - alpha) relu(x): the LMI uses the slopes "
                     "[alpha, 1] (the loop transformation; solved by the SDP solver)")
    elif network.has_leaky:
        notes.append("LeakyReLU max(x, alpha x): slopes in [alpha, 1] are handled as the sector [0, 1] "
                     "(sound; looser than the [alpha, 1] form the SDP solver path uses)")
    stats: dict = {"form": form, "leaky_form": "loop" if loop else "sector" if network.has_leaky else None}
    slopes = None
    if local:
        lo, hi = domain_box(question, network.input_size)
        slopes, counts = slope_intervals(network, lo, hi, sopts.sdp_local_bounds, loop=loop)
        stats.update(counts)
        stats["bound_method"] = sopts.sdp_local_bounds
        notes.append(f"local slope intervals from {sopts.sdp_local_bounds} neuron bounds on the box "
                     f"containing the domain: {counts['stable_on']} stable on, "
                     f"{counts['stable_off']} stable off, {counts['unstable']} unstable")
        if question.constant == "nominal":
            notes.append("bounds the pairwise local constant on the domain, hence the nominal-point one")
    elif question.constant != "global":
        notes.append(f"a global bound: valid for this {question.constant} question, but not local")
    c = question.output_vector(network.output_size)
    if sopts.sdp_chordal not in ("auto", "on", "off"):
        from lipopt.errors import InvalidOptionsError

        raise InvalidOptionsError(f"sdp_chordal must be 'auto', 'on' or 'off', got {sopts.sdp_chordal!r}")
    if sopts.sdp_algorithm not in ("auto", "solver", "first-order"):
        from lipopt.errors import InvalidOptionsError

        raise InvalidOptionsError(f"sdp_algorithm must be 'auto', 'solver' or 'first-order', got "
                                  f"{sopts.sdp_algorithm!r}")
    from lipopt.sdp.first_order import OPTIMIZERS

    if sopts.sdp_fo_optimizer not in OPTIMIZERS:
        from lipopt.errors import InvalidOptionsError

        raise InvalidOptionsError(f"sdp_fo_optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}, got "
                                  f"{sopts.sdp_fo_optimizer!r}")
    work, pools = _work(network, c, slopes, form, options, sopts, local, notes, loop)
    total, stop, pieces = 1.0, StopReason.COMPLETED, []
    common: dict = {"stats": stats, "notes": notes}
    for mats, cvec, sl, al in work:
        chain = chain_from_matrices(mats, cvec, sl, normalise=sopts.sdp_normalise, alphas=al)
        piece = _piece(method, chain, form, options, sopts, dl, notes)
        common.update(piece["common"])
        if piece.get("failed") is not None:
            res = piece["failed"]
            res.stats, res.notes = {**stats, "pieces": [*pieces, piece["stats"]]}, notes
            return res.finalise()
        pieces.append(piece["stats"])
        total *= piece["value"]
        if stop is StopReason.COMPLETED:
            stop = piece["stop"]
    for p in pools:
        total *= p
    value = total * (1.0 + 4.0 * EPS * (len(work) + len(pools)))
    stats.update({k: v for k, v in pieces[-1].items() if len(work) == 1})
    if pools:
        stats["pool_constants"] = pools
    if len(work) > 1:
        stats["pieces"] = pieces
        stats["certification"] = ",".join(sorted({p["certification"] for p in pieces}))
    res = LipschitzResult.from_bracket(method, BoundKind.UPPER, None, value, verdict=Verdict.OK, stop=stop,
                                       **common)
    for j, p in enumerate(pieces):
        res.add_check("LMI eigenvalue check (float64)" + (f", piece {j + 1}" if len(work) > 1 else ""), True,
                      p["detail"])
    return dl.mark(res)


def _leaky_loop(network: Network, form: str, options: RunOptions, sopts: LipSDPOptions, local: bool) -> bool:
    """Whether LeakyReLU is written in the loop form (slopes [alpha, 1], a chain for the SDP solver) rather
    than the [0, 1] sector (block tri-diagonal, for the closed form and the descent): on the solver path,
    and in ``auto`` when the whole LMI fits the solver's size limit."""
    if not network.has_leaky or form == "fast" or sopts.sdp_algorithm == "first-order":
        return False
    if sopts.sdp_algorithm == "solver" or local or options.solver is not None:
        return True
    from lipopt.sdp.lipsdp import segments

    # the shapes only (``seg.mats`` would make every convolution dense)
    return all(seg.affs[0].shape[1] + sum(a.shape[0] for a in seg.affs[:-1]) <= sopts.sdp_max_size
               for seg in segments(network))


def _work(network: Network, c, slopes, form: str, options: RunOptions, sopts: LipSDPOptions, local: bool,
          notes: list[str], loop: bool = False) -> tuple[list[tuple], list[float]]:
    """The chains to solve, as (matrices, output vector or None, slope intervals or None, negative slopes
    or None), and the max-pool constants to multiply by: per segment
    (:func:`lipopt.sdp.lipsdp.segments`), its pieces (:func:`lipopt.sdp.lipsdp.plan_pieces`). ``loop``:
    LeakyReLU in the loop form (:func:`_leaky_loop`), planned for the solver."""
    from lipopt.sdp.lipsdp import MAXPOOL_REFUSAL, plan_pieces, segments

    segs = segments(network)
    if local and len(segs) > 1:
        raise NotApplicableError(MAXPOOL_REFUSAL)
    if not loop and (form == "fast" or sopts.sdp_algorithm == "first-order" or (
            sopts.sdp_algorithm == "auto" and options.solver is None and not local)):
        # the descent has no solve-size limit: pieces only where the float64 check would be too large
        plan_opts, chordal = replace(sopts, sdp_max_size=sopts.sdp_max_check_size), False
    else:
        plan_opts, chordal = sopts, not local and not loop and sopts.sdp_chordal != "off"
    work: list[tuple] = []
    for k, seg in enumerate(segs):
        mats = seg.mats
        plan = plan_pieces([m.shape for m in mats], plan_opts, chordal=chordal)
        if isinstance(plan, str):
            raise NotApplicableError(plan)
        if len(plan) > 1:
            spans = ", ".join(f"{a}-{b}" for a, b in plan)
            where = f" of segment {k + 1}" if len(segs) > 1 else ""
            notes.append(f"split into {len(plan)} pieces{where} (affine stages {spans}): the bound is the "
                         "product of their certified LipSDP bounds (relu is 1-Lipschitz)")
        last = k == len(segs) - 1
        for a, b in plan:
            work.append((mats[a:b + 1], c if last and b == len(mats) - 1 else None,
                         None if slopes is None else slopes[a:b], seg.alphas[a:b] if loop else None))
    pools = [seg.pool for seg in segs[:-1]]
    if pools:
        notes.append(f"max-pooling as Avant & Morgansen: LipSDP per affine-ReLU block ({len(segs)} segments) "
                     f"times the exact l2 constant of each max-pool (sqrt of the most windows an input lies "
                     f"in: {', '.join(f'{p:.6g}' for p in pools)})")
    return work, pools


def _pick_solver(chain, options: RunOptions, sopts: LipSDPOptions, notes: list[str], stats: dict
                 ) -> tuple[str | None, bool]:
    """The SDP solver (Clarabel by default, SCS where Clarabel's dense steps would be slow) and whether
    the chordal form is used."""
    from lipopt_solvers import Capability, default_solver

    from lipopt.sdp.lipsdp import _blocks, is_block_tridiagonal

    solver = options.solver or default_solver(Capability.SDP)
    red = chain.reduced() if sopts.sdp_reduce_input else chain
    solve_size = red.size
    big = solve_size > sopts.sdp_clarabel_max_size
    want = sopts.sdp_chordal == "on" or (sopts.sdp_chordal == "auto" and big)
    chordal = want and is_block_tridiagonal(red)
    # Clarabel's cost grows like the sixth power of a cone's size: one cone of the equivalent size
    cones = ([b1.size + b2.size for b1, b2 in zip(_blocks(red)[:-1], _blocks(red)[1:], strict=True)]
             if chordal else [solve_size])
    effective = sum(float(c) ** 6 for c in cones) ** (1 / 6)
    stats.update({"chordal": chordal, "cones": len(cones), "largest_cone": max(cones)})
    if chordal:
        notes.append(f"chordal form: {len(cones)} cliques of consecutive layers, largest {max(cones)} "
                     f"(dense LMI {solve_size})")
    if options.solver is None and solver == "clarabel" and effective > sopts.sdp_clarabel_max_size:
        from lipopt_solvers import get_solver

        if get_solver("scs").is_installed():
            solver = "scs"
            notes.append(f"solver scs: the LMI (size {solve_size}, cones up to {max(cones)}) is above "
                         f"sdp_clarabel_max_size {sopts.sdp_clarabel_max_size}, where Clarabel's dense steps "
                         "are slow; choose one with --solver")
    return solver, chordal


@dataclass
class _Solve:
    """One chain's solve: the solution in the chain's scale, and the (rebalanced) chain it was solved on
    with the factors that map it back (rho = rho' / s2, lam = lam' / (s2 d2))."""

    chain: Any
    form: str
    solver: str
    chordal: bool
    sol: Any
    solved_chain: Any = None
    s2: float = 1.0
    d2: Any = None

    def resolve(self, options: RunOptions, sopts: LipSDPOptions, dl, chain=None, **kw) -> Any:
        from lipopt.sdp.lipsdp import solve_lmi

        left = dl.remaining()
        so = options.solver_options(None if math.isinf(left) else max(left, 0.1))
        return solve_lmi(chain if chain is not None else self.solved_chain, self.form, self.solver, so,
                         reduce_input=sopts.sdp_reduce_input, chordal=self.chordal, **kw)


def _rebalance(sv: _Solve, options: RunOptions, sopts: LipSDPOptions, dl, notes: list[str],
               stats: dict) -> None:
    """SCS on a deep net: re-solve once on the rebalanced LMI (the first multipliers about 1), where SCS's
    absolute accuracy becomes relative; keep whichever certifies better."""
    from lipopt.sdp.lipsdp import balanced, certify

    chain, sol = sv.chain, sv.sol
    if not (sv.solver == "scs" and 0 < sopts.sdp_balance_depth <= len(chain.layers) and sol.rho is not None
            and sol.lam is not None and dl.remaining() > 0):
        return
    bal = balanced(chain, sol.rho, sol.lam)
    if bal is None:
        return
    first = certify(chain, sol.rho, sol.lam, tighten=sopts.sdp_tighten, steps=sopts.sdp_repair_steps)
    bch, bs2, bd2 = bal
    sol2 = sv.resolve(options, sopts, dl, chain=bch)
    if sol2.rho is None or sol2.lam is None:
        return
    rho2, lam2 = sol2.rho / bs2, np.maximum(sol2.lam, 0.0) / (bs2 * bd2)
    second = certify(chain, rho2, lam2, tighten=sopts.sdp_tighten, steps=sopts.sdp_repair_steps)
    better = (second.ok and (not first.ok or second.rho < first.rho)) or not first.ok
    notes.append(f"re-solved on the rebalanced LMI: certified value {chain.value(second.rho):.9g}"
                 if second.ok else "re-solved on the rebalanced LMI: not certified")
    stats["balanced"] = bool(better)
    if better:
        sol2.rho, sol2.lam = rho2, lam2
        sv.sol, sv.solved_chain, sv.s2, sv.d2 = sol2, bch, bs2, bd2


def _margin_retries(sv: _Solve, options: RunOptions, sopts: LipSDPOptions, dl, notes: list[str]) -> float:
    """An inexact solver (SCS) may leave the hidden block slightly indefinite: no rho repairs that.
    Re-solve asking for a strictly negative hidden block (2x the violation). Returns the margin used."""
    from lipopt.sdp.lipsdp import hidden_block_max

    margin = 0.0
    for _ in range(sopts.sdp_margin_retries):
        sol = sv.sol
        if sol.rho is None or sol.lam is None or dl.remaining() <= 0:
            break
        if hidden_block_max(sv.chain, np.maximum(sol.lam, 0.0)) < 0:
            break
        top = hidden_block_max(sv.solved_chain, np.maximum(sol.lam, 0.0) * sv.s2 * sv.d2)  # solved scale
        margin = max(2.0 * top, 2.0 * margin, 1e-12)
        notes.append(f"hidden block of the LMI at {sol.outcome.solver}'s multipliers not negative definite "
                     f"(largest eigenvalue {top:.2e}): re-solved with the hidden block <= -{margin:.1e} I")
        new = sv.resolve(options, sopts, dl, hidden_margin=margin)
        if new.rho is not None and new.lam is not None:
            new.rho, new.lam = new.rho / sv.s2, np.maximum(new.lam, 0.0) / (sv.s2 * sv.d2)
        sv.sol = new
    return margin


def _stop_of(term: Any) -> StopReason:
    from lipopt_solvers import Termination

    return {Termination.OPTIMAL: StopReason.COMPLETED, Termination.TIME_LIMIT: StopReason.TIME_LIMIT,
            Termination.INTERRUPTED: StopReason.INTERRUPTED}.get(term, StopReason.SOLVER_FAILED)


def _failed_piece(common: dict, stats: dict, res: LipschitzResult) -> dict:
    return {"common": common, "stats": stats, "failed": res}


def _first_order_wanted(chain, form: str, options: RunOptions, sopts: LipSDPOptions) -> bool:
    """Whether this chain is solved by the first-order descent (``sdp_algorithm``; "auto": a block
    tri-diagonal chain above ``sdp_first_order_min_size``, no user-chosen solver)."""
    from lipopt.sdp.first_order import tridiagonal

    if form == "fast" or sopts.sdp_algorithm == "first-order":
        return True
    if sopts.sdp_algorithm == "solver" or options.solver is not None:
        return False
    red = chain.reduced() if sopts.sdp_reduce_input else chain
    return red.size > sopts.sdp_first_order_min_size and tridiagonal(chain) is not None


def _piece(method: str, chain, form: str, options: RunOptions, sopts: LipSDPOptions, dl, notes: list[str]
           ) -> dict:
    """Solve and certify one chain: {"value", "stop", "stats", "common"} or {"failed": record, ...}."""
    stats: dict = {"lmi_size": chain.size, "hidden_neurons": chain.n_hidden, "log2_scale": chain.log2_scale}
    if _first_order_wanted(chain, form, options, sopts):
        return _piece_first_order(method, chain, form, sopts, dl, notes, stats, options.progress)
    return _piece_solver(method, chain, form, options, sopts, dl, notes, stats)


def _piece_first_order(method: str, chain, form: str, sopts: LipSDPOptions, dl, notes: list[str],
                       stats: dict, progress: bool = False) -> dict:
    """ECLipsE-Fast's closed-form multipliers, then (Neuron / Layer form) the first-order descent on
    rho*(lam) (:mod:`lipopt.sdp.first_order`), then the float64 certification. ``progress``: a line
    every 5 s with the descent's value so far (an ESTIMATE until certified)."""
    from lipopt.sdp.certification import certify_closed_form
    from lipopt.sdp.first_order import DescentOptions, descend, eclipse_fast, tridiagonal

    t0 = time.perf_counter()
    tri = tridiagonal(chain)
    common: dict = {"solver": "closed form", "solver_version": None}
    if form != "fast":
        import torch

        common = {"solver": "first-order (torch)", "solver_version": torch.__version__}
    if tri is None:
        return _failed_piece(common, stats, _fail(
            method, Verdict.NOT_APPLICABLE, StopReason.NOT_RUN,
            "the first-order LipSDP needs a block tri-diagonal LMI (stable-on neurons of a local question "
            "couple layers further apart): use sdp_algorithm 'solver'"))
    start = eclipse_fast(tri)
    if start is None:
        return _failed_piece(common, stats, _fail(
            method, Verdict.ERROR, StopReason.SOLVER_FAILED,
            "ECLipsE-Fast's recursion met a singular matrix (a layer with all-zero weights?): no bound"))
    rho, lam = start
    stats.update({"algorithm": "closed form" if form == "fast" else "first-order",
                  "value_closed_form": chain.value(rho)})
    chain, rho, lam = _balance_for_descent(chain, rho, lam, stats)
    stats["rho_closed_form"] = rho
    stop = StopReason.COMPLETED
    if form != "fast" and chain.n_hidden > 0:
        from lipopt.progress import solve_reporter

        report = solve_reporter(f"{method} (first-order descent)", to_units=chain.value) if progress else None
        d = descend(chain, lam, form, DescentOptions(optimizer=sopts.sdp_fo_optimizer,
                                                     iterations=sopts.sdp_fo_iterations, lr=sopts.sdp_fo_lr,
                                                     device=sopts.sdp_device), time_left=dl.remaining,
                    progress=None if report is None else (lambda rho: report(rho, None, None)))
        rho, lam = d.rho, d.lam
        stats.update({"iterations": d.iterations, "evaluations": d.evaluations, "device": d.device,
                      "descent_stop": d.stop,
                      "descent_history": [(t, chain.value(r)) for t, r in d.history]})
        stats["optimizer"] = sopts.sdp_fo_optimizer
        notes.append(f"first-order descent ({sopts.sdp_fo_optimizer}) on rho*(lam) from ECLipsE-Fast's "
                     f"multipliers ({chain.value(stats['rho_closed_form']):.6g}): {d.iterations} steps on "
                     f"{d.device}, stopped by {d.stop}; the value is certified in float64 below")
        if d.stop == "time limit":
            stop = StopReason.TIME_LIMIT
    common.update({"raw_status": stats.get("descent_stop", "closed form"), "build_time": 0.0,
                   "solve_time": time.perf_counter() - t0})
    stats.update({"solve_size": chain.size, "solver_termination": "optimal"})
    t1 = time.perf_counter()
    cert = certify_closed_form(chain, rho, lam, steps=sopts.sdp_repair_steps)
    return _certified(method, chain, cert, stop, stats, common, notes, time.perf_counter() - t1)


def _balance_for_descent(chain, rho: float, lam: np.ndarray, stats: dict) -> tuple[Any, float, np.ndarray]:
    """The chain rescaled by powers of two per block (an exact congruence,
    :func:`lipopt.sdp.certification.balanced`) so that ECLipsE-Fast's multipliers become about 1, with
    ECLipsE-Fast's multipliers recomputed on it. In a deep net the multipliers of the original chain
    span many decades (1e-16 to 1e-2 over 64 layers), where the recursion loses its domain in rounding
    and the eigen-check its resolution; the rescaled chain's value is the original's (its power-of-two
    scale absorbs the output factor), so the descent and the certification run on it."""
    from lipopt.sdp.certification import balanced
    from lipopt.sdp.first_order import eclipse_fast, tridiagonal

    bal = balanced(chain, rho, lam) if chain.n_hidden > 0 else None
    if bal is None:
        return chain, rho, lam
    work, s2, d2 = bal
    e_s = round(math.log2(s2) / 2)
    work.log2_scale = chain.log2_scale - e_s  # value(rho') = 2^L sqrt(rho' / s2)
    tri = tridiagonal(work)
    again = eclipse_fast(tri) if tri is not None else None
    rho_w, lam_w = again if again is not None else (rho * s2, lam * d2 * s2)
    stats["balanced"] = True
    return work, rho_w, lam_w


def _piece_solver(method: str, chain, form: str, options: RunOptions, sopts: LipSDPOptions, dl,
                  notes: list[str], stats: dict) -> dict:
    """One chain through a cone solver (cvxpy), then the float64 certification."""
    from lipopt_solvers import Termination

    from lipopt.sdp.lipsdp import certify, solve_lmi

    solver, chordal = _pick_solver(chain, options, sopts, notes, stats)
    if solver is None:
        return {"common": {}, "stats": stats, "failed": _fail(
            method, Verdict.SOLVER_MISSING, StopReason.NOT_RUN,
            "no SDP solver is installed (clarabel, scs or mosek via cvxpy)")}
    left = dl.remaining()
    so = options.solver_options(None if math.isinf(left) else max(left, 0.1))
    first = solve_lmi(chain, form, solver, so, reduce_input=sopts.sdp_reduce_input, chordal=chordal)
    sv = _Solve(chain, form, solver, chordal, first, solved_chain=chain, d2=np.ones(chain.n_hidden))
    _rebalance(sv, options, sopts, dl, notes, stats)
    stats["hidden_margin"] = _margin_retries(sv, options, sopts, dl, notes)
    sol, out = sv.sol, sv.sol.outcome
    stats.update({"solve_size": sol.solve_size, "solver_termination": out.termination.value})
    common = {"solver": out.solver, "solver_version": out.solver_version, "raw_status": out.raw_status,
              "build_time": sol.build_time, "solve_time": out.solve_time}

    def failed(res: LipschitzResult) -> dict:
        return _failed_piece(common, stats, res)

    term = out.termination
    if term is Termination.NOT_AVAILABLE:
        return failed(_fail(method, Verdict.SOLVER_MISSING, StopReason.NOT_RUN, out.message, **common))
    if term is Termination.LICENSE_LIMIT:
        return failed(_fail(method, Verdict.ERROR, StopReason.LICENCE_LIMIT, out.message, **common))
    if sol.rho is None or sol.lam is None:
        stop = {Termination.TIME_LIMIT: StopReason.TIME_LIMIT, Termination.INFEASIBLE: StopReason.INFEASIBLE,
                Termination.INTERRUPTED: StopReason.INTERRUPTED}.get(term, StopReason.SOLVER_FAILED)
        return failed(_fail(method, Verdict.ERROR, stop,
                            f"the SDP solver returned no multipliers: {out.message}", **common))
    t1 = time.perf_counter()
    cert = certify(chain, sol.rho, sol.lam, tighten=sopts.sdp_tighten, steps=sopts.sdp_repair_steps)
    stop = _stop_of(term)
    if stop is StopReason.SOLVER_FAILED:
        notes.append(f"the solver stopped with {out.raw_status}; the multipliers it returned are certified "
                     "in float64 (the bound is valid, possibly loose)")
    return _certified(method, chain, cert, stop, stats, common, notes, time.perf_counter() - t1)


def _certified(method: str, chain, cert, stop: StopReason, stats: dict, common: dict, notes: list[str],
               check_time: float) -> dict:
    """The piece's outcome from its certificate: a value only when the float64 check passed."""

    def failed(res: LipschitzResult) -> dict:
        return _failed_piece(common, stats, res)

    stats.update({"check_time": check_time, "rho_solver": cert.rho_solver,
                  "lambda_max_solver": cert.check_solver.lam_max, "eigen_margin": cert.check_solver.margin,
                  "certification": cert.action, "value_solver": chain.value(cert.rho_solver)})
    notes.extend(cert.steps)
    if not cert.ok:
        res = _fail(method, Verdict.ERROR, stop, "the LMI at the solver's multipliers did not certify and no "
                    "repair of rho certified it: no bound", **common)
        res.unverified_value = chain.value(cert.rho_solver)
        res.add_check("LMI eigenvalue check (float64)", False, cert.detail())
        return failed(res)
    assert cert.rho is not None and cert.check is not None
    value = chain.value(cert.rho)
    stats.update({"rho": cert.rho, "lambda_max": cert.check.lam_max,
                  "repair_relative_change": (value / chain.value(cert.rho_solver) - 1.0)
                  if cert.rho_solver > 0 else None})
    if cert.action == "repaired":
        notes.append(f"repaired: rho {cert.rho_solver:.12g} -> {cert.rho:.12g} (multipliers fixed), value "
                     f"{chain.value(cert.rho_solver):.12g} -> {value:.12g}")
    stats["detail"] = cert.detail()
    return {"value": value, "stop": stop, "stats": stats, "common": common, "detail": cert.detail()}
