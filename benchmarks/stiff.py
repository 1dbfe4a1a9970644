"""Stiff problems: contdepth's implicit methods against scipy's Radau and BDF.

    python benchmarks/stiff.py [--quick] [--reps N] [--cases NAME ...] [--gradients NAME ...]
                               [--json docs/performance/stiff.json]

Cases: Robertson's kinetics (k = 0.04, 1e4, 3e7) to t = 40 and to t = 1e5; Van der Pol with
mu = 1000 to t = 1500; the gradient d y3(10)/d k1 of Robertson by backprop, checkpoint and adjoint
against a central difference (``--gradients`` picks some of the three; the adjoint marches (a, g)
backward with y(t) interpolated from the forward steps, see its backward step counts); a small
stiff neural ODE (dy/dt = W y, W = Q diag(-lambda) Q^T + a trainable perturbation, lambda spread over 1 .. 1e4: one backprop training step, and 20 steps trained to a teacher, kvaerno5 against
dopri5). Reported per solve: evaluations of f, Jacobians, linear solves, accepted/rejected steps,
the largest relative error against scipy Radau at rtol 1e-11, and time against scipy's Radau and
BDF at the same rtol/atol (interleaved rounds in one process, the order alternating; ``ratio`` =
median(ours) / median(theirs)), with torch at 1 thread and at its default thread count. torchdiffeq
0.2.5 (the installed version) has no implicit methods, so it has no row here. All in float64.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from scipy.integrate import solve_ivp

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contdepth as cd  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from run import interleave, machine  # noqa: E402

DT = torch.float64
K = (0.04, 1e4, 3e7)


class Robertson(torch.nn.Module):
    """y1' = -k1 y1 + k2 y2 y3, y2' = k1 y1 - k2 y2 y3 - k3 y2^2, y3' = k3 y2^2."""

    def __init__(self, k=K) -> None:
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(k, dtype=DT))

    def forward(self, t, y):
        k1, k2, k3 = self.k
        a, b, c = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack([-k1 * a + k2 * b * c, k1 * a - k2 * b * c - k3 * b * b, k3 * b * b], -1)


def robertson_np(t, y, k=K):
    k1, k2, k3 = k
    return [-k1 * y[0] + k2 * y[1] * y[2], k1 * y[0] - k2 * y[1] * y[2] - k3 * y[1] ** 2, k3 * y[1] ** 2]


def vdp(mu: float) -> Callable:
    """Van der Pol, y1' = y2, y2' = mu (1 - y1^2) y2 - y1."""
    return lambda t, y: torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]])


def vdp_np(mu: float) -> Callable:
    return lambda t, y: [y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]]


def solve_case(name: str, func, func_np, y0: list[float], t1: float, method: str, rtol: float, atol: float,
               reps: int) -> dict:
    """One stiff solve: our counts and error, and times against scipy Radau and BDF."""
    ref = solve_ivp(func_np, (0, t1), y0, method="Radau", rtol=1e-11, atol=1e-14).y[:, -1]
    y0_t = torch.tensor(y0, dtype=DT)
    out = {}

    def ours():
        with torch.no_grad():
            out["sol"] = cd.solve(func, y0_t, t0=0.0, t1=t1, method=method, rtol=rtol, atol=atol)

    runs = {"ours": ours,
            "scipy_radau": lambda: solve_ivp(func_np, (0, t1), y0, method="Radau", rtol=rtol, atol=atol),
            "scipy_bdf": lambda: solve_ivp(func_np, (0, t1), y0, method="BDF", rtol=rtol, atol=atol)}
    row = {"case": name, "method": method, "rtol": rtol, "atol": atol}
    for threads in (1, None):
        torch.set_num_threads(1 if threads else DEFAULT_THREADS)
        times = interleave(runs, reps)
        med = {k: statistics.median(v) for k, v in times.items()}
        key = "threads=1" if threads else f"threads={DEFAULT_THREADS}"
        row[key] = {"ours_s": med["ours"], "radau_s": med["scipy_radau"], "bdf_s": med["scipy_bdf"],
                    "ratio_radau": med["ours"] / med["scipy_radau"], "ratio_bdf": med["ours"] / med["scipy_bdf"]}
    counts = out["sol"].stats.forward
    y1 = out["sol"].y1.numpy()
    scale = np.maximum(np.abs(ref), atol / rtol)
    row.update(nfe=counts.nfe, jacobians=counts.jacobians, linear_solves=counts.linear_solves,
               accepted=counts.accepted_steps, rejected=counts.rejected_steps,
               max_rel_error_vs_radau=float(np.max(np.abs(y1 - ref) / scale)))
    for solver in ("Radau", "BDF"):
        sol = solve_ivp(func_np, (0, t1), y0, method=solver, rtol=rtol, atol=atol)
        row[f"scipy_{solver.lower()}_nfe"], row[f"scipy_{solver.lower()}_njev"] = int(sol.nfev), int(sol.njev)
        row[f"scipy_{solver.lower()}_steps"] = int(len(sol.t) - 1)
    return row


def gradient_case(gradients: tuple[str, ...] = ("backprop", "checkpoint", "adjoint")) -> dict:
    """d y3(10)/d k1 by the gradient methods (kvaerno5, rtol 1e-8) against a central difference."""
    kw = dict(t0=0.0, t1=10.0, method="kvaerno5", rtol=1e-8, atol=1e-12)
    y0 = torch.tensor([1.0, 0.0, 0.0], dtype=DT)

    def y3(k1):
        with torch.no_grad():
            return float(cd.solve(Robertson((k1, K[1], K[2])), y0, **kw).y1[2])

    eps = 1e-6
    fd = (y3(K[0] + eps) - y3(K[0] - eps)) / (2 * eps)
    row = {"case": "robertson_dy3_dk1", "central_difference": fd}
    for gradient in gradients:
        model = Robertson()
        start = time.perf_counter()
        try:
            sol = cd.solve(model, y0, gradient=gradient, **kw)
            sol.y1[2].backward()
        except cd.errors.SolverError as err:
            row[gradient] = {"error": str(err)[:300]}
            continue
        g = float(model.k.grad[0])
        row[gradient] = {"value": g, "rel_error": abs(g / fd - 1), "seconds": time.perf_counter() - start,
                         "forward": vars(sol.stats.forward).copy(), "backward": vars(sol.stats.backward).copy()}
    return row


def _stiff_linear(n: int, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, y0, P): W = Q diag(-lambda) Q^T with lambda log-spaced over [1, 1e4], a batch of y0, and the
    seeded perturbation P (entries ~1e-2), all from one seeded generator."""
    gen = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=DT))
    base = q @ torch.diag(-torch.logspace(0, 4, n, dtype=DT)) @ q.T
    y0 = torch.randn(batch, n, generator=gen, dtype=DT)
    return base, y0, 1e-2 * torch.randn(n, n, generator=gen, dtype=DT)


class _Perturbed(torch.nn.Module):
    """dy/dt = (W + P) y, P trainable from ``p``."""

    def __init__(self, base: torch.Tensor, p: torch.Tensor) -> None:
        super().__init__()
        self.base, self.p = base, torch.nn.Parameter(p.clone())

    def forward(self, t, y):
        return y @ (self.base + self.p).T


def neural_case(reps: int, n: int = 8, batch: int = 16) -> dict:
    """One backprop training step of dy/dt = W y, W = Q diag(-lambda) Q^T + P (P trainable, small),
    lambda log-spaced over [1, 1e4], to t = 1: kvaerno5 against dopri5 (evaluations, steps, time)."""
    base, y0, p = _stiff_linear(n, batch)
    field = _Perturbed(base, p)
    row = {"case": f"stiff_linear_node_n{n}_batch{batch}", "eigenvalues": "-logspace(0, 4)"}
    stats = {}

    def step(method):
        def run():
            field.zero_grad()
            sol = cd.solve(field, y0, t0=0.0, t1=1.0, method=method, rtol=1e-6, atol=1e-8)
            sol.y1.square().mean().backward()
            stats[method] = (sol.stats.forward, float(field.p.grad.norm()))
        return run

    runs = {"ours": step("kvaerno5"), "dopri5": step("dopri5")}
    torch.set_num_threads(1)
    times = interleave(runs, reps)
    for method in ("kvaerno5", "dopri5"):
        counts, grad_norm = stats[method]
        row[method] = {"nfe": counts.nfe, "jacobians": counts.jacobians, "linear_solves": counts.linear_solves,
                       "accepted": counts.accepted_steps, "rejected": counts.rejected_steps, "grad_norm": grad_norm}
    row["kvaerno5_s"] = statistics.median(times["ours"])
    row["dopri5_s"] = statistics.median(times["dopri5"])
    row["ratio_kvaerno5_over_dopri5"] = row["kvaerno5_s"] / row["dopri5_s"]
    torch.set_num_threads(DEFAULT_THREADS)
    return row


def neural_train_case(steps: int = 20, n: int = 8, batch: int = 16) -> dict:
    """Training the stiff linear field of :func:`neural_case` to a teacher: the student's P starts at 0, the
    teacher's P* is the seeded perturbation (entries ~1e-2); loss = mean square of y(1) - y*(1) over a batch, Adam
    (lr 2e-3) for ``steps`` steps, once with kvaerno5 and once with dopri5 (rtol 1e-6, atol 1e-8), their steps
    interleaved. Reported: the loss curves, the distance |P - P*| at the end, the time per training step."""
    base, y0, p_star = _stiff_linear(n, batch)
    with torch.no_grad():
        target = cd.solve(_Perturbed(base, p_star), y0, t0=0.0, t1=1.0, method="kvaerno5", rtol=1e-10,
                          atol=1e-12).y1
    fields = {m: _Perturbed(base, torch.zeros_like(p_star)) for m in ("kvaerno5", "dopri5")}
    optimizers = {m: torch.optim.Adam(f.parameters(), lr=2e-3) for m, f in fields.items()}
    losses: dict[str, list[float]] = {m: [] for m in fields}
    seconds: dict[str, list[float]] = {m: [] for m in fields}
    torch.set_num_threads(1)
    for _ in range(steps):
        for method, field in fields.items():
            start = time.perf_counter()
            optimizers[method].zero_grad()
            loss = (cd.solve(field, y0, t0=0.0, t1=1.0, method=method, rtol=1e-6, atol=1e-8).y1 - target).square().mean()
            loss.backward()
            optimizers[method].step()
            seconds[method].append(time.perf_counter() - start)
            losses[method].append(float(loss))
    torch.set_num_threads(DEFAULT_THREADS)
    row = {"case": f"stiff_linear_node_training_n{n}_batch{batch}_steps{steps}", "lr": 2e-3}
    for method, field in fields.items():
        row[method] = {"loss": losses[method], "p_error": float((field.p - p_star).norm() / p_star.norm()),
                       "step_s": statistics.median(seconds[method])}
    row["ratio_kvaerno5_over_dopri5"] = row["kvaerno5"]["step_s"] / row["dopri5"]["step_s"]
    return row


DEFAULT_THREADS = torch.get_num_threads()
GRADIENTS = ("backprop", "checkpoint", "adjoint")
CASES = {
    "robertson_t40": lambda reps: solve_case("robertson_t40", Robertson(), robertson_np, [1.0, 0.0, 0.0], 40.0,
                                             "kvaerno5", 1e-7, 1e-10, reps),
    "robertson_t40_kvaerno3": lambda reps: solve_case("robertson_t40", Robertson(), robertson_np, [1.0, 0.0, 0.0],
                                                      40.0, "kvaerno3", 1e-7, 1e-10, reps),
    "robertson_t1e5": lambda reps: solve_case("robertson_t1e5", Robertson(), robertson_np, [1.0, 0.0, 0.0], 1e5,
                                              "kvaerno5", 1e-7, 1e-10, reps),
    "vdp_mu1000": lambda reps: solve_case("vdp_mu1000_t1500", vdp(1000.0), vdp_np(1000.0), [2.0, 0.0], 1500.0,
                                          "kvaerno5", 1e-6, 1e-9, 1),
    "gradient": lambda reps, gradients: gradient_case(gradients),
    "neural": lambda reps: neural_case(reps),
    "neural_train": lambda reps: neural_train_case(),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Robertson to 40 and the gradient only, 1 round")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cases", nargs="*", default=list(CASES), choices=list(CASES))
    parser.add_argument("--gradients", nargs="*", default=list(GRADIENTS), choices=list(GRADIENTS),
                        help="the gradient methods of the gradient case")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    reps = 1 if args.quick else args.reps
    cases = ["robertson_t40", "gradient"] if args.quick else args.cases
    rows = []
    for case in cases:
        rows.append(CASES[case](reps, tuple(args.gradients)) if case == "gradient" else CASES[case](reps))
        print(rows[-1], flush=True)
    if args.json is not None:
        write_json_atomic(args.json, {"machine": machine(), "command": " ".join(["python"] + sys.argv),
                                      "note": "2-core x86_64 VM, loaded by other jobs; ratios from interleaved rounds",
                                      "rows": rows})


if __name__ == "__main__":
    main()
