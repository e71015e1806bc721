"""Network architectures used by the importers, benchmarks and examples (no downloads).

``lipopt.zoo.avant``: the MNIST LeNet and CIFAR-10 nets of the Avant checkpoints (``ARCHITECTURES``,
``build``, ``recognise``, used by ``lipopt.load`` for ``.ckpt`` files). torch is imported only when an
architecture is built, so ``import lipopt.zoo`` stays light.
"""

from lipopt.zoo.avant import ARCHITECTURES, build, recognise

__all__ = ["ARCHITECTURES", "build", "recognise"]
