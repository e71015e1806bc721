"""One JSON envelope for every command (docs/schema.md), certify's plot and certify's progress (issue 16).

Every document lipopt writes (compute, certify one input / many, grid records, the training record) has
``schema`` = ``lipopt.<kind>/<n>``, ``lipopt_version`` and ``provenance`` (command, timestamp, machine,
lipopt and solver versions, options as run); non-finite numbers are the strings "inf" / "-inf" / "nan"
(strict JSON) and read back as floats. References: the versions lipopt reports itself, a hand-built
report with an infinite field, T3's naive bound 3 sqrt 2 (formulations.md section 7).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.analytic.robustness import CertifyRow, RobustnessReport, _figure, certify, plot_report
from lipopt.cli import main
from lipopt.network import Network
from lipopt.provenance import SCHEMAS, envelope, read_document, schema_id
from lipopt.result import ResultSet
from tests.conftest import T3


def _tiny_classifier() -> Network:
    rng = np.random.default_rng(0)
    return Network.from_weights([rng.normal(size=(6, 4)), rng.normal(size=(3, 6))],
                                [rng.normal(size=6) * 0.1, rng.normal(size=3) * 0.1])


def _check_envelope(d: dict, kind: str, command: str) -> dict:
    """The envelope's fields; the document is strict JSON (no Infinity / NaN tokens)."""
    json.dumps(d, allow_nan=False)
    assert d["schema"] == schema_id(kind) == f"lipopt.{kind}/{SCHEMAS[kind]}"
    assert d["lipopt_version"] == lipopt.__version__
    prov = d["provenance"]
    assert prov["command"] == command and prov["timestamp"] and prov["lipopt_version"] == lipopt.__version__
    assert prov["machine"]["cpu_count"] >= 1 and prov["machine"]["node"] is not None
    assert "highs" in prov["solver_versions"] and isinstance(prov["options"], dict)
    return prov


def test_inf_is_written_as_a_string_and_read_back_as_inf() -> None:
    payload = {"value": math.inf, "low": -math.inf, "rows": [{"gap": math.nan, "x": np.float64(2.5)}]}
    doc = envelope("robustness", "certify", {"time_limit": math.inf}, payload)
    text = json.dumps(doc, allow_nan=False)  # strict JSON: readable by any JSON parser
    assert '"value": "inf"' in text and '"low": "-inf"' in text and '"gap": "nan"' in text
    back = read_document(text, "robustness")
    assert back["value"] == math.inf and back["low"] == -math.inf and math.isnan(back["rows"][0]["gap"])
    assert back["provenance"]["options"]["time_limit"] == math.inf and back["rows"][0]["x"] == 2.5
    with pytest.raises(ValueError, match="schema"):
        read_document(text, "resultset")
    with pytest.raises(ValueError, match="envelope"):
        envelope("train", "x", None, {"schema": "mine"})


def test_compute_json_has_the_envelope_and_reads_old_files(tmp_path: Path) -> None:
    net_file = tmp_path / "t3.npz"
    np.savez(net_file, w1=T3[0], w2=T3[1])
    js = tmp_path / "o.json"
    assert main(["compute", str(net_file), "--methods", "naive", "--time-limit", "7", "--json", str(js),
                 "-q"]) == 0
    d = json.loads(js.read_text())
    prov = _check_envelope(d, "resultset", "compute")
    assert prov["options"]["time_limit"] == 7.0
    rs = ResultSet.from_json(js.read_text())
    assert rs["naive"].value == pytest.approx(3 * math.sqrt(2), rel=1e-6)  # ||W2|| ||W1|| (T3)
    again = json.loads(rs.to_json())  # the API writes the same envelope (command "api")
    _check_envelope(again, "resultset", "api")
    old = {k: v for k, v in d.items() if k not in ("lipopt_version", "provenance")}  # resultset/2 of before
    assert ResultSet.from_json(json.dumps(old))["naive"].value == rs["naive"].value
    with pytest.raises(ValueError, match="schema"):
        ResultSet.from_json(json.dumps({**d, "schema": "lipopt.train/1"}))


def test_certify_documents_have_the_envelope(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lipopt.cli_certify as cc
    from lipopt.records import load

    net = _tiny_classifier()
    monkeypatch.setattr(cc, "load_network", lambda path: net)
    xs = np.random.default_rng(1).random((2, 4))
    np.save(tmp_path / "x.npy", xs[0])
    np.save(tmp_path / "batch.npy", xs)
    one = tmp_path / "one.json"
    assert main(["certify", "n", "--input", str(tmp_path / "x.npy"), "--eps", "0.01,0.1", "--json", str(one),
                 "--no-adversarial", "--no-lower", "-q"]) == 0
    d = read_document(one.read_text(), "robustness")
    prov = _check_envelope(json.loads(one.read_text()), "robustness", "certify")
    assert prov["options"]["eps"] == "0.01,0.1"
    direct = certify(net, xs[0], [0.01, 0.1])
    assert [r["local_upper"] for r in d["rows"]] == pytest.approx([r.local_upper for r in direct.rows])
    out, many = tmp_path / "out", tmp_path / "many.json"
    assert main(["certify", "n", "--input", str(tmp_path / "batch.npy"), "--eps", "0.1", "--out", str(out),
                 "--json", str(many), "--no-adversarial", "-q"]) == 0
    for doc in (many, out / "summary.json"):
        _check_envelope(json.loads(doc.read_text()), "certify-batch", "certify")
    for line in (out / "records.jsonl").read_text().splitlines():
        rec = json.loads(line)
        assert rec["schema"] == schema_id("result") and rec["lipopt_version"] == lipopt.__version__
        assert rec["provenance"]["command"] == "certify"
    assert len(load(out)) == 4  # 2 inputs x (UPPER, LOWER): lipopt table reads them


def test_grid_records_have_the_envelope(tmp_path: Path) -> None:
    from lipopt import grid, records

    spec = grid.parse_spec({"networks": ["random:2-3-1:seed=0"], "methods": ["naive"],
                            "questions": [{"norm": "2"}], "time_limit": 20})
    grid.run(spec, tmp_path / "g", quiet=True)
    (rec,) = [json.loads(x) for x in (tmp_path / "g" / grid.RECORDS_FILE).read_text().splitlines()]
    prov = rec["provenance"]
    assert rec["schema"] == schema_id("result") and rec["grid_schema"] == schema_id("grid")
    assert rec["lipopt_version"] == lipopt.__version__ and prov["command"] == "grid"
    assert prov["options"]["time_limit"] == 20 and prov["timestamp"] and "highs" in prov["solver_versions"]
    df = records.load(tmp_path / "g")
    assert df["kind"].tolist() == ["UPPER"] and df["value"].iloc[0] > 0


def test_training_record_has_the_envelope(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from lipopt.train.clip import train
    from lipopt.train.data import Dataset
    from lipopt.train.options import TrainOptions
    from lipopt.train.record import write_training

    rng = np.random.default_rng(0)
    x = rng.random((40, 2)).astype(np.float32)
    y = (x[:, 0] > x[:, 1]).astype(np.int64)
    data = Dataset("toy", x[:30], y[:30], x[30:], y[30:], (2,), 2, "classification", "random, x0 > x1")
    res = train(data, TrainOptions(hidden=(4,), regulariser="clip", lam=0.05, epochs=1, batch_size=10,
                                   threads=1, clip={"n_pairs": 8}))
    rec = write_training(res, data, tmp_path / "toy.npz", command="lipopt train")
    saved = json.loads((tmp_path / "toy.json").read_text())
    prov = _check_envelope(saved, "train", "lipopt train")
    assert prov["options"]["epochs"] == 1 and saved["final_lambda"] == rec["final_lambda"]


# ------------------------------------------------------------------------------------------ the plot


def _report(ups: list[float], est: list[float | None], lows: list[float], space: str = "raw"
            ) -> RobustnessReport:
    eps = [0.01, 0.03, 0.1][: len(ups)]
    rows = [CertifyRow(e, u, s, 1.5 * max(ups), lo, True, 0.1) for e, u, s, lo in zip(eps, ups, est, lows,
                                                                                      strict=True)]
    return RobustnessReport("tiny-net", 2, 0.7, rows, None, None, None, [], space)


def test_plot_writes_png_and_pdf_with_units_title_and_bracket(tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    rep = _report([2.0, 2.2, 2.5], [2.0, 2.2, 2.5], [1.8, 1.9, 2.0], space="normalized")
    fig, ax = _figure(rep)
    try:
        assert "normalized input units" in ax.get_xlabel() and "eps" in ax.get_xlabel()
        title = ax.get_title()
        assert "tiny-net" in title and "class 2" in title and "l2" in title and "normalized" in title
        labels = ax.get_legend_handles_labels()[1]
        assert "local bound (UPPER) = power-iteration estimate" in labels  # the estimate equals the bound
        assert "power-iteration estimate" not in labels and len(ax.get_lines()) == 3  # upper, global, lower
        assert len(ax.collections) == 1  # the shaded bracket [LOWER, local UPPER]
        fig.canvas.draw()
        ticks = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
        assert len(ticks) >= 2 and all("^" not in t for t in ticks)  # plain numbers on < 1 decade
        lo, hi = ax.get_ylim()
        assert all(lo <= float(t) <= hi for t in ticks)
    finally:
        plt.close(fig)
    paths = plot_report(_report([2.0, 3.0], [1.5, 2.9], [1.0, 1.2]), str(tmp_path / "p.png"))
    assert paths == [str(tmp_path / "p.png"), str(tmp_path / "p.pdf")]
    assert (tmp_path / "p.png").stat().st_size > 1000 and (tmp_path / "p.pdf").read_bytes()[:4] == b"%PDF"
    fig, ax = _figure(_report([2.0, 3.0], [1.5, 2.9], [1.0, 1.2]))
    try:
        assert "power-iteration estimate" in ax.get_legend_handles_labels()[1]  # it differs: drawn
        assert "raw input units" in ax.get_xlabel()
    finally:
        plt.close(fig)


def test_plot_of_one_eps_shows_global_bound_and_bracket_and_merges_a_close_estimate() -> None:
    """One eps (the README's first certify call had a single point: no global line, no bracket) and an
    estimate 1e-4 below the bound (drawn on top of it): the global bound is a horizontal line, the
    bracket a bar, and the estimate is named in the bound's legend entry with its gap."""
    import matplotlib.pyplot as plt

    fig, ax = _figure(_report([1173.45], [1173.33], [143.5]))
    try:
        labels = ax.get_legend_handles_labels()[1]
        merged = "local bound (UPPER); power-iteration estimate within 1.0e-04"
        assert any(lab.startswith(merged) for lab in labels)
        assert "power-iteration estimate" not in labels
        glob = [ln for ln in ax.get_lines() if ln.get_label() == "global bound (UPPER)"]
        assert len(glob) == 1 and len(set(glob[0].get_xdata())) == 2  # spans the axis, not one point
        bars = [c for c in ax.collections if c.get_label().startswith("certified bracket")]
        assert len(bars) == 1
        (seg,) = bars[0].get_segments()
        assert seg[:, 1].min() == pytest.approx(143.5) and seg[:, 1].max() == pytest.approx(1173.45)
    finally:
        plt.close(fig)


# ------------------------------------------------------------------------------------------ progress


def test_certify_progress_lines_on_stderr_and_quiet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    import lipopt.cli_certify as cc

    net = _tiny_classifier()
    monkeypatch.setattr(cc, "load_network", lambda path: net)
    xs = np.random.default_rng(2).random((2, 4))
    np.save(tmp_path / "x.npy", xs[0])
    np.save(tmp_path / "b.npy", xs)
    args = ["certify", "n", "--eps", "0.01,0.1", "--no-adversarial", "--no-lower"]
    assert main([*args, "--input", str(tmp_path / "x.npy")]) == 0
    err = capfd.readouterr().err  # stderr is not a terminal here: plain lines
    assert "certify: eps 0.01 (1/2): local bound" in err and "certify: eps 0.1 (2/2)" in err
    assert "(UPPER)" in err and "certified radius" in err
    assert "(LOWER bound on the minimal perturbation" in err  # every number with its kind
    assert main([*args, "--input", str(tmp_path / "b.npy")]) == 0
    err = capfd.readouterr().err
    assert "certify: input b[0] (1/2): class" in err and "certify: input b[1] (2/2)" in err
    assert "certify b[1]: eps 0.1 (2/2): local bound" in err
    for inp in ("x.npy", "b.npy"):
        assert main([*args, "--input", str(tmp_path / inp), "-q"]) == 0
        assert capfd.readouterr().err == ""
