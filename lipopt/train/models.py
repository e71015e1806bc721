"""The trained architectures (torch ``nn.Sequential``) and the network files they are written to.

* ``dense``: Flatten, then Linear + ReLU for each hidden width, then Linear (ReLU, as lipopt handles; the
  paper's MNIST net used sigmoid).
* ``cnn``: for each entry of ``channels`` a 3x3 convolution (padding 1) + ReLU + 2x2 max-pool, then
  Flatten and the dense part.

Files (:func:`save_network`): ``.onnx`` (any architecture) and ``.npz`` (dense nets: ECLipsE keys
``w1, b1, ...`` with (out, in) weights) are read by ``lipopt.load(path)`` as they are; ``.pt`` is a
state_dict (``torch.save(model.state_dict())``, read back with ``weights_only=True``) whose architecture is
in the training record beside it: :func:`load_network` reads all three. Weights are written in float64
(the float32 values of training, exactly).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lipopt.errors import InvalidOptionsError

__all__ = ["FILE_FORMATS", "arch_spec", "build_module", "load_network", "record_path", "save_network"]

FILE_FORMATS = (".onnx", ".npz", ".pt")


def arch_spec(arch: str, image_shape: tuple[int, ...], n_outputs: int, hidden: tuple[int, ...],
              channels: tuple[int, ...] = ()) -> dict[str, Any]:
    return {"arch": arch, "input_shape": [int(s) for s in image_shape], "n_outputs": int(n_outputs),
            "hidden": [int(h) for h in hidden],
            "channels": [int(c) for c in channels] if arch == "cnn" else []}


def build_module(spec: dict[str, Any]) -> Any:
    """The ``nn.Sequential`` of an :func:`arch_spec` (float32, torch's default initialisation)."""
    import torch.nn as nn

    shape = tuple(spec["input_shape"])
    layers: list[Any] = []
    if spec["arch"] == "cnn":
        if len(shape) != 3:
            raise InvalidOptionsError(f"arch 'cnn' needs image inputs (C, H, W); this data has shape {shape}")
        c, h, w = shape
        for ch in spec["channels"]:
            if h < 2 or w < 2:
                raise InvalidOptionsError(f"too many conv / max-pool layers ({spec['channels']}) for "
                                          f"{shape[1]}x{shape[2]} images")
            layers += [nn.Conv2d(c, ch, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c, h, w = ch, h // 2, w // 2
        width = c * h * w
        layers.append(nn.Flatten())
    elif spec["arch"] == "dense":
        width = int(np.prod(shape))
        if len(shape) > 1:
            layers.append(nn.Flatten())
    else:
        raise InvalidOptionsError(f"unknown arch {spec['arch']!r}; supported: dense, cnn")
    for hdim in spec["hidden"]:
        layers += [nn.Linear(width, hdim), nn.ReLU()]
        width = hdim
    layers.append(nn.Linear(width, spec["n_outputs"]))
    return nn.Sequential(*layers)


def record_path(path: str | Path) -> Path:
    """The training record beside a network file: NET.json for NET.onnx / NET.npz / NET.pt."""
    return Path(path).with_suffix(".json")


def _check_suffix(path: Path, spec: dict[str, Any]) -> str:
    ext = path.suffix.lower()
    if ext not in FILE_FORMATS:
        raise InvalidOptionsError(f"cannot write a network to {path.name}: supported extensions "
                                  f"{', '.join(FILE_FORMATS)} (.onnx and .npz are read by lipopt.load as "
                                  "they are; .pt is a state_dict, read by lipopt.train.load_network)")
    if ext == ".npz" and spec["arch"] != "dense":
        raise InvalidOptionsError(f"{path.name}: .npz holds dense nets only (w1, b1, ...); write a "
                                  f"{spec['arch']} net as .onnx or .pt")
    return ext


def save_network(module: Any, spec: dict[str, Any], path: str | Path) -> Path:
    """Write ``module`` (an :func:`build_module` net) to ``path`` (.onnx, .npz or .pt)."""
    import torch

    path = Path(path)
    ext = _check_suffix(path, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    if ext == ".npz":
        linears = [m for m in module if isinstance(m, torch.nn.Linear)]
        arrays: dict[str, np.ndarray] = {}
        for i, lin in enumerate(linears, start=1):
            arrays[f"w{i}"] = lin.weight.detach().cpu().double().numpy()
            arrays[f"b{i}"] = lin.bias.detach().cpu().double().numpy()
        np.savez(path, **arrays)
    elif ext == ".pt":
        torch.save({k: v.detach().cpu().double() for k, v in module.state_dict().items()}, str(path))
    else:
        import copy
        import warnings

        m64 = copy.deepcopy(module).double().cpu()
        x = torch.zeros((1, *spec["input_shape"]), dtype=torch.float64)
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated but needs no onnxscript
            warnings.simplefilter("ignore")
            torch.onnx.export(m64, (x,), str(path), dynamo=False, input_names=["x"], output_names=["y"])
    return path


def load_network(path: str | Path, check: bool = True) -> Any:
    """A network written by :func:`save_network` as a :class:`lipopt.Network` (through ``lipopt.load``;
    a .pt state_dict takes its architecture from the training record beside it)."""
    from lipopt.network.load import load

    path = Path(path)
    if path.suffix.lower() != ".pt":
        return load(path, check=check)
    rec = record_path(path)
    if not rec.is_file():
        raise FileNotFoundError(f"{path.name} is a state_dict: its architecture is in {rec.name}, which is "
                                "missing")
    spec = json.loads(rec.read_text())["architecture"]
    module = build_module(spec).double()
    return load(path, arch=module, input_shape=tuple(spec["input_shape"]), check=check)
