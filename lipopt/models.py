"""Models out: the MIP / MIQCQP models lipopt solves, built as Pyomo models a user can print, change,
write to files and solve with any solver.

    bm = lipopt.build_model(net, "milp", norm="inf", domain="box:0,0.1")
    bm.model.pprint()                    # the Pyomo model (one per output piece: bm.models)
    bm.write("models/")                  # .lp and .mps files (HiGHS or SCIP read them back)
    out = bm.solve()                     # through lipopt's solver layer; bm.value(out) in Lipschitz units

The models are built exactly as the methods build them (same bounds, normalisation and encodings), on
the normalised network: a model's objective times ``factor`` (after a square root for the squared l2
objective of a vector output) is in the units of the original network. A solver's optimum is the value of
the formulation, which bounds the constant from the side the method states; lipopt's methods add the
witness certification that turns it into a certified bracket.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lipopt.errors import NotApplicableError
from lipopt.options import RunOptions

__all__ = ["KINDS", "BuiltModel", "build_model"]

KINDS = ("milp", "lp-relax", "miqcqp-ub", "miqcqp-lb")


@dataclass
class BuiltModel:
    kind: str
    models: list[Any]  # Pyomo ConcreteModels, maximisations
    labels: list[str]  # what each model is (the output piece, or the MIQCQP problem)
    factor: float  # Lipschitz units = factor * (objective, or its square root for a squared objective)
    squared: list[bool]  # per model: whether the objective is the squared l2 norm
    objects: list[Any]  # the formulation objects (MilpModel / MiqcqpModel: patterns, inputs, bounds)
    notes: list[str] = field(default_factory=list)

    @property
    def model(self) -> Any:
        """The model, when there is one (a vector l-inf output gives one MILP per output row)."""
        if len(self.models) != 1:
            raise ValueError(f"{len(self.models)} models ({', '.join(self.labels)}): use .models")
        return self.models[0]

    def value(self, objective: float, index: int = 0) -> float:
        """A model objective value in the Lipschitz units of the original network."""
        v = max(float(objective), 0.0) ** 0.5 if self.squared[index] else float(objective)
        return self.factor * v

    def write(self, folder: str | Path) -> list[Path]:
        """Each model as ``<kind>-<k>.lp`` and ``.mps`` in ``folder`` (linear ones written by HiGHS,
        quadratic ones by SCIP; names say which layer and neuron each row and column belongs to)."""
        from lipopt_solvers.compile import compile_pyomo
        from lipopt_solvers.files import write_model

        out = []
        for k, m in enumerate(self.models):
            arrays = compile_pyomo(m, "max").arrays
            out += [write_model(arrays, Path(folder) / f"{self.kind}-{k}{ext}") for ext in (".lp", ".mps")]
        return out

    def solve(self, solver: str | None = None, options: RunOptions | None = None) -> list[Any]:
        """Solve every model through the solver layer (default: HiGHS for MILPs, SCIP for MIQCQPs);
        the incumbents are loaded into the models' variables."""
        from lipopt_solvers import Capability, default_solver, solve_pyomo

        options = options or RunOptions()
        cap = Capability.MIQCQP if self.kind.startswith("miqcqp") else Capability.MILP
        name = solver or options.solver or default_solver(cap)
        return [solve_pyomo(m, name, options.solver_options(options.time_limit), sense="max")
                for m in self.models]


def build_model(net: Any, kind: str, *, question: Any = None, options: RunOptions | None = None,
                **question_kw: Any) -> BuiltModel:
    """The models of method ``kind`` ("milp", "lp-relax", "miqcqp-ub", "miqcqp-lb") for a question
    (``question=`` or the keywords of :func:`lipopt.spec.make_question`: norm, domain, output, ...).
    Method options (``options.extra``) are those of the method, checked the same way."""
    from lipopt.api import _network, _question
    from lipopt.methods import check_method_options, get_method

    if kind not in KINDS:
        raise ValueError(f"unknown model kind {kind!r}; supported: {', '.join(KINDS)}")
    network = _network(net)
    q = _question(question, question_kw).bind(network)
    options = options or RunOptions()
    check_method_options(options, [kind])
    info = get_method(kind)
    reason = info.applicable(network, q)
    if reason is not None:
        raise NotApplicableError(f"{kind}: {reason}")
    if network.n_relus == 0 and not network.has_maxpool:
        raise NotApplicableError(f"{kind}: the network is affine (no ReLU or max-pool): its constant is the "
                                 "norm of its weight matrix, which needs no model")
    if kind in ("milp", "lp-relax"):
        return _milp(network, q, options, kind)
    return _miqcqp(network, q, options, kind)


def _milp(network: Any, q: Any, options: RunOptions, kind: str) -> BuiltModel:
    from lipopt.formulations.milp import build_milp, output_pieces
    from lipopt.methods.milp import DEFAULT_SOLVER, Options, prepare

    o = Options.from_run(options, kind)
    setup = prepare(network, q, o, options.solver or DEFAULT_SOLVER)
    pieces = output_pieces(q, network.output_size, o.vector_encoding)
    forward = setup.mode != "all-patterns"
    relax = kind == "lp-relax"
    mms = [build_milp(setup.bounds, q.input_norm, p, relax=relax, forward=forward) for p in pieces]
    return BuiltModel(kind, [mm.model for mm in mms], [p.label or p.kind for p in pieces], setup.norm.factor,
                      [False] * len(mms), mms, setup.notes)


def _miqcqp(network: Any, q: Any, options: RunOptions, kind: str) -> BuiltModel:
    from lipopt.formulations.miqcqp import build_model as build_miqcqp
    from lipopt.methods.miqcqp import Options, prepare

    problem = "ub" if kind == "miqcqp-ub" else "lb"
    cfg = dataclasses.asdict(Options.from_run(options, kind))
    setup = prepare(network, q, cfg)
    mm = build_miqcqp(setup.net_m, q, dataclasses.replace(setup.config, problem=problem), bounds=setup.bounds,
                      iset=setup.iset)
    label = "P_UB (closed activation regions)" if problem == "ub" else "P_LB,eps (epsilon-margin regions)"
    return BuiltModel(kind, [mm.model], [label], setup.factor, [mm.objective == "quadratic"], [mm],
                      setup.notes)
