"""AlexNet and VGG-16 (ImageNet architectures, 3 x 224 x 224 input, 1000 classes) with random seeded weights.

Written from the published layer lists (torchvision is not used). At 224 x 224 the adaptive average
pool before the classifier is the identity (the feature map is already 6 x 6 / 7 x 7), so it is left out;
Dropout is omitted (eval mode). Used by the analytic-bound benchmarks (Avant & Morgansen ran AlexNet and
VGG-16 with trained weights; random weights exercise the same sizes). torch is imported on call.
"""

from __future__ import annotations

from typing import Any

INPUT_SHAPE = (3, 224, 224)
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def alexnet(seed: int = 0) -> Any:
    """torch nn.Sequential AlexNet (torchvision layout), float32, eval mode, seeded default init."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        m = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
            nn.Flatten(),
            nn.Linear(256 * 6 * 6, 4096), nn.ReLU(),
            nn.Linear(4096, 4096), nn.ReLU(),
            nn.Linear(4096, 1000),
        )
    return m.eval()


def vgg16(seed: int = 0) -> Any:
    """torch nn.Sequential VGG-16 (configuration D), float32, eval mode, seeded default init."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers: list[Any] = []
        c = 3
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU()]
                c = int(v)
        layers += [nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(), nn.Linear(4096, 4096), nn.ReLU(),
                   nn.Linear(4096, 1000)]
        m = nn.Sequential(*layers)
    return m.eval()


def to_network(module: Any, name: str) -> Any:
    """The IR network of a Sequential of Conv2d / ReLU / MaxPool2d / Flatten / Linear (float64).

    Uses ``lipopt.load`` when available (without its Jacobian equivalence check, which is too costly at
    224 x 224); the conversion is checked here on one random input against the float64 torch module."""
    import numpy as np
    import torch
    from torch import nn

    from lipopt.network.layers import Conv2d, Dense, Flatten, MaxPool2d, ReLU
    from lipopt.network.network import Network

    try:
        from lipopt.network.load import load

        net = load(module, input_shape=INPUT_SHAPE, name=name, check=False)
    except ImportError:  # pragma: no cover - fallback while the importer is unavailable
        layers: list[Any] = []
        for m in module:
            if isinstance(m, nn.Conv2d):
                layers.append(Conv2d(m.weight.detach().double().numpy(), m.bias.detach().double().numpy(),
                                     m.stride, m.padding, m.dilation, m.groups))
            elif isinstance(m, nn.ReLU):
                layers.append(ReLU())
            elif isinstance(m, nn.MaxPool2d):
                layers.append(MaxPool2d(m.kernel_size, m.stride, m.padding, m.dilation))
            elif isinstance(m, nn.Flatten):
                layers.append(Flatten())
            elif isinstance(m, nn.Linear):
                layers.append(Dense(m.weight.detach().double().numpy(), m.bias.detach().double().numpy()))
        net = Network(layers, INPUT_SHAPE, name=name)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand((1, *INPUT_SHAPE), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        ref = module.double()(x).numpy()[0]
    module.float()
    out = net.forward(x.numpy()[0])
    err = float(np.max(np.abs(out - ref)))
    if err > 1e-8 * max(1.0, float(np.max(np.abs(ref)))):
        from lipopt.errors import EquivalenceError

        raise EquivalenceError(f"{name}: IR output differs from the torch module by {err:.3g}")
    return net


def alexnet_network(seed: int = 0) -> Any:
    return to_network(alexnet(seed), f"alexnet_seed{seed}")


def vgg16_network(seed: int = 0) -> Any:
    return to_network(vgg16(seed), f"vgg16_seed{seed}")
