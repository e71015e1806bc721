"""Network IR (float64 layers) and importers."""

from lipopt.network.layers import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, ReLU
from lipopt.network.network import AffineStage, MaxPoolStage, Network, ReLUStage

__all__ = [
    "AffineStage",
    "AvgPool2d",
    "Conv2d",
    "Dense",
    "Flatten",
    "MaxPool2d",
    "MaxPoolStage",
    "Network",
    "ReLU",
    "ReLUStage",
]
