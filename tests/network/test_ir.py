"""The float64 IR against torch (forward, Jacobian), lowering, and malformed networks."""

from __future__ import annotations

import numpy as np
import pytest

from lipopt.errors import InvalidNetworkError
from lipopt.network import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, Network, ReLU
from lipopt.network.network import AffineStage, MaxPoolStage, ReLUStage, linear_matrix, stage_forward

torch = pytest.importorskip("torch")


def _conv_net(seed: int = 0) -> tuple[torch.nn.Module, Network]:
    torch.manual_seed(seed)
    m = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, 3, stride=2, padding=1, groups=2), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2, stride=1, padding=1), torch.nn.AvgPool2d(2, padding=1, count_include_pad=False),
        torch.nn.Conv2d(4, 3, 2, dilation=2), torch.nn.Flatten(), torch.nn.Linear(3, 2),
    ).double()

    def p(t: torch.Tensor) -> np.ndarray:
        return t.detach().numpy()

    c1, c2, fc = m[0], m[4], m[6]
    net = Network([
        Conv2d(p(c1.weight), p(c1.bias), c1.stride, c1.padding, c1.dilation, c1.groups), ReLU(),
        MaxPool2d(2, 1, 1), AvgPool2d(2, None, 1, False),
        Conv2d(p(c2.weight), p(c2.bias), c2.stride, c2.padding, c2.dilation), Flatten(),
        Dense(p(fc.weight), p(fc.bias)),
    ], (2, 7, 7))
    return m, net


def _eval_stages(net: Network, x: np.ndarray) -> np.ndarray:
    return stage_forward(net.lower(), x.reshape(1, -1))[0][-1][0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conv_pool_net_matches_torch(seed: int) -> None:
    m, net = _conv_net(seed)
    x = torch.randn(1, 2, 7, 7, dtype=torch.float64)
    np.testing.assert_allclose(net.forward(x.numpy()), m(x).detach().numpy(), rtol=1e-12, atol=1e-12)
    jac = torch.autograd.functional.jacobian(lambda t: m(t.reshape(1, 2, 7, 7)).reshape(-1), x.reshape(-1))
    np.testing.assert_allclose(net.jacobian(x.numpy()), jac.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(_eval_stages(net, x.numpy()), net.forward(x.numpy())[0],
                               rtol=1e-12, atol=1e-12)


def test_lowering_structure_and_sparse_matches_dense() -> None:
    _, net = _conv_net()
    kinds = [type(s) for s in net.lower()]
    assert kinds == [AffineStage, ReLUStage, AffineStage, MaxPoolStage, AffineStage]
    from lipopt.network.network import _sparse_window_matrix

    for layer, shape in ((net.layers[0], (2, 7, 7)), (net.layers[3], (4, 5, 5))):
        dense = linear_matrix(layer, shape)
        sparse = _sparse_window_matrix(layer, shape, layer.output_shape(shape))
        np.testing.assert_array_equal(dense, sparse.toarray())


def test_dense_from_weights_and_jacobian_by_hand() -> None:
    net = Network.from_weights([np.array([[1.0, 2.0], [2.0, 1.0]]), np.array([[1.0, -1.0]])])  # T3
    assert net.n_relus == 2 and not net.has_bias
    np.testing.assert_allclose(net.jacobian([1.0, 1.0]), [[-1.0, 1.0]])
    np.testing.assert_allclose(net.jacobian([1.0, -1.0]), [[-2.0, -1.0]])  # only neuron 2 (2x1 + x2 = 1) on
    assert net.forward([1.0, -1.0])[0] == pytest.approx(-1.0)


def test_nan_weights_rejected() -> None:
    with pytest.raises(InvalidNetworkError, match="NaN or infinite"):
        Dense(np.array([[1.0, np.nan]]), np.zeros(1))
    with pytest.raises(InvalidNetworkError, match="NaN or infinite"):
        Dense(np.array([[1.0, 0.0]]), np.array([np.inf]))


def test_shape_mismatch_names_the_layer() -> None:
    with pytest.raises(InvalidNetworkError, match=r"weight 1 has 3 columns but weight 0 has 4 rows"):
        Network.from_weights([np.ones((4, 2)), np.ones((1, 3))])
    with pytest.raises(InvalidNetworkError, match=r"layer 2 \(Dense\)"):
        Network([Dense(np.ones((4, 2)), None), ReLU(), Dense(np.ones((1, 3)), None)], (2,))
    with pytest.raises(InvalidNetworkError, match="bias has 2 entries"):
        Dense(np.ones((3, 2)), np.ones(2))


def test_conv_needs_image_input_and_flat_output() -> None:
    conv = Conv2d(np.ones((1, 1, 2, 2)), None)
    with pytest.raises(InvalidNetworkError, match="expects input"):
        Network([conv], (4,))
    with pytest.raises(InvalidNetworkError, match="flat vector"):
        Network([conv], (1, 3, 3))


def test_input_of_wrong_size_rejected() -> None:
    net = Network.from_weights([np.ones((2, 3))])
    with pytest.raises(InvalidNetworkError, match="does not match the network input shape"):
        net.forward(np.ones(4))
