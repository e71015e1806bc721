"""Weight-file formats of other Lipschitz projects, and plain lists of (W, b) arrays.

Every reader returns an :class:`Imported` (the IR network, an independent numpy reference evaluating
the raw arrays, and an input sampler for the equivalence check).

* LipSDP ``.mat``: key ``weights``, a 1xK object array of (out, in) matrices, no biases.
* GLipSDP ``.mat``: ``conv<i>_weight`` (kh, kw, cin, cout), ``conv<i>_bias``, ``fc<i>_weight`` (in, out),
  ``fc<i>_bias``, ``input_mean``, ``input_scale``. Architecture (from ``Comparison/train_networks.py`` of
  ppauli/GLipSDP, a torch script that exported ``Linear.weight.T`` and ``Conv2d.weight.transpose(2, 3,
  1, 0)``): the convs in index order, each 3x3 (any odd size), stride 1, "same" zero padding, ReLU; then
  torch's ``nn.Flatten`` of (C, H, W), i.e. channel-major order; then the fc layers with ReLU between.
  The 64 inputs are the 8x8 scikit-learn digits pixels, row-major, standardised by
  ``(x - input_mean) / input_scale`` (a StandardScaler). The flatten order and the normalisation are
  also confirmed by the test accuracy on scikit-learn's digits (tests/network/test_import_formats.py).
* LipBaB / ExLipBaB ``<stem>_weights.npy`` + ``<stem>_biases.npy``: object arrays of (in, out) weights
  and bias vectors (scikit-learn ``coefs_`` layout). They are read with a restricted unpickler that only
  accepts numpy arrays (no arbitrary objects are unpickled).
* ECLipsE ``.npz``: keys ``w1, w2, ...`` (out, in), no biases (``b1, b2, ...`` are used if present).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lipopt.errors import InvalidNetworkError
from lipopt.network.importers.equivalence import Reference, Sampler, mlp_reference
from lipopt.network.layers import Conv2d, Dense, Flatten, Layer, LeakyReLU, ReLU
from lipopt.network.network import AffineStage, LeakyReLUStage, Network, ReLUStage


@dataclass
class Imported:
    network: Network
    reference: Reference
    source: str
    sampler: Sampler | None = None


# ------------------------------------------------------------------------------------------------
# helpers


def check_chain(shapes: Sequence[tuple[int, ...]], names: Sequence[str], layout: str, where: str) -> None:
    """Raise InvalidNetworkError naming the layers if consecutive (out, in) / (in, out) shapes don't chain."""
    for i, (shp, nm) in enumerate(zip(shapes, names, strict=True)):
        if len(shp) != 2:
            raise InvalidNetworkError(f"{where}: {nm} must be a 2-D matrix, got shape {shp}")
        if i == 0:
            continue
        prev_out = shapes[i - 1][0] if layout == "out_in" else shapes[i - 1][1]
        this_in = shp[1] if layout == "out_in" else shp[0]
        if prev_out != this_in:
            raise InvalidNetworkError(
                f"{where}: shape mismatch between {names[i - 1]} {shapes[i - 1]} and {nm} {shp}: "
                f"{names[i - 1]} has {prev_out} outputs but {nm} takes {this_in} inputs "
                f"(layout {layout.replace('_', ' x ')})"
            )


def _check_biases(ws: list[np.ndarray], bs: list[np.ndarray | None], layout: str, where: str) -> None:
    for i, (w, b) in enumerate(zip(ws, bs, strict=True)):
        if b is None:
            continue
        n_out = w.shape[0] if layout == "out_in" else w.shape[1]
        if np.asarray(b).size != n_out:
            raise InvalidNetworkError(
                f"{where}: bias {i + 1} has {np.asarray(b).size} entries but weight {i + 1} {w.shape} has "
                f"{n_out} outputs (layout {layout.replace('_', ' x ')})"
            )


def _mlp(ws: list[np.ndarray], bs: list[np.ndarray | None], layout: str, where: str, name: str) -> Imported:
    if not ws:
        raise InvalidNetworkError(f"{where}: no weight matrices")
    if len(bs) != len(ws):
        raise InvalidNetworkError(f"{where}: {len(ws)} weight matrices but {len(bs)} bias vectors")
    check_chain([w.shape for w in ws], [f"weight {i + 1}" for i in range(len(ws))], layout, where)
    _check_biases(ws, bs, layout, where)
    w_out_in = ws if layout == "out_in" else [w.T for w in ws]
    net = Network.from_weights(w_out_in, [None if b is None else np.asarray(b).reshape(-1) for b in bs],
                               name=name)
    return Imported(net, mlp_reference(ws, bs, layout), where)


# ------------------------------------------------------------------------------------------------
# (W, b) lists


def from_weight_list(pairs: Sequence[Any], name: str = "") -> Imported:
    """``[(W1, b1), (W2, b2), ...]`` with W of shape (out, in) (b may be None); ReLU between layers."""
    ws, bs = [], []
    for i, p in enumerate(pairs):
        if isinstance(p, tuple | list) and len(p) == 2:
            w, b = p
        else:
            raise InvalidNetworkError(
                f"layer {i + 1} of the weight list is a {type(p).__name__}; expected a (W, b) pair with W of "
                "shape (out, in) and b of shape (out,) or None"
            )
        ws.append(np.asarray(w, dtype=np.float64))
        bs.append(None if b is None else np.asarray(b, dtype=np.float64).reshape(-1))
    return _mlp(ws, bs, "out_in", "weight list", name or "weights")


# ------------------------------------------------------------------------------------------------
# .mat


def load_mat(path: Path, normalize: bool = True, name: str = "") -> Imported:
    import scipy.io as sio

    try:
        d = sio.loadmat(str(path))
    except NotImplementedError:
        raise InvalidNetworkError(
            f"{path}: MATLAB v7.3 (HDF5) files are not supported; save with -v7"
        ) from None
    except Exception as exc:
        raise InvalidNetworkError(f"cannot read MATLAB file {path}: {exc}") from None
    keys = sorted(k for k in d if not k.startswith("__"))
    if "weights" in keys:
        return _lipsdp(d["weights"], path, name)
    if any(re.fullmatch(r"(fc|conv)\d+_weight", k) for k in keys):
        return _glipsdp(d, keys, path, normalize, name)
    raise InvalidNetworkError(
        f"{path}: unrecognised .mat layout (keys {keys}). Supported: LipSDP (key 'weights': 1xK cell of "
        "(out, in) matrices) and GLipSDP (fc<i>_weight/fc<i>_bias, conv<i>_weight/conv<i>_bias, "
        "input_mean, input_scale)"
    )


def _lipsdp(cell: Any, path: Path, name: str) -> Imported:
    arr = np.asarray(cell)
    mats = list(arr.ravel()) if arr.dtype == object else [arr]
    ws = [np.asarray(m, dtype=np.float64) for m in mats]
    return _mlp(ws, [None] * len(ws), "out_in", f"LipSDP file {path.name}", name or path.stem)


def _indexed(keys: list[str], prefix: str) -> list[int]:
    return sorted(int(m.group(1)) for k in keys if (m := re.fullmatch(prefix + r"(\d+)_weight", k)))


def _glipsdp_layer_indices(d: dict, keys: list[str], where: str) -> tuple[list[int], list[int]]:
    """The conv and fc layer numbers of a GLipSDP file, every weight with its bias and no other key."""
    convs, fcs = _indexed(keys, "conv"), _indexed(keys, "fc")
    known = {f"conv{i}_{s}" for i in convs for s in ("weight", "bias")}
    known |= {f"fc{i}_{s}" for i in fcs for s in ("weight", "bias")} | {"input_mean", "input_scale"}
    if unknown := sorted(set(keys) - known):
        raise InvalidNetworkError(f"{where}: unrecognised keys {unknown}")
    for i in convs:
        if f"conv{i}_bias" not in d:
            raise InvalidNetworkError(f"{where}: conv{i}_weight has no conv{i}_bias")
    for i in fcs:
        if f"fc{i}_bias" not in d:
            raise InvalidNetworkError(f"{where}: fc{i}_weight has no fc{i}_bias")
    if not fcs:
        raise InvalidNetworkError(f"{where}: no fc<i>_weight layers (the last layer must be fully connected)")
    return convs, fcs


def _glipsdp_convs(convs: list[int], kconv: list[np.ndarray], bconv: list[np.ndarray], n_in: int | None,
                   where: str) -> tuple[list[Layer], tuple[int, ...], int]:
    """The 'same'-padded conv + ReLU layers of a GLipSDP file (kernels (kh, kw, cin, cout)) and a Flatten,
    on square inputs of n_in / cin pixels; returns (layers, input shape, flat output size)."""
    for i, k in zip(convs, kconv, strict=True):
        if k.ndim != 4:
            raise InvalidNetworkError(
                f"{where}: conv{i}_weight must be (kh, kw, cin, cout), got {k.shape}"
            )
    cin = kconv[0].shape[2]
    if n_in is None:
        raise InvalidNetworkError(f"{where}: input_mean is needed to know the input size of the convs")
    side = round(np.sqrt(n_in / cin))
    if side * side * cin != n_in:
        raise InvalidNetworkError(f"{where}: {n_in} inputs are not {cin} square channels")
    shape: tuple[int, ...] = (cin, side, side)
    in_shape = shape
    layers: list[Layer] = []
    for i, k, bb in zip(convs, kconv, bconv, strict=True):
        kh, kw, ci, _ = k.shape
        if ci != shape[0]:
            raise InvalidNetworkError(
                f"{where}: shape mismatch: conv{i}_weight {k.shape} takes {ci} channels but the previous "
                f"layer outputs {shape[0]}"
            )
        if kh % 2 == 0 or kw % 2 == 0:
            raise InvalidNetworkError(
                f"{where}: conv{i}: 'same' padding needs odd kernel sizes, got {k.shape}"
            )
        layer = Conv2d(k.transpose(3, 2, 0, 1), bb, padding=((kh - 1) // 2, (kw - 1) // 2),
                       name=f"conv{i}")
        shape = layer.output_shape(shape)
        layers += [layer, ReLU()]
    layers.append(Flatten())
    return layers, in_shape, int(np.prod(shape))


def _glipsdp(d: dict, keys: list[str], path: Path, normalize: bool, name: str) -> Imported:
    where = f"GLipSDP file {path.name}"
    convs, fcs = _glipsdp_layer_indices(d, keys, where)
    f64 = lambda k: np.asarray(d[k], dtype=np.float64)  # noqa: E731
    kconv = [f64(f"conv{i}_weight") for i in convs]
    bconv = [f64(f"conv{i}_bias").reshape(-1) for i in convs]
    wfc = [f64(f"fc{i}_weight") for i in fcs]
    bfc = [f64(f"fc{i}_bias").reshape(-1) for i in fcs]
    has_norm = "input_mean" in d and "input_scale" in d
    mean = f64("input_mean").reshape(-1) if has_norm else None
    scale = f64("input_scale").reshape(-1) if has_norm else None
    n_in = mean.size if mean is not None else (wfc[0].shape[0] if not convs else None)

    if convs:
        layers, in_shape, n_flat = _glipsdp_convs(convs, kconv, bconv, n_in, where)
    else:
        layers, in_shape, n_flat = [], (wfc[0].shape[0],), wfc[0].shape[0]
    if wfc[0].shape[0] != n_flat:
        raise InvalidNetworkError(
            f"{where}: shape mismatch: fc{fcs[0]}_weight {wfc[0].shape} takes {wfc[0].shape[0]} inputs but "
            f"the previous layer outputs {n_flat}"
        )
    check_chain([w.shape for w in wfc], [f"fc{i}_weight" for i in fcs], "in_out", where)
    _check_biases(wfc, bfc, "in_out", where)
    for j, (i, w, bb) in enumerate(zip(fcs, wfc, bfc, strict=True)):
        layers.append(Dense(w.T, bb, name=f"fc{i}"))
        if j < len(fcs) - 1:
            layers.append(ReLU())
    net = Network(layers, in_shape, name=name or path.stem)
    if mean is not None and mean.size != net.input_size:
        raise InvalidNetworkError(f"{where}: input_mean has {mean.size} entries for {net.input_size} inputs")
    if normalize and has_norm:
        net = _fold_input_affine(net, 1.0 / scale, -mean / scale)  # type: ignore[operator]
        from lipopt.network.normalization import InputNormalization

        if np.all(scale != 0):  # type: ignore[operator]
            net.input_normalization = InputNormalization(mean, scale, "GLipSDP input_mean / input_scale")
    ref = _glipsdp_reference(kconv, bconv, wfc, bfc, in_shape, mean if normalize else None,
                             scale if normalize else None)
    return Imported(net, ref, where)


def _fold_input_affine(net: Network, a: np.ndarray, c: np.ndarray) -> Network:
    """Network computing net(a * x + c) for flat x (exact; conv layers become dense matrices)."""
    if net.is_dense_relu:
        first = net.layers[0]
        assert isinstance(first, Dense)
        new = Dense(first.weight * a[None, :], first.bias + first.weight @ c, name=first.name)
        return Network([new, *net.layers[1:]], (net.input_size,), name=net.name)
    # element-wise (per-pixel) normalisation cannot be folded into a zero-padded Conv2d: lower the
    # network to its affine/ReLU stages (the convs as dense matrices) and fold into the first one.
    layers: list[Layer] = []
    first = True
    for s in net.lower():
        if isinstance(s, AffineStage):
            w = s.dense()
            b = np.asarray(s.bias, dtype=np.float64)
            if first:
                b = b + w @ c
                w = w * a[None, :]
                first = False
            layers.append(Dense(w, b, name=f"affine{len(layers) // 2 + 1}"))
        elif isinstance(s, ReLUStage):
            layers.append(ReLU())
        elif isinstance(s, LeakyReLUStage):
            layers.append(LeakyReLU(s.alpha))
        else:
            raise InvalidNetworkError(f"cannot fold the input normalisation through {type(s).__name__}")
    return Network(layers, (net.input_size,), name=net.name)


def _glipsdp_reference(kconv: list[np.ndarray], bconv: list[np.ndarray], wfc: list[np.ndarray],
                       bfc: list[np.ndarray], in_shape: tuple[int, ...], mean: np.ndarray | None,
                       scale: np.ndarray | None) -> Reference:
    """Raw-array evaluation: HWC convolutions with the (kh, kw, cin, cout) kernels, flatten in (C, H, W)."""

    def conv_hwc(h: np.ndarray, k: np.ndarray) -> np.ndarray:  # h (B, H, W, C)
        kh, kw = k.shape[:2]
        ph, pw = (kh - 1) // 2, (kw - 1) // 2
        bsz, hh, ww, _ = h.shape
        hp = np.zeros((bsz, hh + 2 * ph, ww + 2 * pw, h.shape[3]))
        hp[:, ph: ph + hh, pw: pw + ww] = h
        out = np.zeros((bsz, hh, ww, k.shape[3]))
        for i in range(kh):
            for j in range(kw):
                out += hp[:, i: i + hh, j: j + ww, :] @ k[i, j]
        return out

    def ref(x: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kd = dirs.shape[0]
        h = np.asarray(x, dtype=np.float64).reshape(1, -1)
        d = np.asarray(dirs, dtype=np.float64).reshape(kd, -1)
        if mean is not None:
            h = (h - mean) / scale
            d = d / scale
        if kconv:
            c, hh, ww = in_shape
            h = h.reshape(1, c, hh, ww).transpose(0, 2, 3, 1)
            d = d.reshape(kd, c, hh, ww).transpose(0, 2, 3, 1)
            for k, bb in zip(kconv, bconv, strict=True):
                h, d = conv_hwc(h, k) + bb, conv_hwc(d, k)
                d = d * (h > 0)
                h = np.maximum(h, 0.0)
            h = h.transpose(0, 3, 1, 2).reshape(1, -1)
            d = d.transpose(0, 3, 1, 2).reshape(kd, -1)
        for j, (w, bb) in enumerate(zip(wfc, bfc, strict=True)):
            h, d = h @ w + bb, d @ w
            if j < len(wfc) - 1:
                d = d * (h > 0)
                h = np.maximum(h, 0.0)
        return h.reshape(-1), d

    return ref


# ------------------------------------------------------------------------------------------------
# .npy pairs (LipBaB / ExLipBaB)

_NUMPY_CLASSES = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_CLASSES:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (only numpy arrays are accepted)")


def read_npy(path: Path) -> np.ndarray:
    """np.load for plain and object arrays; object arrays are unpickled allowing numpy arrays only."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            _, _, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.kind != "O":
            return np.load(path, allow_pickle=False)
        try:
            obj = _NumpyOnlyUnpickler(f).load()
        except pickle.UnpicklingError as exc:
            raise InvalidNetworkError(f"{path.name}: {exc}") from None
    return np.asarray(obj)


def npy_pair_paths(path: Path) -> tuple[Path, Path, str]:
    """(weights, biases, stem) for ``<stem>_weights.npy``, ``<stem>_biases.npy`` or the stem itself."""
    s = str(path)
    for suffix in ("_weights.npy", "_biases.npy"):
        if s.endswith(suffix):
            stem = s[: -len(suffix)]
            break
    else:
        stem = s[:-4] if s.endswith(".npy") else s
    return Path(stem + "_weights.npy"), Path(stem + "_biases.npy"), Path(stem).name


def _arrays(arr: np.ndarray, fname: str) -> list[np.ndarray]:
    """The float64 arrays of an object array (or the array itself)."""
    items = list(arr.ravel()) if arr.dtype.kind == "O" else [arr]
    out = []
    for i, a in enumerate(items):
        if not isinstance(a, np.ndarray | list | tuple | float | int) or isinstance(a, bool):
            raise InvalidNetworkError(
                f"{fname}: element {i} is a {type(a).__name__}, expected a numeric array"
            )
        try:
            out.append(np.asarray(a, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise InvalidNetworkError(f"{fname}: element {i} is not a numeric array ({exc})") from None
    return out


def load_npy_pair(path: Path, name: str = "") -> Imported:
    wpath, bpath, stem = npy_pair_paths(path)
    for p, what in ((wpath, "weights"), (bpath, "biases")):
        if not p.exists():
            raise InvalidNetworkError(
                f"missing {what} file {p.name} next to {path.name}: LipBaB/ExLipBaB networks come as a pair "
                f"<stem>_weights.npy + <stem>_biases.npy (pass either file or the stem)"
            )
    ws = [w for w in _arrays(read_npy(wpath), wpath.name)]
    bs = [b.reshape(-1) for b in _arrays(read_npy(bpath), bpath.name)]
    return _mlp(ws, bs, "in_out", f"LipBaB files {stem}_weights/_biases.npy", name or stem)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------
# .npz (ECLipsE)


def load_npz(path: Path, name: str = "") -> Imported:
    with np.load(path, allow_pickle=False) as z:
        keys = list(z.keys())
        wk = sorted((int(m.group(1)), k) for k in keys if (m := re.fullmatch(r"[wW](\d+)", k)))
        if not wk:
            raise InvalidNetworkError(
                f"{path.name}: no weight keys w1, w2, ... (keys {keys}); supported: ECLipsE npz with "
                "(out, in) matrices w1, w2, ... and optional biases b1, b2, ..."
            )
        ws = [np.asarray(z[k], dtype=np.float64) for _, k in wk]
        bs: list[np.ndarray | None] = []
        for i, _ in wk:
            bk = next((k for k in (f"b{i}", f"B{i}") if k in keys), None)
            bs.append(None if bk is None else np.asarray(z[bk], dtype=np.float64).reshape(-1))
    return _mlp(ws, bs, "out_in", f"ECLipsE file {path.name}", name or path.stem)


Reader = Callable[..., Imported]
