"""What a process pays on its first call (issues 13 and 14, benchmarks/bench_tiny.py): heavy imports only
where used, Pyomo's eager scipy submodules disarmed, HiGHS' small-MIP options. No wall-clock asserts:
these pin the structure (what is imported, which options a solve gets) and that the results are the
same either way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lipopt.methods import RunOptions, run_method
from lipopt.network.network import Network
from lipopt.spec import AllOutputs, Box, Norm, Question

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "cvxpy", "pyomo", "scipy", "pandas", "matplotlib", "highspy", "pyscipopt", "sympy")


def _py(code: str) -> str:
    """Run ``code`` in a fresh interpreter (the repository on its path); its last stdout line."""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


_LOADED = (
    f"import sys; print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))"
)


def test_front_doors_import_nothing_heavy() -> None:
    """``import lipopt`` and the modules ``lipopt compute`` starts with (CLI, API, registry, parser,
    loader) import no torch, cvxpy, Pyomo, scipy, pandas or matplotlib."""
    code = (
        "import json, lipopt, lipopt.cli, lipopt.api, lipopt.methods, lipopt.auto, lipopt.network.load, "
        "lipopt.bounds, lipopt.exact.bab, lipopt.methods.milp, lipopt.methods.bab, "
        "lipopt.methods.enumeration; lipopt.cli.build_parser(); " + _LOADED
    )
    assert json.loads(_py(code)) == []


def test_dense_net_lowering_imports_no_scipy() -> None:
    """A dense net's lowering (its affine stages) needs no scipy.sparse."""
    code = (
        "import json, numpy as np; from lipopt.network.network import Network; "
        "net = Network.from_weights([np.ones((3, 2)), np.ones((1, 3))], [np.zeros(3), np.zeros(1)]); "
        "assert len(net.lower()) == 3; " + _LOADED
    )
    assert "scipy" not in json.loads(_py(code))


_TINY = (
    "import json, numpy as np\n"
    "from lipopt.methods import RunOptions, run_method\n"
    "from lipopt.network.network import Network\n"
    "from lipopt.spec import AllOutputs, Box, Norm, Question\n"
    "rng = np.random.default_rng(3)\n"
    "net = Network.from_weights([rng.normal(size=(6, 3)), rng.normal(size=(5, 6)), rng.normal(size=(2, 5))],"
    " [rng.normal(size=6), rng.normal(size=5), rng.normal(size=2)])\n"
    "q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0), AllOutputs())\n"
)


def test_milp_first_call_without_scipy_stats() -> None:
    """A process whose first method is milp does not import scipy.stats (Pyomo's hook disarmed), Pyomo's
    own deferred scipy still resolves to its submodules, and the certified bracket is the one of a process
    that keeps the hook (``defer_pyomo_scipy`` replaced by a no-op)."""
    rows = []
    for patch in ("", "import lipopt.methods as M\nM.defer_pyomo_scipy = lambda: False\n"):
        code = (
            _TINY + patch + "r = run_method('milp', net, q, RunOptions(threads=1))\n"
            "import sys\n"
            "stats_loaded = 'scipy.stats' in sys.modules\n"
            "from pyomo.common.dependencies import scipy, scipy_available\n"
            "assert bool(scipy_available) and scipy.stats.norm.cdf(0.0) == 0.5\n"
            "print(json.dumps([r.kind.value, r.lower, r.upper, stats_loaded]))\n"
        )
        rows.append(json.loads(_py(code)))
    (k1, lo1, up1, loaded1), (k2, lo2, up2, loaded2) = rows
    assert k1 == k2 == "EXACT" and not loaded1 and loaded2
    assert lo1 == lo2 and up1 == up2


def test_compare_disarms_before_a_scipy_method() -> None:
    """In a comparison, enumeration (scipy.sparse, no Pyomo) runs before milp: the hook is disarmed
    before the first method, so scipy.stats is still not imported."""
    code = (
        _TINY + "from lipopt.api import compare\n"
        "rs = compare(net, methods=['enumeration', 'milp'], question=q, options=RunOptions(threads=1))\n"
        "import sys\n"
        "print(json.dumps([[r.kind.value for r in rs], 'scipy.stats' in sys.modules]))\n"
    )
    kinds, stats_loaded = json.loads(_py(code))
    assert kinds == ["EXACT", "EXACT"] and not stats_loaded


def test_defer_is_a_no_op_once_scipy_is_imported() -> None:
    code = "import scipy, lipopt.methods as M; print(M.defer_pyomo_scipy())"
    assert _py(code) == "False"
    code = (
        "import lipopt.methods as M; a = M.defer_pyomo_scipy(); b = M.defer_pyomo_scipy(); "
        "import scipy.sparse, sys; print(a, b, 'scipy.stats' in sys.modules)"
    )
    assert _py(code) == "True False False"


def test_uses_pyomo() -> None:
    from lipopt.methods import uses_pyomo

    assert uses_pyomo(["enumeration", "milp"]) and uses_pyomo(["miqcqp"]) and uses_pyomo(["lp-relax"])
    assert not uses_pyomo(["enumeration", "bab", "naive", "sampling", "no-such-method"])


# ------------------------------------------------------------------------------- small-MIP HiGHS options


def test_small_mip_options() -> None:
    from lipopt.methods.milp import SMALL_MIP_BINARIES, SMALL_MIP_HIGHS, small_mip_options

    assert small_mip_options("highs", SMALL_MIP_BINARIES) == SMALL_MIP_HIGHS
    assert small_mip_options("highs", SMALL_MIP_BINARIES + 1) == {}
    assert small_mip_options("highs", 0) == {}  # an LP (lp-relax): nothing
    assert small_mip_options("scip", 4) == {} and small_mip_options("highs", 4, enabled=False) == {}


def _tiny_net(seed: int = 3) -> Network:
    rng = np.random.default_rng(seed)
    return Network.from_weights(
        [rng.normal(size=(6, 3)), rng.normal(size=(5, 6)), rng.normal(size=(2, 5))],
        [rng.normal(size=6), rng.normal(size=5), rng.normal(size=2)],
    )


@pytest.mark.parametrize("p", [Norm.LINF, Norm.L1])
def test_small_mip_tuning_same_bracket(p: Norm) -> None:
    """milp with and without the small-MIP options: the same certified value (the lower side is a
    re-evaluated witness) and upper sides within the solver gap; each solve records the options."""
    net = _tiny_net()
    q = Question(p, p, Box(-1.0, 1.0), AllOutputs())
    a = run_method("milp", net, q, RunOptions(threads=1))
    b = run_method("milp", net, q, RunOptions(threads=1, extra={"small_mip_tuning": False}))
    assert a.kind.value == b.kind.value == "EXACT"
    assert a.lower == pytest.approx(b.lower, rel=1e-9)
    assert a.upper == pytest.approx(b.upper, rel=a.rel_tol)


def test_small_mip_options_reach_the_solver_and_user_options_win(monkeypatch: pytest.MonkeyPatch) -> None:
    import lipopt_solvers

    seen: list[dict] = []
    real = lipopt_solvers.solve_pyomo

    def spy(model, solver, options=None, **kw):
        seen.append(dict(options.extra))
        return real(model, solver, options, **kw)

    monkeypatch.setattr(lipopt_solvers, "solve_pyomo", spy)
    net = _tiny_net()
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0), AllOutputs())
    run_method("milp", net, q, RunOptions(threads=1))
    assert seen and all(e == {"mip_heuristic_run_rins": False, "mip_heuristic_run_rens": False} for e in seen)
    seen.clear()
    run_method("milp", net, q, RunOptions(threads=1, solver_params={"mip_heuristic_run_rins": True}))
    assert seen and all(e["mip_heuristic_run_rins"] is True for e in seen)
    seen.clear()
    run_method("milp", net, q, RunOptions(threads=1, extra={"small_mip_tuning": False}))
    assert seen and all(e == {} for e in seen)


def test_refused_small_mip_option_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """A HiGHS that does not know one of the options (an older version): the MIP is solved again with the
    user's options alone, and the record is the same."""
    import lipopt.methods.milp as milp

    net = _tiny_net()
    q = Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0), AllOutputs())
    ref = run_method("milp", net, q, RunOptions(threads=1))
    monkeypatch.setattr(milp, "SMALL_MIP_HIGHS", {"no_such_highs_option_xyz": True})
    r = run_method("milp", net, q, RunOptions(threads=1))
    assert r.kind.value == "EXACT" and r.lower == pytest.approx(ref.lower, rel=1e-9)
    assert all(s["termination"] == "optimal" for p in r.stats["pieces"] for s in p.get("solves", []))
