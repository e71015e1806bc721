"""benchmarks/reproduce_avant.py on a two-point LeNet grid: every number on the side it claims (the
certified LOWERs below the UPPERs, the tight column never above the default one, the certified radius
below the PGD distance and above the global-bound radius), and the report and figure written."""

from __future__ import annotations

import pytest

from tests.paths import EXTERNAL

pytest.importorskip("torch")


@pytest.fixture(autouse=True)
def _one_thread():
    from lipopt.analytic._threads import limit_threads

    with limit_threads(1):
        yield


def test_lenet_two_points(tmp_path, monkeypatch) -> None:
    if not (EXTERNAL / "avant" / "mnist_lenet_ckpt_99.ckpt").is_file():
        pytest.skip("the Avant checkpoints are not present")
    import benchmarks.reproduce_avant as ra

    res = ra.run_net("lenet", 2, 4, 0, tight_limit=ra.TIGHT_LIMIT)
    assert [r["eps"] for r in res["rows"]] == [0.001, 7.0]  # the seed's grid ends
    for r in res["rows"]:
        assert max(r["lower_gradient"], r["lower_random"]) <= r["tight_upper"] * (1 + 1e-12)
        assert r["tight_upper"] <= r["local_upper"] * (1 + 1e-12) <= r["global_upper"] * (1 + 1e-9)
        assert r["tight_all_exact"] or not r["local_all_exact"]
    assert res["tight_global_upper"] <= res["global_upper"] * (1 + 1e-12)
    for k in ("local_", "tight_"):
        assert res[f"radius_{k}global"] <= res[f"radius_{k}"] * (1 + 1e-12)
    assert res["radius_local_"] <= res["radius_tight_"] * (1 + 2e-3)  # each search: rtol 1e-3
    if res["pgd_distance"] is not None:
        assert res["radius_tight_"] <= res["pgd_distance"]
    monkeypatch.setattr(ra, "RESULTS", tmp_path)
    paths = ra.plot(res)
    assert all((tmp_path / p.split("/")[-1]).stat().st_size > 1000 for p in paths)
    text = ra.report([res])
    assert "Table II, default" in text and "Table II, cholesky_limit 30000" in text
    assert "Table III" in text and "smallest eps 0.001" in text
