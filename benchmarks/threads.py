"""One torch thread against two on this machine, per case, in one process.

    python benchmarks/threads.py [--reps N] [--only SUBSTRING] [--json out.json]

The training steps of ``fused.py`` (the benchmark fields with each gradient method, and one step
of each MNIST model at the example's batch), each timed in interleaved rounds under
``torch.set_num_threads(1)`` and ``torch.set_num_threads(2)``. ``ratio`` = median(2 threads) /
median(1 thread): below 1, the second core pays. Run it on an otherwise idle machine: the
two-thread runs need both cores.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from contdepth.io import write_json_atomic  # noqa: E402
from fused import GRADIENTS, step_cases  # noqa: E402
from run import case_parser, interleave, machine  # noqa: E402

MNIST_CASES = [("pde1", 128), ("pde2", 128), ("resnet", 128), ("cubic", 64), ("odenet", 32)]


def with_threads(n: int, run: Callable[[], None]) -> Callable[[], None]:
    """``run`` under ``torch.set_num_threads(n)``."""
    def timed() -> None:
        torch.set_num_threads(n)
        run()
    return timed


def main() -> None:
    args = case_parser(__doc__).parse_args()
    rows = []
    for label, make in step_cases(GRADIENTS, MNIST_CASES).items():
        if args.only not in label:
            continue
        run = make()
        times = interleave({"1": with_threads(1, run), "2": with_threads(2, run)}, args.reps)
        one, two = statistics.median(times["1"]), statistics.median(times["2"])
        rows.append({"case": label, "one_thread_s": one, "two_threads_s": two, "ratio": two / one,
                     "times_one_s": times["1"], "times_two_s": times["2"]})
        print(f"{label:40s} 1 thread {one * 1e3:8.1f} ms  2 threads {two * 1e3:8.1f} ms  ratio {two / one:.2f}",
              flush=True)
    torch.set_num_threads(1)
    if args.json:
        write_json_atomic(args.json, {"machine": machine(), "reps": args.reps, "cases": rows})


if __name__ == "__main__":
    main()
