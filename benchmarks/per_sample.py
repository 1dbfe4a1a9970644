"""Per-sample adaptive solving against a shared step size and torchode: steps and time on a batch
of Van der Pol problems with spread stiffness.

    python benchmarks/per_sample.py [--batch B] [--reps N] [--json out.json]

The problem: x'' = mu (1 - x^2) x' - x, y0 = (2, 0), on [0, 6], mu = linspace(0.2, 8, B) (carried
in the state with mu' = 0, so that a compacted batch keeps each row's mu), dopri5 at
rtol = atol = 1e-6, float64, forward solves under ``torch.no_grad()``. Runners:
``masked`` ``solve(..., per_sample=True)``, ``compact`` the same with ``options={"compact": True}``,
``shared`` one step size for the batch (``solve`` without per_sample), ``torchode`` its own
per-sample solver (``to.Dopri5`` with ``to.IntegralController``, ``to.AutoDiffAdjoint``). Steps:
accepted steps per sample (mean and max; shared: the same for all). Times are interleaved rounds
in one process (the order reversed every other round), once with ``torch.set_num_threads(1)`` and
once with the default thread count; ``ratio`` is median(runner) / median(torchode).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch
import torchode as to

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contdepth as cd  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from run import interleave, machine  # noqa: E402

DT = torch.float64
RTOL = ATOL = 1e-6
T1 = 6.0


def vdp(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Van der Pol with mu = y[:, 2] constant."""
    x, v, mu = y[:, 0], y[:, 1], y[:, 2]
    return torch.stack([v, mu * (1 - x ** 2) * v - x, torch.zeros_like(mu)], 1)


def initial(batch: int) -> torch.Tensor:
    mu = torch.linspace(0.2, 8.0, batch, dtype=DT)
    return torch.stack([torch.full_like(mu, 2.0), torch.zeros_like(mu), mu], 1)


def runners(y0: torch.Tensor) -> dict[str, Callable[[], tuple[torch.Tensor, torch.Tensor]]]:
    """Zero-argument callables returning (accepted steps per sample, final states)."""
    kw = dict(method="dopri5", t0=0.0, t1=T1, rtol=RTOL, atol=ATOL)
    B = y0.shape[0]

    def per_sample(compact: bool) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        def run():
            with torch.no_grad():
                sol = cd.solve(vdp, y0, per_sample=True, options={"compact": compact}, **kw)
            return sol.stats.forward.accepted_steps, sol.ys[-1]
        return run

    def shared():
        with torch.no_grad():
            sol = cd.solve(vdp, y0, **kw)
        return torch.full((B,), sol.stats.forward.accepted_steps), sol.ys[-1]

    term = to.ODETerm(vdp)
    solver = to.AutoDiffAdjoint(to.Dopri5(term=term), to.IntegralController(atol=ATOL, rtol=RTOL, term=term))
    problem = to.InitialValueProblem(y0=y0, t_eval=torch.tensor([0.0, T1], dtype=DT).expand(B, 2))

    def torchode():
        with torch.no_grad():
            sol = solver.solve(problem)
        return sol.stats["n_accepted"], sol.ys[:, -1]

    return {"masked": per_sample(False), "compact": per_sample(True), "shared": shared, "torchode": torchode}


def measure(run: dict[str, Callable], reps: int, threads: int | None) -> dict:
    """Median seconds per runner and the ratios to torchode, under ``threads`` (None: default)."""
    default = torch.get_num_threads()
    torch.set_num_threads(threads or default)
    try:
        times = interleave(run, reps)
    finally:
        torch.set_num_threads(default)
    med = {n: statistics.median(v) for n, v in times.items()}
    paired = {n: statistics.median(a / b for a, b in zip(times[n], times["torchode"])) for n in run}
    return {"threads": threads or default, "median_s": med,
            "ratio_to_torchode": {n: med[n] / med["torchode"] for n in run}, "paired_ratio_to_torchode": paired,
            "ratio_to_shared": {n: med[n] / med["shared"] for n in run}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256, help="number of Van der Pol problems")
    parser.add_argument("--reps", type=int, default=7, help="timed rounds per thread setting")
    parser.add_argument("--json", help="write the results to this file (atomically)")
    args = parser.parse_args()
    y0 = initial(args.batch)
    run = runners(y0)
    steps, finals = {}, {}
    for name, r in run.items():
        accepted, final = r()
        steps[name] = {"mean": float(accepted.double().mean()), "max": int(accepted.max()),
                       "min": int(accepted.min())}
        finals[name] = final
        print(f"{name:9s} accepted steps per sample: mean {steps[name]['mean']:6.1f}  min {steps[name]['min']:4d}  "
              f"max {steps[name]['max']:4d}", flush=True)
    agree = {n: float((finals[n] - finals["masked"]).abs().max()) for n in run}
    timing = [measure(run, args.reps, threads) for threads in (1, None)]
    for m in timing:
        print(f"{m['threads']} thread(s): " + "  ".join(
            f"{n} {1e3 * m['median_s'][n]:.1f} ms ({m['ratio_to_torchode'][n]:.2f}x torchode)" for n in run),
            flush=True)
    result = {"machine": machine(), "batch": args.batch, "reps": args.reps, "rtol": RTOL, "atol": ATOL,
              "t1": T1, "torchode": getattr(to, "__version__", None), "accepted_steps": steps,
              "max_abs_difference_to_masked": agree, "timing": timing}
    if args.json:
        write_json_atomic(args.json, result)


if __name__ == "__main__":
    main()
