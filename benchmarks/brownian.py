"""Brownian increments of a uniform grid: contdepth's ``BrownianPath.increments`` (one vectorised
call) against torchsde 0.2.6's ``BrownianInterval`` queried step by step, its default and with
``halfway_tree=True`` (tol 1e-6: its fixed-function-of-t mode), at 1 thread and torch's default.

    python benchmarks/brownian.py [--reps N] [--steps 64,100,1000] [--shapes 64x2,4] [--json out.json]
    python benchmarks/brownian.py --sin-probe

``--sin-probe`` times ``torch.sin`` of 2,048 float64 elements alone at 1 and 2 threads (median of
41 calls): on a machine whose cores are busy, a call that involves a second thread can stall.

Each round draws a fresh path of each kind (new seed) on [0, 1] and takes all increments of the
N-step grid; rounds interleave the three, the order reversed every other round. Reported: the
median time per increment of each, and ratios of medians (ours / theirs) with the paired ratio
(median of per-round ratios).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torchsde

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contdepth as cd  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from run import interleave, machine  # noqa: E402

DT = torch.float64


def runners(steps: int, shape: tuple[int, ...]) -> dict:
    """Three ways to get every increment of the grid k / steps on a fresh path."""
    grid = [k / steps for k in range(steps + 1)]
    seed = iter(range(10 ** 9))

    def ours() -> None:
        cd.BrownianPath(0.0, 1.0, shape, seed=next(seed), dtype=DT).increments(grid)

    def stepwise(**kw):
        def run() -> None:
            bm = torchsde.BrownianInterval(0.0, 1.0, size=shape, dtype=DT, entropy=next(seed), **kw)
            for a, b in zip(grid, grid[1:]):
                bm(a, b)
        return run

    return {"ours": ours, "torchsde": stepwise(), "torchsde_halfway": stepwise(halfway_tree=True, tol=1e-6)}


def case(steps: int, shape: tuple[int, ...], reps: int) -> dict:
    times = interleave(runners(steps, shape), reps)
    med = {name: statistics.median(v) for name, v in times.items()}
    row = {"steps": steps, "shape": list(shape), "threads": torch.get_num_threads(), "reps": reps}
    for name, m in med.items():
        row[f"{name}_us_per_increment"] = m / steps * 1e6
    for base in ("torchsde", "torchsde_halfway"):
        row[f"ratio_{base}"] = med["ours"] / med[base]
        row[f"paired_ratio_{base}"] = statistics.median(a / b for a, b in zip(times["ours"], times[base]))
    return row


def sin_probe() -> None:
    """Median microseconds of torch.sin on 2,048 float64 elements, at 1 and 2 threads."""
    x = torch.rand(2048, dtype=DT)
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times = []
        for _ in range(41):
            start = time.perf_counter()
            torch.sin(x)
            times.append(time.perf_counter() - start)
        print(f"threads {threads}: torch.sin of 2,048 float64 elements {statistics.median(times) * 1e6:.1f} us")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed rounds per case")
    parser.add_argument("--steps", default="64,100,1000", help="comma-separated step counts")
    parser.add_argument("--shapes", default="64x2", help="comma-separated shapes, dimensions joined by x")
    parser.add_argument("--json", help="write the results to this file (atomically)")
    parser.add_argument("--sin-probe", action="store_true", help="only time torch.sin at 1 and 2 threads")
    args = parser.parse_args()
    if args.sin_probe:
        sin_probe()
        return
    if args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    steps = [int(s) for s in args.steps.split(",")]
    shapes = [tuple(int(n) for n in s.split("x")) for s in args.shapes.split(",")]
    default_threads = torch.get_num_threads()
    rows = []
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        for shape in shapes:
            for n in steps:
                row = case(n, shape, args.reps)
                rows.append(row)
                print(f"threads {threads} shape {shape} steps {n:5d}: ours {row['ours_us_per_increment']:8.1f} us, "
                      f"torchsde {row['torchsde_us_per_increment']:8.1f} us (ratio {row['ratio_torchsde']:.3f}, "
                      f"paired {row['paired_ratio_torchsde']:.3f}), halfway_tree "
                      f"{row['torchsde_halfway_us_per_increment']:8.1f} us (ratio {row['ratio_torchsde_halfway']:.3f})",
                      flush=True)
    torch.set_num_threads(default_threads)
    result = {"machine": machine() | {"default_threads": default_threads}, "torchsde": torchsde.__version__,
              "command": "python " + " ".join(sys.argv), "rows": rows}
    if args.json:
        write_json_atomic(args.json, result)


if __name__ == "__main__":
    main()
