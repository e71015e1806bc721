"""The input set and the sound variable bounds of the MIQCQP formulations (formulations.md section 1).

**Input set S.** Local questions: the box (an l-inf ball is a box; an l2 ball is its bounding box plus the
convex constraint |x - x0|_2 <= r). The global question needs a *bounded* set, because the activation-region
constraints are linearised with big-M values; we use a projective compactification [DER]:

* Lift the network to the positively homogeneous map F(x, t) with z_k = W_k h_{k-1} + b_k t (t >= 0). For
  t > 0, F(x, t) = t f(x / t): the ReLU pattern of (x, t) is the pattern of f at x / t, and the Jacobian
  with respect to x is the same J_s.
* Every linear region R_s with interior corresponds to the open cone {(x, t) : t > 0, x / t in int R_s},
  which meets the "half-cube surface"
      S = {(x, t) : |x|_inf <= R, 0 <= t <= 1, and (t = 1 or |x|_inf = R)}
  (scale a point of the cone until max(|x|_inf / R, t) = 1). On the facet t = 1, S is just f on the box
  [-R, R]^n; the side facets |x_i| = R with t < 1 hold the far field (x / t outside the box).
* Hence max over weakly feasible patterns on S >= L (the upper-bound problem on S is sound), and a point
  of S with every |z_k,i| >= eps > 0 lies in the interior of a full-dimensional region of f (for t = 0 by
  continuity: (x, delta) has the same strict pattern for small delta > 0), so the lower-bound problem on S
  only returns full-dimensional patterns. The facet is chosen by 2n + 1 binaries (2n for bias-free
  networks: t then plays no role and S is the surface of the cube, which is exact by Fact C).
* Unlike a box around the origin, S excludes (x, t) = (0, 0), where every pre-activation of a bias-free
  network vanishes and every pattern would be weakly feasible: on the global question the upper-bound
  problem is therefore often tighter than the closed-region maximum (T4, T5, T7 with beta = 0 give the
  exact values 1, 0, 1 instead of 2, 1, sqrt 2).

**Forward bounds** on every pre-activation: ``lipopt.bounds.compute.compute_bounds`` (CROWN / LP) when it
exists, else interval arithmetic, on the (lifted) network over the bounding box of S.
**Direction bounds** on W_k w_{k-1}: interval matrices [A_lo, A_hi] containing every G_k W_k ... G_1 W_1
(stable neurons fixed), then |a^T v| <= || max(|a_lo|, |a_hi|) ||_{p*} over the unit p-ball; this is
never looser than plain interval propagation of v in [-1, 1]^n and uses the l2 ball itself for p = 2.

The mathematics as implemented: ``docs/methods.md#miqcqp-input-set``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lipopt.errors import NotApplicableError
from lipopt.network.layers import Dense, LeakyReLU, ReLU
from lipopt.network.network import Network
from lipopt.network.stages import AffineStage, is_activation
from lipopt.spec import Ball, Box, Global, Norm, Question

BOUND_METHODS = ("auto", "interval", "crown", "lp")


@dataclass
class InputSet:
    """The input variables of the model: x (n_x) and, when ``lifted``, the homogenising t (last)."""

    kind: str  # "box" | "l2ball" | "sphere" (bias-free global) | "lifted" (global with biases)
    n_x: int
    lo: np.ndarray  # bounds of the model's input variables (n_x, or n_x + 1 when lifted)
    hi: np.ndarray
    radius: float | None = None  # R of the compactification (global)
    center: np.ndarray | None = None  # l2 ball
    ball_radius: float | None = None

    @property
    def lifted(self) -> bool:
        return self.kind == "lifted"

    @property
    def surface(self) -> bool:
        return self.kind in ("sphere", "lifted")

    def describe(self) -> str:
        if self.kind == "sphere":
            return (f"global, bias-free: surface of the cube [-{self.radius:g}, {self.radius:g}]^{self.n_x} "
                    "(Fact C)")
        if self.kind == "lifted":
            r = f"{self.radius:g}"
            return (f"global with biases: projective compactification, facets t = 1 (x in "
                    f"[-{r}, {r}]^{self.n_x}) and |x_i| = {r}, t in [0, 1]")
        if self.kind == "l2ball":
            return f"l2 ball of radius {self.ball_radius:g} (bounding box + convex quadratic constraint)"
        return "box"


@dataclass
class LayerBounds:
    """Per hidden activation layer k (0-based): pre-activation bounds and the direction bounds."""

    z_lo: list[np.ndarray]
    z_hi: list[np.ndarray]
    active: list[np.ndarray]
    inactive: list[np.ndarray]
    y_lo: list[np.ndarray]  # bounds of y_k = W_k w_{k-1} (pre-gating direction)
    y_hi: list[np.ndarray]
    out_lo: np.ndarray  # bounds of W_L w_{L-1} (all outputs) or of the scalar a^T w_{L-1}
    out_hi: np.ndarray
    method: str = "interval"
    stats: dict = field(default_factory=dict)
    alphas: list[float] = field(default_factory=list)  # negative slope per hidden layer (0: ReLU)

    def alpha(self, k: int) -> float:
        return self.alphas[k] if k < len(self.alphas) else 0.0

    @property
    def ambiguous(self) -> list[np.ndarray]:
        return [~(a | i) for a, i in zip(self.active, self.inactive, strict=True)]

    @property
    def n_ambiguous(self) -> int:
        return int(sum(int(a.sum()) for a in self.ambiguous))


def mlp_weights(network: Network) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Dense (W_k, b_k) of the affine stages of an Affine (activation Affine)* network."""
    ws, bs, _ = mlp_chain(network)
    return ws, bs


def mlp_chain(network: Network) -> tuple[list[np.ndarray], list[np.ndarray], list[float]]:
    """(weights, biases, alphas): the affine stages and the negative slope of the activation after each
    hidden one (0 for ReLU). The lowering puts an affine stage between any two activations."""
    if network.has_maxpool:
        raise NotApplicableError("the MIQCQP formulations support networks without max-pool layers")
    ws: list[np.ndarray] = []
    bs: list[np.ndarray] = []
    alphas: list[float] = []
    for s in network.lower():
        if isinstance(s, AffineStage):
            ws.append(np.asarray(s.dense(), dtype=np.float64))
            bs.append(np.asarray(s.bias, dtype=np.float64))
        elif is_activation(s):
            alphas.append(float(s.alpha))
        else:
            raise NotApplicableError(f"the MIQCQP formulations do not handle the stage {type(s).__name__}")
    return ws, bs, alphas


def first_layer(network: Network) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """([W_1], [b_1]) of the first affine stage (all the radius rules below read), for every network."""
    s = network.lower()[0]
    return [np.asarray(s.dense(), dtype=np.float64)], [np.asarray(s.bias, dtype=np.float64)]


#: the automatic radius is at most RADIUS_CAP x the typical hyperplane distance (:func:`radius_scale`)
RADIUS_CAP = 1e3
#: above RADIUS_SAFE x the typical distance the solver's dual bound is not trusted (see below)
RADIUS_SAFE = 1e5


def hyperplane_distances(weights: list[np.ndarray], biases: list[np.ndarray]) -> np.ndarray:
    """l-inf distances |b_i| / |w_i|_1 of the first-layer hyperplanes from the origin (rows w_i != 0).
    Invariant under the scale normalisation (:mod:`lipopt.formulations.scaling`)."""
    w1, b1 = weights[0], biases[0]
    n1 = np.abs(w1).sum(axis=1)
    ok = n1 > 0
    return np.abs(b1[ok]) / n1[ok] if np.any(ok) else np.zeros(1)


def radius_scale(weights: list[np.ndarray], biases: list[np.ndarray]) -> float:
    """The typical length of the input geometry: max(1, median first-layer hyperplane distance)."""
    d = hyperplane_distances(weights, biases)
    return float(max(1.0, float(np.median(d)) if d.size else 0.0))


def default_global_radius(weights: list[np.ndarray], biases: list[np.ndarray]) -> float:
    """R such that every first-layer hyperplane crosses the facet t = 1 (twice its largest l-inf distance
    from the origin, at least 1), capped at RADIUS_CAP x :func:`radius_scale`.

    Any R > 0 is sound (the compactification is exact for every R); R only balances the facets, and it
    sets the model's conditioning: x in [-R, R]^n gives big-M values ~ |W| R, and the solver's absolute
    tolerances (feasibility 1e-6, integrality 1e-6 x big-M) then blur every feature much smaller than
    1e-6 R. A neuron with tiny incoming weights has a hyperplane very far away (|b| / |w| ~ 1e6 .. 1e12),
    and "crossing the facet" gave R = 1e7 .. 1e9 with the typical regions of size 1 lost: SCIP returned
    dual bounds below the true constant (seeded 2-6-6-1 nets: 7.968 where enumeration gives 8.645, at
    R = 2.5e7). With the cap the far hyperplane lies on a side facet at t ~ R / d instead, which SCIP
    resolves (the same nets give the exact values at R = 10 .. 1e4 even for d = 1e12)."""
    d = hyperplane_distances(weights, biases)
    want = max(1.0, 2.0 * float(np.max(d, initial=0.0)))
    return float(min(want, RADIUS_CAP * radius_scale(weights, biases)))


def radius_conditioning(iset: InputSet, weights: list[np.ndarray], biases: list[np.ndarray]) -> float:
    """R / typical hyperplane distance of a compactified global input set (1.0 for local sets). Above
    RADIUS_SAFE the solver's dual bound is not trusted (an audit found wrong dual bounds only at
    R / scale >= 3.8e7 and none at <= 5e5; the cap keeps the automatic radius at <= RADIUS_CAP)."""
    if not iset.surface or iset.radius is None:
        return 1.0
    if iset.kind == "sphere":  # bias-free: |x| <= R, pre-activations ~ |W| R
        return float(iset.radius)
    return float(iset.radius) / radius_scale(weights, biases)


def input_set(network: Network, question: Question, global_radius: float | None = None) -> InputSet:
    n = network.input_size
    dom = question.domain
    if isinstance(dom, Global):
        ws, bs = first_layer(network)
        if not network.has_bias:
            r = float(global_radius or 1.0)
            return InputSet("sphere", n, -r * np.ones(n), r * np.ones(n), radius=r)
        r = float(global_radius or default_global_radius(ws, bs))
        lo = np.concatenate([-r * np.ones(n), [0.0]])
        hi = np.concatenate([r * np.ones(n), [1.0]])
        return InputSet("lifted", n, lo, hi, radius=r)
    if isinstance(dom, Box):
        return InputSet("box", n, np.asarray(dom.lo, float), np.asarray(dom.hi, float))
    if isinstance(dom, Ball):
        if dom.norm is Norm.LINF:
            return InputSet("box", n, dom.center - dom.radius, dom.center + dom.radius)
        return InputSet("l2ball", n, dom.center - dom.radius, dom.center + dom.radius,
                        center=np.asarray(dom.center, float), ball_radius=float(dom.radius))
    raise NotApplicableError(f"unsupported domain {dom!r}")


def lifted_network(weights: list[np.ndarray], biases: list[np.ndarray],
                   alphas: list[float] | None = None) -> Network:
    """The bias-free network of (x, t): hidden layers [[W_k, b_k], [0, 1]] carry t along (t >= 0, which
    every activation max(z, alpha z) passes unchanged)."""
    ws = []
    n_layers = len(weights)
    for k, (w, b) in enumerate(zip(weights, biases, strict=True)):
        top = np.hstack([w, b[:, None]])
        if k < n_layers - 1:
            extra = np.zeros((1, top.shape[1]))
            extra[0, -1] = 1.0
            top = np.vstack([top, extra])
        ws.append(top)
    if not alphas or not any(alphas):
        return Network.from_weights(ws, None, name="lifted")
    layers: list = []
    for k, w in enumerate(ws):
        layers.append(Dense(w, None, name=f"fc{k + 1}"))
        if k < len(ws) - 1:
            layers.append(ReLU() if alphas[k] == 0.0 else LeakyReLU(alphas[k]))
    return Network(layers, (ws[0].shape[1],), name="lifted")


def _forward(net: Network, lo: np.ndarray, hi: np.ndarray, method: str,
             time_limit: float | None = None) -> tuple[object, str]:
    """Forward bounds with the requested method; 'auto' takes LP tightening (CROWN, then one LP per
    ambiguous neuron) when available, else CROWN, else intervals. ``time_limit``: seconds for the LP
    tightening (it stops there, keeping the sound CROWN bounds of the neurons not tightened).

    Uses ``lipopt.bounds.compute.compute_bounds`` when it exists, else the CROWN / interval modules."""
    from lipopt.bounds.interval import interval_bounds

    if method == "interval":
        return interval_bounds(net, lo, hi), "interval"
    want = "crown" if method == "auto" else method
    try:
        from lipopt.bounds.compute import compute_bounds  # type: ignore[import-not-found]

        lp_kw = {} if time_limit is None else {"time_limit": time_limit}
        if method == "auto":
            try:
                return compute_bounds(net, lo, hi, method="lp", **lp_kw), "lp"
            except Exception:  # LP tightening failed: CROWN is still sound
                pass
        return compute_bounds(net, lo, hi, method=want, **(lp_kw if want == "lp" else {})), want
    except ImportError:
        pass
    except Exception:
        if method != "auto":
            raise
    if want == "crown":
        try:
            from lipopt.bounds.crown import crown_bounds

            return crown_bounds(net, lo, hi), "crown"
        except ImportError:
            if method != "auto":
                raise NotApplicableError("CROWN bounds are not available") from None
    elif method != "auto":
        raise NotApplicableError(f"bound method {method!r} needs lipopt.bounds.compute (not available)")
    return interval_bounds(net, lo, hi), "interval"


def _dual_row_norm(a_abs: np.ndarray, p: Norm) -> np.ndarray:
    """max over the unit p-ball of |a^T v| for each row of |a| (entrywise upper bounds)."""
    return np.linalg.norm(a_abs, ord=p.dual.p, axis=1)


def _rounding_pad(mag: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Padding of interval bounds against float64 rounding, relative to the magnitude of the summed terms
    (``mag`` = |W| @ max(|lo|, |hi|) of the inputs) and of the bounds themselves: no absolute floor, so a
    direction that is exactly 0 (dead neurons, a constant network) keeps the bounds [0, 0] and the solver
    cannot report tolerance noise (1e-9) as an objective value."""
    return 1e-9 * (np.asarray(mag, dtype=np.float64) + np.maximum(np.abs(lo), np.abs(hi)))


def layer_bounds(network: Network, question: Question, iset: InputSet, *, method: str = "auto",
                 fix_stable: bool = True, direction: str = "matrix",
                 time_limit: float | None = None) -> LayerBounds:
    """Forward pre-activation bounds over the input set, stable masks, and direction bounds
    (``time_limit``: seconds for the LP tightening, None = no limit)."""
    ws, bs, alphas = mlp_chain(network)
    z_lo, z_hi, act, ina, used = _pre_activation_bounds(network, ws, bs, alphas, iset, method, fix_stable,
                                                        time_limit)
    y_lo, y_hi, ol, oh = _direction_bounds(ws, alphas, act, ina, question, direction)
    lb = LayerBounds(z_lo, z_hi, act, ina, y_lo, y_hi, ol, oh, method=used, alphas=list(alphas))
    lb.stats = {"bound_method": used, "relus": int(sum(len(z) for z in z_lo)),
                "ambiguous_relus": lb.n_ambiguous, "direction_bounds": direction}
    return lb


def _pre_activation_bounds(network: Network, ws: list[np.ndarray], bs: list[np.ndarray], alphas: list[float],
                           iset: InputSet, method: str, fix_stable: bool, time_limit: float | None) -> tuple:
    """Per hidden layer: pre-activation bounds over the (lifted) input set and the stable masks."""
    n_hidden = len(ws) - 1
    if iset.lifted:
        bnet = lifted_network(ws, bs, alphas)
    else:
        bnet = network
    fb, used = _forward(bnet, iset.lo, iset.hi, method, time_limit)
    relu_idx = [i for i, s in enumerate(fb.stages) if is_activation(s)]
    if len(relu_idx) != n_hidden:
        raise NotApplicableError("unexpected lowered structure (expected Dense/ReLU alternation)")
    z_lo, z_hi, act, ina = [], [], [], []
    for k, i in enumerate(relu_idx):
        lo, hi = fb.pre_activation(i)
        nk = ws[k].shape[0]
        lo, hi = np.asarray(lo[:nk], float), np.asarray(hi[:nk], float)
        z_lo.append(lo)
        z_hi.append(hi)
        if fix_stable:
            a = lo >= 0
            act.append(a)
            ina.append((hi <= 0) & ~a)
        else:
            act.append(np.zeros(nk, bool))
            ina.append(np.zeros(nk, bool))
    return z_lo, z_hi, act, ina, used


def _direction_bounds(ws: list[np.ndarray], alphas: list[float], act: list[np.ndarray], ina: list[np.ndarray],
                      question: Question, direction: str) -> tuple:
    """Bounds of y_k = W_k w_{k-1} per hidden layer and of the output map, by interval matrices of the
    gated direction maps (``direction == "matrix"``) intersected with interval propagation, padded
    against rounding."""
    n_hidden = len(ws) - 1
    p = question.input_norm
    y_lo, y_hi = [], []
    a_lo = a_hi = None  # interval matrix of the gated direction map G_k W_k ... G_1 W_1 (n_k x n_x)
    w_lo = w_hi = None  # interval propagation bounds on w_{k-1}
    for k in range(n_hidden):
        w = ws[k]
        if k == 0:
            m_lo = m_hi = w  # exact
            b_abs = _dual_row_norm(np.abs(w), p)
            yl_i, yh_i = -b_abs, b_abs
            mag = b_abs
        else:
            wp, wn = np.maximum(w, 0), np.minimum(w, 0)
            m_lo = wp @ a_lo + wn @ a_hi
            m_hi = wp @ a_hi + wn @ a_lo
            c = w @ ((w_lo + w_hi) / 2)
            r = np.abs(w) @ ((w_hi - w_lo) / 2)
            yl_i, yh_i = c - r, c + r
            mag = np.abs(w) @ np.maximum(np.abs(w_lo), np.abs(w_hi))
        if direction == "matrix":
            b_m = _dual_row_norm(np.maximum(np.abs(m_lo), np.abs(m_hi)), p)
            yl, yh = np.maximum(yl_i, -b_m), np.minimum(yh_i, b_m)
        else:
            yl, yh = yl_i, yh_i
        pad = _rounding_pad(mag, yl, yh)
        yl, yh = yl - pad, yh + pad
        y_lo.append(yl)
        y_hi.append(yh)
        # gating by the slope: active 1, inactive alpha, ambiguous any s in [alpha, 1] (the hull of the
        # two products; ReLU: active passes, inactive zero, ambiguous hull with 0)
        al = alphas[k]
        a_lo = _gate(act[k][:, None], ina[k][:, None], m_lo, al, np.minimum)
        a_hi = _gate(act[k][:, None], ina[k][:, None], m_hi, al, np.maximum)
        w_lo = _gate(act[k], ina[k], yl, al, np.minimum)
        w_hi = _gate(act[k], ina[k], yh, al, np.maximum)
    # output map
    w_out = ws[-1]
    c = question.output_vector(w_out.shape[0])
    if c is not None:
        w_out = (c @ w_out)[None, :]
    wp, wn = np.maximum(w_out, 0), np.minimum(w_out, 0)
    m_lo = wp @ a_lo + wn @ a_hi
    m_hi = wp @ a_hi + wn @ a_lo
    cc = w_out @ ((w_lo + w_hi) / 2)
    rr = np.abs(w_out) @ ((w_hi - w_lo) / 2)
    ol, oh = cc - rr, cc + rr
    mag = np.abs(w_out) @ np.maximum(np.abs(w_lo), np.abs(w_hi))
    if direction == "matrix":
        b_m = _dual_row_norm(np.maximum(np.abs(m_lo), np.abs(m_hi)), p)
        ol, oh = np.maximum(ol, -b_m), np.minimum(oh, b_m)
    pad = _rounding_pad(mag, ol, oh)
    return y_lo, y_hi, ol - pad, oh + pad


def _gate(act: np.ndarray, ina: np.ndarray, v: np.ndarray, alpha: float, pick) -> np.ndarray:
    """One side (``pick`` = np.minimum for the lower, np.maximum for the upper) of slope * [v] for the
    slope 1 (active), alpha (inactive) or in [alpha, 1] (ambiguous)."""
    return np.where(act, v, np.where(ina, alpha * v, pick(alpha * v, v)))


def fallback_upper(lb: LayerBounds, question: Question) -> float:
    """A sound upper bound on the constant from the output direction bounds alone (no solver)."""
    mag = np.maximum(np.abs(lb.out_lo), np.abs(lb.out_hi))
    if question.scalar_output or mag.size == 1:
        return float(mag[0])
    q = question.output_norm
    if q is Norm.LINF:
        return float(np.max(mag))
    return float(np.linalg.norm(mag, ord=q.p))


def margin_epsilons(lb: LayerBounds, epsilon: float | None, epsilon_rel: float,
                    epsilon_min: float, z_scales: list[float] | None = None) -> list[np.ndarray]:
    """Per-neuron margins of the lower-bound problem: absolute ``epsilon`` (uniform) if given, else
    ``epsilon_rel`` times the neuron's pre-activation range (scale-aware), at least ``epsilon_min``.

    ``z_scales[k]``: the factor by which the original network's layer-k pre-activations exceed those of
    the (normalised) network of ``lb`` (:mod:`lipopt.formulations.scaling`); an absolute ``epsilon`` is in
    the original units and is divided by it. ``epsilon_min`` applies in the model's (normalised) units."""
    out = []
    for k, (lo, hi) in enumerate(zip(lb.z_lo, lb.z_hi, strict=True)):
        if epsilon is not None:
            sc = float(z_scales[k]) if z_scales is not None and k < len(z_scales) else 1.0
            out.append(np.full(lo.shape, float(epsilon) / sc))
        else:
            rng = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
            out.append(np.maximum(epsilon_rel * rng, epsilon_min))
    return out


def is_finite_bounds(lb: LayerBounds) -> bool:
    pairs = zip(lb.z_lo, lb.z_hi, strict=True)
    return all(np.all(np.isfinite(a)) and np.all(np.isfinite(b)) for a, b in pairs)

