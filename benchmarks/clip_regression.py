"""CLIP on the noisy 1-D regression toy: the learned functions at several fixed lambdas, in one figure.

    python benchmarks/clip_regression.py --lams 0,0.03,0.1,0.3 --out /tmp/clip_regression

The paper's Figure 2 (Bungert et al., SSVM 2021, section 4.1) trains a sigmoid 500-200-100 net on 100
noisy samples of a 1-D function with CLIP at fixed lambdas (no target accuracy). Here: the ReLU net of
``--hidden`` on :func:`lipopt.train.data.load_data` ``"regression"`` (g(x) = sin(pi x) + x / 2 on
[-1, 1], 100 samples, N(0, 0.1^2) noise; the paper's function did not survive in our copy of its text),
one CLIP run per lambda from the same seed (the same initial weights; the paper warm-starts each lambda
from the previous net instead, which we do not), lambda 0 being standard training.

For every learned function, its Lipschitz constant on [-1, 1] (the inputs' range), certified:

* ``lower``: the largest difference quotient between neighbouring points of a 2,001-point grid,
  re-evaluated in float64 with the rounding allowance (``certified_pair_ratio``): a LOWER bound;
* ``exact`` / ``upper``: :func:`lipopt.compare` on the question "l2, box [-1, 1]" with ``enumeration``
  (EXACT when it applies and completes: small nets such as 16-16; its interval-based pattern budget
  refuses 32-32) and ``naive`` (UPPER).

Writes ``DIR/regression.png`` and ``.pdf`` (x against f(x): the noisy samples, the ground truth and one
curve per lambda, labelled with its certified constant) and ``DIR/regression.json`` (per lambda: final
train / test mse, the bounds).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class RegressionRun:
    lams: tuple[float, ...] = (0.0, 0.03, 0.1, 0.3)
    hidden: tuple[int, ...] = (32, 32)
    epochs: int = 300
    batch_size: int = 20
    lr: float = 0.05
    pairs: int = 32
    seed: int = 0
    time_limit: float = 30.0


def ir_network(module: Any) -> Any:
    """The float64 IR of a dense ``nn.Sequential`` (its Linear layers)."""
    import torch

    from lipopt.network.network import Network

    lin = [m for m in module if isinstance(m, torch.nn.Linear)]
    return Network.from_weights([m.weight.detach().double().numpy() for m in lin],
                                [m.bias.detach().double().numpy() for m in lin])


def lipschitz_bounds(net: Any, seed: int = 0, time_limit: float = 30.0) -> dict[str, Any]:
    """Certified bounds of the 1-D net's constant on [-1, 1] (see the module docstring)."""
    from lipopt.api import compare
    from lipopt.certify.witness import certified_pair_ratio
    from lipopt.spec import Box, make_question

    q = make_question(2, domain=Box(np.array([-1.0]), np.array([1.0])))
    grid = np.linspace(-1.0, 1.0, 2001)
    f = np.array([net.forward(np.array([t]))[0] for t in grid])
    i = int(np.argmax(np.abs(np.diff(f)) / np.diff(grid)))
    lower = certified_pair_ratio(net, np.array([grid[i]]), np.array([grid[i + 1]]), q.bind(net))
    rs = compare(net, methods=["enumeration", "naive"], question=q, time_limit=time_limit, seed=seed)
    exact = rs["enumeration"]
    up = rs.best_upper
    lower = float(lower)
    return {"lower": lower, "exact": exact.value if exact.kind.value == "EXACT" else None, "upper": up,
            "best_lower": max(v for v in (lower, rs.best_lower) if v is not None),
            "consistent": bool(rs.consistency().passed and (up is None or lower <= up * (1 + 1e-9)))}


def train_curves(cfg: RegressionRun) -> tuple[Any, list[dict[str, Any]]]:
    """One CLIP run per lambda (0: standard); the data and, per lambda, the curve and its bounds."""
    from lipopt.train.clip import train
    from lipopt.train.data import load_data
    from lipopt.train.evaluate import mse
    from lipopt.train.options import TrainOptions

    data = load_data("regression", seed=cfg.seed)
    curves = []
    for lam in cfg.lams:
        opts = TrainOptions(hidden=cfg.hidden, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr,
                            seed=cfg.seed, threads=1, regulariser="clip" if lam > 0 else "none", lam=lam,
                            clip={"n_pairs": cfg.pairs})
        res = train(data, opts)
        net = ir_network(res.module)
        y = np.array([net.forward(x)[0] for x in data.x_test.astype(np.float64)])
        curves.append({"lam": lam, "y": y.tolist(), "train_mse": mse(res.module, data.x_train, data.y_train),
                       "test_mse": mse(res.module, data.x_test, data.y_test),
                       **lipschitz_bounds(net, cfg.seed, cfg.time_limit)})
    return data, curves


def _value(c: dict[str, Any]) -> str:
    if c["exact"] is not None:
        return f"L = {c['exact']:.3g}"
    return f"L in [{c['best_lower']:.3g}, {c['upper']:.3g}]"


def plot(data: Any, curves: list[dict[str, Any]], path: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xt = data.x_test[:, 0]
    ax.scatter(data.x_train[:, 0], data.y_train[:, 0], s=10, color="0.4", label="noisy training samples")
    ax.plot(xt, data.y_test[:, 0], "k--", lw=1, label="ground truth sin(pi x) + x/2")
    for c in curves:
        name = "standard (lambda = 0)" if c["lam"] == 0 else f"CLIP lambda = {c['lam']:g}"
        ax.plot(xt, c["y"], lw=1.5, label=f"{name}: {_value(c)}")
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.set_title("CLIP on the 1-D regression toy: learned functions and certified Lipschitz constants",
                 fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths = [path.with_suffix(".png"), path.with_suffix(".pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lams", type=lambda s: tuple(float(v) for v in s.split(",")),
                   default=RegressionRun.lams)
    p.add_argument("--hidden", type=lambda s: tuple(int(v) for v in s.split(",")),
                   default=RegressionRun.hidden)
    p.add_argument("--epochs", type=int, default=RegressionRun.epochs)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="clip_regression_out")
    args = p.parse_args(argv)
    cfg = RegressionRun(lams=args.lams, hidden=args.hidden, epochs=args.epochs, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, curves = train_curves(cfg)
    (out / "regression.json").write_text(json.dumps(
        {"config": cfg.__dict__, "data": data.describe(),
         "curves": [{k: v for k, v in c.items() if k != "y"} for c in curves]}, indent=1))
    for c in curves:
        print(f"lambda {c['lam']:g}: train mse {c['train_mse']:.4g}, test mse {c['test_mse']:.4g}, "
              f"{_value(c)} (grid LOWER {c['lower']:.4g}, UPPER {c['upper']:.4g})")
    for f in plot(data, curves, out / "regression"):
        print(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
