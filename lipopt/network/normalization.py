"""The input space of a question: raw inputs or the network's normalised inputs.

An importer that folds an input normalisation ``x_norm = (x_raw - mean) / std`` into the first layer
(the Avant checkpoints, GLipSDP's ``input_mean`` / ``input_scale``, a torch ``Normalize``-style or
BatchNorm first step) keeps the folded raw-input network and records the map as
``net.input_normalization`` (:class:`InputNormalization`, flat arrays of the input size).

``in_input_space(net, "normalized")`` is the network g(u) = f(std * u + mean) of the normalised input u:
an exact diagonal scaling, folded into the first affine layer (a Dense layer, or an unpadded Conv2d with
a per-channel map) or prepended as its own layer (a diagonal Dense layer for flat inputs, a depthwise
1x1 Conv2d for per-channel maps on images). Its ``input_space`` attribute is ``"normalized"``; a
question asked with ``input_space="normalized"`` is answered on it, so eps, domains, witnesses and
constants are all in u-space. For l2 -> l2 and a uniform std s, L_u = s * L_x.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lipopt.errors import InvalidNetworkError, InvalidQuestionError

INPUT_SPACES = ("raw", "normalized")


@dataclass(frozen=True, eq=False)
class InputNormalization:
    """x_norm = (x_raw - mean) / std, element-wise over the flattened input (std non-zero)."""

    mean: np.ndarray
    std: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        m = np.asarray(self.mean, dtype=np.float64).reshape(-1)
        s = np.asarray(self.std, dtype=np.float64).reshape(-1)
        if m.shape != s.shape:
            raise InvalidNetworkError(f"input normalisation: mean has {m.size} entries, std {s.size}")
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))) or np.any(s == 0):
            raise InvalidNetworkError("input normalisation: mean and std must be finite, std non-zero")
        object.__setattr__(self, "mean", m)
        object.__setattr__(self, "std", s)

    def to_normalized(self, x: np.ndarray) -> np.ndarray:
        """u = (x - mean) / std for x of shape (n,) or (B, n)."""
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def to_raw(self, u: np.ndarray) -> np.ndarray:
        """x = std * u + mean."""
        return np.asarray(u, dtype=np.float64) * self.std + self.mean

    def to_dict(self) -> dict[str, object]:
        def short(a: np.ndarray) -> object:
            return float(a[0]) if np.all(a == a[0]) else a.tolist()

        return {"mean": short(self.mean), "std": short(self.std), "source": self.source}


def check_input_space(space: object) -> str:
    s = str(space).strip().lower() if space is not None else "raw"
    s = {"normalised": "normalized", "norm": "normalized"}.get(s, s)
    if s not in INPUT_SPACES:
        raise InvalidQuestionError(f"unknown input space {space!r}; supported: {', '.join(INPUT_SPACES)}")
    return s


def from_affine(a: np.ndarray, c: np.ndarray, size: int, source: str) -> InputNormalization | None:
    """The normalisation of an element-wise x_norm = a * x + c (broadcast to ``size``), None if a has a
    zero (not invertible)."""
    a = np.broadcast_to(np.asarray(a, dtype=np.float64).reshape(-1) if np.ndim(a) > 0 else a, (size,))
    c = np.broadcast_to(np.asarray(c, dtype=np.float64).reshape(-1) if np.ndim(c) > 0 else c, (size,))
    if np.any(a == 0) or not np.all(np.isfinite(a)):
        return None
    return InputNormalization(-c / a, 1.0 / a, source)


def in_input_space(net, space: str):  # Network -> Network
    """The network whose input is in ``space``: ``net`` itself for raw, g(u) = f(std u + mean) for
    normalized (cached on ``net``). A clear error when ``net`` records no input normalisation."""
    space = check_input_space(space)
    if space == "raw" or getattr(net, "input_space", "raw") == "normalized":
        return net
    norm = getattr(net, "input_normalization", None)
    if norm is None:
        raise InvalidQuestionError(
            f"input_space='normalized' needs a network that records its input normalisation "
            f"(x - mean) / std; {net.name or 'this network'} has none. Recorded by: the zoo checkpoints "
            "(Avant MNIST LeNet / CIFAR-10 net), GLipSDP .mat files with input_mean/input_scale "
            "(normalize=True), "
            "torch models whose first step is (x - mean) / std or a BatchNorm. Use input_space='raw'.")
    cached = getattr(net, "_normalized_view", None)
    if cached is not None:
        return cached
    g = _prepend_scaling(net, norm)
    _check_view(net, g, norm)
    g.input_space = "normalized"
    g.input_normalization = None
    g.raw_normalization = norm
    net._normalized_view = g
    return g


def _prepend_scaling(net, norm: InputNormalization):  # Network -> Network
    from lipopt.network.layers import Conv2d, Dense, Flatten
    from lipopt.network.network import Network

    s, m = norm.std, norm.mean
    layers = list(net.layers)
    k = 0
    while k < len(layers) and isinstance(layers[k], Flatten):
        k += 1
    first = layers[k] if k < len(layers) else None
    name = f"{net.name or 'network'} (normalized input)"
    if isinstance(first, Dense):
        new = Dense(first.weight * s[None, :], first.bias + first.weight @ m, name=first.name)
        return Network([*layers[:k], new, *layers[k + 1:]], net.input_shape, name=name)
    shape = net.input_shape
    if len(shape) == 1:
        return Network([Dense(np.diag(s), m.copy(), name="input_scaling"), *layers], shape, name=name)
    if len(shape) == 3:
        c = shape[0]
        s3, m3 = s.reshape(shape), m.reshape(shape)
        s_ch, m_ch = s3[:, 0, 0], m3[:, 0, 0]
        if not (np.array_equal(s3, np.broadcast_to(s_ch[:, None, None], shape))
                and np.array_equal(m3, np.broadcast_to(m_ch[:, None, None], shape))):
            raise InvalidQuestionError("input_space='normalized' on an image network supports a per-channel "
                                       "normalisation only (this one varies across pixels)")
        pad = getattr(first, "padding", None)
        if isinstance(first, Conv2d) and k == 0 and (not np.any(np.asarray(pad)) or not np.any(m_ch)):
            w = first.weight
            g = first.groups
            cin = w.shape[1]
            # input channel of weight[o, j] is (o // (out/groups)) * cin + j
            out_per = w.shape[0] // g
            ch = (np.arange(w.shape[0])[:, None] // out_per) * cin + np.arange(cin)[None, :]
            w_new = w * s_ch[ch][:, :, None, None]
            b_new = first.bias + np.einsum("ojhw,oj->o", w, m_ch[ch])
            new = Conv2d(w_new, b_new, first.stride, first.padding, first.dilation, g, first.name)
            return Network([new, *layers[1:]], shape, name=name)
        scale = Conv2d(s_ch.reshape(c, 1, 1, 1), m_ch.copy(), 1, 0, 1, c, "input_scaling")
        return Network([scale, *layers], shape, name=name)
    raise InvalidQuestionError(f"input_space='normalized': unsupported input shape {shape}")


def _check_view(net, g, norm: InputNormalization) -> None:
    """g(u) must equal f(std u + mean) (float64 re-evaluation at a few points)."""
    rng = np.random.default_rng(0)
    u = rng.standard_normal((4, net.input_size))
    a, b = g.forward(u), net.forward(norm.to_raw(u))
    tol = 1e-8 * (1.0 + np.abs(b).max())
    if not np.allclose(a, b, rtol=1e-8, atol=tol):
        raise InvalidNetworkError(f"normalized-input network differs from f(std u + mean) by "
                                  f"{np.abs(a - b).max():.3g}")


def clip_in_space(clip: tuple, norm: InputNormalization | None, device: str = "cpu") -> tuple:
    """A raw clip box (lo, hi) in the normalised space: scalars when the map is uniform, else per
    coordinate torch tensors on ``device`` (for the PGD projections of lipopt.lower.adversarial)."""
    if norm is None:
        return clip
    lo = norm.to_normalized(np.full(norm.mean.size, float(clip[0])))
    hi = norm.to_normalized(np.full(norm.mean.size, float(clip[1])))
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    if np.all(lo == lo[0]) and np.all(hi == hi[0]):
        return float(lo[0]), float(hi[0])
    import torch

    from lipopt.analytic.linops import resolve_device

    dev = resolve_device(device)[0]
    return (torch.as_tensor(lo, dtype=torch.float64, device=dev),
            torch.as_tensor(hi, dtype=torch.float64, device=dev))
