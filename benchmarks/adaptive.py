"""contdepth's native adaptive solvers against torchdiffeq's: evaluations, time per solve, time per
training step (backprop and adjoint), on torchdiffeq's own test problems and on contdepth fields.

    python benchmarks/adaptive.py [--quick] [--reps N] [--json out.json]

Same problem, method and tolerances for both, the same callable (the field wrapped in an
evaluation counter); a field's control knots are given to both as ``jump_t``.
Times are interleaved rounds in one process (the order alternates every round); ``ratio`` is
median(ours) / median(torchdiffeq), ``paired_ratio`` the median of the per-round ratios. Single
threaded (``torch.set_num_threads(1)``). The controller table counts evaluations with
contdepth's default integral controller (beta = 0) and Hairer's PI controller (beta = 0.04).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torchdiffeq as tdq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contdepth as cd  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from run import interleave, machine  # noqa: E402

DT = torch.float64
TDQ_METHODS = set(sys.modules["torchdiffeq._impl.odeint"].SOLVERS)


class Counted(torch.nn.Module):
    """Counts evaluations of ``f`` (forward and backward solves)."""

    def __init__(self, f: torch.nn.Module) -> None:
        super().__init__()
        self.f, self.nfe = f, 0

    def forward(self, t, y):
        self.nfe += 1
        return self.f(t, y)


class Linear(torch.nn.Module):
    """torchdiffeq tests/problems.py LinearODE (dim 10, seed 0)."""

    def __init__(self, dim: int = 10) -> None:
        super().__init__()
        torch.manual_seed(0)
        u = torch.randn(dim, dim, dtype=DT) * 0.1
        self.A = torch.nn.Parameter(2 * u - (u + u.T))

    def forward(self, t, y):
        return torch.mm(self.A, y.reshape(-1, 1)).reshape(-1)


class Sine(torch.nn.Module):
    """torchdiffeq tests/problems.py SineODE (with a parameter so that training steps have one)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor(2.0, dtype=DT))

    def forward(self, t, y):
        return 2 * y / t + t ** 4 * torch.sin(self.w * t) - t ** 2 + 4 * t ** 3


class Cubic(torch.nn.Module):
    """torchdiffeq tests/gradient_tests.py TestCompareAdjointGradient's y^3 A oscillator."""

    def __init__(self) -> None:
        super().__init__()
        self.A = torch.nn.Parameter(torch.tensor([[-0.1, 2.0], [-2.0, -0.1]], dtype=DT))

    def forward(self, t, y):
        return torch.mm(y ** 3, self.A)


def sine_exact(t: float) -> torch.Tensor:
    """SineODE's solution (torchdiffeq tests/problems.py) at t, as a 0-dim tensor."""
    c, s = math.cos(2 * t), math.sin(2 * t)
    return torch.tensor(-0.5 * t ** 4 * c + 0.5 * t ** 3 * s + 0.25 * t ** 2 * c - t ** 3 + 2 * t ** 4
                        + (math.pi - 0.25) * t ** 2, dtype=DT)


@dataclass
class Problem:
    name: str
    func: torch.nn.Module
    y0: torch.Tensor
    t: torch.Tensor
    jumps: list[float]


def problems(quick: bool) -> list[Problem]:
    out = [Problem("linear", Linear(), torch.ones(10, dtype=DT), torch.linspace(1, 8, 10, dtype=DT), []),
           Problem("sine", Sine(), sine_exact(1.0), torch.linspace(1, 8, 10, dtype=DT), []),
           Problem("cubic", Cubic(), torch.tensor([[2.0, 0.0]], dtype=DT), torch.linspace(0, 25, 10, dtype=DT), [])]
    torch.manual_seed(0)
    peaks = cd.fields.DenseResidual(8, cd.ControlGrid(0.0, 20.0, 16), activation="tanh")
    out.append(Problem("peaks B=256" if quick else "peaks B=5000", peaks, torch.randn(256 if quick else 5000, 8),
                       torch.tensor([0.0, 20.0]), peaks.grid.jumps()))
    conv = cd.fields.ConvResidual(16, cd.ControlGrid(0.0, 1.0, 16), activation="tanh")
    out.append(Problem("conv B=4" if quick else "conv B=32", conv, torch.randn(4 if quick else 32, 16, 28, 28),
                       torch.tensor([0.0, 1.0]), conv.grid.jumps()))
    return out


def runners(p: Problem, method: str, rtol: float, mode: str) -> dict[str, Callable[[], int]]:
    """Zero-argument callables returning the evaluations they did; ``mode`` solve/backprop/adjoint."""
    atol = rtol * 1e-2
    counted = Counted(p.func)
    options = {"jump_t": torch.tensor(p.jumps, dtype=p.t.dtype)} if p.jumps else {}
    params = tuple(p.func.parameters())

    def loss(ys):
        return ys.square().mean()

    def runner(odeint: Callable, odeint_adjoint: Callable) -> Callable[[], int]:
        def run() -> int:
            counted.nfe = 0
            for q in params:
                q.grad = None
            kwargs = dict(rtol=rtol, atol=atol, method=method, options=options)
            if mode == "solve":
                with torch.no_grad():
                    odeint(counted, p.y0, p.t, **kwargs)
            elif mode == "backprop":
                loss(odeint(counted, p.y0, p.t, **kwargs)).backward()
            else:
                loss(odeint_adjoint(counted, p.y0, p.t, adjoint_options=dict(options), adjoint_params=params,
                                    **kwargs)).backward()
            return counted.nfe
        return run

    return {"ours": runner(cd.odeint, cd.odeint_adjoint), "torchdiffeq": runner(tdq.odeint, tdq.odeint_adjoint)}


def interleaved(run: dict[str, Callable[[], int]], reps: int) -> dict:
    """Time ``run["ours"]`` against the other runner (the baseline) in alternating rounds: the work
    each does (its return value, evaluations), median times, their ratio and the paired ratio."""
    names = list(run)
    base = next(n for n in names if n != "ours")
    nfe = {n: run[n]() for n in names}  # the work each does
    times = interleave(run, reps)
    med = {n: statistics.median(v) for n, v in times.items()}
    paired = statistics.median(a / b for a, b in zip(times["ours"], times[base]))
    return {"nfe_ours": nfe["ours"], f"nfe_{base}": nfe[base],
            "nfe_ratio": nfe["ours"] / nfe[base], "ours_s": med["ours"],
            f"{base}_s": med[base], "ratio": med["ours"] / med[base], "paired_ratio": paired}


def controller_counts(quick: bool) -> list[dict]:
    rows = []
    for p in problems(quick)[:3]:
        for method in ("bosh3", "dopri5", "tsit5"):
            for rtol in ((1e-3, 1e-7) if quick else (1e-3, 1e-5, 1e-7, 1e-9)):
                row = {"problem": p.name, "method": method, "rtol": rtol}
                for beta in (0.0, 0.04):
                    sol = cd.solve(p.func, p.y0, t0=float(p.t[0]), t1=float(p.t[-1]), t_eval=p.t, method=method,
                                   rtol=rtol, atol=rtol * 1e-2, options={"beta": beta})
                    f = sol.stats.forward
                    row[f"beta={beta}"] = {"nfe": f.nfe, "accepted": f.accepted_steps, "rejected": f.rejected_steps}
                rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small batches, few repetitions (for CI)")
    parser.add_argument("--reps", type=int, default=None, help="timed rounds per case (default 15, quick 2)")
    parser.add_argument("--json", help="write the results to this file (atomically)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    reps = args.reps or (2 if args.quick else 15)
    rows = []
    for p in problems(args.quick):
        for method in ("dopri5", "bosh3", "tsit5"):
            if method not in TDQ_METHODS:
                continue
            for rtol in ((1e-3,) if args.quick or p.jumps else (1e-3, 1e-7)):
                for mode in ("solve", "backprop", "adjoint"):
                    row = {"problem": p.name, "method": method, "rtol": rtol, "mode": mode,
                           **interleaved(runners(p, method, rtol, mode), reps)}
                    rows.append(row)
                    print(f"{p.name:14s} {method:7s} rtol={rtol:<6g} {mode:8s} nfe {row['nfe_ours']:6d} vs "
                          f"{row['nfe_torchdiffeq']:6d}  time ratio {row['ratio']:.2f} (paired {row['paired_ratio']:.2f})",
                          flush=True)
    controllers = controller_counts(args.quick)
    total = {b: sum(r[f"beta={b}"]["nfe"] for r in controllers) for b in (0.0, 0.04)}
    print(f"controller nfe totals: integral (beta=0) {total[0.0]}, PI (beta=0.04) {total[0.04]}")
    result = {"machine": machine(), "quick": args.quick, "reps": reps, "torchdiffeq_methods": sorted(TDQ_METHODS),
              "cases": rows, "controllers": controllers, "controller_totals": {str(k): v for k, v in total.items()}}
    if args.json:
        write_json_atomic(args.json, result)


if __name__ == "__main__":
    main()
