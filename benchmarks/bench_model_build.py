"""Issue 9 target: the model build of a 784-256-256-10 MILP (l-inf, first logit, over [0, 1]^784), timed
against a baseline built the way the first release did (one ``ConstraintList.add`` per neuron with a Pyomo
sum expression), in the same process, on the same bounds. One command:

    python benchmarks/bench_model_build.py [--widths 784,256,256,10] [--repeat 2]

The baseline builds the forward and backward rows only (pre-activation definitions, ReLU big-M rows,
gradient definitions and switches), the part whose construction changed; lipopt's build does all of
that plus the objective. The ratio baseline / lipopt is the speed-up (the target: >= 3).

lipopt's build pauses the cyclic garbage collector (part of its speed-up); a second line times the
baseline with the collector paused too, so the gain of the bulk row construction alone is visible.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def baseline_build(fb, c: np.ndarray) -> float:
    """First-release style: Pyomo expressions summed term by term, one ConstraintList row at a time."""
    import pyomo.environ as pyo

    from lipopt.bounds.interval import backward_interval
    from lipopt.network.stages import AffineStage, is_activation

    t0 = time.perf_counter()
    m = pyo.ConcreteModel()
    m.cons = pyo.ConstraintList()
    stages = fb.stages
    n0 = fb.input_lo.size
    m.x = pyo.Var(range(n0), bounds=lambda _m, i: (float(fb.input_lo[i]), float(fb.input_hi[i])))
    cur = [m.x[i] for i in range(n0)]
    binaries = {}
    for s, st in enumerate(stages[:-1]):
        if isinstance(st, AffineStage):
            w = st.dense()
            lo, hi = fb.stage_bounds[s]
            z = pyo.Var(range(w.shape[0]), bounds=lambda _m, i, lo=lo, hi=hi: (float(lo[i]), float(hi[i])))
            m.add_component(f"z{s}", z)
            for i in range(w.shape[0]):
                terms = sum(float(w[i, j]) * cur[j] for j in np.nonzero(w[i])[0])
                m.cons.add(z[i] == terms + float(st.bias[i]))
            cur = [z[i] for i in range(w.shape[0])]
        elif is_activation(st):
            lo, hi = fb.pre_activation(s)
            h = pyo.Var(range(st.size), bounds=lambda _m, i, hi=hi: (0.0, max(float(hi[i]), 0.0)))
            a = pyo.Var(range(st.size), within=pyo.Binary)
            m.add_component(f"h{s}", h)
            m.add_component(f"a{s}", a)
            binaries[s] = a
            for i in range(st.size):
                m.cons.add(h[i] >= cur[i])
                m.cons.add(h[i] <= float(hi[i]) * a[i])
                m.cons.add(h[i] <= cur[i] - float(lo[i]) * (1 - a[i]))
            cur = [h[i] for i in range(st.size)]
    bb = backward_interval(fb, c, c)
    g = [float(v) for v in c]
    for s in range(len(stages) - 1, -1, -1):
        st = stages[s]
        if isinstance(st, AffineStage):
            wt = st.dense().T
            glo, ghi = bb.grad_out[s - 1] if s > 0 else bb.grad_input
            y = pyo.Var(range(wt.shape[0]), bounds=lambda _m, i, a=glo, b=ghi: (float(a[i]), float(b[i])))
            m.add_component(f"y{s}", y)
            for i in range(wt.shape[0]):
                m.cons.add(y[i] == sum(float(wt[i, j]) * g[j] for j in np.nonzero(wt[i])[0]))
            g = [y[i] for i in range(wt.shape[0])]
        elif is_activation(st):
            ylo, yhi = bb.grad_out[s]
            hat = pyo.Var(range(st.size))
            m.add_component(f"yh{s}", hat)
            a = binaries[s]
            for i in range(st.size):
                lb, mb = min(float(ylo[i]), 0.0), max(float(yhi[i]), 0.0)
                m.cons.add(hat[i] <= g[i] - lb * (1 - a[i]))
                m.cons.add(hat[i] >= g[i] - mb * (1 - a[i]))
                m.cons.add(hat[i] >= lb * a[i])
                m.cons.add(hat[i] <= mb * a[i])
            g = [hat[i] for i in range(st.size)]
    return time.perf_counter() - t0


def lipopt_build(fb, q) -> float:
    from lipopt.formulations.milp import build_milp, output_pieces

    t0 = time.perf_counter()
    build_milp(fb, q.input_norm, output_pieces(q, fb.stages[-1].shape[0])[0])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--widths", default="784,256,256,10")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    import pyomo.environ  # noqa: F401  (imported before the clocks start)

    from lipopt.bounds import compute_bounds
    from lipopt.network.network import Network
    from lipopt.spec import make_question

    widths = [int(w) for w in args.widths.split(",")]
    rng = np.random.default_rng(0)
    ws = [rng.standard_normal((widths[k + 1], widths[k])) / np.sqrt(widths[k])
          for k in range(len(widths) - 1)]
    net = Network.from_weights(ws, [rng.standard_normal(w.shape[0]) * 0.1 for w in ws])
    q = make_question("inf", domain="box:0,1", output="logit:0").bind(net)
    fb = compute_bounds(net, np.zeros(net.input_size), np.ones(net.input_size), method="interval")
    c = q.output_vector(net.output_size)
    from pyomo.common.gc_manager import PauseGC

    base, base_nogc, ours = [], [], []
    for _ in range(args.repeat):
        base.append(baseline_build(fb, c))
        with PauseGC():
            base_nogc.append(baseline_build(fb, c))
        ours.append(lipopt_build(fb, q))
    b, bn, o = min(base), min(base_nogc), min(ours)
    print(f"net {args.widths}: baseline (ConstraintList, per-term sums) {b:.2f} s, lipopt {o:.2f} s, "
          f"speed-up {b / o:.2f}x (best of {args.repeat})")
    print(f"  like for like (baseline with the garbage collector paused too): {bn:.2f} s, "
          f"speed-up {bn / o:.2f}x")


if __name__ == "__main__":
    main()
