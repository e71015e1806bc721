"""Every network in ../shared/external-nets/ loads unchanged (the equivalence check runs on each)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import lipopt
from lipopt.errors import InvalidNetworkError
from tests.paths import EXTERNAL

EXT = EXTERNAL

# file -> (input shape, hidden ReLU widths, outputs), from the README's architecture column
EXPECTED = {
    "lipsdp/random_weights.mat": ((2,), [10, 30, 20], 2),
    "lipsdp/mnist_weights.mat": ((784,), [50], 10),
    "lipbab/SDnet_(10,15,10,3)_weights.npy": ((10,), [15, 10], 3),
    "lipbab/SDnet_(10,20,15,10,3)_weights.npy": ((10,), [20, 15, 10], 3),
    "lipbab/SDnet_(10,30,30,30,3)_weights.npy": ((10,), [30, 30, 30], 3),
    "lipbab/iris_net_(4,5,5,3)_weights.npy": ((4,), [5, 5], 3),
    "exlipbab/iris_net_(4x6x6x3)_ReLU_weights.npy": ((4,), [6, 6], 3),
    "exlipbab/wine_net_(11x12x12x1)_ReLU_weights.npy": ((11,), [12, 12], 1),
    "exlipbab/abalone_net_(9x16x16x1)_ReLU_weights.npy": ((9,), [16, 16], 1),
    "exlipbab/bike_net_(13x20x16x8x3)_ReLU_weights.npy": ((13,), [20, 16, 8], 3),
    "exlipbab/wine_net_(11x24x24x1)_ReLU_weights.npy": ((11,), [24, 24], 1),
    "eclipse/lyr2n80test1.npz": ((4,), [80], 1),
    "glipsdp/fnn2_seed0_weights.mat": ((64,), [32], 10),
    "glipsdp/fnn3_seed0_weights.mat": ((64,), [32, 32], 10),
    "glipsdp/cnn2_seed0_weights.mat": ((64,), [512], 10),  # normalised: the conv as a 512x64 matrix
    "glipsdp/cnn3_seed0_weights.mat": ((64,), [512, 1024], 10),
}
GLIPSDP_ONNX = ["glipsdp/mlp_L3_W16.onnx", "glipsdp/cnn_C3_CH8.onnx"]
CHECKPOINTS = {"avant/mnist_lenet_ckpt_99.ckpt": ("mnist_lenet", (1, 28, 28)),
               "avant/cifar10_net_ckpt_499.ckpt": ("cifar10_net", (3, 32, 32))}


@pytest.fixture(scope="module")
def ext() -> Path:
    if not EXT.is_dir():
        pytest.skip(f"shared external networks not found at {EXT} (clone the repo with shared/ beside it)")
    return EXT


def test_every_network_file_is_covered(ext):
    partners = {"_biases.npy", ".onnx.data", ".png", ".md"}
    files = {p.relative_to(ext).as_posix() for p in ext.rglob("*") if p.is_file()}
    networks = {f for f in files if not any(f.endswith(s) for s in partners)}
    assert networks == set(EXPECTED) | set(GLIPSDP_ONNX) | set(CHECKPOINTS)


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_external_file_loads(ext, rel):
    shape, hidden, n_out = EXPECTED[rel]
    net = lipopt.load(ext / rel)  # raises EquivalenceError if the IR disagrees with the raw arrays
    assert net.input_shape == shape
    assert net.hidden_widths() == hidden
    assert net.output_size == n_out


@pytest.mark.parametrize("rel", GLIPSDP_ONNX)
def test_glipsdp_onnx_loads_and_matches_onnx_own_evaluator(ext, rel):
    """The LeakyReLU nets with GLipSDP's scaling Mul nodes: lipopt.load runs its equivalence check; the
    outputs are compared again here with onnx's own reference evaluator (independent of lipopt's)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    net = lipopt.load(ext / rel)
    assert net.has_leaky and [type(la).__name__ for la in net.layers].count("LeakyReLU") == 3
    model = onnx.load(str(ext / rel))
    x = np.random.default_rng(0).uniform(0, 1, (4, 1, 28, 28)).astype(np.float32)
    (want,) = ReferenceEvaluator(model).run(None, {model.graph.input[0].name: x})
    got = net.forward(x.astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.max(np.abs(want))))


def test_lipsdp_random_weights_is_a_plain_relu_chain(ext):
    import scipy.io as sio

    cell = sio.loadmat(ext / "lipsdp/random_weights.mat")["weights"]
    ws = [np.asarray(w, dtype=np.float64) for w in cell[0]]
    net = lipopt.load(ext / "lipsdp/random_weights.mat")
    assert not net.has_bias
    rng = np.random.default_rng(0)
    for _ in range(10):
        x = rng.standard_normal(2)
        h, jac = x, np.eye(2)
        for w in ws[:-1]:
            z = w @ h
            h, jac = np.maximum(z, 0), (z > 0)[:, None] * (w @ jac)
        assert np.allclose(net.forward(x), ws[-1] @ h, rtol=1e-12, atol=1e-14)
        assert np.allclose(net.jacobian(x), ws[-1] @ jac, rtol=1e-12, atol=1e-14)


def test_npy_pair_by_stem_and_by_biases_file(ext):
    stem = ext / "lipbab" / "iris_net_(4,5,5,3)"
    a = lipopt.load(stem)
    b = lipopt.load(Path(str(stem) + "_biases.npy"))
    x = np.linspace(0, 0.1, 4)
    assert np.array_equal(a.forward(x), b.forward(x))


def test_glipsdp_architecture_reproduces_the_reported_accuracy(ext):
    """Checks the assumptions (channel-major flatten, 'same' padding, (x - mean) / scale normalisation) on
    the data the nets were trained on: scikit-learn's digits, the seed-0 test split of the training script."""
    pytest.importorskip("sklearn")
    import scipy.io as sio
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    _, x_te, _, y_te = train_test_split(d.data, d.target, test_size=0.2, random_state=0, stratify=d.target)
    for m in ("fnn2", "fnn3", "cnn2", "cnn3"):
        path = ext / f"glipsdp/{m}_seed0_weights.mat"
        net = lipopt.load(path)
        assert np.mean(net.forward(x_te).argmax(1) == y_te) > 0.95, m
        raw = lipopt.load(path, normalize=False)  # the net on standardised inputs (what GLipSDP analyses)
        mat = sio.loadmat(path)
        z = (x_te - mat["input_mean"]) / mat["input_scale"]
        assert np.allclose(raw.forward(z), net.forward(x_te), rtol=1e-9, atol=1e-9)
    # reading fc1's inputs in the other flatten order, (H, W, C), destroys the accuracy of the CNN
    raw = lipopt.load(ext / "glipsdp/cnn2_seed0_weights.mat", normalize=False)
    fc = raw.layers[-1]
    feats = _hidden(raw, z)  # (N, 512) ReLU features in the IR's (C, H, W) order
    assert np.allclose(feats @ fc.weight.T + fc.bias, raw.forward(z), atol=1e-12)
    perm = np.arange(8 * 8 * 8).reshape(8, 8, 8).transpose(1, 2, 0).reshape(-1)  # HWC position -> CHW index
    wrong = feats[:, perm] @ fc.weight.T + fc.bias
    assert np.mean(wrong.argmax(1) == y_te) < 0.6


def _hidden(net, x):
    h = np.asarray(x).reshape(-1, *net.input_shape)
    for la in net.layers[:-1]:
        h = la.forward(h)
    return h


@pytest.fixture(scope="module")
def avant_nets(ext):
    pytest.importorskip("torch")
    return {rel: lipopt.load(ext / rel) for rel in CHECKPOINTS}


def test_avant_checkpoints_load_with_normalisation(ext, avant_nets):
    for rel, (_, shape) in CHECKPOINTS.items():
        net = avant_nets[rel]
        assert net.input_shape == shape and net.output_size == 10 and net.has_maxpool


def test_avant_nominal_images_are_classified(ext, avant_nets):
    pil = pytest.importorskip("PIL.Image")
    for rel, img, cls in (("avant/mnist_lenet_ckpt_99.ckpt", "mnist_8.png", 8),
                          ("avant/cifar10_net_ckpt_499.ckpt", "cifar10_dog4.png", 5)):  # 5 = dog
        x = np.asarray(pil.open(ext / "avant" / img), dtype=np.float64) / 255.0
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        assert avant_nets[rel].forward(x).argmax() == cls


def test_checkpoint_arch_keyword_and_normalisation_fold(ext, avant_nets):
    rel = "avant/mnist_lenet_ckpt_99.ckpt"
    raw = lipopt.load(ext / rel, arch="mnist_lenet", normalize=False)
    x = np.random.default_rng(0).uniform(0, 1, (1, 28, 28))
    assert np.allclose(raw.forward((x - 0.1307) / 0.3081), avant_nets[rel].forward(x), rtol=1e-10, atol=1e-10)
    with pytest.raises(InvalidNetworkError, match="does not fit architecture 'cifar10_net'"):
        lipopt.load(ext / rel, arch="cifar10_net")
    with pytest.raises(InvalidNetworkError, match="known: "):
        lipopt.load(ext / rel, arch="resnet50")


def test_unknown_checkpoint_architecture_and_pickled_modules(tmp_path):
    torch = pytest.importorskip("torch")
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    torch.save({"net": model.state_dict()}, tmp_path / "mlp.ckpt")
    with pytest.raises(InvalidNetworkError, match="unknown architecture") as info:
        lipopt.load(tmp_path / "mlp.ckpt")
    assert "mnist_lenet" in str(info.value) and "cifar10_net" in str(info.value)
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    net = lipopt.load(tmp_path / "mlp.ckpt", arch=fresh)
    x = np.ones(3)
    assert np.allclose(net.forward(x), model.double()(torch.ones(1, 3, dtype=torch.float64)).detach().numpy())
    torch.save(model, tmp_path / "whole.pt")  # a pickled module: refused, never unpickled
    with pytest.raises(InvalidNetworkError, match="weights_only=True"):
        lipopt.load(tmp_path / "whole.pt")
