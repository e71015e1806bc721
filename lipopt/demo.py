"""The demo comparison printed by ``lipopt demo``: every applicable method on the bundled 2-8-8-1 net."""

from __future__ import annotations

import sys
from importlib import resources

import numpy as np

from lipopt.network.network import Network

DEMO_FILE = "demo_moons_2x8x8x1.npz"


def demo_network() -> Network:
    """The bundled 2-8-8-1 ReLU classifier of two half-moons (see benchmarks/make_demo_net.py)."""
    with resources.files("lipopt.data").joinpath(DEMO_FILE).open("rb") as fh:
        data = np.load(fh)
        ws = [data[f"W{k}"] for k in (1, 2, 3)]
        bs = [data[f"b{k}"] for k in (1, 2, 3)]
    return Network.from_weights(ws, bs, name="demo moons 2-8-8-1")


def run_demo(fmt: str = "text", time_limit: float | None = 60.0, quiet: bool = False) -> int:
    from lipopt.api import compare
    from lipopt.methods import RunOptions

    net = demo_network()
    opts = RunOptions(time_limit=time_limit, progress=not quiet)
    questions = [
        ("global l2 constant", dict(norm=2, domain="global")),
        ("local l-inf constant on [-1, 1]^2 (gradient l1 norm)", dict(norm="inf", domain="box:-1,1")),
        ("nominal-point l2 constant, ball of radius 0.25 around (0.5, 0.5)",
         dict(norm=2, domain="ball:0.25,2", center=[0.5, 0.5], nominal=True)),
    ]
    status = 0
    print(f"lipopt demo: {net.describe()}\n")
    for title, kw in questions:
        rs = compare(net, options=opts, title=title, **kw)
        print(rs.table(fmt))
        if not rs.consistency().passed:
            status = 3
        sys.stdout.flush()
    return status
