"""The small networks of formulations.md section 7 as ``Network`` objects, with their known values.

Every function returns a fresh ``Network``; ``KNOWN`` maps a short key to the value stated in the table
(analytic or from the independent script that produced the table). Keys read
``<net>/<norm label>/<domain>[/<variant>]``; "weak" is the closed-region pattern maximum (S_weak, Fact B).
Use ``known(key)``; the questions that go with the keys are in ``QUESTIONS`` (built lazily by ``question``).
"""

from __future__ import annotations

import math

import numpy as np

from lipopt.network.layers import Conv2d, Dense, Flatten, MaxPool2d, ReLU
from lipopt.network.network import Network
from lipopt.spec import Ball, Box, Norm, Question


def t1() -> Network:
    """|x| = relu(x) + relu(-x)."""
    return Network.from_weights([[[1.0], [-1.0]], [[1.0, 1.0]]], name="T1 |x|")


def t2() -> Network:
    """identity x = relu(x) - relu(-x)."""
    return Network.from_weights([[[1.0], [-1.0]], [[1.0, -1.0]]], name="T2 identity")


def t2_deep() -> Network:
    """T2, depth 2: W2 = [[1,-1],[-1,1]], W3 = [1,-1] (still the identity: z2 = (x, -x))."""
    return Network.from_weights([[[1.0], [-1.0]], [[1.0, -1.0], [-1.0, 1.0]], [[1.0, -1.0]]],
                                name="T2 depth 2")


def t2b() -> Network:
    """| |x| |: W2 = [[1,1],[-1,-1]], W3 = [1,1]."""
    return Network.from_weights([[[1.0], [-1.0]], [[1.0, 1.0], [-1.0, -1.0]], [[1.0, 1.0]]], name="T2b ||x||")


def t3() -> Network:
    return Network.from_weights([[[1.0, 2.0], [2.0, 1.0]], [[1.0, -1.0]]], name="T3")


def t4() -> Network:
    """relu(x) - relu(2x)."""
    return Network.from_weights([[[1.0], [2.0]], [[1.0, -1.0]]], name="T4")


def t5() -> Network:
    """relu(x) - relu(x)."""
    return Network.from_weights([[[1.0], [1.0]], [[1.0, -1.0]]], name="T5")


def t6() -> Network:
    """relu(-x) (local question on [0, 1])."""
    return Network.from_weights([[[-1.0]], [[1.0]]], name="T6")


def t7(beta: float = 0.0) -> Network:
    """relu(x1 + x2 + beta) - relu(x1) - relu(x2)."""
    w1 = [[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]
    return Network.from_weights([w1, [[1.0, -1.0, -1.0]]], [[beta, 0.0, 0.0], None], name=f"T7 beta={beta:g}")


def t8() -> Network:
    """relu(x) - relu(x + 1)."""
    return Network.from_weights([[[1.0], [1.0]], [[1.0, -1.0]]], [[0.0, 1.0], None], name="T8")


def t9() -> Network:
    """relu(x1) + relu(x2) (Avant & Morgansen), nominal point x0 = (1, -1)."""
    return Network.from_weights([np.eye(2), [[1.0, 1.0]]], name="T9")


def t9b() -> Network:
    """scalar relu, nominal point x0 = -1, eps = 2."""
    return Network.from_weights([[[1.0]], [[1.0]]], name="T9b relu")


def t9c() -> Network:
    """The Avant & Morgansen repo tiny net: A x + b, ReLU, identity; x0 = (-0.5, 2.5, 2.5)."""
    a = [[3.0, -1.0, 2.0], [-2.0, 7.0, 1.0], [5.0, -3.0, -1.0]]
    return Network.from_weights([a, np.eye(3)], [[3.0, 4.0, 2.0], None], name="T9c")


T9_X0 = np.array([1.0, -1.0])
T9B_X0 = np.array([-1.0])
T9C_X0 = np.array([-0.5, 2.5, 2.5])


def conv_pool_net(seed: int = 0, channels: int = 1) -> Network:
    """A tiny conv + max-pool net: 1x4x4 input, conv k3 (channels x 2 x 2), ReLU, max-pool 2, dense -> 1.
    One channel: 33 linear regions; two: 33^2 (the channels are independent)."""
    rng = np.random.default_rng(seed)
    layers = [
        Conv2d(rng.normal(size=(channels, 1, 3, 3)), rng.normal(size=channels) * 0.3),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Dense(rng.normal(size=(1, channels)), rng.normal(size=1)),
    ]
    return Network(layers, (1, 4, 4), name=f"conv-pool seed {seed}")


def overlapping_pool_net(seed: int = 0, relu_first: bool = True, n_out: int = 1) -> Network:
    """1x3x4 input, conv (1 channel, 2x2), [ReLU,] max-pool 2x2 with stride 1 (two overlapping windows),
    [ReLU,] dense -> n_out: the winners' Jacobians differ, so bound propagation is not exact."""
    rng = np.random.default_rng(seed)
    conv = Conv2d(rng.normal(size=(1, 1, 2, 2)), rng.normal(size=1) * 0.3)
    mid = [ReLU(), MaxPool2d(2, stride=1)] if relu_first else [MaxPool2d(2, stride=1), ReLU()]
    layers = [conv, *mid, Flatten(), Dense(rng.normal(size=(n_out, 2)), rng.normal(size=n_out))]
    return Network(layers, (1, 3, 4), name=f"overlapping-pool seed {seed}")


def random_mlp(widths: list[int], seed: int, bias: bool = True, scale: float = 1.0) -> Network:
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(widths[i + 1], widths[i])) * scale for i in range(len(widths) - 1)]
    bs = [rng.normal(size=widths[i + 1]) * scale if bias else None for i in range(len(widths) - 1)]
    return Network.from_weights(ws, bs, name=f"mlp {'-'.join(map(str, widths))} seed {seed}")


# ------------------------------------------------------------------------------------------------ values

SQ2, SQ5 = math.sqrt(2.0), math.sqrt(5.0)

#: key -> (network factory, question factory, value). Questions default to all outputs.
KNOWN: dict[str, tuple] = {
    "T1/l2/global": (t1, lambda: Question(Norm.L2, Norm.L2), 1.0),
    "T1/linf/global": (t1, lambda: Question(Norm.LINF, Norm.LINF), 1.0),
    "T1/l1/global": (t1, lambda: Question(Norm.L1, Norm.L1), 1.0),
    "T1/l2/global/weak": (t1, lambda: Question(Norm.L2, Norm.L2), 1.0),
    "T2/l2/global": (t2, lambda: Question(Norm.L2, Norm.L2), 1.0),
    "T2deep/l2/global": (t2_deep, lambda: Question(Norm.L2, Norm.L2), 1.0),
    "T2b/l2/global": (t2b, lambda: Question(Norm.L2, Norm.L2), 1.0),
    "T3/l2/global": (t3, lambda: Question(Norm.L2, Norm.L2), SQ5),
    "T3/linf/global": (t3, lambda: Question(Norm.LINF, Norm.LINF), 3.0),
    "T3/l1/global": (t3, lambda: Question(Norm.L1, Norm.L1), 2.0),
    "T3/linf/box": (t3, lambda: Question(Norm.LINF, Norm.LINF, Box(-1.0, 1.0)), 3.0),
    "T4/l2/global": (t4, lambda: Question(Norm.L2, Norm.L2), 1.0),
    "T4/l2/box/weak": (t4, lambda: Question(Norm.L2, Norm.L2, Box(-1.0, 1.0)), 2.0),
    "T4/l2/global/weak": (t4, lambda: Question(Norm.L2, Norm.L2), 2.0),
    "T5/l2/global": (t5, lambda: Question(Norm.L2, Norm.L2), 0.0),
    "T5/l2/global/weak": (t5, lambda: Question(Norm.L2, Norm.L2), 1.0),
    "T6/l2/box": (t6, lambda: Question(Norm.L2, Norm.L2, Box(0.0, 1.0)), 0.0),
    "T6/l2/global": (t6, lambda: Question(Norm.L2, Norm.L2), 1.0),
    "T6/l2/box/weak": (t6, lambda: Question(Norm.L2, Norm.L2, Box(0.0, 1.0)), 1.0),
    "T7(0)/l2/global": (t7, lambda: Question(Norm.L2, Norm.L2), 1.0),
    "T7(0)/linf/global": (t7, lambda: Question(Norm.LINF, Norm.LINF), 1.0),
    "T7(0)/l2/global/weak": (t7, lambda: Question(Norm.L2, Norm.L2), SQ2),
    "T7(0)/linf/global/weak": (t7, lambda: Question(Norm.LINF, Norm.LINF), 2.0),
    "T7(0.1)/l2/global": (lambda: t7(0.1), lambda: Question(Norm.L2, Norm.L2), SQ2),
    "T7(0.1)/linf/global": (lambda: t7(0.1), lambda: Question(Norm.LINF, Norm.LINF), 2.0),
    "T8/l2/global": (t8, lambda: Question(Norm.L2, Norm.L2), 1.0),
    "T9/l2/nominal/0.5": (t9, lambda: Question(Norm.L2, Norm.L2, Ball(T9_X0, 0.5, Norm.L2), nominal=True),
                          1.0),
    "T9/l2/nominal/2": (t9, lambda: Question(Norm.L2, Norm.L2, Ball(T9_X0, 2.0, Norm.L2), nominal=True), 1.0),
    "T9b/l2/nominal/2": (t9b, lambda: Question(Norm.L2, Norm.L2, Ball(T9B_X0, 2.0, Norm.L2), nominal=True),
                         0.5),
    "T9b/l2/local/2": (t9b, lambda: Question(Norm.L2, Norm.L2, Ball(T9B_X0, 2.0, Norm.L2)), 1.0),
    "T9c/l2/nominal/1": (t9c, lambda: Question(Norm.L2, Norm.L2, Ball(T9C_X0, 1.0, Norm.L2), nominal=True),
                         7.538264),
    "T9c/l2/global": (t9c, lambda: Question(Norm.L2, Norm.L2), 9.101114),
}

#: naive products of layer l2 norms stated in the table
NAIVE_L2 = {"T1": 2.0, "T2": 2.0, "T2deep": 4.0, "T2b": 4.0, "T3": 3 * SQ2, "T4": math.sqrt(10.0),
            "T7(0)": 3.0, "T8": 2.0}

#: tolerance of the stated values (7 significant digits for the T9c numbers)
TOL = {"T9c/l2/nominal/1": 1e-6, "T9c/l2/global": 1e-6}


def network(key: str) -> Network:
    return KNOWN[key][0]()


def question(key: str) -> Question:
    return KNOWN[key][1]()


def known(key: str) -> float:
    return KNOWN[key][2]


def tol(key: str) -> float:
    return TOL.get(key, 1e-9)


def exact_keys() -> list[str]:
    """Keys of pairwise (global / local) exact values (not weak, not nominal)."""
    return [k for k in KNOWN if not k.endswith("/weak") and "/nominal/" not in k]


def weak_keys() -> list[str]:
    return [k for k in KNOWN if k.endswith("/weak")]


def nominal_keys() -> list[str]:
    return [k for k in KNOWN if "/nominal/" in k]
