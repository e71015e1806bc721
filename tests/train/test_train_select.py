"""Checkpoint selection (TrainOptions.select, lipopt.train.select): which epoch's network train() returns.

References: the history of a run that keeps the last epoch (selection does not change training), the
returned weights re-evaluated (their training accuracy is the selected epoch's), the written record.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")

from lipopt.errors import InvalidOptionsError  # noqa: E402
from lipopt.train.clip import train  # noqa: E402
from lipopt.train.data import Dataset, load_data  # noqa: E402
from lipopt.train.evaluate import accuracy  # noqa: E402
from lipopt.train.options import TrainOptions  # noqa: E402

FAST = {"hidden": (32,), "epochs": 4, "threads": 1}


@pytest.fixture(scope="module")
def digits() -> Dataset:
    pytest.importorskip("sklearn")
    return load_data("digits", seed=0)


def _strip(history):
    return [{k: v for k, v in h.items() if k not in ("epoch_time", "select_pgd_accuracy")} for h in history]


def test_target_rule_picks_closest_epoch_at_or_above_target(digits):
    last = train(digits, TrainOptions(**FAST, regulariser="none", lr=0.02))
    accs = [h["train_accuracy"] for h in last.history]
    assert last.selection["rule"] == "last" and last.selection["epoch"] == 3
    # a target just below the second-lowest accuracy: that epoch is the closest one at or above it
    order = sorted(range(len(accs)), key=lambda e: (accs[e], e))
    want = order[1]
    target = accs[want] - 1e-9
    expected = min((e for e in range(4) if accs[e] >= target), key=lambda e: (accs[e], -e))
    assert expected == want
    sel = train(digits, TrainOptions(**FAST, regulariser="none", lr=0.02, target_accuracy=target,
                                     select="target"))
    assert _strip(sel.history) == _strip(last.history)  # selecting does not change training
    assert sel.selection["epoch"] == expected and sel.selection["train_accuracy"] == accs[expected]
    # the returned weights are that epoch's: their training accuracy is the recorded one
    assert accuracy(sel.module, digits.x_train, digits.y_train) == accs[expected]
    if expected != 3:
        assert not torch.equal(sel.module[1].weight, last.module[1].weight)
    # a target no epoch reaches: the most accurate epoch
    top = train(digits, TrainOptions(**FAST, regulariser="none", lr=0.02, target_accuracy=1.0,
                                     select="target"))
    best = max(range(4), key=lambda e: (accs[e], e))
    assert top.selection["epoch"] == best and "no epoch reached" in top.selection["what"]
    # no target: the last epoch
    assert train(digits, TrainOptions(**{**FAST, "epochs": 2}, regulariser="none",
                                      select="target")).selection["epoch"] == 1


def test_pgd_rule_keeps_the_most_robust_epoch_and_records_it(digits, tmp_path):
    from lipopt.train.record import write_training

    opts = TrainOptions(**FAST, regulariser="clip", lam=0.0, target_accuracy=0.9, lam_step=0.05,
                        warmup_epochs=1, select={"rule": "pgd", "points": 200, "eps": 0.1},
                        clip={"n_pairs": 32})
    res = train(digits, opts)
    hist = res.history
    assert all(0.0 <= h["select_pgd_accuracy"] <= 1.0 for h in hist)
    cands = [h for h in hist if h["epoch"] >= 2]  # trained with an updated lambda (after epoch 1)
    assert hist[1]["lam"] == 0.0 and res.selection["candidates_from_epoch"] == 2
    best = max(cands, key=lambda h: (h["select_pgd_accuracy"], h["train_accuracy"], h["epoch"]))
    sel = res.selection
    assert sel["epoch"] == best["epoch"] and sel["pgd_accuracy"] == best["select_pgd_accuracy"]
    assert sel["lam"] == best["lam"] == res.selected_lam and sel["points"] == 200
    assert accuracy(res.module, digits.x_train, digits.y_train) == best["train_accuracy"]
    # CLIP's pair set is the selected epoch's: its estimate is that epoch's lip_estimate
    assert res.clip_estimate == pytest.approx(best["lip_estimate"], rel=1e-6)
    rec = write_training(res, digits, tmp_path / "sel.npz")
    saved = json.loads((tmp_path / "sel.json").read_text())
    assert saved["selection"]["epoch"] == best["epoch"] and saved["selected_lambda"] == best["lam"]
    assert saved["final_lambda"] == hist[-1]["lam_next"]
    assert rec["clip_lower"]["value"] == pytest.approx(best["lip_estimate"], rel=1e-4)


def test_bad_select_options(digits):
    with pytest.raises(InvalidOptionsError, match=r"select.rule='best'.*last, target, pgd"):
        TrainOptions(select="best")
    with pytest.raises(InvalidOptionsError, match=r"unknown SelectOptions option.*'eps_'"):
        TrainOptions(select={"eps_": 0.1})
    with pytest.raises(InvalidOptionsError, match="select='pgd' needs a classification"):
        train(load_data("regression"), TrainOptions(select="pgd", epochs=1))
