"""The training record written beside a trained network (``NET.json`` for ``NET.onnx`` / ``.npz`` / ``.pt``).

Schema ``lipopt.train/1``: data (name, source, sizes), architecture, options as run, seed, the per-epoch
history (loss, accuracy, lambda, estimates, epoch times), lambda_history, final lambda, the selected
checkpoint (``selection``: rule, epoch, the lambda that epoch was trained with, its training accuracy and,
under the ``pgd`` rule, its PGD accuracy on the selection images; the written network is that epoch's),
evaluation (the paper's columns, when computed), and CLIP's own value twice:

* ``clip_estimate``: max over the pair set of the quotient, float32 on the training network: ESTIMATE;
* ``clip_lower``: the best pair's quotient re-evaluated in float64 on the network as loaded back from the
  written file (``lipopt.certify.witness.certified_pair_ratio``, with its rounding allowance): a LOWER
  bound on the global constant of that network (null when the pair re-evaluates to 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lipopt.provenance import schema_id
from lipopt.train.clip import TrainResult
from lipopt.train.models import load_network, record_path, save_network

__all__ = ["SCHEMA", "pair_lower_bound", "write_training"]

SCHEMA = schema_id("train")  # "lipopt.train/1" (docs/schema.md)


def pair_lower_bound(network: Any, u: Any, v: Any, input_norm: str = "l2", output_norm: str = "l2") -> float:
    """The certified float64 quotient of the pair (u, v) on ``network`` (an IR Network): a LOWER bound."""
    from lipopt.certify.witness import certified_pair_ratio
    from lipopt.spec import make_question

    q = make_question(input_norm=input_norm, output_norm=output_norm).bind(network)
    return certified_pair_ratio(network, u, v, q)


def write_training(result: TrainResult, data: Any, path: str | Path, evaluation: dict[str, Any] | None = None,
                   command: str = "lipopt.train") -> dict[str, Any]:
    """Write the network to ``path`` and its record to ``path.json``; the record (also returned)."""
    from lipopt.provenance import envelope
    from lipopt.result import _clean

    path = save_network(result.module, result.spec, path)
    opts = result.options
    payload: dict[str, Any] = {
        "network_file": path.name,
        "data": data.describe(),
        "architecture": result.spec,
        "regulariser": opts.regulariser,
        "seed": opts.seed,
        "history": result.history,
        "lambda_history": [h["lam"] for h in result.history],
        "final_lambda": result.lam,
        "selection": result.selection,
        "selected_lambda": result.selected_lam,
        "evaluation": evaluation,
        "clip_estimate": None,
        "clip_lower": None,
    }
    rec = envelope("train", command, opts.to_dict(), payload)  # the schema, lipopt version, provenance
    pair = result.best_pair()
    if pair is not None:
        rec["clip_estimate"] = {"value": result.clip_estimate, "kind": "ESTIMATE",
                                "what": "max pair quotient of CLIP's pair set, float32 on the training net "
                                        "(the selected epoch's)"}
        record_path(path).write_text(json.dumps(_clean(rec), indent=1))  # load_network(.pt) reads it
        net = load_network(path)
        lower = pair_lower_bound(net, pair[0], pair[1], opts.input_norm, opts.output_norm)
        rec["clip_lower"] = {
            "value": lower if lower > 0 else None, "kind": "LOWER",
            "what": "CLIP's best pair re-evaluated in float64 on the written network "
                    "(certified_pair_ratio)",
            "u": pair[0].tolist(), "v": pair[1].tolist(),
        }
    record_path(path).write_text(json.dumps(_clean(rec), indent=1))
    return rec
