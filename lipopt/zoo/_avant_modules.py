"""torch modules of the two networks of Avant & Morgansen (uwaa-ndcl/local_lipschitz).

The layer names match the published checkpoints (``ckpt['net']``); forward follows the original code
(``F.relu``, ``x.view(x.size(0), -1)``, dropout), preceded by the input normalisation ``(x - mean) / std``
of the original data transforms when ``normalize=True`` (inputs are then images in [0, 1]).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class _Normalized(nn.Module):
    def _set_normalisation(self, mean: tuple[float, ...], std: tuple[float, ...], normalize: bool) -> None:
        self.normalize = normalize
        shape = (1, len(mean), 1, 1)
        # not persistent: the checkpoints' state_dicts do not contain them
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float64).view(shape), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float64).view(shape), persistent=False)

    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class MnistLeNet(_Normalized):
    """conv 1->6 k5, ReLU, maxpool 2, conv 6->16 k5, ReLU, maxpool 2, fc 256-120-84-10 (input 1x28x28)."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.maxpool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(16 * 4 * 4, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)
        self._set_normalisation((0.1307,), (0.3081,), normalize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = self._normalise(x)
        x = F.relu(self.conv1(x))
        x = self.maxpool(x)
        x = F.relu(self.conv2(x))
        x = self.maxpool(x)
        x = x.view(x.size(0), -1)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


class Cifar10Net(_Normalized):
    """conv 3->32->32 k3, maxpool 2, conv 32->64->64 k3, maxpool 2, fc 1600-512-10 (input 3x32x32)."""

    def __init__(self, normalize: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3)
        self.conv2 = nn.Conv2d(32, 32, 3)
        self.conv3 = nn.Conv2d(32, 64, 3)
        self.conv4 = nn.Conv2d(64, 64, 3)
        self.pool = nn.MaxPool2d(2)
        self.do1 = nn.Dropout(0.25)
        self.do2 = nn.Dropout(0.25)
        self.do3 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(64 * 5 * 5, 512)
        self.fc2 = nn.Linear(512, 10)
        self._set_normalisation((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616), normalize)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            x = self._normalise(x)
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.do1(self.pool(x))
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))
        x = self.do2(self.pool(x))
        x = x.view(x.size(0), -1)
        x = self.do3(F.relu(self.fc1(x)))
        return self.fc2(x)
