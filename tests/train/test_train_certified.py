"""Certified local constants and radii of trained nets (lipopt.train.certified), on a tiny iris net.

References: region enumeration on the same ball question (EXACT) must lie in each point's bracket; the
certified radius is checked by sampling the ball of that radius (no class change) and the margin / global
upper bound radius by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lipopt.train.certified import LocalEvalOptions, local_evaluation, sample_points  # noqa: E402
from lipopt.train.clip import train  # noqa: E402
from lipopt.train.data import Dataset, _split  # noqa: E402
from lipopt.train.options import TrainOptions  # noqa: E402


@pytest.fixture(scope="module")
def iris_net(tmp_path_factory):
    datasets = pytest.importorskip("sklearn.datasets")
    from lipopt.network.load import load
    from lipopt.train.record import write_training

    x, y = datasets.load_iris(return_X_y=True)
    x = ((x - x.min(0)) / (x.max(0) - x.min(0))).astype(np.float32)
    xtr, ytr, xte, yte = _split(x, y.astype(np.int64), 0.25, 0)
    data = Dataset("iris", xtr, ytr, xte, yte, (4,), 3, "classification", "sklearn load_iris, min-max")
    res = train(data, TrainOptions(hidden=(6,), regulariser="none", epochs=15, batch_size=16, threads=1))
    path = tmp_path_factory.mktemp("iris") / "iris.npz"
    write_training(res, data, path)
    return load(path), data


def test_local_brackets_contain_the_exact_local_constant(iris_net):
    from lipopt.methods import RunOptions, run_method
    from lipopt.spec import Ball, Norm, make_question

    net, data = iris_net
    glob = run_method("naive", net, make_question(2), RunOptions()).value
    opts = LocalEvalOptions(points=3, eps_l2=0.3, eps_linf=0.1, norms=("l2", "linf"), time_limit=30)
    summary, records = local_evaluation(net, data.x_test, data.y_test, opts, {"l2": glob})
    idx = sample_points(len(data.x_test), 3, 0)
    assert [p["index"] for p in summary["per_point"]] == list(idx)
    for p in summary["per_point"]:
        x0 = data.x_test[p["index"]].astype(np.float64)
        for norm, eps in (("l2", 0.3), ("linf", 0.1)):
            n = Norm.parse(norm)
            exact = run_method("enumeration", net, make_question(n, domain=Ball(x0, eps, n)),
                               RunOptions(time_limit=60))
            assert exact.kind.value == "EXACT"
            lo, up = p[f"local_lower_{norm}"], p[f"local_upper_{norm}"]
            assert lo <= exact.value * (1 + 1e-9) and exact.value <= up * (1 + 1e-9)
        assert p["local_upper_l2"] <= glob  # the global UPPER bounds the local constant
        assert p["nominal_lower_l2"] <= p["nominal_upper_l2"] * (1 + 1e-9)
    for key in ("local_lower_l2", "local_upper_linf", "nominal_upper_l2"):
        assert summary[key] == pytest.approx(np.mean([p[key] for p in summary["per_point"]]))
    assert summary["consistent"] and summary["points"] == 3
    assert {r["question_name"] for r in records} == {"local l2", "local linf", "nominal l2"}
    assert all(r["verdict"] == "ok" for r in records)


def test_certified_radius_holds_by_sampling(iris_net):
    net, data = iris_net
    glob = 40.0  # any certified UPPER works for the global-bound radius; a loose one checks the formula
    summary, _ = local_evaluation(net, data.x_test, data.y_test,
                                  LocalEvalOptions(points=4, norms=(), time_limit=10), {"l2": glob})
    rng = np.random.default_rng(0)
    assert sum(p["correct"] for p in summary["per_point"]) >= 2
    for p in summary["per_point"]:
        x0 = data.x_test[p["index"]].astype(np.float64)
        out = net.forward(x0)
        top2 = np.sort(out)[-2:]
        assert p["margin"] == pytest.approx(top2[1] - top2[0])
        if not p["correct"]:
            assert p["radius_local_l2"] == 0.0 and p["radius_global_l2"] == 0.0
            continue
        assert p["radius_global_l2"] == pytest.approx(p["margin"] / (math.sqrt(2) * glob))
        r = p["radius_local_l2"]
        assert r > 0
        d = rng.standard_normal((2000, 4))
        d *= (r * rng.uniform(0, 1, (2000, 1)) ** 0.25) / np.linalg.norm(d, axis=1, keepdims=True)
        d[:20] *= r / np.linalg.norm(d[:20], axis=1, keepdims=True) * (1 - 1e-9)  # on the sphere too
        preds = [int(np.argmax(net.forward(x0 + di))) for di in d]
        assert all(q == p["predicted"] for q in preds)
