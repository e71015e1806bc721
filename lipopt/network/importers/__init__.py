"""Importers from torch, ONNX, weight lists and the formats of other Lipschitz projects."""
