"""Train the small network bundled as lipopt/data/demo_moons_2x8x8x1.npz (run once; seeded).

Two interleaved half-moons in the plane, a 2-8-8-1 ReLU classifier (16 ReLUs: small enough for the
exact region enumeration, big enough to be interesting). Weights are stored (out, in) as W1..W3, b1..b3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def moons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = rng.uniform(0, np.pi, n)
    a = np.stack([np.cos(t), np.sin(t)], 1)
    b = np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1)
    x = np.concatenate([a, b]) + rng.normal(0, 0.1, (2 * n, 2))
    y = np.concatenate([np.zeros(n), np.ones(n)])
    return (x - x.mean(0)) / x.std(0), y


def main() -> None:
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    x, y = moons(200, rng)
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.ReLU(), torch.nn.Linear(8, 8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 1)).double()
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    xt, yt = torch.tensor(x), torch.tensor(y)
    for _ in range(1500):
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(xt)[:, 0], yt)
        loss.backward()
        opt.step()
    acc = float(((net(xt)[:, 0] > 0).double() == yt).double().mean())
    print(f"train accuracy {acc:.3f}")
    out = Path(__file__).resolve().parents[1] / "lipopt" / "data" / "demo_moons_2x8x8x1.npz"
    arrays = {}
    for k, i in enumerate((0, 2, 4), start=1):
        arrays[f"W{k}"] = net[i].weight.detach().numpy()
        arrays[f"b{k}"] = net[i].bias.detach().numpy()
    np.savez(out, **arrays)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
