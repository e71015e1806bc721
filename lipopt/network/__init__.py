"""Network IR (float64 layers), its lowered stages, and importers."""

from lipopt.network.layers import AvgPool2d, Conv2d, Dense, Flatten, LeakyReLU, MaxPool2d, ReLU
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, LeakyReLUStage, MaxPoolStage, ReLUStage

__all__ = [
    "AffineStage",
    "AvgPool2d",
    "Conv2d",
    "Dense",
    "Flatten",
    "LeakyReLU",
    "LeakyReLUStage",
    "MaxPool2d",
    "MaxPoolStage",
    "Network",
    "ReLU",
    "ReLUStage",
]
