"""``method="auto"``: the best applicable method, in a documented preference order, falling through.

Preference order (the first that gives an answer is returned; its record says in a note which method was
chosen, why, and what was passed over):

1. ``enumeration``: exact, for tiny networks only (it refuses beyond ``max_relus`` ambiguous ReLUs).
2. The exact MIP of the question:

   * ``milp`` for input norm l1 / l-inf on a box, an l-inf ball or a bias-free network (exact there);
   * ``miqcqp`` for l2 (and l-inf), and before ``milp`` for the global constant of a network with
     biases, which ``milp`` can only bound (the all-patterns relaxation gives an UPPER bound) while
     ``miqcqp`` answers it exactly (projective compactification).

3. The upper bounds, tightest family first: ``lipsdp-local``, ``lipsdp-neuron``, ``lipsdp-fast``,
   ``local-affine``, ``lp-relax``, ``naive`` (then any other UPPER method).

A method is passed over when it does not apply to the question, when it refuses when run (a
``not_applicable`` record, e.g. enumeration over its ReLU limit) or when its solver is missing. A record
that ran (ok, a time limit with a bracket, an error, a failed check) is returned as it is: auto never
hides a failure behind another method's number.
"""

from __future__ import annotations

from collections.abc import Callable

from lipopt.network.network import Network
from lipopt.result import BoundKind, LipschitzResult, Verdict
from lipopt.spec import Global, Question

#: the upper bounds in order of preference (tightest family first)
UPPER_PREFERENCE = ("lipsdp-local", "lipsdp-neuron", "lipsdp-fast", "local-affine", "lp-relax", "naive")

#: verdicts after which auto tries the next method (the method gave no answer to this question)
FALL_THROUGH = (Verdict.NOT_APPLICABLE, Verdict.SOLVER_MISSING)


def bound_only(name: str, network: Network, question: Question) -> str | None:
    """Why method ``name`` (an exact method) can only bound this question, or None when it can answer
    it exactly."""
    if name == "milp" and isinstance(question.domain, Global) and network.has_bias:
        return ("milp can only bound the global constant of a network with biases (the all-patterns "
                "relaxation gives an UPPER bound)")
    return None


def exact_alternative(name: str, network: Network, question: Question) -> str | None:
    """A note for a method that can only bound a question that another method answers exactly, e.g.
    "milp can only bound ...; miqcqp answers this question exactly"; None otherwise."""
    from lipopt.methods import REGISTRY

    why = bound_only(name, network, question)
    if why is None:
        return None
    others = [o for o, info in REGISTRY.items()
              if o != name and info.kind is BoundKind.EXACT and bound_only(o, network, question) is None
              and info.applicable(network, question) is None]
    general = [o for o in others if o != "enumeration"]  # enumeration: tiny networks only
    if general:
        return f"{why}; {general[0]} answers this question exactly"
    if others:
        return f"{why}; {others[0]} answers this question exactly (on networks small enough for it)"
    return None


def preference(network: Network, question: Question, names: list[str]) -> list[str]:
    """``names`` (the applicable methods) in auto's preference order: exact methods (that answer this
    question exactly) first, then those that can only bound it, then the UPPER methods."""
    from lipopt.methods import REGISTRY

    exact = [n for n in ("enumeration", "milp", "miqcqp") if n in names]
    exact += [n for n in names if REGISTRY[n].kind is BoundKind.EXACT and n not in exact]
    exact = ([n for n in exact if bound_only(n, network, question) is None]
             + [n for n in exact if bound_only(n, network, question) is not None])
    uppers = [n for n in UPPER_PREFERENCE if n in names]
    uppers += [n for n in names if REGISTRY[n].kind is BoundKind.UPPER and n not in uppers]
    return exact + uppers


def _why(name: str, network: Network, question: Question) -> str:
    from lipopt.methods import REGISTRY

    info = REGISTRY[name]
    if info.kind is BoundKind.EXACT:
        if (limit := bound_only(name, network, question)) is not None:
            return f"the first applicable method that answers; {limit}"
        return f"the first applicable exact method ({info.description})"
    return f"no exact method applies; the most preferred upper bound ({info.description})"


def run_auto(network: Network, question: Question, names: list[str], left_out: dict[str, str],
             run: Callable[[str], LipschitzResult]) -> LipschitzResult:
    """Run the methods of ``names`` in :func:`preference` order through ``run(name)`` until one answers;
    the returned record carries notes saying which method auto chose, why, and what it passed over."""
    order = preference(network, question, names)
    passed: list[str] = [f"{n} (left out: {why})" for n, why in left_out.items()]
    res: LipschitzResult | None = None
    for name in order:
        res = run(name)
        if res.verdict not in FALL_THROUGH:
            break
        passed.append(f"{name} ({res.verdict.value}: {res.message})")
    assert res is not None  # order is never empty (the caller checks)
    chosen = res.method
    if res.verdict in FALL_THROUGH:
        res.notes.append(f"auto: no method in the preference order {', '.join(order)} gave an answer")
    else:
        after = [f"{b} after the exact methods: {why}" for b in order
                 if b != chosen and (why := bound_only(b, network, question)) is not None]
        res.notes.append(f"auto: chose {chosen}: {_why(chosen, network, question)}; preference order: "
                         f"{' > '.join(order)}" + "".join(f" ({a})" for a in after))
    if passed:
        res.notes.append("auto: passed over " + "; ".join(passed))
    return res
