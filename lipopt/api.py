"""The Python front door: ``lipopt.lipschitz(...)`` for one method, ``lipopt.compare(...)`` for a table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lipopt.methods import RunOptions, defer_pyomo_scipy, get_method, run_method, uses_pyomo
from lipopt.network.network import Network
from lipopt.network.normalization import in_input_space
from lipopt.result import LipschitzResult, ResultSet
from lipopt.spec import Question, make_question


def _network(net: Any) -> Network:
    if isinstance(net, Network):
        return net
    from lipopt.network.load import load

    return load(net)


def _question(question: Question | None, kw: dict[str, Any]) -> Question:
    if question is not None:
        if kw:
            raise TypeError(f"pass either a Question or question keywords, not both (got {sorted(kw)})")
        return question
    return make_question(**kw)


def _options(options: RunOptions | None, time_limit: float | None, solver: str | None, seed: int | None,
             device: str | None) -> RunOptions:
    base = options or RunOptions()
    changes: dict[str, Any] = {}
    if time_limit is not None:
        changes["time_limit"] = time_limit
    if solver is not None:
        changes["solver"] = solver
    if seed is not None:
        changes["seed"] = seed
    if device is not None:
        changes["device"] = device
    if not changes:
        return base
    from dataclasses import replace

    return replace(base, **changes)


def _left_out_record(name: str, why: str, network: Network, q: Question) -> LipschitzResult:
    from lipopt.methods import post_run_checks
    from lipopt.result import Verdict

    info = get_method(name)
    res = LipschitzResult(name, info.kind, None, verdict=Verdict.NOT_APPLICABLE, message=why,
                          question=q.to_dict(), network=network.name or network.describe())
    res.declared_kind = info.kind
    return post_run_checks(res)


def lipschitz(
    net: Any,
    method: str = "auto",
    question: Question | None = None,
    *,
    options: RunOptions | None = None,
    time_limit: float | None = None,
    solver: str | None = None,
    seed: int | None = None,
    device: str | None = None,
    **question_kw: Any,
) -> LipschitzResult:
    """Run one method on one question.

    ``net``: a Network, a torch module, a file path or a list of (W, b).
    ``question`` or keywords of :func:`lipopt.spec.make_question` (norm, domain, output, nominal,
    center, input_norm, output_norm, input_space). ``input_space="normalized"`` answers the question in the
    network's normalised input space u = (x - mean) / std (the network must record its normalisation, see
    :mod:`lipopt.network.normalization`); the default is raw inputs. ``method="auto"`` runs the applicable
    methods in the preference order of :mod:`lipopt.auto` (enumeration for tiny nets, milp / miqcqp, then
    the upper bounds) until one answers, and says in the record's notes which it chose and why. Bad options
    raise :class:`lipopt.errors.InvalidOptionsError` (see :func:`compare`).
    """
    from lipopt.errors import NoApplicableMethodError
    from lipopt.validation import validate_options, validate_request

    opts = validate_options(_options(options, time_limit, solver, seed, device))
    q = _question(question, question_kw)
    network = in_input_space(_network(net), q.input_space)
    q = q.bind(network)
    if method == "auto":  # the preference order and the fall-through are in lipopt.auto
        from lipopt.auto import preference, run_auto

        plan = validate_request(network, q, None, opts)
        names = plan.names
        if not preference(network, q, names):
            raise NoApplicableMethodError(
                f"no exact or upper-bound method applies to this question ({q.describe()}); applicable: "
                f"{', '.join(names) or 'none'}; left out: "
                + ("; ".join(f"{n}: {r}" for n, r in plan.left_out.items()) or "none"))
        return run_auto(network, q, names, plan.left_out, lambda n: run_method(n, network, q, plan.options))
    plan = validate_request(network, q, [method], opts)
    return _note_exact_alternative(run_method(method, network, q, plan.options), network, q)


def _note_exact_alternative(res: LipschitzResult, network: Network, q: Question) -> LipschitzResult:
    from lipopt.auto import exact_alternative

    if res.verdict.value == "ok" and (note := exact_alternative(res.method, network, q)) is not None:
        res.notes.append(note)
    return res


def _interrupted_record(name: str, network: Any, q: Question, started: bool = True) -> LipschitzResult:
    from lipopt.methods import get_method
    from lipopt.result import StopReason, Verdict

    info = get_method(name)
    why = ("interrupted (Ctrl-C) before it had certified a bound" if started
           else "not run: the run was interrupted (Ctrl-C)")
    verdict = Verdict.ERROR if started else Verdict.NOT_APPLICABLE
    stop = StopReason.INTERRUPTED if started else StopReason.NOT_RUN
    return LipschitzResult(name, info.kind, None, verdict=verdict, stop=stop, message=why,
                           question=q.to_dict(), network=network.name or network.describe())


def compare(
    net: Any,
    methods: Sequence[str] | None = None,
    question: Question | None = None,
    *,
    options: RunOptions | None = None,
    time_limit: float | None = None,
    solver: str | None = None,
    seed: int | None = None,
    title: str = "",
    **question_kw: Any,
) -> ResultSet:
    """Run several methods on one question and return a ResultSet (``print(rs)`` shows the table).

    ``methods=None`` runs every applicable default method; an explicit list runs those named (methods
    that do not apply are reported as not applicable). ``time_limit``, ``solver`` and ``seed`` override
    the fields of ``options`` (a :class:`RunOptions`; the device, threads, ... are set there);
    ``options.progress`` prints one line per method to stderr.

    Bad options (unknown solver, a solver without the capability an explicitly named method needs,
    threads < 1, a time limit that is NaN or <= 0; ``inf`` means no limit) raise
    :class:`lipopt.errors.InvalidOptionsError` before anything runs; with ``methods=None`` and no
    applicable method, :class:`lipopt.errors.NoApplicableMethodError` lists every method and its reason
    (see :mod:`lipopt.validation`)."""
    from lipopt.validation import validate_options, validate_request

    opts = validate_options(_options(options, time_limit, solver, seed, None))
    q = _question(question, question_kw)
    network = in_input_space(_network(net), q.input_space)
    q = q.bind(network)
    plan = validate_request(network, q, list(methods) if methods else None, opts)
    names, opts = plan.names, plan.options
    progress = opts.progress
    from lipopt_solvers import interrupts

    rs = ResultSet(title=title or (network.name or ""))
    interrupts.clear()
    if uses_pyomo(names):  # before a method without Pyomo imports scipy (lipopt.methods.defer_pyomo_scipy)
        defer_pyomo_scipy()
    for i, name in enumerate(names):
        if progress:
            import sys

            print(f"[{i + 1}/{len(names)}] {name} ...", file=sys.stderr, flush=True)
        try:
            res = run_method(name, network, q, opts)
        except KeyboardInterrupt:  # outside a solver (bounds, warm start, sampling): nothing certified
            interrupts.request()
            res = _interrupted_record(name, network, q)
        if progress:
            import sys

            print(f"      {res.summary()}", file=sys.stderr, flush=True)
        rs.append(_note_exact_alternative(res, network, q))
        if interrupts.requested():  # one Ctrl-C stops the run; what was certified so far stays
            rs.interrupted = True
            for later in names[i + 1:]:
                rs.append(_interrupted_record(later, network, q, started=False))
            break
    for name, why in plan.left_out.items():  # default methods that cannot use the chosen solver
        rs.append(_left_out_record(name, why, network, q))
    check = rs.consistency()
    if not check.passed:
        for r in rs:
            r.notes.append(f"cross-method check failed: {check.detail}")
    return rs
