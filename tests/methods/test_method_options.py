"""Each method's options are a dataclass; RunOptions.extra typos are errors that list the valid names."""

from __future__ import annotations

import dataclasses

import pytest

import lipopt
from lipopt.errors import InvalidOptionsError
from lipopt.methods import REGISTRY, RunOptions, run_method
from lipopt.options import MethodOptions
from lipopt.result import BoundKind
from lipopt.spec import make_question
from tests import nets


def _small() -> tuple[lipopt.Network, object]:
    return nets.random_mlp([2, 5, 1], seed=1), make_question("2", domain="box:-1,1")


def test_every_method_declares_an_options_dataclass() -> None:
    for name, info in REGISTRY.items():
        cls = info.options_class()
        assert issubclass(cls, MethodOptions) and dataclasses.is_dataclass(cls), name
        cls()  # every option has a default


def test_a_flat_typo_is_refused_with_the_valid_names() -> None:
    net, q = _small()
    with pytest.raises(InvalidOptionsError, match=r"'n_sample'.*n_samples"):
        run_method("sampling", net, q, RunOptions(extra={"n_sample": 10}))
    with pytest.raises(InvalidOptionsError, match=r"'n_sample'"):
        lipopt.compare(net, methods=["sampling", "naive"], question=q,
                       options=RunOptions(extra={"n_sample": 1}))


def test_a_nested_typo_names_the_method_and_its_options() -> None:
    net, q = _small()
    with pytest.raises(InvalidOptionsError, match=r"'stepz' for method 'grad-ascent'.*restarts.*steps"):
        run_method("grad-ascent", net, q, RunOptions(extra={"grad-ascent": {"stepz": 3}}))
    with pytest.raises(InvalidOptionsError, match=r"'samplng'.*not a method"):
        run_method("sampling", net, q, RunOptions(extra={"samplng": {"n_samples": 3}}))


def test_flat_and_nested_options_reach_the_method() -> None:
    net, q = _small()
    r = run_method("sampling", net, q, RunOptions(extra={"n_samples": 37}))
    assert r.options["n_samples"] == 37 and r.kind is BoundKind.LOWER
    # a flat key of another method is not a typo; a method's own dict applies to that method only
    extra = {"bound_method": "interval", "sampling": {"n_samples": 11}}
    rs = lipopt.compare(net, methods=["sampling", "grad-ascent"], question=q, options=RunOptions(extra=extra))
    assert rs["sampling"].options["n_samples"] == 11
    assert rs["grad-ascent"].options["n_init"] == 1000 and rs["grad-ascent"].kind is BoundKind.LOWER


def test_miqcqp_sub_methods_take_their_own_dict() -> None:
    pytest.importorskip("pyscipopt")
    net, q = _small()
    r = run_method("miqcqp-ub", net, q, RunOptions(extra={"miqcqp-ub": {"warm_start": False}}))
    assert r.verdict.value == "ok" and r.value is not None
    with pytest.raises(InvalidOptionsError, match=r"'warmstart' for method 'miqcqp-ub'"):
        run_method("miqcqp-ub", net, q, RunOptions(extra={"miqcqp-ub": {"warmstart": False}}))


def test_first_run_reports_its_warm_up_apart() -> None:
    """The one-off imports of a method's first run (torch for naive) are reported as warmup_time, not
    in wall_time, so a time-versus-size figure compares like with like."""
    import json
    import subprocess
    import sys

    code = (
        "import json, numpy as np\n"
        "from lipopt.methods import run_method\n"
        "from lipopt.network.network import Network\n"
        "from lipopt.spec import make_question\n"
        "net = Network.from_weights([np.eye(3), np.ones((1, 3))])\n"
        "q = make_question('2', domain='box:-1,1')\n"
        "a, b = run_method('naive', net, q), run_method('naive', net, q)\n"
        "print(json.dumps([a.stats.get('warmup_time'), a.wall_time, b.stats.get('warmup_time'), b.value]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    warm, wall, warm2, value = json.loads(out.stdout.strip().splitlines()[-1])
    assert warm is not None and warm > wall  # importing torch costs more than the product of two norms
    assert warm2 is None and value == pytest.approx(3 ** 0.5)  # ||(1 1 1)||_2 * ||I||_2
