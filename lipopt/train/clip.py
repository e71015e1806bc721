"""CLIP (Bungert et al., SSVM 2021): Lipschitz training with the pair estimate of the constant.

Algorithm 1 (:func:`adversarial_update`): the pair set X = {(u_p, v_p)} is moved by gradient ascent on the
difference quotient q(u, v) = |f(u) - f(v)| / |u - v| (or its square, as the authors' code, with
``ClipOptions.squared``), each pair with its own step tau_p: the candidate (u + tau grad_u, v + tau grad_v)
is accepted only if its quotient is larger than the pair's current one (then tau_p *= gamma), else the
pair stays and tau_p /= gamma. q_p is recomputed on the current network before each step, so within one
update an accepted step never lowers a pair's quotient.

Algorithm 2 (:func:`train`): SGD with momentum on  mean loss + lam * R  over minibatches, with R the
regulariser (CLIP: max_p q_p, or the mean, or their squares; ``weight``; ``none``) and lam fixed or moved
after each epoch by the discrepancy principle (:func:`lipopt.train.regularisers.update_lambda`). The
regulariser reuses Algorithm 1's forward passes: R is built from the quotients Algorithm 1 has just
evaluated (the accepted candidates' and the kept pairs'), so a CLIP minibatch costs the pair forward at
the old and at the candidate points, one backward to the inputs, and the joint parameter backward: no
separate evaluation of the regulariser. (The paper's remark that the input gradient can come from the
parameter backward, as in "adversarial training for free", is not used: with R = max_p q_p that backward
reaches one pair only.)

CLIP's value max_p q_p is an ESTIMATE of the constant from below (float32, on the training network): it
becomes a certified LOWER bound only after the best pair is re-evaluated in float64 on the written network
(:func:`lipopt.train.record.write_training`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lipopt.train.options import ClipOptions, TrainOptions

__all__ = ["PairSet", "TrainResult", "adversarial_update", "difference_quotient", "init_pairs", "train"]

_ORD = {"l1": 1.0, "l2": 2.0, "linf": math.inf}


def _norm(t: Any, norm: str) -> Any:
    import torch

    return torch.linalg.vector_norm(t.reshape(t.shape[0], -1), ord=_ORD[norm], dim=1)


def difference_quotient(model: Any, u: Any, v: Any, input_norm: str = "l2", output_norm: str = "l2",
                        min_distance: float = 1e-6) -> Any:
    """|f(u_p) - f(v_p)| / |u_p - v_p| for each pair (one forward of the stacked batch); 0 for pairs closer
    than ``min_distance``. Differentiable in u, v and the parameters."""
    import torch

    out = model(torch.cat([u, v]))
    fu, fv = out[: len(u)], out[len(u):]
    d = _norm(u - v, input_norm)
    far = d >= min_distance
    return torch.where(far, _norm(fu - fv, output_norm) / torch.where(far, d, torch.ones_like(d)),
                       torch.zeros_like(d))


@dataclass
class PairSet:
    """The pairs (u, v) (tensors of the model's input shape), each pair's step ``tau`` (kept across
    re-initialisations, as the authors' code) and its current quotient ``value`` (unsquared)."""

    u: Any
    v: Any
    tau: Any
    value: Any

    def best(self) -> tuple[float, int]:
        i = int(self.value.argmax())
        return float(self.value[i]), i

    def refresh(self, model: Any, opts: ClipOptions, input_norm: str = "l2", output_norm: str = "l2") -> None:
        """Recompute ``value`` on ``model`` as it is now (the update's values predate the SGD step)."""
        import torch

        with torch.no_grad():
            self.value = difference_quotient(model, self.u, self.v, input_norm, output_norm,
                                             opts.min_distance)


def init_pairs(x: Any, opts: ClipOptions, generator: Any, tau: Any = None) -> PairSet:
    """A new pair set from the training inputs ``x`` (see :class:`ClipOptions` ``init``)."""
    import torch

    n = opts.n_pairs
    idx = torch.randint(len(x), (n,), generator=generator)
    if opts.init == "partial_random":
        u = x[idx].clone()
        v = u + opts.noise * torch.rand(u.shape, generator=generator, dtype=u.dtype)
    elif opts.init == "plain":
        u = x[idx].clone()
        v = x[torch.randint(len(x), (n,), generator=generator)].clone()
    else:
        u = opts.noise * torch.rand((n, *x.shape[1:]), generator=generator, dtype=x.dtype)
        v = opts.noise * torch.rand((n, *x.shape[1:]), generator=generator, dtype=x.dtype)
    if opts.box is not None:
        u, v = u.clamp(*opts.box), v.clamp(*opts.box)
    if tau is None:
        tau = torch.full((n,), float(opts.step), dtype=x.dtype)
    return PairSet(u, v, tau, torch.zeros(n, dtype=x.dtype))


@dataclass
class UpdateInfo:
    accepted: int  # accepted steps (pairs x iterations)
    tried: int
    before: Any  # the quotients at the start of the last step (unsquared, detached)
    after: Any  # ... and after it
    quotient: Any = None  # with ``keep_graph``: the final quotients, differentiable in the parameters


def adversarial_update(model: Any, pairs: PairSet, opts: ClipOptions, input_norm: str = "l2",
                       output_norm: str = "l2", keep_graph: bool = False) -> UpdateInfo:
    """Algorithm 1: ``opts.iters`` adaptive ascent steps on every pair, in place. With ``keep_graph`` the
    last step's quotients (accepted candidates and kept pairs) are returned differentiable in the
    model's parameters, for the regulariser of the same minibatch."""
    import torch

    accepted = tried = 0
    shape = (-1, *([1] * (pairs.u.dim() - 1)))
    before = after = quotient = None
    for it in range(opts.iters):
        last = it == opts.iters - 1
        u = pairs.u.detach().requires_grad_(True)
        v = pairs.v.detach().requires_grad_(True)
        with torch.enable_grad():
            q = difference_quotient(model, u, v, input_norm, output_norm, opts.min_distance)
            obj = q.pow(2) if opts.squared else q
            gu, gv = torch.autograd.grad(obj.sum(), (u, v), retain_graph=keep_graph and last)
        tau = pairs.tau.reshape(shape)
        cu = u.detach() + tau * gu
        cv = v.detach() + tau * gv
        if opts.box is not None:
            cu, cv = cu.clamp(*opts.box), cv.clamp(*opts.box)
        with torch.set_grad_enabled(keep_graph and last):
            qc = difference_quotient(model, cu, cv, input_norm, output_norm, opts.min_distance)
        acc = qc.detach() > q.detach()
        m = acc.reshape(shape)
        pairs.u = torch.where(m, cu, u.detach())
        pairs.v = torch.where(m, cv, v.detach())
        pairs.tau = torch.where(acc, pairs.tau * opts.decay, pairs.tau / opts.decay)
        before = q.detach()
        after = torch.where(acc, qc.detach(), q.detach())
        pairs.value = after
        accepted += int(acc.sum())
        tried += len(acc)
        if keep_graph and last:
            quotient = torch.where(acc, qc, q)
    return UpdateInfo(accepted, tried, before, after, quotient)


@dataclass
class TrainResult:
    module: Any  # the trained nn.Sequential (float32, eval mode)
    spec: dict[str, Any]  # its architecture (lipopt.train.models.arch_spec)
    options: TrainOptions
    history: list[dict[str, Any]] = field(default_factory=list)
    lam: float = 0.0  # the final lambda (after the last epoch's update)
    pairs: PairSet | None = None  # CLIP's pair set of the selected epoch
    #: the selected checkpoint (``TrainOptions.select``): rule, epoch, the lambda used in that epoch, ...
    selection: dict[str, Any] | None = None

    @property
    def selected_lam(self) -> float:
        """The lambda the selected epoch was trained with (the final lambda without a selection)."""
        return self.lam if self.selection is None else float(self.selection["lam"])

    @property
    def clip_estimate(self) -> float | None:
        """CLIP's own pair estimate of the returned network, max_p q_p (float32): an ESTIMATE."""
        return None if self.pairs is None else self.pairs.best()[0]

    def best_pair(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.pairs is None:
            return None
        i = self.pairs.best()[1]
        return (self.pairs.u[i].detach().double().numpy().reshape(-1),
                self.pairs.v[i].detach().double().numpy().reshape(-1))


def _regulariser(q: Any, opts: ClipOptions) -> Any:
    r = q.pow(2) if opts.squared else q
    return r.max() if opts.reduce == "max" else r.mean()


@dataclass
class _Run:
    """The state of one training run, shared by :func:`train`'s helpers."""

    opts: TrainOptions
    model: Any
    x: Any
    y: Any
    gen: Any
    classify: bool
    loss_fn: Any
    sgd: Any
    result: TrainResult
    pairs: PairSet | None
    lam: float
    batches: int = 0


def train(data: Any, options: TrainOptions | None = None,
          callback: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    """Algorithm 2 on ``data`` (a :class:`lipopt.train.data.Dataset`). ``callback`` gets each epoch's
    record: epoch, loss (mean data loss), reg (mean regulariser), lam (used in the epoch), lam_next,
    train_accuracy (or train_mse), lip_estimate (CLIP's pair estimate at the end of the epoch, or None),
    sampled_estimate (largest Jacobian norm at 64 training points; both ESTIMATEs), epoch_time (the
    minibatch loop only, seconds), accepted (fraction of accepted pair steps), skipped (minibatches whose
    regulariser exceeded ``reg_max``), and under ``select.rule="pgd"`` select_pgd_accuracy. The returned
    network is the checkpoint ``options.select`` chooses (:mod:`lipopt.train.select`; ``result.selection``
    says which epoch and why)."""
    import torch

    from lipopt.errors import InvalidOptionsError
    from lipopt.train.regularisers import update_lambda
    from lipopt.train.select import Checkpoints

    opts = options or TrainOptions()
    if data.task == "regression" and (opts.target_accuracy is not None or opts.select.rule == "pgd"):
        what = "target_accuracy needs" if opts.target_accuracy is not None else "select='pgd' needs"
        raise InvalidOptionsError(f"{what} a classification data set; for the regression toy fix lam "
                                  "(target_accuracy=None) and select 'last'")
    old_threads = torch.get_num_threads()
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    try:
        torch.manual_seed(opts.seed)
        run = _setup(data, opts)
        ckpt = Checkpoints(opts, run.x, run.y, getattr(data, "box", None))
        for epoch in range(opts.epochs):
            rec = _epoch(run, epoch)
            ckpt.offer(rec, run.model, run.pairs)
            since = epoch - opts.warmup_epochs
            if opts.adaptive and since >= 0 and since % opts.lam_every == 0:
                run.lam = update_lambda(run.lam, rec["train_accuracy"], float(opts.target_accuracy),  # type: ignore[arg-type]
                                        opts.lam_increment)
            rec["lam_next"] = run.lam
            run.result.history.append(rec)
            if callback is not None:
                callback(rec)
        run.result.lam = run.lam
        ckpt.restore(run.result)
        run.model.eval()
        return run.result
    finally:
        torch.set_num_threads(old_threads)


def _setup(data: Any, opts: TrainOptions) -> _Run:
    """The model, the data as tensors, the optimiser and CLIP's pair set (after torch.manual_seed)."""
    import torch

    from lipopt.train.models import arch_spec, build_module

    gen = torch.Generator().manual_seed(opts.seed)
    spec = arch_spec(opts.arch, data.image_shape, data.n_outputs, opts.hidden, opts.channels)
    model = build_module(spec)
    x = torch.from_numpy(np.ascontiguousarray(data.x_train))
    y = torch.from_numpy(np.ascontiguousarray(data.y_train))
    classify = data.task == "classification"
    loss_fn = torch.nn.functional.cross_entropy if classify else torch.nn.functional.mse_loss
    sgd = torch.optim.SGD(model.parameters(), lr=opts.lr, momentum=opts.momentum)
    pairs = init_pairs(x, opts.clip, gen) if opts.regulariser == "clip" else None
    lam = float(opts.lam) if opts.regulariser != "none" else 0.0
    result = TrainResult(model, spec, opts, pairs=pairs)
    return _Run(opts, model, x, y, gen, classify, loss_fn, sgd, result, pairs, lam)


def _epoch(run: _Run, epoch: int) -> dict[str, Any]:
    """One epoch: the minibatch loop, then the epoch's record (without lam_next)."""
    import torch

    run.model.train()
    t0 = time.perf_counter()
    perm = torch.randperm(len(run.x), generator=run.gen)
    sums: dict[str, Any] = {"loss": 0.0, "reg": 0.0, "n": 0, "skipped": 0, "accepted": 0, "tried": 0}
    for i in range(0, len(run.x), run.opts.batch_size):
        _minibatch(run, perm[i:i + run.opts.batch_size], sums)
    epoch_time = time.perf_counter() - t0
    return _epoch_record(run, epoch, epoch_time, sums)


def _minibatch(run: _Run, idx: Any, sums: dict[str, Any]) -> None:
    """One SGD step on mean loss + lam * R over the minibatch ``idx`` (CLIP: Algorithm 1 first)."""
    from lipopt.train.regularisers import weight_penalty

    opts, copts, lam = run.opts, run.opts.clip, run.lam
    clip = opts.regulariser == "clip"
    if clip and copts.reinit_every and run.batches and run.batches % copts.reinit_every == 0:
        run.pairs = init_pairs(run.x, copts, run.gen, tau=run.pairs.tau)  # type: ignore[union-attr]
        run.result.pairs = run.pairs
    loss = run.loss_fn(run.model(run.x[idx]), run.y[idx])
    total = loss
    if clip:
        info = adversarial_update(run.model, run.pairs, copts, opts.input_norm, opts.output_norm,  # type: ignore[arg-type]
                                  keep_graph=lam > 0)
        sums["accepted"] += info.accepted
        sums["tried"] += info.tried
        if lam > 0:
            r = _regulariser(info.quotient, copts)
            if float(r.detach()) > copts.reg_max:
                sums["skipped"] += 1
            else:
                total = loss + lam * r
                sums["reg"] += float(r.detach())
    elif opts.regulariser == "weight" and lam > 0:
        r = weight_penalty(run.model)
        total = loss + lam * r
        sums["reg"] += float(r.detach())
    run.sgd.zero_grad(set_to_none=True)
    total.backward()
    run.sgd.step()
    sums["loss"] += float(loss.detach())
    sums["n"] += 1
    run.batches += 1


def _epoch_record(run: _Run, epoch: int, epoch_time: float, sums: dict[str, Any]) -> dict[str, Any]:
    """The epoch's record on the network in eval mode (accuracy or mse, the pair and sampled estimates)."""
    from lipopt.train.evaluate import accuracy, mse, sampled_estimate

    opts, model, x, y = run.opts, run.model, run.x, run.y
    model.eval()
    n_batches, tried = sums["n"], sums["tried"]
    rec: dict[str, Any] = {"epoch": epoch, "loss": sums["loss"] / n_batches, "reg": sums["reg"] / n_batches,
                           "lam": run.lam, "epoch_time": epoch_time, "skipped": sums["skipped"],
                           "accepted": sums["accepted"] / tried if tried else None}
    if run.classify:
        rec["train_accuracy"] = accuracy(model, x, y)
    else:
        rec["train_mse"] = mse(model, x, y)
    pairs = run.pairs
    if pairs is not None:
        pairs.refresh(model, opts.clip, opts.input_norm, opts.output_norm)
    rec["lip_estimate"] = pairs.best()[0] if pairs is not None else None
    rec["sampled_estimate"] = sampled_estimate(model, x, opts.input_norm, opts.output_norm, 64, opts.seed)
    return rec
