"""torch importer: nn.Sequential and fx-traced modules agree with torch (outputs and autograd Jacobians)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

import lipopt  # noqa: E402
from lipopt.errors import InvalidNetworkError, UnsupportedLayerError  # noqa: E402
from lipopt.network.layers import Conv2d, Dense, ReLU  # noqa: E402


def _randomise_bn(bn: nn.Module) -> nn.Module:
    with torch.no_grad():
        bn.running_mean.uniform_(-1.0, 1.0)
        bn.running_var.uniform_(0.3, 2.0)
        bn.weight.uniform_(-2.0, 2.0)
        bn.bias.uniform_(-1.0, 1.0)
    return bn


def assert_matches_torch(net, module, n_points: int = 3, seed: int = 0, rtol: float = 1e-10) -> None:
    """Outputs and full autograd Jacobians (float64 torch, eval mode) equal the IR's at random points."""
    ref = copy.deepcopy(module).double().eval()
    rng = np.random.default_rng(seed)
    for _ in range(n_points):
        x = rng.standard_normal(net.input_shape)
        xt = torch.tensor(x).reshape(-1)

        def f(z, shape=net.input_shape):
            return ref(z.reshape(1, *shape)).reshape(-1)

        y_t = f(xt).detach().numpy()
        j_t = torch.autograd.functional.jacobian(f, xt).numpy()
        y_ir, j_ir = net.forward(x), net.jacobian(x)
        assert y_ir.shape == y_t.shape
        assert np.max(np.abs(y_ir - y_t)) <= rtol * max(1.0, np.max(np.abs(y_t)))
        assert np.max(np.abs(j_ir - j_t)) <= rtol * max(1.0, np.max(np.abs(j_t)))


def test_sequential_mlp_with_batchnorm_dropout_identity():
    torch.manual_seed(0)
    seq = nn.Sequential(
        _randomise_bn(nn.BatchNorm1d(5)),  # at the input: folds into the next Linear
        nn.Linear(5, 8),
        _randomise_bn(nn.BatchNorm1d(8)),  # after a Linear: folds into it
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Sequential(nn.Linear(8, 6), nn.ReLU()),
        _randomise_bn(nn.BatchNorm1d(6)),  # after ReLU, before Linear: folds forward
        nn.Linear(6, 3),
        nn.Identity(),
    )
    seq.train()  # imported with eval semantics; the module itself is left alone
    mean_before = seq[0].running_mean.clone()
    net = lipopt.load(seq)
    assert seq.training and torch.equal(seq[0].running_mean, mean_before)
    assert net.input_shape == (5,)  # inferred from the first Linear
    assert [type(la) for la in net.layers] == [Dense, ReLU, Dense, ReLU, Dense]
    assert_matches_torch(net, seq)


class _Normalize(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


class _TracedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = _Normalize([0.4, 0.5, 0.6], [0.2, 0.3, 0.25])
        self.conv1 = nn.Conv2d(3, 4, 3)  # no padding: the normalisation folds exactly
        self.bn1 = _randomise_bn(nn.BatchNorm2d(4))
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.drop = nn.Dropout(0.5)
        self.fc1 = nn.Linear(6 * 2 * 2, 7)
        self.bn2 = _randomise_bn(nn.BatchNorm1d(7))
        self.fc2 = nn.Linear(7, 3)

    def forward(self, x):
        x = self.norm(x)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 2)
        x = torch.relu(self.conv2(x))
        x = self.drop(F.avg_pool2d(x, 2))
        x = x.view(x.size(0), -1)
        x = F.relu(self.bn2(self.fc1(x)))
        x = F.dropout(x, 0.2, self.training)
        return self.fc2(x)


def test_fx_traced_module_with_normalisation_bn_pooling_view():
    torch.manual_seed(1)
    m = _TracedNet().eval()
    net = lipopt.load(m, input_shape=(3, 10, 10))
    kinds = [type(la).__name__ for la in net.layers]
    assert kinds == ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "AvgPool2d", "Flatten", "Dense", "ReLU",
                     "Dense"]
    assert_matches_torch(net, m)


class _ArithmeticNet(nn.Module):
    """Normalisation written as arithmetic in forward, with numbers and a constant tensor."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x):
        x = (x - torch.tensor([0.1, -0.2, 0.3, 0.0])) / 0.5
        x = torch.flatten(x, 1)
        x = self.fc1(x).relu()
        x = x.reshape(x.shape[0], -1) * 2.0 + 1.0  # folds backwards into fc1... no: after ReLU, forward
        return F.linear(x, self.fc2.weight, self.fc2.bias)


def test_fx_arithmetic_normalisation_and_functional_linear():
    torch.manual_seed(2)
    m = _ArithmeticNet()
    net = lipopt.load(m)
    assert [type(la) for la in net.layers] == [Dense, ReLU, Dense]
    assert_matches_torch(net, m)


def test_scale_only_normalisation_folds_into_padded_conv():
    torch.manual_seed(3)

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 3, padding=1)
            self.fc = nn.Linear(3 * 4 * 4, 2)

        def forward(self, x):
            x = self.conv(x / 0.3)  # no shift: exact even with zero padding
            return self.fc(torch.flatten(F.relu(x), 1))

    m = M()
    net = lipopt.load(m, input_shape=(2, 4, 4))
    assert isinstance(net.layers[0], Conv2d)
    assert_matches_torch(net, m)


def test_shifted_normalisation_before_padded_conv_is_refused():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = _Normalize([0.5], [0.25])
            self.conv = nn.Conv2d(1, 2, 3, padding=1)

        def forward(self, x):
            return torch.flatten(self.conv(self.norm(x)), 1)

    with pytest.raises(UnsupportedLayerError, match="cannot be folded exactly") as info:
        lipopt.load(M(), input_shape=(1, 5, 5))
    assert "padding (1, 1)" in str(info.value)


def test_conv_first_module_needs_input_shape():
    seq = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 4 * 4, 3))
    with pytest.raises(InvalidNetworkError, match="input_shape is required"):
        lipopt.load(seq)
    net = lipopt.load(seq, input_shape=(1, 6, 6))
    assert net.input_shape == (1, 6, 6) and net.output_size == 3


def test_all_unsupported_layers_listed_at_once():
    seq = nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 4), nn.Tanh(), nn.ELU(),
                        nn.Linear(4, 1))
    with pytest.raises(UnsupportedLayerError) as info:
        lipopt.load(seq)
    msg = str(info.value)
    assert len(info.value.unsupported) == 3
    for layer in ("Sigmoid '1'", "Tanh '3'", "ELU '4'"):
        assert layer in msg
    assert "Supported:" in msg and "nn.Linear" in msg


def test_residual_branch_is_refused():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(3, 3)
            self.fc2 = nn.Linear(3, 2)

        def forward(self, x):
            return self.fc2(F.relu(self.fc1(x)) + x)

    with pytest.raises(UnsupportedLayerError, match="single chain"):
        lipopt.load(Res())


def test_unflatten_reshape_is_refused():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 8)

        def forward(self, x):
            return self.fc(x).view(x.size(0), 2, 4)

    with pytest.raises(UnsupportedLayerError, match="reshape to"):
        lipopt.load(M())


def test_nan_weights_are_rejected():
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        seq[2].weight[1, 1] = float("nan")
    with pytest.raises(InvalidNetworkError, match="NaN"):
        lipopt.load(seq)


def test_shape_mismatch_names_the_layers():
    seq = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(5, 2))
    with pytest.raises(InvalidNetworkError, match="shape mismatch at 2") as info:
        lipopt.load(seq)
    assert "expects 5 input features" in str(info.value)


class _FunctionalConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 2, 3, 3))
        self.b = nn.Parameter(torch.randn(4))
        self.fc = nn.Linear(4 * 2 * 2, 3)

    def forward(self, x):
        x = F.conv2d(x, self.w, self.b, stride=1, padding=0)
        x = F.max_pool2d(F.relu(x), kernel_size=3, stride=2, padding=1)
        return self.fc(x.flatten(1))


def _more_cases():
    torch.manual_seed(4)
    positive_bn = _randomise_bn(nn.BatchNorm2d(3))
    with torch.no_grad():
        positive_bn.weight.uniform_(0.2, 2.0)  # positive scale: commutes with max-pooling
    return {
        "functional conv and padded max-pool": (_FunctionalConv(), (2, 6, 6)),
        "padding='same', padded pools": (
            nn.Sequential(nn.Conv2d(2, 3, 3, padding="same"), nn.ReLU(), nn.MaxPool2d(2, padding=1),
                          nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 2)), (2, 5, 5)),
        "BN after ReLU folds forward through max-pool into a conv": (
            nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), positive_bn, nn.MaxPool2d(2), nn.Conv2d(3, 2, 1),
                          nn.Flatten(), nn.Linear(2 * 2 * 2, 2)), (2, 6, 6)),
        "grouped conv with BN": (
            nn.Sequential(nn.Conv2d(4, 6, 3, groups=2), _randomise_bn(nn.BatchNorm2d(6)), nn.ReLU(),
                          nn.Flatten(), nn.Linear(6 * 4, 2)), (4, 4, 4)),
        "BN as the last layer": (nn.Sequential(nn.Linear(3, 4), nn.ReLU(), _randomise_bn(nn.BatchNorm1d(4))),
                                 None),
    }


@pytest.mark.parametrize("case", list(_more_cases()))
def test_more_layer_combinations_match_torch(case):
    module, shape = _more_cases()[case]
    net = lipopt.load(module, input_shape=shape)
    assert_matches_torch(net, module)


def test_batchnorm_at_the_input_of_a_padded_conv_is_refused():
    seq = nn.Sequential(_randomise_bn(nn.BatchNorm2d(2)), nn.Conv2d(2, 3, 3, padding=1), nn.Flatten(),
                        nn.Linear(27, 2))
    with pytest.raises(UnsupportedLayerError, match=r"BatchNorm2d '0' before Conv2d '1' cannot be folded"):
        lipopt.load(seq, input_shape=(2, 3, 3))


def test_state_dict_with_an_architecture_from_the_command_line(tmp_path, capsys):
    """A user's own state_dict: --arch as a layer spec or a module:Class path; a mismatch names both."""
    import torch

    from lipopt.cli import main
    from lipopt.errors import InvalidNetworkError

    torch.manual_seed(0)
    seq = nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2))
    path = tmp_path / "mine.pt"
    torch.save(seq.state_dict(), path)
    net = lipopt.load(path, arch="mlp:3,5,2")
    x = np.random.default_rng(0).standard_normal((4, 3))
    np.testing.assert_allclose(net.forward(x), seq(torch.tensor(x, dtype=torch.float32)).detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(InvalidNetworkError, match=r"expects tensors"):
        lipopt.load(path, arch="mlp:3,4,2")
    with pytest.raises(InvalidNetworkError, match="cannot import"):
        lipopt.load(path, arch="no_such_module:Net")
    assert main(["compute", str(path), "--arch", "mlp:3,5,2", "--methods", "naive", "-q"]) == 0
    assert "naive" in capsys.readouterr().out
