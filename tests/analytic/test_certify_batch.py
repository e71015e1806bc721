"""``lipopt certify`` over many inputs (lipopt.analytic.batch_certify, issue 14): the batched rows equal
the per-input certify() results, an unreadable image is reported and the others go on, the summary
numbers are recomputed here from the per-input results, the records render with ``lipopt table``."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from lipopt.analytic.batch_certify import certify_batch, read_inputs
from lipopt.analytic.robustness import CertifySteps, certify
from lipopt.cli_certify import read_input

torch = pytest.importorskip("torch")
plt = pytest.importorskip("matplotlib.pyplot")

EPS = [0.01, 0.1]
NO_SEARCH = CertifySteps(adversarial=False, lower=False)  # the local bound and the radius only
SHAPE = (1, 4, 4)


@pytest.fixture(autouse=True)
def _one_thread():
    from lipopt.analytic._threads import limit_threads

    with limit_threads(1):
        yield


class _Normalize(torch.nn.Module):
    def forward(self, x):
        return (x - 0.5) / 0.25


@pytest.fixture(scope="module")
def net():
    import lipopt

    torch.manual_seed(0)
    m = torch.nn.Sequential(_Normalize(), torch.nn.Flatten(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
                            torch.nn.Linear(8, 3)).double().eval()
    return lipopt.load(m, input_shape=SHAPE, name="tiny")


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(1)
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        plt.imsave(d / f"img{i}.png", rng.random(SHAPE[1:]), cmap="gray", vmin=0, vmax=1)
    (d / "broken.png").write_bytes(b"this is not a png")
    (d / "notes.txt").write_text("ignored: not an input suffix")
    return d


def _same(a, b, rel=1e-12):
    return a == pytest.approx(b, rel=rel, abs=1e-300) if a is not None else b is None


def test_folder_rows_equal_per_input_certify_and_broken_image_reported(net, folder):
    items = read_inputs(folder, net.input_shape)
    assert [it.name for it in items] == ["broken.png", "img0.png", "img1.png", "img2.png"]
    assert items[0].x is None and items[0].error
    rep = certify_batch(net, items, EPS, radii=[0.01, 0.05], steps=CertifySteps(seed=0))
    assert rep.rows[0].error and rep.rows[0].label is None
    for row in rep.rows[1:]:
        x = read_input(str(folder / row.name), net.input_shape)
        single = certify(net, x, EPS, steps=CertifySteps(seed=0))
        assert row.label == single.label and _same(row.margin, single.margin)
        assert row.local_upper == pytest.approx([r.local_upper for r in single.rows], rel=1e-12)
        assert row.lower == pytest.approx([r.lower for r in single.rows], rel=1e-12)
        assert row.certified == [r.certified for r in single.rows]
        assert _same(row.radius, single.radius.radius)
        assert _same(row.radius_global, single.radius.radius_global)
        assert _same(row.pgd_distance, single.adversarial_distance)
    text = rep.table()
    assert "broken.png" in text and "UNREADABLE" in text and "unreadable inputs (1): broken.png" in text


def test_summary_numbers_recomputed(net, folder):
    items = read_inputs(folder, net.input_shape)
    readable = [it for it in items if it.x is not None]
    singles = [certify(net, it.x, EPS, steps=NO_SEARCH) for it in readable]
    radii_here = [s.radius.radius for s in singles]
    labels = np.array([0, singles[0].label, (singles[1].label + 1) % 3, singles[2].label])  # one wrong
    rs = [0.0, float(np.median(radii_here)), 10.0]
    rep = certify_batch(net, items, EPS, radii=rs, labels=labels, steps=NO_SEARCH)
    s = rep.summary()
    assert s["inputs"] == 4 and s["read"] == 3 and s["failed"] == ["broken.png"]
    assert s["mean_radius"] == pytest.approx(statistics.fmean(radii_here), rel=1e-12)
    assert s["median_radius"] == pytest.approx(statistics.median(radii_here), rel=1e-12)
    true = labels[1:]
    for r0 in rs:
        want = sum(1 for sg, t in zip(singles, true, strict=True)
                   if sg.label == t and sg.radius.radius >= r0) / 3
        assert s["certified_accuracy"][f"{r0:g}"] == pytest.approx(want)
    assert s["clean_accuracy"] == pytest.approx(2 / 3)
    unl = certify_batch(net, items, EPS, radii=rs, steps=NO_SEARCH).summary()
    assert "certified_accuracy" not in unl
    assert unl["certified_fraction"]["0"] == 1.0 and unl["certified_fraction"]["10"] == 0.0


def test_npy_batch_cli_records_render_as_a_table(net, tmp_path, monkeypatch):
    import lipopt.cli_certify as cc
    from lipopt.cli import main
    from lipopt.records import load, table

    monkeypatch.setattr(cc, "load_network", lambda path: net)
    xs = np.random.default_rng(2).random((3, *SHAPE))
    np.save(tmp_path / "batch.npy", xs)
    items = read_inputs(tmp_path / "batch.npy", net.input_shape)
    assert [it.name for it in items] == ["batch[0]", "batch[1]", "batch[2]"]
    np.save(tmp_path / "flat.npy", xs.reshape(3, -1))
    assert all(np.array_equal(a.x, b.x) for a, b in zip(items, read_inputs(tmp_path / "flat.npy", SHAPE),
                                                        strict=True))
    out = tmp_path / "out"
    rc = main(["certify", "net.ckpt", "--input", str(tmp_path / "batch.npy"), "--eps", "0.01,0.1",
               "--radii", "0.001,0.1", "--out", str(out), "--no-adversarial"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema"] == "lipopt.certify-batch/2" and len(summary["rows"]) == 3
    for i, row in enumerate(summary["rows"]):
        single = certify(net, xs[i].reshape(-1), EPS, steps=CertifySteps(seed=0, adversarial=False))
        assert row["local_upper"] == pytest.approx([r.local_upper for r in single.rows], rel=1e-12)
        assert row["radius"] == pytest.approx(single.radius.radius, rel=1e-12)
    df = load(out)
    assert len(df) == 3 * 2 * 2 and set(df["method"]) == {"local-affine", "pgd-ratio"}
    assert set(df["kind"]) == {"UPPER", "LOWER"} and not df["failed"].any()
    ub = df[(df["method"] == "local-affine") & (df["network"] == "tiny[batch[1]]")]["value"].tolist()
    assert ub == pytest.approx(summary["rows"][1]["local_upper"], rel=1e-12)
    text = table(out)
    assert "tiny[batch[2]]" in text and "local-affine" in text and "pgd-ratio" in text


def test_normalized_input_space_scales_bounds_and_radius(net, folder):
    """u = (x - 0.5) / 0.25: eps_u = eps_x / 0.25, L_u = 0.25 L_x, radius_u = radius_x / 0.25."""
    items = [it for it in read_inputs(folder, net.input_shape) if it.x is not None]
    s = 0.25
    raw = certify_batch(net, items, [e * s for e in EPS], steps=NO_SEARCH)
    nrm = certify_batch(net, items, EPS, input_space="normalized", steps=NO_SEARCH)
    for a, b in zip(raw.rows, nrm.rows, strict=True):
        assert b.local_upper == pytest.approx([s * v for v in a.local_upper], rel=1e-9)
        # each search stops within a relative radius_rtol below the same threshold (eps L(eps) =
        # margin / sqrt 2, one point in both units); where the two probe differently they stop apart
        assert b.radius == pytest.approx(a.radius / s, rel=NO_SEARCH.radius_rtol)
        assert b.margin == pytest.approx(a.margin, rel=1e-12)
    recs = nrm.records()
    assert all(r["question"]["input_space"] == "normalized" for r in recs)
    assert "normalized input" in recs[0]["question"]["description"]


def test_cli_unreadable_image_goes_on(net, folder, tmp_path, monkeypatch, capsys):
    import lipopt.cli_certify as cc
    from lipopt.cli import main
    from lipopt.records import load

    monkeypatch.setattr(cc, "load_network", lambda path: net)
    rc = main(["certify", "net.ckpt", "--input", str(folder), "--eps", "0.1", "--no-adversarial",
               "--no-lower", "--input-space", "normalized", "--clip", "0,1", "--out", str(tmp_path / "o")])
    assert rc == 0
    out = capsys.readouterr().out
    assert "broken.png" in out and "UNREADABLE" in out and "img2.png" in out and "normalized inputs" in out
    df = load(tmp_path / "o")
    bad = df[df["network"] == "tiny[broken.png]"]
    assert len(bad) == 1 and bool(bad["failed"].iloc[0]) and bad["record"].iloc[0]["value"] is None
    assert "unreadable input" in bad["message"].iloc[0]
    good = df[~df["failed"]]
    assert len(good) == 3 and set(good["method"]) == {"local-affine"}  # --no-lower: no LOWER records


def test_cli_single_input_in_normalized_space(net, tmp_path, monkeypatch):
    import lipopt.cli_certify as cc
    from lipopt.cli import main

    monkeypatch.setattr(cc, "load_network", lambda path: net)
    x = np.random.default_rng(6).random(SHAPE)
    np.save(tmp_path / "x.npy", x)
    docs = {}
    for space, eps in (("raw", "0.0025,0.025"), ("normalized", "0.01,0.1")):
        js = tmp_path / f"{space}.json"
        assert main(["certify", "net.ckpt", "--input", str(tmp_path / "x.npy"), "--eps", eps, "--json",
                     str(js), "--no-adversarial", "--no-radius", "--input-space", space]) == 0
        docs[space] = json.loads(js.read_text())
    assert docs["normalized"]["input_space"] == "normalized" and docs["raw"]["input_space"] == "raw"
    for a, b in zip(docs["raw"]["rows"], docs["normalized"]["rows"], strict=True):
        assert b["local_upper"] == pytest.approx(0.25 * a["local_upper"], rel=1e-9)


def test_certify_api_input_space(net):
    from lipopt.errors import InvalidQuestionError
    from lipopt.network.layers import Dense
    from lipopt.network.network import Network

    x = np.random.default_rng(7).random(16)
    raw = certify(net, x, [0.0025, 0.025], steps=NO_SEARCH)
    nrm = certify(net, x, [0.01, 0.1], steps=NO_SEARCH, input_space="normalized")
    assert raw.input_space == "raw" and nrm.to_dict()["input_space"] == "normalized"
    assert [r.local_upper for r in nrm.rows] == pytest.approx([0.25 * r.local_upper for r in raw.rows],
                                                               rel=1e-9)
    assert nrm.radius.radius == pytest.approx(raw.radius.radius / 0.25, rel=1e-6)
    plain = Network([Dense(np.ones((2, 3)), None)], (3,))
    with pytest.raises(InvalidQuestionError, match="records its input normalisation"):
        certify(plain, np.zeros(3), [0.1], input_space="normalized")
