"""``lipopt.load``: import a network from torch, ONNX, weight files of other projects or weight lists.

Every import is followed by an equivalence check (outputs and Jacobians of the IR against an independent
evaluation of the source, float64, seeded random points; see
:mod:`lipopt.network.importers.equivalence`); ``check=False`` skips it.
"""

from __future__ import annotations

import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

from lipopt.errors import InvalidNetworkError, LipoptError
from lipopt.network.network import Network

SUPPORTED_FORMATS = (
    "a torch nn.Module; an onnx.ModelProto; a list of (W, b) pairs with W of shape (out, in); files: "
    ".onnx (ONNX, external data next to it), .mat (LipSDP 'weights' cell or GLipSDP fc*/conv* keys), "
    ".npy (LipBaB/ExLipBaB <stem>_weights.npy + <stem>_biases.npy; either file or the stem), "
    ".npz (ECLipsE w1, w2, ...), .ckpt/.pt/.pth (torch state_dict checkpoints, read with weights_only=True; "
    "need arch= or a recognised lipopt.zoo architecture)"
)

_CHECK_KW = ("rtol", "n_points", "seed")


def _is_torch_module(obj: Any) -> bool:
    if "torch" not in sys.modules:
        return False
    import torch.nn as nn

    return isinstance(obj, nn.Module)


def _is_onnx_model(obj: Any) -> bool:
    if "onnx" not in sys.modules:
        return False
    import onnx

    return isinstance(obj, onnx.ModelProto)


def _reject(kw: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    bad = sorted(set(kw) - set(allowed) - set(_CHECK_KW))
    if bad:
        raise TypeError(
            f"unexpected keyword argument(s) {bad} for {what}; accepted: "
            f"{', '.join(sorted({*allowed, *_CHECK_KW, 'input_shape', 'name', 'check'}))}"
        )


def load(
    source: Any,
    *,
    input_shape: tuple[int, ...] | int | None = None,
    name: str | None = None,
    check: bool = True,
    **kw: Any,
) -> Network:
    """Import ``source`` into the float64 IR and check it reproduces the source.

    Parameters
    ----------
    source:
        a torch ``nn.Module`` (``nn.Sequential`` or fx-traceable; eval-mode semantics), an
        ``onnx.ModelProto``, a list of ``(W, b)`` pairs (W of shape (out, in), ReLU between layers), or a
        path (``external:<rel>`` for the external networks' folder, :mod:`lipopt.locations`): ``.onnx``,
        ``.mat`` (LipSDP / GLipSDP), ``.npy`` (LipBaB / ExLipBaB pair, either file or the
        stem), ``.npz`` (ECLipsE), ``.ckpt`` / ``.pt`` / ``.pth`` (state_dict checkpoints).
    input_shape:
        per-sample input shape, e.g. ``(1, 28, 28)``; required for torch modules whose first layer is a
        convolution, inferred otherwise. For torch modules a leading batch dimension of 1
        (``(1, 1, 28, 28)``) is dropped; any other shape that does not fit says which one the model takes.
    name:
        name of the returned network (default: derived from the source).
    check:
        run the equivalence check (default True); raises :class:`lipopt.errors.EquivalenceError`.
    **kw:
        ``arch=`` (checkpoints: a :mod:`lipopt.zoo` name such as ``"mnist_lenet"`` / ``"cifar10_net"``, or
        an ``nn.Module`` to load the weights into); ``normalize=`` (checkpoints of the zoo and GLipSDP
        files: include the input normalisation, default True); ``rtol``, ``n_points``, ``seed`` for the
        check.
    """
    from lipopt.network.importers import equivalence as eq

    if isinstance(input_shape, int):
        input_shape = (input_shape,)
    check_kw = {k: kw[k] for k in _CHECK_KW if k in kw}
    net, reference, sampler, what = _import(source, input_shape, name, kw)
    if check:
        eq.check_equivalence(net, reference, source=what, sampler=sampler,
                             options=eq.CheckOptions(**check_kw))
    return net


def _import(source: Any, input_shape: Any, name: str | None, kw: dict[str, Any]) -> tuple:
    from lipopt.network.importers import formats

    if isinstance(source, Network):
        _reject(kw, (), "an IR Network")
        return source, lambda x, d: _ir_self(source, x, d), None, "IR network"
    if _is_torch_module(source):
        _reject(kw, (), "a torch module")
        return _torch(source, input_shape, name, None, f"torch model {type(source).__name__}")
    if _is_onnx_model(source):
        _reject(kw, (), "an ONNX model")
        from lipopt.network.importers.onnx_model import import_onnx

        net, ref = import_onnx(source, input_shape, name or "")
        return net, ref, None, "ONNX model"
    if isinstance(source, list | tuple) and source and not isinstance(source, str):
        _reject(kw, (), "a weight list")
        imp = formats.from_weight_list(source, name or "")
        return imp.network, imp.reference, imp.sampler, imp.source
    if not isinstance(source, str | Path):
        raise InvalidNetworkError(f"cannot load a {type(source).__name__}; supported: {SUPPORTED_FORMATS}")

    from lipopt.locations import resolve

    path = resolve(source)  # "external:<rel>": the external networks' folder (lipopt.locations)
    ext = path.suffix.lower()
    pair = ext == ".npy" or (not path.exists() and formats.npy_pair_paths(path)[0].exists())
    if not pair and not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    what = _FORMAT_NAMES.get(".npy" if pair else ext, f"network file ({ext or 'no extension'})")
    for p in (path, *formats.npy_pair_paths(path)[:2]) if pair else (path,):
        if p.is_file() and p.stat().st_size == 0:
            raise InvalidNetworkError(f"{p} is empty (0 bytes): not a valid {what}; supported: "
                                      f"{SUPPORTED_FORMATS}")
    try:
        return _import_file(path, ext, pair, input_shape, name, kw)
    except (LipoptError, FileNotFoundError, TypeError):
        raise
    except (ValueError, EOFError, OSError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise InvalidNetworkError(
            f"cannot read {path} ({what}): {type(exc).__name__}: {exc}. The file may be truncated or not in "
            f"this format; supported: {SUPPORTED_FORMATS}"
        ) from None


_FORMAT_NAMES = {".npy": "LipBaB .npy weight file", ".npz": "ECLipsE .npz archive", ".mat": "MATLAB file",
                 ".onnx": "ONNX model", ".ckpt": "torch checkpoint", ".pt": "torch checkpoint",
                 ".pth": "torch checkpoint"}


def _import_file(path: Path, ext: str, pair: bool, input_shape: Any, name: str | None,
                 kw: dict[str, Any]) -> tuple:
    from lipopt.network.importers import formats

    if pair:
        _reject(kw, (), "a .npy pair")
        imp = formats.load_npy_pair(path, name or "")
        return imp.network, imp.reference, imp.sampler, imp.source
    if ext == ".onnx":
        _reject(kw, (), "an .onnx file")
        from lipopt.network.importers.onnx_model import import_onnx

        net, ref = import_onnx(path, input_shape, name or path.stem)
        return net, ref, None, f"ONNX model {path.name}"
    if ext == ".mat":
        _reject(kw, ("normalize",), "a .mat file")
        imp = formats.load_mat(path, normalize=kw.get("normalize", True), name=name or "")
        return imp.network, imp.reference, imp.sampler, imp.source
    if ext == ".npz":
        _reject(kw, (), "an .npz file")
        imp = formats.load_npz(path, name or "")
        return imp.network, imp.reference, imp.sampler, imp.source
    if ext in (".ckpt", ".pt", ".pth"):
        _reject(kw, ("arch", "normalize"), "a torch checkpoint")
        from lipopt.network.importers.checkpoint import load_checkpoint

        module, shape, sampler = load_checkpoint(path, kw.get("arch"), kw.get("normalize", True), input_shape)
        return _torch(module, shape, name or path.stem, sampler, f"checkpoint {path.name}")
    raise InvalidNetworkError(f"unsupported file extension {ext or '(none)'!r} of {path.name}; "
                              f"supported: {SUPPORTED_FORMATS}")


def _torch(module: Any, input_shape: Any, name: str | None, sampler: Any, what: str) -> tuple:
    from lipopt.network.importers.equivalence import torch_reference
    from lipopt.network.importers.torch_module import import_torch

    net = import_torch(module, input_shape, name or "")
    return net, torch_reference(module, net.input_shape), sampler, what


def _ir_self(net: Network, x: Any, dirs: Any) -> tuple:
    from lipopt.network.importers.equivalence import ir_jvp

    return ir_jvp(net, x, dirs)
