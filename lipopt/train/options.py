"""Options of Lipschitz training (:class:`TrainOptions`, with CLIP's own in :class:`ClipOptions`).

Both are frozen dataclasses with defaults; :meth:`from_dict` refuses unknown keys (a typo is an
:class:`lipopt.errors.InvalidOptionsError` listing the valid names) and every value is checked when the
options are built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lipopt.errors import InvalidOptionsError
from lipopt.options import StrictOptions

__all__ = ["ARCHS", "NORMS", "PAIR_INITS", "REGULARISERS", "SELECT_RULES", "ClipOptions", "SelectOptions",
           "TrainOptions"]

REGULARISERS = ("clip", "weight", "none")
ARCHS = ("dense", "cnn")
NORMS = ("l1", "l2", "linf")
PAIR_INITS = ("partial_random", "plain", "noise")
REDUCTIONS = ("max", "mean")
SELECT_RULES = ("last", "target", "pgd")

def _choice(what: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidOptionsError(f"{what}={value!r} is not supported; choose one of {', '.join(allowed)}")


def _positive(what: str, value: Any, strict: bool = True, integer: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and integer:
        ok = float(value).is_integer()
    if ok:
        ok = value > 0 if strict else value >= 0
    if not ok:
        kind = "an integer" if integer else "a finite number"
        raise InvalidOptionsError(f"{what} must be {kind} {'>' if strict else '>='} 0, got {value!r}")


@dataclass(frozen=True)
class ClipOptions(StrictOptions):
    """CLIP's pair set and its adversarial update (Algorithm 1), defaults of the authors' code.

    * ``n_pairs`` pairs (u, v), drawn from the training inputs by ``init``: ``partial_random`` (v = u plus
      U(0, ``noise``) per entry), ``plain`` (two different training inputs) or ``noise`` (u, v both
      U(0, ``noise``)); drawn again every ``reinit_every`` minibatches (0: never).
    * Each pair keeps its step tau (first ``step``): an ascent step on the quotient that increases it is
      accepted and tau *= ``decay``; otherwise rejected and tau /= ``decay``. ``iters`` steps per minibatch.
    * The regulariser is the largest quotient (``reduce="max"``) or their mean (``"mean"``): the quotient
      itself as in the paper's eq. (2) (``squared=False``), or its square as in the authors' code
      (``squared=True``; the ascent then also runs on the square); a batch whose regulariser exceeds
      ``reg_max`` drops it (the code's instability guard).
    * Pairs closer than ``min_distance`` (input norm) count 0 (no division by zero). ``box``: project the
      pairs onto [lo, hi] after each step (None: not projected, as the paper).
    """

    n_pairs: int = 128
    init: str = "partial_random"
    noise: float = 0.1
    reinit_every: int = 2000
    step: float = 1.0
    decay: float = 1.3
    iters: int = 1
    reduce: str = "max"
    squared: bool = False
    reg_max: float = 5e3
    min_distance: float = 1e-6
    box: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        _positive("clip.n_pairs", self.n_pairs, integer=True)
        _choice("clip.init", self.init, PAIR_INITS)
        _positive("clip.noise", self.noise)
        _positive("clip.reinit_every", self.reinit_every, strict=False, integer=True)
        _positive("clip.step", self.step)
        _positive("clip.iters", self.iters, integer=True)
        _choice("clip.reduce", self.reduce, REDUCTIONS)
        _positive("clip.reg_max", self.reg_max)
        _positive("clip.min_distance", self.min_distance)
        if not (isinstance(self.decay, int | float) and self.decay > 1 and math.isfinite(self.decay)):
            raise InvalidOptionsError(f"clip.decay must be a finite number > 1, got {self.decay!r}")
        if self.box is not None:
            if len(self.box) != 2 or not self.box[0] < self.box[1]:
                raise InvalidOptionsError(f"clip.box must be (lo, hi) with lo < hi, got {self.box!r}")
            object.__setattr__(self, "box", (float(self.box[0]), float(self.box[1])))


@dataclass(frozen=True)
class SelectOptions(StrictOptions):
    """Which epoch's network :func:`lipopt.train.clip.train` returns (the checkpoint), by ``rule``:

    * ``last``: the last epoch's;
    * ``target``: among the epochs whose training accuracy is at or above ``target_accuracy``, the one
      closest to it (the latest on ties); if none reaches it, the epoch of highest training accuracy;
      without a target (fixed lambda, standard training), the last epoch;
    * ``pgd``: the paper's rule ("we track the performance against the PGD attack of each model during
      training and use the model checkpoint with the highest robustness"): the highest accuracy under
      l-inf PGD of radius ``eps`` (``iters`` steps of eps / 4, :mod:`lipopt.train.evaluate`) on ``points``
      seeded training images (not the test set), the higher training accuracy and then the later epoch on
      ties.

    With an adapted lambda (a target accuracy and a regulariser), only the epochs trained with an updated
    lambda are candidates: from ``TrainOptions.warmup_epochs + 1`` on (the last epoch if there are none);
    with a fixed lambda, every epoch.
    """

    rule: str = "last"
    points: int = 512
    eps: float = 0.1
    iters: int = 7

    def __post_init__(self) -> None:
        _choice("select.rule", self.rule, SELECT_RULES)
        _positive("select.points", self.points, integer=True)
        _positive("select.eps", self.eps)
        _positive("select.iters", self.iters, integer=True)


@dataclass(frozen=True)
class TrainOptions(StrictOptions):
    """Algorithm 2: minibatch SGD with momentum on loss + lam * R, for R one of

    * ``regulariser="clip"``: CLIP's pair estimate of the Lipschitz constant (the max quotient by default);
    * ``"weight"``: the sum of the squared Frobenius norms of the weight matrices / kernels (the paper's
      "Weight Reg.", biases not included);
    * ``"none"``: standard training (lam is ignored).

    ``lam`` is the starting lambda. With ``target_accuracy`` set, after each epoch past ``warmup_epochs``
    (and at most every ``lam_every`` epochs) the discrepancy principle moves it: lam + ``lam_step`` when the
    training accuracy is above the target, max(lam - ``lam_step``, 0) otherwise (``lam_step`` None: 0.1
    for CLIP, 1e-3 for weight regularisation). Without it lam is fixed.

    ``arch``: ``dense`` (ReLU layers of widths ``hidden``) or ``cnn`` (two 3x3 ReLU conv layers of
    ``channels`` channels, each followed by a 2x2 max-pool, then dense ReLU layers ``hidden``).
    ``input_norm`` / ``output_norm``: the norms of the quotient (l2 by default). ``threads``: torch's
    intra-op threads (None: torch's default). ``select``: the checkpoint returned (:class:`SelectOptions`;
    the last epoch's by default).
    """

    arch: str = "dense"
    hidden: tuple[int, ...] = (64, 64)
    channels: tuple[int, ...] = (16, 32)
    regulariser: str = "clip"
    lam: float = 0.0
    target_accuracy: float | None = None
    lam_step: float | None = None
    warmup_epochs: int = 0
    lam_every: int = 1
    epochs: int = 10
    batch_size: int = 64
    lr: float = 0.1
    momentum: float = 0.9
    seed: int = 0
    input_norm: str = "l2"
    output_norm: str = "l2"
    threads: int | None = None
    clip: ClipOptions = field(default_factory=ClipOptions)
    select: SelectOptions = field(default_factory=SelectOptions)

    def __post_init__(self) -> None:
        _choice("arch", self.arch, ARCHS)
        _choice("regulariser", self.regulariser, REGULARISERS)
        _choice("input_norm", self.input_norm, NORMS)
        _choice("output_norm", self.output_norm, NORMS)
        for name in ("hidden", "channels"):
            v = getattr(self, name)
            if isinstance(v, int):
                v = (v,)
            v = tuple(v)
            for w in v:
                _positive(f"{name} (each width)", w, integer=True)
            object.__setattr__(self, name, tuple(int(w) for w in v))
        if self.arch == "cnn" and not self.channels:
            raise InvalidOptionsError("arch='cnn' needs at least one conv layer in channels")
        _positive("lam", self.lam, strict=False)
        if self.target_accuracy is not None and not (
                isinstance(self.target_accuracy, int | float) and 0 < self.target_accuracy <= 1):
            raise InvalidOptionsError(f"target_accuracy must be in (0, 1] (a fraction: 0.9 for 90 %), got "
                                      f"{self.target_accuracy!r}")
        if self.lam_step is not None:
            _positive("lam_step", self.lam_step)
        _positive("warmup_epochs", self.warmup_epochs, strict=False, integer=True)
        _positive("lam_every", self.lam_every, integer=True)
        _positive("epochs", self.epochs, integer=True)
        _positive("batch_size", self.batch_size, integer=True)
        _positive("lr", self.lr)
        _positive("momentum", self.momentum, strict=False)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise InvalidOptionsError(f"seed must be an integer, got {self.seed!r}")
        if self.threads is not None:
            _positive("threads", self.threads, integer=True)
        if isinstance(self.clip, Mapping):
            object.__setattr__(self, "clip", ClipOptions.from_dict(self.clip))
        elif not isinstance(self.clip, ClipOptions):
            raise InvalidOptionsError(f"clip must be ClipOptions or a dict, got {type(self.clip).__name__}")
        if isinstance(self.select, str):
            object.__setattr__(self, "select", SelectOptions(rule=self.select))
        elif isinstance(self.select, Mapping):
            object.__setattr__(self, "select", SelectOptions.from_dict(self.select))
        elif not isinstance(self.select, SelectOptions):
            raise InvalidOptionsError(f"select must be SelectOptions, a rule name or a dict, got "
                                      f"{type(self.select).__name__}")

    @property
    def lam_increment(self) -> float:
        if self.lam_step is not None:
            return float(self.lam_step)
        return 0.1 if self.regulariser == "clip" else 1e-3

    @property
    def adaptive(self) -> bool:
        return self.target_accuracy is not None and self.regulariser != "none"
