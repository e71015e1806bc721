"""The MNIST LeNet and CIFAR-10 networks of Avant & Morgansen ("Analytical bounds on the local Lipschitz
constants of ReLU networks", code: uwaa-ndcl/local_lipschitz), whose checkpoints hold state_dicts only.

``build(name, state_dict=None, normalize=True)`` returns the torch module (torch imported on call);
``recognise(state_dict)`` names the architecture a state_dict fits (by keys and shapes), or None.
With ``normalize=True`` the module maps images in [0, 1] and applies the original per-channel input
normalisation ``(x - mean) / std`` first; the importer folds it exactly into the first (unpadded) conv.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lipopt.errors import InvalidNetworkError


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    input_shape: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    params: tuple[tuple[str, tuple[int, ...]], ...]  # state_dict keys and shapes
    class_name: str


def _params(*layers: tuple[str, tuple[int, ...]]) -> tuple[tuple[str, tuple[int, ...]], ...]:
    out = []
    for name, wshape in layers:
        out += [(f"{name}.weight", wshape), (f"{name}.bias", (wshape[0],))]
    return tuple(out)


ARCHITECTURES: dict[str, Architecture] = {
    "mnist_lenet": Architecture(
        "mnist_lenet",
        "MNIST LeNet: conv 1-6 k5, ReLU, maxpool 2, conv 6-16 k5, ReLU, maxpool 2, fc 256-120-84-10",
        (1, 28, 28), (0.1307,), (0.3081,),
        _params(("conv1", (6, 1, 5, 5)), ("conv2", (16, 6, 5, 5)), ("fc1", (120, 256)), ("fc2", (84, 120)),
                ("fc3", (10, 84))),
        "MnistLeNet",
    ),
    "cifar10_net": Architecture(
        "cifar10_net",
        "CIFAR-10 net: conv 3-32-32 k3, maxpool 2, conv 32-64-64 k3, maxpool 2, fc 1600-512-10 (dropout)",
        (3, 32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
        _params(("conv1", (32, 3, 3, 3)), ("conv2", (32, 32, 3, 3)), ("conv3", (64, 32, 3, 3)),
                ("conv4", (64, 64, 3, 3)), ("fc1", (512, 1600)), ("fc2", (10, 512))),
        "Cifar10Net",
    ),
}


def recognise(state_dict: dict[str, Any]) -> str | None:
    """The architecture whose parameter names and shapes equal those of ``state_dict``, or None."""
    sig = {k: tuple(getattr(v, "shape", ())) for k, v in state_dict.items()}
    for arch in ARCHITECTURES.values():
        if sig == dict(arch.params):
            return arch.name
    return None


def get(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise InvalidNetworkError(f"unknown architecture {name!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def build(name: str, state_dict: dict[str, Any] | None = None, normalize: bool = True) -> Any:
    """The torch module of architecture ``name`` (eval mode), with ``state_dict`` loaded if given."""
    from lipopt.zoo import _avant_modules

    arch = get(name)
    module = getattr(_avant_modules, arch.class_name)(normalize=normalize)
    if state_dict is not None:
        try:
            module.load_state_dict(state_dict, strict=True)
        except RuntimeError as exc:
            raise InvalidNetworkError(f"the checkpoint does not fit architecture {name!r}: {exc}") from None
    return module.eval()
