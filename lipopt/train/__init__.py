"""Lipschitz training of ReLU nets: CLIP (Bungert et al., SSVM 2021) and its baselines.

``train(load_data("digits"), TrainOptions(regulariser="clip", target_accuracy=0.9))`` runs Algorithm 2;
``write_training(result, data, "net.onnx")`` writes a network file that ``lipopt.load`` reads, with its
training record beside it. The names below are imported lazily (the modules import torch inside their
functions only).
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "TrainOptions": "lipopt.train.options",
    "ClipOptions": "lipopt.train.options",
    "SelectOptions": "lipopt.train.options",
    "LocalEvalOptions": "lipopt.train.certified",
    "local_evaluation": "lipopt.train.certified",
    "EvalOptions": "lipopt.train.evaluate",
    "Dataset": "lipopt.train.data",
    "load_data": "lipopt.train.data",
    "train": "lipopt.train.clip",
    "TrainResult": "lipopt.train.clip",
    "PairSet": "lipopt.train.clip",
    "adversarial_update": "lipopt.train.clip",
    "difference_quotient": "lipopt.train.clip",
    "init_pairs": "lipopt.train.clip",
    "update_lambda": "lipopt.train.regularisers",
    "weight_penalty": "lipopt.train.regularisers",
    "evaluate_model": "lipopt.train.evaluate",
    "build_module": "lipopt.train.models",
    "save_network": "lipopt.train.models",
    "load_network": "lipopt.train.models",
    "write_training": "lipopt.train.record",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lipopt.train' has no attribute {name!r}")
