"""How far below the eager floor a fused fixed-grid path with a hand-written backward could go.

    python benchmarks/fused_prototype.py

A measurement aid for a design decision, not library code: for ``DenseResidual`` (tanh) it runs
Euler / classical RK4 forward under ``no_grad`` (keeping each stage's input and output), then the
exact discrete adjoint of the RK step by hand (g = kbar * (1 - k^2), Ybar = g W, Wbar += g^T Y,
bbar += sum g) -- no autograd graph at all. Timed interleaved against the hand-written autograd
loop of ``baselines.py`` (the eager floor); gradients compared with it (they agree to float32
rounding, not bit for bit: the sums run in another order).
"""
from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines import Case, hand, hand_loop, make_field, stage_cells  # noqa: E402
from contdepth.solvers import FIXED_STEP  # noqa: E402


def fused_train_step(case: Case, cells: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of mean(y(t1)^2) w.r.t. (weight, bias), forward and backward by hand."""
    f = case.field
    W, b = f.weight.detach(), f.bias.detach()
    h = (f.grid.t1 - f.grid.t0) / case.steps
    tableau = FIXED_STEP[case.method]
    s = tableau.stages
    tape = []
    with torch.no_grad():
        y = case.x
        for row in cells:
            ks, inputs = [], []
            for a_row, c in zip(tableau.a, row):
                yi = y
                for a, k in zip(a_row, ks):
                    if a:
                        yi = yi + (h * a) * k
                ks.append(torch.addmm(b[c], yi, W[c].t()).tanh_())
                inputs.append(yi)
            dy = None
            for coef, k in zip(tableau.b, ks):
                dy = (h * coef) * k if dy is None else dy + (h * coef) * k
            tape.append((inputs, ks))
            y = y + dy
        ybar = 2 * y / y.numel()
        gW, gb = torch.zeros_like(W), torch.zeros_like(b)
        for row, (inputs, ks) in zip(reversed(cells), reversed(tape)):
            stage_bar: list[torch.Tensor | None] = [None] * s
            new_ybar = ybar.clone()
            for i in reversed(range(s)):
                kbar = (h * tableau.b[i]) * ybar
                for later in range(i + 1, s):
                    a = tableau.a[later][i] if i < len(tableau.a[later]) else 0.0
                    if a:
                        kbar = kbar.add(stage_bar[later], alpha=h * a)
                g = torch.ops.aten.tanh_backward(kbar, ks[i])
                stage_bar[i] = g @ W[row[i]]
                gW[row[i]].addmm_(g.t(), inputs[i])
                gb[row[i]].add_(g.sum(0))
                new_ybar.add_(stage_bar[i])
            ybar = new_ybar
    return gW, gb


def main(rounds: int = 12) -> None:
    torch.set_num_threads(1)
    for batch in (5000, 64):
        for method in ("euler", "rk4"):
            field, x = make_field("dense", batch=batch)
            case = Case("fused", field, x, method, "backprop", steps=64)
            cells = stage_cells(case)
            field.zero_grad()
            hand_loop(case, cells).square().mean().backward()
            gW, gb = fused_train_step(case, cells)
            err = max(((g - p.grad).abs().max() / p.grad.abs().max()).item()
                      for g, p in ((gW, field.weight), (gb, field.bias)))
            runners = {"hand": hand(case), "fused": lambda: fused_train_step(case, cells)}
            times: dict[str, list[float]] = {k: [] for k in runners}
            for r in range(rounds):
                for name in (list(runners) if r % 2 else list(runners)[::-1]):
                    start = time.perf_counter()
                    runners[name]()
                    times[name].append(time.perf_counter() - start)
            med = {k: statistics.median(v[2:]) for k, v in times.items()}
            print(f"dense B={batch:<5d} {method:5s} hand {1e3 * med['hand']:7.1f} ms  fused {1e3 * med['fused']:7.1f} ms"
                  f"  fused/hand {med['fused'] / med['hand']:.3f}  max rel grad diff {err:.1e}")


if __name__ == "__main__":
    main()
