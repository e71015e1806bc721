"""Checkpoint selection for :func:`lipopt.train.clip.train` (``TrainOptions.select``).

The rules (:class:`lipopt.train.options.SelectOptions`): ``last``; ``target`` (the epoch whose training
accuracy is closest to the target while at or above it, else the most accurate one); ``pgd`` (the paper's
"model checkpoint with the highest robustness": the highest l-inf PGD accuracy, measured here on seeded
training images, never on the test set). :class:`Checkpoints` is offered every epoch's record and network
and keeps a copy of the best one's weights and CLIP pair set; :meth:`Checkpoints.restore` puts them back
into the result and records what was selected and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lipopt.train.options import TrainOptions

__all__ = ["Checkpoints", "selection_key"]


def selection_key(rule: str, rec: dict[str, Any], target: float | None) -> tuple[float, ...]:
    """The key the selected epoch maximises (``rec``: an epoch record of :func:`lipopt.train.clip.train`)."""
    epoch = float(rec["epoch"])
    if rule == "pgd":
        return (rec["select_pgd_accuracy"], rec["train_accuracy"], epoch)
    if rule == "target" and target is not None:
        acc = rec["train_accuracy"]
        return (1.0, -acc, epoch) if acc >= target else (0.0, acc, epoch)
    return (epoch,)


@dataclass
class _Kept:
    key: tuple[float, ...]
    rec: dict[str, Any]
    state: dict[str, Any] | None
    pairs: Any


class Checkpoints:
    """The best checkpoint so far under ``opts.select`` (weights and pair set copied when it improves)."""

    def __init__(self, opts: TrainOptions, x: Any, y: Any, box: tuple[float, float] | None) -> None:
        import torch

        self.opts = opts
        self.rule = opts.select.rule
        # with an adapted lambda, the first candidate is the first epoch trained with an updated lambda (the
        # update after epoch warmup_epochs); with a fixed lambda every epoch is one
        first = opts.warmup_epochs + 1 if opts.adaptive else 0
        self.first = first if first < opts.epochs else opts.epochs - 1
        self.kept: _Kept | None = None
        self.eval_opts = None
        if self.rule == "pgd":
            from lipopt.train.evaluate import EvalOptions

            gen = torch.Generator().manual_seed(opts.seed + 7919)
            idx = torch.randperm(len(x), generator=gen)[: opts.select.points]
            self.x, self.y = x[idx], y[idx]
            self.eval_opts = EvalOptions(eps=opts.select.eps, iters=opts.select.iters, seed=opts.seed,
                                         box=box)

    def offer(self, rec: dict[str, Any], model: Any, pairs: Any) -> None:
        """Consider the epoch of ``rec`` (adds ``select_pgd_accuracy`` to it under the ``pgd`` rule)."""
        if self.eval_opts is not None:
            from lipopt.train.evaluate import pgd_accuracy

            rec["select_pgd_accuracy"] = pgd_accuracy(model, self.x, self.y, self.eval_opts)
        if rec["epoch"] < self.first:
            return
        key = selection_key(self.rule, rec, self.opts.target_accuracy)
        if self.kept is not None and key <= self.kept.key:
            return
        if self.rule == "last":
            self.kept = _Kept(key, rec, None, None)
            return
        from lipopt.train.clip import PairSet

        state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        kept_pairs = None
        if pairs is not None:
            kept_pairs = PairSet(pairs.u.clone(), pairs.v.clone(), pairs.tau.clone(), pairs.value.clone())
        self.kept = _Kept(key, rec, state, kept_pairs)

    def restore(self, result: Any) -> dict[str, Any]:
        """Load the selected weights and pair set into ``result`` and set ``result.selection``."""
        kept = self.kept
        assert kept is not None, "no epoch was offered"
        if kept.state is not None:
            result.module.load_state_dict(kept.state)
            if kept.pairs is not None:
                result.pairs = kept.pairs
        sel = {"rule": self.rule, "epoch": kept.rec["epoch"], "lam": kept.rec["lam"],
               "train_accuracy": kept.rec.get("train_accuracy"), "candidates_from_epoch": self.first,
               "what": _WHAT[self.rule]}
        if self.rule == "target":
            sel["target_accuracy"] = self.opts.target_accuracy
            if self.opts.target_accuracy is None:
                sel["what"] = "no target accuracy: the last epoch"
            elif kept.key[0] == 0.0:
                sel["what"] = "no epoch reached the target: the epoch of highest training accuracy"
        if self.rule == "pgd":
            s = self.opts.select
            sel.update({"pgd_accuracy": kept.rec["select_pgd_accuracy"], "pgd_eps": s.eps,
                        "pgd_iters": s.iters, "points": len(self.x)})
        result.selection = sel
        return sel


_WHAT = {
    "last": "the last epoch",
    "target": "the epoch whose training accuracy is closest to the target while at or above it",
    "pgd": "the epoch of highest l-inf PGD accuracy on seeded training images (the paper's rule)",
}
