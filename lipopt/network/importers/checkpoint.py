"""torch checkpoints (.ckpt / .pt / .pth) that hold weights only: read with ``weights_only=True``.

A checkpoint has no architecture, so one is needed: ``arch`` names a :mod:`lipopt.zoo` architecture
(or is an ``nn.Module`` instance to load the weights into); without it the state_dict is matched by its
parameter names and shapes against the zoo.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lipopt.errors import InvalidNetworkError


def _state_dict(obj: Any, path: Path) -> dict[str, Any]:
    import torch

    if isinstance(obj, dict):
        for key in ("net", "state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                return obj[key]
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
    raise InvalidNetworkError(
        f"{path.name}: no state_dict found (expected a dict of tensors, or a dict with key 'net', "
        f"'state_dict', 'model_state_dict' or 'model' holding one); got {type(obj).__name__}"
        + (f" with keys {list(obj)[:10]}" if isinstance(obj, dict) else "")
    )


def read_checkpoint(path: Path) -> dict[str, Any]:
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, AttributeError) as exc:
        raise InvalidNetworkError(
            f"cannot read {path.name} with torch.load(weights_only=True): {_reason(exc)}. lipopt "
            "never unpickles arbitrary objects: save a state_dict (torch.save(model.state_dict(), ...)) and "
            "pass arch=..., or load the model yourself and pass the nn.Module to lipopt.load"
        ) from None
    except Exception as exc:  # EOFError (empty / truncated), KeyError / ValueError (not a torch file), ...
        raise InvalidNetworkError(
            f"cannot read {path.name} as a torch checkpoint ({type(exc).__name__}: "
            f"{_reason(exc) or 'no data'}): the file is truncated or not written by torch.save; supported: a "
            "state_dict saved with "
            "torch.save(model.state_dict(), path)"
        ) from None
    return _state_dict(obj, path)


_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def _reason(exc: BaseException) -> str:
    """The informative part of torch's message, without terminal colour codes: what follows 'WeightsUnpickler
    error:' when present (the unsupported global or opcode), else the first line."""
    text = _ANSI.sub("", str(exc))
    key = "WeightsUnpickler error:"
    if key in text:
        rest = [ln.strip() for ln in text.split(key, 1)[1].splitlines() if ln.strip()]
        detail = rest[0].split(" Please use")[0].rstrip(".") if rest else "unsupported content"
        return f"it holds something other than tensors and plain containers ({detail})"
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0] if lines else ""


def load_checkpoint(path: Path, arch: Any = None, normalize: bool = True,
                    input_shape: tuple[int, ...] | None = None) -> tuple[Any, tuple[int, ...] | None, Any]:
    """(torch module with the weights loaded, input shape, equivalence sampler or None)."""
    import torch.nn as nn

    from lipopt import zoo
    from lipopt.network.importers.equivalence import uniform_sampler

    sd = read_checkpoint(path)
    if isinstance(arch, str) and arch not in zoo.ARCHITECTURES:
        arch = arch_module(arch, sd)
    if isinstance(arch, nn.Module):
        try:
            arch.load_state_dict(sd, strict=True)
        except RuntimeError as exc:
            raise InvalidNetworkError(f"{path.name} does not fit the given module: {exc}") from None
        return arch.eval(), input_shape, None
    if arch is None:
        arch = zoo.recognise(sd)
        if arch is None:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in list(sd.items())[:12])
            raise InvalidNetworkError(
                f"{path.name}: unknown architecture (state_dict: {shapes}{', ...' if len(sd) > 12 else ''}). "
                f"Pass arch= one of {sorted(zoo.ARCHITECTURES)}, or an nn.Module to load the weights into"
            )
    if not isinstance(arch, str):
        raise InvalidNetworkError(f"arch must be a name ({sorted(zoo.ARCHITECTURES)}) or an nn.Module")
    if arch not in zoo.ARCHITECTURES:
        raise InvalidNetworkError(f"unknown arch={arch!r}; known: {ARCH_FORMS}")
    spec = zoo.ARCHITECTURES[arch]
    module = zoo.build(arch, sd, normalize=normalize)
    sampler = uniform_sampler(0.0, 1.0) if normalize else None
    return module, input_shape or spec.input_shape, sampler


ARCH_FORMS = ("a lipopt.zoo name (mnist_lenet, cifar10_net, ...), a Python path 'package.module:Class' "
              "(constructed without arguments), or a layer spec 'mlp:784,32,32,10' (Linear + ReLU, the "
              "state_dict's tensors taken in order) / 'mlp-leaky0.01:...' (LeakyReLU)")


def arch_module(arch: str, sd: dict) -> Any:
    """The torch module an ``arch`` string names (see :data:`ARCH_FORMS`), weights not yet loaded unless
    the spec form (which takes the state_dict's tensors in order)."""
    import importlib

    import torch.nn as nn

    if arch.startswith("mlp"):
        kind, _, widths = arch.partition(":")
        bad = f"arch {arch!r}: expected e.g. 'mlp:784,32,32,10'; forms: {ARCH_FORMS}"
        try:
            sizes = [int(w) for w in widths.replace("-", ",").split(",") if w.strip()]
            slope = float(kind[len("mlp-leaky"):]) if kind.startswith("mlp-leaky") else None
        except ValueError:
            raise InvalidNetworkError(bad) from None
        if (kind != "mlp" and slope is None) or len(sizes) < 2:
            raise InvalidNetworkError(bad)
        layers: list[Any] = []
        for k in range(len(sizes) - 1):
            layers.append(nn.Linear(sizes[k], sizes[k + 1]))
            if k < len(sizes) - 2:
                layers.append(nn.ReLU() if slope is None else nn.LeakyReLU(slope))
        module = nn.Sequential(*layers)
        own = list(module.state_dict().items())
        given = [v for v in sd.values() if hasattr(v, "shape")]
        if [tuple(v.shape) for _, v in own] != [tuple(v.shape) for v in given]:
            raise InvalidNetworkError(
                f"arch {arch!r} expects tensors {[tuple(v.shape) for _, v in own]}, the checkpoint holds "
                f"{[tuple(v.shape) for v in given]} (weights (out, in) and biases, in layer order)")
        module.load_state_dict({k: v for (k, _), v in zip(own, given, strict=True)})
        return module
    if ":" in arch:
        mod_name, _, cls_name = arch.partition(":")
        try:
            cls = getattr(importlib.import_module(mod_name), cls_name)
        except (ImportError, AttributeError) as exc:
            raise InvalidNetworkError(f"arch {arch!r}: cannot import {cls_name} from {mod_name} ({exc})") \
                from None
        try:
            return cls()
        except TypeError as exc:
            raise InvalidNetworkError(f"arch {arch!r}: {cls_name}() needs arguments ({exc}); construct it "
                                      "yourself and pass the module to lipopt.load(path, arch=module)") \
                from None
    from lipopt import zoo

    raise InvalidNetworkError(f"unknown arch={arch!r}; known: {sorted(zoo.ARCHITECTURES)}; other forms: "
                              f"{ARCH_FORMS}")
