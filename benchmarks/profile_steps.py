"""Where one training step's time goes, per case: ``torch.profiler`` on a few steps.

    python benchmarks/profile_steps.py [--steps N] [--only SUBSTRING] [--json out.json]

The backprop training steps of ``fused.py`` (the benchmark fields) and one step of each MNIST
model, each warmed up once and then profiled for ``--steps`` steps (CPU activities). Per case:
the wall time per step under the profiler, the five ATen operators with the most self time
(share of the wall time), and ``outside_aten``: the share of the wall time in no ATen operator --
Python (the engine's bookkeeping, the hand-written backward's glue), autograd's own work and the
profiler's overhead, which is per operator call and so inflates small states' operator shares.
Single-threaded.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from contdepth.io import write_json_atomic  # noqa: E402
from fused import step_cases  # noqa: E402
from run import case_parser, machine  # noqa: E402
from threads import MNIST_CASES  # noqa: E402


def profile_case(run, steps: int) -> dict:
    """Wall seconds per step, the top ATen operators' self-time shares, and the share outside them."""
    run()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            run()
        wall = time.perf_counter() - start
    events = [e for e in prof.key_averages() if e.key.startswith("aten::") and e.self_cpu_time_total > 0]
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    total_us = 1e6 * wall
    return {"wall_per_step_s": wall / steps,
            "top": [{"op": e.key, "share": e.self_cpu_time_total / total_us} for e in events[:5]],
            "outside_aten": max(0.0, 1.0 - sum(e.self_cpu_time_total for e in events) / total_us)}


def main() -> None:
    parser = case_parser(__doc__, reps=None)
    parser.add_argument("--steps", type=int, default=3, help="profiled training steps per case")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    for label, make in step_cases(("backprop",), MNIST_CASES).items():
        if args.only not in label:
            continue
        row = {"case": label, **profile_case(make(), args.steps)}
        rows.append(row)
        top = ", ".join(f"{t['op']} {100 * t['share']:.0f} %" for t in row["top"])
        print(f"{label:36s} {1e3 * row['wall_per_step_s']:8.1f} ms/step  outside ATen "
              f"{100 * row['outside_aten']:3.0f} %  | {top}", flush=True)
    if args.json:
        write_json_atomic(args.json, {"machine": machine(), "steps": args.steps, "cases": rows})


if __name__ == "__main__":
    main()
