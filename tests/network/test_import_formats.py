"""Weight lists, file formats and the error cases of lipopt.load."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io as sio

import lipopt
from lipopt.errors import EquivalenceError, InvalidNetworkError
from lipopt.network.importers import equivalence, formats
from lipopt.network.load import load


def _relu_chain(ws, bs, x):
    h = x
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        h = w @ h + (0 if b is None else b)
        if i < len(ws) - 1:
            h = np.maximum(h, 0)
    return h


def test_lipopt_load_is_exposed():
    assert lipopt.load is load


def test_weight_list_matches_a_numpy_relu_chain():
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((6, 3)), rng.standard_normal((4, 6)), rng.standard_normal((2, 4))]
    bs = [rng.standard_normal(6), None, rng.standard_normal(2)]
    net = lipopt.load(list(zip(ws, bs, strict=True)))
    assert net.input_shape == (3,) and net.hidden_widths() == [6, 4]
    for _ in range(5):
        x = rng.standard_normal(3)
        assert np.allclose(net.forward(x), _relu_chain(ws, bs, x), rtol=1e-13, atol=1e-13)


def test_weight_list_shape_mismatch_names_the_layers():
    with pytest.raises(InvalidNetworkError, match=r"between weight 1 .* and weight 2") as info:
        lipopt.load([(np.ones((4, 3)), np.zeros(4)), (np.ones((2, 5)), np.zeros(2))])
    assert "4 outputs but weight 2 takes 5 inputs" in str(info.value)
    with pytest.raises(InvalidNetworkError, match="bias 1 has 3 entries"):
        lipopt.load([(np.ones((4, 3)), np.zeros(3))])


def test_nan_and_inf_weights_are_rejected():
    w = np.ones((2, 2))
    w[0, 1] = np.nan
    with pytest.raises(InvalidNetworkError, match="NaN or infinite"):
        lipopt.load([(w, None)])
    with pytest.raises(InvalidNetworkError, match="NaN or infinite"):
        lipopt.load([(np.ones((2, 2)), np.array([0.0, np.inf]))])


def test_unknown_extension_lists_supported_formats(tmp_path):
    p = tmp_path / "net.h5"
    p.write_bytes(b"\x00")
    with pytest.raises(InvalidNetworkError, match=r"unsupported file extension '\.h5'") as info:
        lipopt.load(p)
    for fmt in (".onnx", ".mat", ".npy", ".npz", ".ckpt", "nn.Module"):
        assert fmt in str(info.value)


def test_missing_file_and_bad_keyword(tmp_path):
    with pytest.raises(FileNotFoundError):
        lipopt.load(tmp_path / "nope.onnx")
    with pytest.raises(TypeError, match="arch"):
        lipopt.load([(np.ones((1, 1)), None)], arch="mnist_lenet")


def _save_object_array(path, arrays):
    arr = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        arr[i] = a
    np.save(path, arr, allow_pickle=True)


def test_npy_pair_by_either_file_or_stem_and_missing_partner(tmp_path):
    rng = np.random.default_rng(1)
    ws = [rng.standard_normal((3, 5)), rng.standard_normal((5, 2))]  # in x out
    bs = [rng.standard_normal(5), rng.standard_normal(2)]
    _save_object_array(tmp_path / "toy_weights.npy", ws)
    _save_object_array(tmp_path / "toy_biases.npy", bs)
    x = rng.standard_normal(3)
    expected = np.maximum(x @ ws[0] + bs[0], 0) @ ws[1] + bs[1]
    for src in ("toy_weights.npy", "toy_biases.npy", "toy"):
        net = lipopt.load(tmp_path / src)
        assert np.allclose(net.forward(x), expected, rtol=1e-13, atol=1e-13)
    (tmp_path / "toy_biases.npy").unlink()
    with pytest.raises(InvalidNetworkError, match=r"missing biases file toy_biases\.npy"):
        lipopt.load(tmp_path / "toy_weights.npy")


def test_npy_with_non_numpy_objects_is_not_unpickled(tmp_path):
    from fractions import Fraction

    _save_object_array(tmp_path / "evil_weights.npy", [Fraction(1, 2)])  # needs a global to unpickle
    _save_object_array(tmp_path / "evil_biases.npy", [np.zeros(1)])
    with pytest.raises(InvalidNetworkError, match=r"refusing to unpickle fractions\.Fraction"):
        lipopt.load(tmp_path / "evil_weights.npy")
    _save_object_array(tmp_path / "odd_weights.npy", [{"not": "an array"}])  # no global, but not an array
    _save_object_array(tmp_path / "odd_biases.npy", [np.zeros(1)])
    with pytest.raises(InvalidNetworkError, match="element 0 is a dict"):
        lipopt.load(tmp_path / "odd_weights.npy")


def test_npz_with_and_without_biases(tmp_path):
    rng = np.random.default_rng(2)
    w1, w2, b1 = rng.standard_normal((6, 3)), rng.standard_normal((1, 6)), rng.standard_normal(6)
    np.savez(tmp_path / "a.npz", w1=w1, w2=w2)
    np.savez(tmp_path / "b.npz", w1=w1, w2=w2, b1=b1)
    x = rng.standard_normal(3)
    assert np.allclose(lipopt.load(tmp_path / "a.npz").forward(x), w2 @ np.maximum(w1 @ x, 0), rtol=1e-13)
    y = lipopt.load(tmp_path / "b.npz").forward(x)
    assert np.allclose(y, w2 @ np.maximum(w1 @ x + b1, 0), rtol=1e-13)
    np.savez(tmp_path / "c.npz", W=w1)
    with pytest.raises(InvalidNetworkError, match="no weight keys w1"):
        lipopt.load(tmp_path / "c.npz")


def test_mat_layouts_and_their_errors(tmp_path):
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = np.ones((4, 3)), np.ones((2, 5))
    sio.savemat(tmp_path / "bad_lipsdp.mat", {"weights": cell})
    with pytest.raises(InvalidNetworkError, match="shape mismatch between weight 1"):
        lipopt.load(tmp_path / "bad_lipsdp.mat")
    sio.savemat(tmp_path / "other.mat", {"W1": np.ones((2, 2))})
    with pytest.raises(InvalidNetworkError, match=r"unrecognised \.mat layout"):
        lipopt.load(tmp_path / "other.mat")
    rng = np.random.default_rng(3)
    glip = {"conv1_weight": rng.standard_normal((3, 3, 1, 2)), "conv1_bias": rng.standard_normal((1, 2)),
            "fc1_weight": rng.standard_normal((2 * 16 + 1, 3)), "fc1_bias": rng.standard_normal((1, 3)),
            "input_mean": rng.standard_normal((1, 16)), "input_scale": rng.uniform(0.5, 2, (1, 16))}
    sio.savemat(tmp_path / "bad_glip.mat", glip)
    with pytest.raises(InvalidNetworkError, match=r"fc1_weight \(33, 3\) takes 33 inputs"):
        lipopt.load(tmp_path / "bad_glip.mat")


def test_small_glipsdp_cnn_normalised_and_raw(tmp_path):
    """A hand-made GLipSDP-layout CNN: conv 'same', channel-major flatten, (x - mean) / scale."""
    rng = np.random.default_rng(4)
    k = rng.standard_normal((3, 3, 1, 2))
    kb, w, b = rng.standard_normal(2), rng.standard_normal((2 * 16, 3)), rng.standard_normal(3)
    mean, scale = rng.standard_normal(16), rng.uniform(0.5, 2, 16)
    sio.savemat(tmp_path / "tiny_weights.mat", {"conv1_weight": k, "conv1_bias": kb[None], "fc1_weight": w,
                                               "fc1_bias": b[None], "input_mean": mean[None],
                                               "input_scale": scale[None]})
    net = lipopt.load(tmp_path / "tiny_weights.mat")
    raw = lipopt.load(tmp_path / "tiny_weights.mat", normalize=False)
    assert net.input_shape == (16,) and raw.input_shape == (1, 4, 4)
    x = rng.standard_normal(16)
    z = ((x - mean) / scale).reshape(4, 4)
    zp = np.pad(z, 1)
    conv = np.array([[[sum(zp[i + a, j + c] * k[a, c, 0, o] for a in range(3) for c in range(3)) + kb[o]
                       for j in range(4)] for i in range(4)] for o in range(2)])  # (C, H, W)
    expected = np.maximum(conv, 0).reshape(-1) @ w + b
    assert np.allclose(net.forward(x), expected, rtol=1e-12, atol=1e-12)
    assert np.allclose(raw.forward(z[None]), expected, rtol=1e-12, atol=1e-12)


def test_equivalence_check_catches_a_wrong_import(monkeypatch):
    rng = np.random.default_rng(5)
    pairs = [(rng.standard_normal((4, 3)), rng.standard_normal(4)), (rng.standard_normal((2, 4)), None)]
    good = formats.mlp_reference

    def perturbed(ws, bs, layout="out_in", **kw):
        ws = [w * (1 + 1e-6) for w in ws]
        return good(ws, bs, layout, **kw)

    monkeypatch.setattr(formats, "mlp_reference", perturbed)
    with pytest.raises(EquivalenceError, match=r"max relative (output|Jacobian) error"):
        lipopt.load(pairs)
    net = lipopt.load(pairs, check=False)  # check=False skips it
    assert net.output_size == 2


def test_equivalence_check_in_directional_mode():
    rng = np.random.default_rng(6)
    ws = [rng.standard_normal((40, 30)), rng.standard_normal((3, 40))]
    net = lipopt.load([(ws[0], None), (ws[1], None)], check=False)
    ref = equivalence.mlp_reference(ws, [None, None])
    rep = equivalence.check_equivalence(net, ref, options=equivalence.CheckOptions(max_full_work=10))
    assert rep.mode.endswith("Jacobian-vector products") and rep.max_jacobian_error < 1e-12
    bad = equivalence.mlp_reference([ws[0], 1.001 * ws[1]], [None, None])
    with pytest.raises(EquivalenceError):
        equivalence.check_equivalence(net, bad, options=equivalence.CheckOptions(max_full_work=10))
