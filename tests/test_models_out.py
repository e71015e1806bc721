"""lipopt.build_model: the methods' models as Pyomo models, solved and written, matching the methods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.errors import InvalidOptionsError, NotApplicableError
from lipopt.result import BoundKind
from tests import nets

pytest.importorskip("highspy")


def _net() -> lipopt.Network:
    return nets.random_mlp([3, 6, 1], seed=4)


def test_milp_model_solves_to_the_methods_exact_value() -> None:
    net = _net()
    bm = lipopt.build_model(net, "milp", norm="inf", domain="box:-1,1")
    assert len(bm.models) == 1 and bm.labels
    out = bm.solve()[0]
    exact = lipopt.lipschitz(net, "enumeration", norm="inf", domain="box:-1,1")
    assert exact.kind is BoundKind.EXACT
    assert bm.value(out.objective) == pytest.approx(exact.value, rel=1e-6)
    # the incumbent is loaded: the model's input variables hold a point of the box
    from lipopt.formulations.common import read_input

    x = read_input(bm.objects[0].forward)
    assert x.shape == (3,) and np.all(x >= -1 - 1e-9) and np.all(x <= 1 + 1e-9)
    assert np.isfinite(bm.value(out.bound)) and bm.value(out.bound) >= exact.value * (1 - 1e-6)


def test_vector_output_gives_one_model_per_row() -> None:
    net = nets.random_mlp([3, 5, 2], seed=1)
    bm = lipopt.build_model(net, "milp", norm="inf", domain="box:-1,1")
    assert len(bm.models) == 2
    with pytest.raises(ValueError, match="2 models"):
        _ = bm.model
    best = max(bm.value(o.objective) for o in bm.solve())
    exact = lipopt.lipschitz(net, "enumeration", norm="inf", domain="box:-1,1").value
    assert best == pytest.approx(exact, rel=1e-6)


def test_miqcqp_models_bracket_the_exact_l2_constant(tmp_path: Path) -> None:
    pytest.importorskip("pyscipopt")
    net = _net()
    exact = lipopt.lipschitz(net, "enumeration", norm=2, domain="box:-1,1").value
    ub = lipopt.build_model(net, "miqcqp-ub", norm=2, domain="box:-1,1")
    lb = lipopt.build_model(net, "miqcqp-lb", norm=2, domain="box:-1,1")
    v_ub = ub.value(ub.solve()[0].objective)
    v_lb = lb.value(lb.solve()[0].objective)
    assert v_lb <= exact * (1 + 1e-6) and v_ub >= exact * (1 - 1e-6)
    assert v_ub == pytest.approx(exact, rel=1e-5)  # a net in general position: P_UB is exact
    files = ub.write(tmp_path)
    assert {f.suffix for f in files} == {".lp", ".mps"} and all(f.stat().st_size > 0 for f in files)


def test_bad_requests_are_refused() -> None:
    net = _net()
    with pytest.raises(ValueError, match="unknown model kind 'milpp'"):
        lipopt.build_model(net, "milpp", norm="inf", domain="box:-1,1")
    with pytest.raises(NotApplicableError, match="milp"):
        lipopt.build_model(net, "milp", norm=2, domain="box:-1,1")  # the MILP is for l-inf / l1 inputs
    with pytest.raises(NotApplicableError, match="affine"):
        lipopt.build_model(lipopt.Network.from_weights([np.eye(2)]), "milp", norm="inf", domain="box:0,1")
    with pytest.raises(InvalidOptionsError, match="bound_methd"):
        lipopt.build_model(net, "milp", norm="inf", domain="box:-1,1",
                           options=lipopt.methods.RunOptions(extra={"milp": {"bound_methd": "lp"}}))
