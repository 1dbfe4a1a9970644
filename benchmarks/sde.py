"""contdepth's SDE solves against torchsde 0.2.6's: time per solve and per training step, each
library with its own Brownian motion (what a user of either gets), same method, steps and batch.

    python benchmarks/sde.py [--quick] [--reps N] [--json out.json]

Cases: Ornstein-Uhlenbeck dX = -X dt + 0.5 dW (additive) and geometric Brownian motion
dX = 0.5 X dt + 0.8 X dW (diagonal), Euler-Maruyama/Milstein (Ito) and Heun (Stratonovich),
64 steps (a power of two: grid points are nodes of contdepth's dyadic path) and 100; a
stochastic ResNet training step (DenseResidual drift, width 8, additive noise 0.1, batch 64,
backprop). torchsde's path is ``BrownianInterval`` (its default for ``sdeint``). Also the cost
per increment of each Brownian path alone (benchmarks/brownian.py times those interleaved, at
both thread counts). Interleaved rounds in one process, single-threaded;
``ratio`` is median(ours) / median(torchsde).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torchsde

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contdepth as cd  # noqa: E402
from adaptive import interleaved  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from run import machine  # noqa: E402

DT = torch.float64
THEIRS = {"euler_maruyama": "euler", "milstein": "milstein", "heun": "heun"}


class SDE(torch.nn.Module):
    """torchsde's form of dX = f dt + g dW with diagonal noise; ``nfe`` counts drift evaluations."""

    noise_type = "diagonal"

    def __init__(self, f: Callable, g: Callable, sde_type: str) -> None:
        super().__init__()
        self.drift, self.diffusion, self.sde_type, self.nfe = f, g, sde_type, 0
        if isinstance(f, torch.nn.Module):
            self.field = f

    def f(self, t, y):
        self.nfe += 1
        return self.drift(t, y)

    def g(self, t, y):
        return self.diffusion(t, y)


def solve_runners(name: str, method: str, steps: int, batch: int) -> dict[str, Callable[[], int]]:
    """Solve (no gradient) on [0, 1]: both return their drift evaluations."""
    if name == "ou":
        f, g = (lambda t, y: -y), 0.5
        y0 = torch.full((batch, 1), 2.0, dtype=DT)
    else:
        f, g = (lambda t, y: 0.5 * y), (lambda t, y: 0.8 * y)
        y0 = torch.ones(batch, 1, dtype=DT)
    sde = SDE(f, (lambda t, y: torch.full_like(y, g)) if not callable(g) else g,
              "stratonovich" if method == "heun" else "ito")
    counted = SDE(f, g, sde.sde_type)
    ts = torch.tensor([0.0, 1.0], dtype=DT)

    def ours() -> int:
        counted.nfe = 0
        with torch.no_grad():
            cd.sdesolve(counted.f, y0, noise=g, method=method, steps=steps, t0=0.0, t1=1.0)
        return counted.nfe

    def theirs() -> int:
        sde.nfe = 0
        with torch.no_grad():
            torchsde.sdeint(sde, y0, ts, method=THEIRS[method], dt=1.0 / steps)
        return sde.nfe

    return {"ours": ours, "torchsde": theirs}


def training_runners(steps: int, batch: int) -> dict[str, Callable[[], int]]:
    """One training step of a stochastic ResNet (Euler-Maruyama, additive noise, backprop)."""
    torch.manual_seed(0)
    field = cd.fields.DenseResidual(8, cd.ControlGrid(0.0, 1.0, 8), activation="tanh")
    x = torch.randn(batch, 8)
    sde = SDE(field, lambda t, y: torch.full_like(y, 0.1), "ito")
    ts = torch.tensor([0.0, 1.0])

    def step(solve: Callable[[], torch.Tensor]) -> Callable[[], int]:
        def run() -> int:
            sde.nfe = 0
            field.zero_grad()
            solve().square().mean().backward()
            return sde.nfe
        return run

    return {"ours": step(lambda: cd.sdesolve(sde.f, x, noise=0.1, steps=steps, t0=0.0, t1=1.0).y1),
            "torchsde": step(lambda: torchsde.sdeint(sde, x, ts, method="euler", dt=1.0 / steps)[-1])}


def brownian_query_us(steps: int, shape: tuple[int, ...], rounds: int) -> dict:
    """Microseconds per increment along a uniform grid of ``steps``, fresh path each round: ours
    all at once (``increments``, what ``sdesolve`` does), torchsde's query by query."""
    grid = [i / steps for i in range(steps + 1)]

    def theirs(r: int) -> None:
        bm = torchsde.BrownianInterval(0.0, 1.0, size=shape, dtype=DT, entropy=r)
        for a, b in zip(grid, grid[1:]):
            bm(a, b)

    makers = {"ours": lambda r: cd.BrownianPath(0.0, 1.0, shape, seed=r, dtype=DT).increments(grid),
              "torchsde": theirs}
    out = {}
    for name, run in makers.items():
        start = time.perf_counter()
        for r in range(rounds):
            run(r)
        out[f"{name}_us"] = (time.perf_counter() - start) / (rounds * steps) * 1e6
    out["ratio"] = out["ours_us"] / out["torchsde_us"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, small batches (for CI)")
    parser.add_argument("--reps", type=int, default=None, help="timed rounds per case (default 15, quick 2)")
    parser.add_argument("--json", help="write the results to this file (atomically)")
    args = parser.parse_args()
    if args.reps is not None and args.reps < 1:
        parser.error(f"--reps must be >= 1, got {args.reps}")
    torch.set_num_threads(1)
    reps = args.reps or (2 if args.quick else 15)
    batch = 64 if args.quick else 1000
    rows = []
    cases = [("ou", "euler_maruyama"), ("ou", "heun"), ("gbm", "euler_maruyama"), ("gbm", "milstein"),
             ("gbm", "heun")]
    for name, method in cases:
        for steps in ((64,) if args.quick else (64, 100)):
            row = {"case": f"{name} solve", "method": method, "steps": steps, "batch": batch,
                   **interleaved(solve_runners(name, method, steps, batch), reps)}
            rows.append(row)
    for steps in ((16,) if args.quick else (32, 100)):
        rows.append({"case": "stochastic ResNet training step", "method": "euler_maruyama", "steps": steps,
                     "batch": 64, **interleaved(training_runners(steps, 64), reps)})
    for row in rows:
        print(f"{row['case']:32s} {row['method']:15s} steps {row['steps']:4d} nfe {row['nfe_ours']:4d} vs "
              f"{row['nfe_torchsde']:4d}  time ratio {row['ratio']:.2f} (paired {row['paired_ratio']:.2f})")
    queries = [{"steps": n, "shape": [64, 2], **brownian_query_us(n, (64, 2), 2 if args.quick else 20)}
               for n in ((64,) if args.quick else (64, 100, 256))]
    for q in queries:
        print(f"Brownian increment, {q['steps']} steps: {q['ours_us']:.1f} us vs {q['torchsde_us']:.1f} us "
              f"(ratio {q['ratio']:.2f})")
    result = {"machine": machine(), "quick": args.quick, "reps": reps, "torchsde": torchsde.__version__,
              "rows": rows, "brownian_queries": queries}
    if args.json:
        write_json_atomic(args.json, result)


if __name__ == "__main__":
    main()
