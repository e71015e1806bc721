"""Per-cell overhead of the grid runner (process start, imports, network build, record write) against
running the same cell in-process with run_method, measured in one process as a ratio.

    python benchmarks/bench_grid_overhead.py [--cells 8] [--method sampling] [--net random:8-16-1:seed=0]
        [--start subprocess|forkserver] [--jobs 1]

With ``--jobs 2`` it also reports the grid's wall time against the sum of its cell times.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", type=int, default=8)
    ap.add_argument("--method", default="sampling")
    ap.add_argument("--net", default="random:8-16-1:seed=0")
    ap.add_argument("--start", default="subprocess", choices=("subprocess", "forkserver"))
    ap.add_argument("--jobs", type=int, default=1)
    args = ap.parse_args()

    from lipopt import grid
    from lipopt.methods import RunOptions, run_method
    from lipopt.spec import make_question

    seeds = list(range(args.cells))
    spec = grid.parse_spec({"networks": [args.net], "methods": [args.method], "seeds": seeds,
                            "questions": [{"norm": "2"}],
                            "executor": {"jobs": args.jobs, "start": args.start}})
    run_method(args.method, grid.build_network(args.net), make_question(2), RunOptions(seed=0))  # warm
    direct = []
    for s in seeds:
        t0 = time.perf_counter()
        net = grid.build_network(args.net)
        run_method(args.method, net, make_question(2), RunOptions(seed=s))
        direct.append(time.perf_counter() - t0)
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        res = grid.run(spec, out, quiet=True)
        total = time.perf_counter() - t0
    cell = [r["cell_wall_s"] for r in res.records]
    d, c = statistics.median(direct), statistics.median(cell)
    print(f"{args.method} on {args.net}, {args.cells} cells, {args.jobs} job(s), start {args.start}")
    print(f"direct run_method (warm, in-process): median {d:.3f} s per cell")
    print(f"grid cell (own process):              median {c:.3f} s per cell; grid wall {total:.2f} s "
          f"= {total / args.cells:.3f} s per cell incl. record write and set-up")
    print(f"overhead per cell: {c - d:.3f} s (cell) / {total / args.cells - d:.3f} s (grid wall / cells); "
          f"ratio grid / direct {total / args.cells / d:.1f}x")
    if args.jobs > 1:
        print(f"grid wall {total:.2f} s vs sum of cell times {sum(cell):.2f} s: "
              f"{sum(cell) / total:.2f}x with {args.jobs} jobs")


if __name__ == "__main__":
    main()
