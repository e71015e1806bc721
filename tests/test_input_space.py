"""Questions in the raw or the normalised input space (lipopt.network.normalization, issue 14).

For x_norm = (x - mean) / s with a uniform s, g(u) = f(s u + mean) has L_g = s L_f in l2 -> l2 (the
chain rule: J_g(u) = s J_f(x)); balls of radius r in u are balls of radius s r in x. Checked exactly by
region enumeration, and for naive, sampling, grad-ascent and local-affine, both ways; a non-uniform std
against enumeration on the normalized network built by hand.
"""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

import lipopt
from lipopt.errors import InvalidQuestionError, LipoptError
from lipopt.network.layers import Dense, ReLU
from lipopt.network.network import Network
from lipopt.network.normalization import in_input_space

torch = pytest.importorskip("torch")
nn = torch.nn


class _Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float64))

    def forward(self, x):
        return (x - self.mean) / self.std


def _mlp(mean, std, seed=0, sizes=(3, 6, 5, 2)):
    torch.manual_seed(seed)
    layers: list = [_Normalize(mean, std)]
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b).double())
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).eval()


MEAN = [0.3, -0.2, 0.5]
S = 0.25  # uniform std


@pytest.fixture(scope="module")
def uniform_net():
    return lipopt.load(_mlp(MEAN, [S] * 3))


def test_importer_records_the_normalisation(uniform_net):
    norm = uniform_net.input_normalization
    assert norm is not None
    assert np.allclose(norm.mean, MEAN, rtol=0, atol=1e-15) and np.allclose(norm.std, S, rtol=1e-15)
    assert uniform_net.input_space == "raw"
    g = in_input_space(uniform_net, "normalized")
    assert g.input_space == "normalized" and g.input_normalization is None
    u = np.random.default_rng(1).standard_normal((5, 3))
    assert np.allclose(g.forward(u), uniform_net.forward(S * u + np.array(MEAN)), rtol=1e-12, atol=1e-12)
    assert in_input_space(uniform_net, "normalized") is g  # cached
    assert in_input_space(uniform_net, "raw") is uniform_net


def test_exact_global_constant_scales_by_std(uniform_net):
    raw = lipopt.lipschitz(uniform_net, "enumeration")
    nrm = lipopt.lipschitz(uniform_net, "enumeration", input_space="normalized")
    assert raw.kind.value == nrm.kind.value == "EXACT"
    assert nrm.value == pytest.approx(S * raw.value, rel=1e-9)
    assert raw.question["input_space"] == "raw" and nrm.question["input_space"] == "normalized"
    assert "normalized input" in nrm.question["description"]
    assert "normalized input" not in raw.question["description"]
    # both ways: the raw constant is the normalised one divided by the scaling
    assert raw.value == pytest.approx(nrm.value / S, rel=1e-9)


def test_naive_constant_scales_by_std(uniform_net):
    raw = lipopt.lipschitz(uniform_net, "naive")
    nrm = lipopt.lipschitz(uniform_net, "naive", input_space="normalized")
    assert nrm.kind.value == "UPPER" and nrm.value == pytest.approx(S * raw.value, rel=1e-9)


@pytest.mark.parametrize("method", ["sampling", "grad-ascent"])
def test_lower_estimates_on_matching_balls_scale_by_std(uniform_net, method):
    """A ball of radius r around u0 is the ball of radius S r around x0 = S u0 + mean."""
    u0 = np.array([0.4, -1.0, 0.7])
    x0 = S * u0 + np.array(MEAN)
    r = 0.8
    raw = lipopt.lipschitz(uniform_net, method, domain=f"ball2:{S * r}", center=x0, seed=3)
    nrm = lipopt.lipschitz(uniform_net, method, domain=f"ball2:{r}", center=u0, seed=3,
                           input_space="normalized")
    assert raw.verdict.value == nrm.verdict.value == "ok"
    assert nrm.value == pytest.approx(S * raw.value, rel=1e-6)
    assert nrm.question["domain"]["center"] == pytest.approx(list(u0))


def test_local_affine_bound_scales_by_std(uniform_net):
    u0 = np.array([0.4, -1.0, 0.7])
    x0 = S * u0 + np.array(MEAN)
    for r in (0.05, 0.5, 3.0):
        raw = lipopt.lipschitz(uniform_net, "local-affine", domain=f"ball2:{S * r}", center=x0, nominal=True)
        nrm = lipopt.lipschitz(uniform_net, "local-affine", domain=f"ball2:{r}", center=u0, nominal=True,
                               input_space="normalized")
        assert raw.kind.value == nrm.kind.value == "UPPER"
        assert nrm.value == pytest.approx(S * raw.value, rel=1e-7)


def test_non_uniform_std_exact_against_hand_built_network():
    mean, std = np.array([0.1, 2.0, -0.4]), np.array([0.5, 3.0, 0.2])
    net = lipopt.load(_mlp(list(mean), list(std), seed=2))
    # g(u) = f(std u + mean) by hand: the raw first layer is W (x - mean) / std + b
    w1 = net.layers[0].weight * std[None, :]
    b1 = net.layers[0].bias + net.layers[0].weight @ mean
    # the raw first layer folds the normalisation: W_raw = W / std, so W_raw * std = W
    hand = Network([Dense(w1, b1), *net.layers[1:]], (3,))
    expected = lipopt.lipschitz(hand, "enumeration")
    got = lipopt.lipschitz(net, "enumeration", input_space="normalized")
    assert expected.kind.value == got.kind.value == "EXACT"
    assert got.value == pytest.approx(expected.value, rel=1e-9)
    raw = lipopt.lipschitz(net, "enumeration")
    assert raw.value != pytest.approx(got.value, rel=1e-3)  # non-uniform: not a single scaling


def test_compare_records_the_input_space(uniform_net):
    rs = lipopt.compare(uniform_net, ["naive", "enumeration"], input_space="normalized")
    assert all(r.question["input_space"] == "normalized" for r in rs)
    assert "normalized input" in rs.table()
    assert all(row["input_space"] == "normalized" for row in rs.to_records())
    assert "input_space" in rs.table("csv").splitlines()[0]


def test_run_method_transforms_a_raw_network(uniform_net):
    from lipopt.methods import run_method
    from lipopt.spec import make_question

    res = run_method("naive", uniform_net, make_question(input_space="normalized"))
    assert res.value == pytest.approx(S * lipopt.lipschitz(uniform_net, "naive").value, rel=1e-9)


def test_no_recorded_normalisation_is_a_clear_error():
    net = Network([Dense(np.eye(2), None), ReLU(), Dense(np.ones((1, 2)), None)], (2,), name="plain")
    with pytest.raises(InvalidQuestionError, match="records its input normalisation"):
        lipopt.lipschitz(net, "naive", input_space="normalized")
    with pytest.raises(InvalidQuestionError, match="unknown input space"):
        lipopt.lipschitz(net, "naive", input_space="pixels")


class _ConvNet(nn.Module):
    """(x - mean) / std per channel, then an unpadded conv (folded into it) or a max-pool first (the
    normalized view then prepends a depthwise 1x1 scaling layer)."""

    def __init__(self, pool_first):
        super().__init__()
        self.norm = _Normalize([[[0.4]], [[0.6]]], [[[0.2]], [[0.5]]])
        self.pool = nn.MaxPool2d(2) if pool_first else nn.Identity()
        side = 3 if pool_first else 6
        self.conv = nn.Conv2d(2, 3, 2).double()
        self.fc = nn.Linear(3 * (side - 1) ** 2, 2).double()

    def forward(self, x):
        x = torch.relu(self.conv(self.pool(self.norm(x))))
        return self.fc(x.reshape(x.shape[0], -1))


@pytest.mark.parametrize("pool_first", [False, True])
def test_conv_network_normalized_view(pool_first):
    torch.manual_seed(5)
    m = _ConvNet(pool_first).eval()
    net = lipopt.load(m, input_shape=(2, 6, 6))
    assert np.allclose(net.input_normalization.std.reshape(2, 6, 6)[:, 0, 0], [0.2, 0.5])
    g = in_input_space(net, "normalized")
    u = torch.randn(4, 2, 6, 6, dtype=torch.float64)
    with torch.no_grad():
        expected = m.fc(torch.relu(m.conv(m.pool(u))).reshape(4, -1)).numpy()  # the module after Normalize
    assert np.allclose(g.forward(u.numpy().reshape(4, -1)), expected, rtol=1e-10, atol=1e-10)
    assert len(g.layers) == len(net.layers) + (1 if pool_first else 0)
    raw = lipopt.lipschitz(net, "naive")
    nrm = lipopt.lipschitz(net, "naive", input_space="normalized")
    assert raw.verdict.value == nrm.verdict.value == "ok" and nrm.value <= 0.5 * raw.value * (1 + 1e-6)


def _tiny_glipsdp(path):
    sio = pytest.importorskip("scipy.io")
    rng = np.random.default_rng(4)
    k = rng.standard_normal((3, 3, 1, 2))
    kb, w, b = rng.standard_normal(2), rng.standard_normal((2 * 16, 3)), rng.standard_normal(3)
    mean, scale = rng.standard_normal(16), rng.uniform(0.5, 2, 16)
    sio.savemat(path, {"conv1_weight": k, "conv1_bias": kb[None], "fc1_weight": w, "fc1_bias": b[None],
                       "input_mean": mean[None], "input_scale": scale[None]})
    return mean, scale


def test_glipsdp_mat_normalized_view_is_the_unnormalised_file(tmp_path):
    mean, scale = _tiny_glipsdp(tmp_path / "tiny_weights.mat")
    net = lipopt.load(tmp_path / "tiny_weights.mat")
    plain = lipopt.load(tmp_path / "tiny_weights.mat", normalize=False)
    assert plain.input_normalization is None
    assert np.allclose(net.input_normalization.std, scale) and np.allclose(net.input_normalization.mean, mean)
    g = in_input_space(net, "normalized")
    u = np.random.default_rng(5).standard_normal((3, 16))
    assert np.allclose(g.forward(u), plain.forward(u.reshape(3, 1, 4, 4)), rtol=1e-10, atol=1e-10)


def test_grid_question_in_normalized_space(tmp_path):
    from lipopt import grid, records

    _tiny_glipsdp(tmp_path / "tiny_weights.mat")
    spec = grid.parse_spec({"networks": ["tiny_weights.mat"], "methods": ["naive"],
                            "questions": [{"norm": "2"}, {"norm": "2", "input_space": "normalized"}],
                            "executor": {"start": "forkserver"}}, tmp_path)
    res = grid.run(spec, tmp_path / "out", quiet=True)
    assert res.done == 2 and res.failed == 0
    recs = [json.loads(line) for line in (tmp_path / "out" / grid.RECORDS_FILE).read_text().splitlines()]
    by_space = {r["question"]["input_space"]: r for r in recs}
    plain = lipopt.load(tmp_path / "tiny_weights.mat", normalize=False)
    expected = lipopt.lipschitz(plain, "naive").value  # the unnormalised file answers in u-space
    assert by_space["normalized"]["value"] == pytest.approx(expected, rel=1e-9)
    assert by_space["raw"]["value"] != pytest.approx(expected, rel=1e-3)
    assert "normalized input" in records.table(tmp_path / "out")
    with pytest.raises(LipoptError, match="input_space"):
        grid.parse_spec({"networks": ["tiny_weights.mat"], "methods": ["naive"],
                         "questions": [{"input_space": "pixels"}]}, tmp_path)


@pytest.mark.slow
def test_avant_lenet_local_bound_in_the_seed_units():
    """The MNIST LeNet checkpoint records (x - 0.1307) / 0.3081; its local bound in normalised units at
    eps_u is 0.3081 times the raw bound at eps_x = 0.3081 eps_u."""
    from tests.paths import EXTERNAL

    ckpt, img = EXTERNAL / "avant" / "mnist_lenet_ckpt_99.ckpt", EXTERNAL / "avant" / "mnist_8.png"
    if not ckpt.exists():
        pytest.skip("../shared/external-nets is not there")
    from lipopt.cli_certify import read_input

    net = lipopt.load(ckpt)
    norm = net.input_normalization
    assert np.allclose(norm.mean, 0.1307) and np.allclose(norm.std, 0.3081)
    x = read_input(str(img), net.input_shape)
    s, eps_u = 0.3081, 0.01
    raw = lipopt.lipschitz(net, "local-affine", domain=f"ball2:{s * eps_u}", center=x, nominal=True)
    nrm = lipopt.lipschitz(net, "local-affine", domain=f"ball2:{eps_u}", center=norm.to_normalized(x),
                           nominal=True, input_space="normalized")
    assert nrm.value == pytest.approx(s * raw.value, rel=1e-7)


def test_batchnorm_at_the_input_is_recorded():
    torch.manual_seed(8)
    bn = nn.BatchNorm1d(3).double()
    with torch.no_grad():
        bn.running_mean.copy_(torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64))
        bn.running_var.copy_(torch.tensor([0.5, 2.0, 0.1], dtype=torch.float64))
        bn.weight.copy_(torch.tensor([1.5, 0.7, -2.0], dtype=torch.float64))
        bn.bias.copy_(torch.tensor([0.3, 0.0, -0.2], dtype=torch.float64))
    m = nn.Sequential(bn, nn.Linear(3, 4).double(), nn.ReLU(), nn.Linear(4, 2).double()).eval()
    net = lipopt.load(m)
    # y = gamma (x - mu) / sqrt(var + eps) + beta = (x - mean) / std
    a = bn.weight.detach().numpy() / np.sqrt(bn.running_var.numpy() + bn.eps)
    c = bn.bias.detach().numpy() - bn.running_mean.numpy() * a
    assert np.allclose(net.input_normalization.std, 1 / a, rtol=1e-12)
    assert np.allclose(net.input_normalization.mean, -c / a, rtol=1e-12)
    g = in_input_space(net, "normalized")
    u = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        expected = m[1:](u).numpy()  # the module after its BatchNorm
    assert np.allclose(g.forward(u.numpy()), expected, rtol=1e-10, atol=1e-10)
