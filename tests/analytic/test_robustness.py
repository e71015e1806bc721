"""Certified radius (Prop. 6, T11), adversarial search, the certify report, plot and CLI."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lipopt.analytic.robustness import certified_radius, certify, plot_report
from lipopt.lower.adversarial import Search, fgsm_l2, minimal_adversarial, pgd_l2
from lipopt.network.layers import Conv2d, Dense, Flatten, MaxPool2d, ReLU
from lipopt.network.network import Network


@pytest.fixture(autouse=True)
def _one_thread():
    from lipopt.analytic._threads import limit_threads

    with limit_threads(1):
        yield


def identity2() -> Network:
    return Network([Dense(np.eye(2), None)], (2,), name="identity")


def small_cnn(seed: int = 0) -> Network:
    rng = np.random.default_rng(seed)
    return Network([
        Conv2d(rng.normal(size=(3, 1, 3, 3)), rng.normal(size=3) * 0.1), ReLU(), MaxPool2d(2, 2),
        Flatten(), Dense(rng.normal(size=(4, 12)), rng.normal(size=4) * 0.1),
    ], (1, 7, 7), name="cnn")


def test_t11_certified_radius() -> None:
    rad = certified_radius(identity2(), np.array([1.0, 0.0]))
    assert rad.margin == pytest.approx(1.0)
    assert rad.radius_global == pytest.approx(1 / math.sqrt(2), rel=1e-8)
    assert rad.radius == pytest.approx(1 / math.sqrt(2), rel=1e-6)
    assert rad.radius * rad.bound_at_radius < 1 / math.sqrt(2)
    adv = minimal_adversarial(identity2(), np.array([1.0, 0.0]), eps_max=2.0)
    assert adv.found and adv.new_label == 1
    assert adv.distance >= rad.radius
    assert adv.distance == pytest.approx(1 / math.sqrt(2), rel=1e-2)


def test_adversarial_examples_are_verified() -> None:
    net = small_cnn()
    x0 = np.random.default_rng(1).random(net.input_size)
    label = int(np.argmax(net.forward(x0)))
    for res in (fgsm_l2(net, x0, 5.0), pgd_l2(net, x0, 5.0, search=Search(steps=30))):
        if res.found:
            assert int(np.argmax(net.forward(res.x))) != label
            assert np.linalg.norm(res.x - x0) == pytest.approx(res.distance)
            assert res.distance <= 5.0 * (1 + 1e-12)
    rad = certified_radius(net, x0)
    adv = minimal_adversarial(net, x0, eps_max=10.0)
    if adv.found:
        assert adv.distance >= rad.radius
    assert rad.radius >= rad.radius_global * (1 - 1e-9) or rad.radius == 0.0


def test_certify_report_and_plot(tmp_path) -> None:
    net = small_cnn(2)
    x0 = np.random.default_rng(3).random(net.input_size)
    rep = certify(net, x0, [0.01, 0.1, 1.0])
    ups = [r.local_upper for r in rep.rows]
    assert ups == sorted(ups)
    for r in rep.rows:
        assert r.lower <= r.local_upper * (1 + 1e-9)
        assert r.local_upper <= r.global_upper * (1 + 1e-9)
    assert "certified l2 radius" in rep.table()
    out = plot_report(rep, str(tmp_path / "b.png"))
    assert (tmp_path / "b.png").stat().st_size > 1000
    assert out == [str(tmp_path / "b.png"), str(tmp_path / "b.pdf")] and (tmp_path / "b.pdf").is_file()
    json.dumps(rep.to_dict(), default=float)


def test_cli_certify(tmp_path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    import lipopt.cli_certify as cc
    from lipopt.cli import main

    net = small_cnn(4)
    monkeypatch.setattr(cc, "load_network", lambda path: net)
    x0 = np.random.default_rng(5).random(net.input_shape)
    np.save(tmp_path / "x.npy", x0)
    plt.imsave(tmp_path / "x.png", x0[0], cmap="gray", vmin=0, vmax=1)
    for inp in ("x.npy", "x.png"):
        js = tmp_path / f"{inp}.json"
        rc = main(["certify", "net.ckpt", "--input", str(tmp_path / inp), "--eps", "0.01,0.1",
                   "--plot", str(tmp_path / f"{inp}.plot.png"), "--json", str(js), "--no-adversarial"])
        assert rc == 0
        d = json.loads(js.read_text())
        assert len(d["rows"]) == 2 and all(r["lower"] <= r["local_upper"] for r in d["rows"])
        prov = d["provenance"]  # the same provenance block as lipopt compute's JSON
        assert d["schema"] == "lipopt.robustness/2" and prov["command"] == "certify"
        assert prov["lipopt_version"] and prov["options"]["eps"] == "0.01,0.1" and prov["timestamp"]
        assert (tmp_path / f"{inp}.plot.png").exists()
    assert main(["certify", "net.ckpt", "--input", str(tmp_path / "x.npy"), "--eps", "-1"]) == 2
    np.save(tmp_path / "bad.npy", np.zeros(7))
    assert main(["certify", "net.ckpt", "--input", str(tmp_path / "bad.npy")]) == 2


def test_cholesky_limit_trades_tightness_for_time(tmp_path, monkeypatch, capsys) -> None:
    """``cholesky_limit``: masked layers above it get the looser sound bound (max r x ||A|| or Schur), so
    the local bound can only grow, stays above the certified lower bound, and the record says which layers
    were not exact; the CLI flag and ``-o cholesky_limit`` reach it, and a bad value is a clear error."""
    from lipopt.analytic.local_bound import LocalBoundComputer, LocalOptions
    from lipopt.analytic.spectral import SpectralOptions
    from lipopt.methods import RunOptions, run_method
    from lipopt.spec import AllOutputs, Ball, Norm, Question

    net = small_cnn(6)
    x0 = np.random.default_rng(7).random(net.input_size)
    tight = LocalBoundComputer(net, x0, None, None)
    loose = LocalBoundComputer(net, x0, None, LocalOptions(spectral=SpectralOptions(cholesky_limit=1)))
    for eps in (0.05, 0.5):
        a, b = tight.bound(eps), loose.bound(eps)
        assert a.all_exact and not b.all_exact
        assert b.value >= a.value * (1 - 1e-12)
        loose_methods = {blk.method for blk in b.blocks if not blk.exact}
        assert all(m == "schur" or m.startswith("maxr*") for m in loose_methods)
        rep = certify(net, x0, [eps], options=LocalOptions(spectral=SpectralOptions(cholesky_limit=1)))
        assert rep.rows[0].lower <= a.value * (1 + 1e-9) and rep.rows[0].local_upper == pytest.approx(b.value)
    q = Question(Norm.L2, Norm.L2, Ball(x0, 0.5, Norm.L2), AllOutputs(), nominal=True)
    r = run_method("local-affine", net, q, RunOptions(extra={"cholesky_limit": 1}))
    assert r.ok and r.upper == pytest.approx(loose.bound(0.5).value, rel=1e-12)
    assert any("not exactly" in n for n in r.notes)
    bad = run_method("local-affine", net, q, RunOptions(extra={"cholesky_limit": 0}))
    assert not bad.ok and bad.upper is None and "positive integer" in bad.message

    import lipopt.cli_certify as cc
    from lipopt.cli import main

    monkeypatch.setattr(cc, "load_network", lambda path: net)
    np.save(tmp_path / "x.npy", x0.reshape(net.input_shape))
    rows = {}
    for lim in ("6000", "1"):
        js = tmp_path / f"{lim}.json"
        assert main(["certify", "net.ckpt", "--input", str(tmp_path / "x.npy"), "--eps", "0.5", "-q",
                     "--no-adversarial", "--no-radius", "--cholesky-limit", lim, "--json", str(js)]) == 0
        rows[lim] = json.loads(js.read_text())["rows"][0]["local_upper"]
    assert rows["6000"] == pytest.approx(tight.bound(0.5).value, rel=1e-12)
    assert rows["1"] == pytest.approx(loose.bound(0.5).value, rel=1e-12)
    capsys.readouterr()
    assert main(["certify", "net.ckpt", "--input", str(tmp_path / "x.npy"), "--cholesky-limit", "0"]) == 2
    assert "--cholesky-limit: a positive integer" in capsys.readouterr().err
