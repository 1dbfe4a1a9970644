"""Check the seeds' physics identities numerically on a trained model and on a stencil block.

    python examples/physics.py [--quick] [--out DIR] [--seed S] [--threads N] [--no-progress]

1. Trains a small circles model (seed 002 sec. 5.1, model 1: R^2, cubic friction with learnable
   gamma, zero init, smoothness lambda = 1, SGD, softmax on the final state), then along its
   trajectories: the adjoint a(t) = dL/dx(t) (seed 002 eq. 11) against autograd, the Hamiltonian
   H = a.F (eq. 21) -- piecewise constant with the predicted jumps at the control knots, and
   exactly conserved (eq. 24-25) for a copy with time-independent theta -- and the divergence,
   log-density (eq. 28) and entropy (eq. 32) through depth.
2. The 1-D stencil block of seed 000 eq. 24: N residual steps vs the explicit sum over lattice
   paths (eq. 33/38), and the lattice propagator vs the Gaussian kernel (eq. 35) under refinement.

Writes DIR/metrics.json (atomically) and four PNG plots; see docs/THEORY.md for the numbers.

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 8 s; the full run about 4 min (loaded).
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
import time
from pathlib import Path

from _cli import cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared options, parsed before torch is imported (a bad one fails at once)."""
    return cli.example_parser(__doc__, default_out="runs/physics",
                              quick_help="fewer points, layers and iterations (CI)").parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import contdepth as cd  # noqa: E402
from contdepth import physics as ph  # noqa: E402
from contdepth.data import circles  # noqa: E402
from contdepth.lift import ZeroAugment  # noqa: E402
from contdepth.plot import legend_outside, plain_log_ticks, save  # noqa: E402
from contdepth.train import evaluate, fit  # noqa: E402

F64 = torch.float64


# ---------------------------------------------------------------- 1. a trained circles model
LIFT = ZeroAugment(3)  # seed 002 sec. 5.1 model 2: the 2-D points embedded in R^3 with x_3(0) = 0


def circles_loss(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of sigmoid(x_3(T)) (seed 002 sec. 5.1 model 2)."""
    return F.binary_cross_entropy_with_logits(z[:, 2], y.to(z.dtype))


def circles_correct(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Points classified correctly by the sign of x_3(T)."""
    return ((z[:, 2] > 0).long() == y).sum()


def train_circles(*, points: int, layers: int, iters: int, seed: int,
                  progress: bool = False) -> tuple[cd.fields.CubicFriction, dict]:
    """Seed 002 sec. 5.1 model 2: R^3, gamma = 0.1 fixed, zero init, Euler one step per knot,
    ``iters`` full-batch steps of ``contdepth.train.fit``.

    Adam (lr 0.03) instead of the seed's SGD, and T = 4: ours, to get a trained model in seconds.
    """
    data = circles(points, seed=seed)
    field = cd.fields.CubicFriction(3, cd.ControlGrid(t0=0.0, t1=4.0, n=layers), gamma=0.1, learn_gamma=False)
    model = nn.Sequential(LIFT, cd.ODEBlock(field, method="euler", steps=layers))
    fit(model, circles_loss, data, optimizer=torch.optim.Adam(field.parameters(), lr=0.03), epochs=iters,
        regularizer=lambda: 0.1 * cd.smoothness(field), correct_fn=circles_correct, seed=seed, shuffle=False,
        progress=progress)  # seed 002 eq. 82's smoothness penalty
    with torch.no_grad():
        loss = circles_loss(model(data[0]), data[1]).item()
    info = {"model": "seed 002 sec. 5.1 model 2 (R^3, gamma=0.1, Adam lr 0.03, T=4)", "points": points,
            "layers": layers, "iterations": iters, "train_loss": loss,
            "train_accuracy": evaluate(model, data, correct_fn=circles_correct)}
    return field.double(), info


def hamiltonian_study(field, x, y, *, per_cell: int, out: Path) -> dict:
    """H(t) along trajectories of the trained field and of a time-independent copy."""
    n = field.grid.n
    steps = per_cell * n

    def loss_fn(z):
        return circles_loss(z, y)

    traj = ph.adjoint_trajectory(field, x, loss_fn, steps=steps)
    autograd = ph.autograd_adjoints(field, x, loss_fn, steps=steps, refine=8)
    adjoint_err = ((traj.adjoints - autograd).abs().max() / autograd.abs().max()).item()
    h = ph.hamiltonian_along(field, traj)
    scale = h.abs().max(0).values.clamp_min(1e-300)
    within = max(((h[c * per_cell:(c + 1) * per_cell] - h[c * per_cell]).abs() / scale).max().item()
                 for c in range(n))
    jump_err, jump_size = 0.0, 0.0
    for knot in field.grid.jumps():
        j = round((knot - field.grid.t0) / (traj.ts[1] - traj.ts[0]).item())
        predicted = ph.hamiltonian_jump(field, traj.xs[j], traj.adjoints[j], knot)
        jump_err = max(jump_err, ((h[j] - h[j - 1] - predicted).abs() / scale).max().item())
        jump_size = max(jump_size, (predicted.abs() / scale).max().item())
    total_change = ((h[-1] - h[0]).abs() / scale).max().item()

    frozen = field.refine_control(1)  # same class; every knot set to the middle knot's theta
    with torch.no_grad():
        for name in frozen.control_names:
            p = getattr(frozen, name)
            p.copy_(p[n // 2].expand_as(p))
    ftraj = ph.adjoint_trajectory(frozen, x, loss_fn, steps=steps)
    fh = ph.hamiltonian_along(frozen, ftraj)
    conserved = ((fh - fh[0]).abs() / fh.abs().max(0).values.clamp_min(1e-300)).max().item()

    show = slice(0, 6)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for b in range(h.shape[1])[show]:
        axes[0].plot(traj.ts, h[:, b] / scale[b], lw=1)
        axes[1].plot(ftraj.ts, fh[:, b] / fh[:, b].abs().max(), lw=1)
    for knot in field.grid.jumps():
        axes[0].axvline(knot, color="0.85", lw=0.5, zorder=0)
    axes[0].set(title=f"trained field: H piecewise constant, jumps at knots\n"
                      f"within-cell drift {within:.1e}, jump error {jump_err:.1e}",
                xlabel="t", ylabel="H(t) / max|H|, one line per input (6 shown)")
    axes[1].set(title=f"time-independent theta: H conserved (eq. 24-25)\nmax relative change {conserved:.1e}",
                xlabel="t", ylabel="H(t) / max|H|")
    fig.tight_layout()
    save(fig, out / "hamiltonian.png", dpi=120)
    return {"steps": steps, "method": "rk4", "autograd_refine": 8, "adjoint_vs_autograd_rel_error": adjoint_err,
            "H_within_cell_rel_drift": within, "H_jump_rel_error": jump_err,
            "H_largest_jump_rel": jump_size, "H_total_rel_change_trained": total_change,
            "H_rel_change_time_independent": conserved}


def density_study(field, x, *, per_cell: int, out: Path, seed: int) -> dict:
    """Divergence, log-density (eq. 28) and entropy (eq. 32) through depth."""
    steps = per_cell * field.grid.n
    traj = ph.log_density_trajectory(field, x, steps=steps)
    gen = torch.Generator().manual_seed(seed)
    hutch = ph.log_density_trajectory(field, x, steps=steps, divergence="hutchinson", samples=64, generator=gen)
    divs = torch.stack([ph.divergence_exact(field, z, t) for t, z in zip(traj.ts.tolist(), traj.xs)])
    rates = divs.mean(1)  # ph.entropy_rate at each t: the batch estimate of eq. 32
    dt = (traj.ts[1] - traj.ts[0]).item()
    integrated = torch.cat([rates.new_zeros(1), torch.cumsum((rates[1:] + rates[:-1]) * dt / 2, 0)])
    # Simpson per control cell, with the cell's own theta at both ends (the rate jumps at the knots)
    simpson = 0.0
    for c in range(field.grid.n):
        idx = range(c * per_cell, (c + 1) * per_cell + 1)
        r = torch.stack([ph.entropy_rate(field, traj.xs[j], traj.ts[j].item(), cell=c) for j in idx])
        simpson += dt / 3 * (r[0] + r[-1] + 4 * r[1:-1:2].sum() + 2 * r[2:-1:2].sum()).item()
    checks = []
    for b in range(min(8, x.shape[0])):
        jac = torch.autograd.functional.jacobian(
            lambda z: cd.odesolve(field, z[None], method="rk4", steps=steps)[0], x[b])
        checks.append(abs(traj.delta_logp[-1, b].item() + torch.linalg.slogdet(jac).logabsdet.item()))
    t_mid = 0.5 * (field.grid.t0 + field.grid.t1)
    z_mid = traj.xs[steps // 2]
    probes = 256
    single = torch.stack([ph.divergence_hutchinson(field, z_mid, t_mid, generator=gen) for _ in range(32)])
    div_hutch = ph.divergence_hutchinson(field, z_mid, t_mid, samples=probes, generator=gen)
    div_exact = ph.divergence_exact(field, z_mid, t_mid)
    zscore = ((div_hutch - div_exact).abs() / (single.std(0) / math.sqrt(probes)).clamp_min(1e-12)).max()

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(traj.ts, rates, label="entropy rate E[tr dF/dx] (eq. 32)")
    axes[0].plot(traj.ts, divs.min(1).values, "--", lw=0.8, label="min over the batch")
    axes[0].plot(traj.ts, divs.max(1).values, "--", lw=0.8, label="max over the batch")
    axes[0].set(xlabel="t", ylabel="divergence tr dF/dx", title="divergence through depth")
    legend_outside(axes[0], below=True)
    axes[1].plot(traj.ts, traj.entropy_change, label="-E[delta log P] (eq. 28, exact trace)")
    axes[1].plot(traj.ts, hutch.entropy_change, "--", label="same, Hutchinson (64 probes)")
    axes[1].plot(traj.ts, integrated, ":", label="trapezoid of entropy rate")
    axes[1].set(xlabel="t", ylabel="H(t) - H(0)", title="entropy change H(t) - H(0)")
    legend_outside(axes[1], below=True)
    fig.tight_layout()
    save(fig, out / "divergence_entropy.png", dpi=120)
    return {"steps": steps, "entropy_change_total": traj.entropy_change[-1].item(),
            "entropy_rate_min": rates.min().item(), "entropy_rate_max": rates.max().item(),
            "entropy_change_vs_trapezoid_rate_abs": (traj.entropy_change - integrated).abs().max().item(),
            "entropy_change_vs_simpson_rate_abs_at_T": abs(traj.entropy_change[-1].item() - simpson),
            "entropy_change_hutchinson_abs_diff": (traj.entropy_change - hutch.entropy_change).abs().max().item(),
            "logp_plus_logdet_jacobian_max_abs": max(checks),
            "divergence_hutchinson256_vs_exact_max_abs": (div_hutch - div_exact).abs().max().item(),
            "divergence_hutchinson256_max_zscore": zscore.item()}


# ---------------------------------------------------------------- 2. the stencil block
def path_study(out: Path, *, seed: int) -> dict:
    alpha, beta, gamma = 0.9, 0.3, -0.1
    size, steps = 15, 8
    kernel = ph.stencil_kernel(alpha, beta, gamma, dtype=F64)  # eq. 24
    psi0 = torch.zeros(size, dtype=F64)
    psi0[size // 2] = 1.0
    psi0[size // 2 + 3] = -0.5
    direct = ph.residual_propagate(psi0, kernel, steps)[-1]
    paths = ph.path_sum(psi0, kernel, steps)
    matrices = ph.propagator(kernel, size, steps) @ psi0
    gen = torch.Generator().manual_seed(seed)
    layers = torch.randn(steps, 3, generator=gen, dtype=F64)
    layered = (ph.path_sum(psi0, layers, steps) - ph.residual_propagate(psi0, layers, steps)[-1]).abs().max()

    fig, ax = plt.subplots(figsize=(6, 4))
    sites = torch.arange(size) - size // 2
    ax.plot(sites, direct, "o-", label=f"{steps} residual blocks (eq. 25)")
    ax.plot(sites, paths, "x", ms=9, label=f"sum over 3^{steps} lattice paths (eq. 33/38)")
    ax.set(xlabel="lattice site x", ylabel="psi_N(x)",
           title=f"alpha={alpha}, beta={beta}, gamma={gamma}: max diff {(paths - direct).abs().max():.1e}")
    legend_outside(ax, below=True)
    fig.tight_layout()
    save(fig, out / "path_sum.png", dpi=120)
    return {"alpha": alpha, "beta": beta, "gamma": gamma, "sites": size, "steps": steps, "paths": 3**steps,
            "path_sum_vs_direct_max_abs": (paths - direct).abs().max().item(),
            "transfer_matrix_vs_direct_max_abs": (matrices - direct).abs().max().item(),
            "per_layer_random_kernels_max_abs": layered.item()}


def continuum_study(out: Path, *, quick: bool) -> dict:
    alpha, beta, gamma, t = 1.0, 0.5, 0.3, 1.0
    dxs = [0.4, 0.2, 0.1] if quick else [0.4, 0.2, 0.1, 0.05]
    errs = ph.continuum_errors(alpha=alpha, beta=beta, gamma=gamma, t=t, dxs=dxs)
    orders = [math.log2(a.max_rel_error / b.max_rel_error) for a, b in zip(errs, errs[1:])]
    x, coarse, n_coarse = ph.lattice_kernel(alpha=alpha, beta=beta, gamma=gamma, t=t, dx=dxs[0])
    fine_x, fine, _ = ph.lattice_kernel(alpha=alpha, beta=beta, gamma=gamma, t=t, dx=dxs[-1])
    exact = ph.gaussian_kernel(fine_x, t=t, alpha=alpha, beta=beta, gamma=gamma)
    wrong = ph.gaussian_kernel(fine_x, t=t, alpha=alpha, beta=-beta, gamma=gamma)
    wrong_err = ((fine - wrong).abs().max() / wrong.max()).item()

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(fine_x, exact, "k", lw=2, label="Gaussian kernel, drift -beta (eq. 35)")
    axes[0].plot(x, coarse, "o", ms=3, label=f"lattice dx={dxs[0]} ({n_coarse} blocks)")
    axes[0].plot(fine_x, fine, "--", label=f"lattice dx={dxs[-1]}")
    axes[0].plot(fine_x, wrong, ":", label="wrong sign: drift +beta")
    axes[0].set(xlim=(-4, 4), xlabel="x", ylabel="propagator",
                title=f"alpha={alpha}, beta={beta}, gamma={gamma}, t={t}")
    legend_outside(axes[0], below=True)
    axes[1].loglog([e.dx for e in errs], [e.max_rel_error for e in errs], "o-", label="max |lattice - K| / max K")
    axes[1].loglog([e.dx for e in errs], [e.mass_rel_error for e in errs], "s-", label="mass vs exp(gamma t)")
    axes[1].loglog(dxs, [errs[0].max_rel_error * (d / dxs[0]) ** 2 for d in dxs], "k:", label="slope 2")
    axes[1].set(xlabel="dx (dt = dx^2 / (4 alpha^2))", ylabel="relative error", title="error under refinement")
    plain_log_ticks(axes[1].xaxis, dxs)
    plain_log_ticks(axes[1].yaxis)
    legend_outside(axes[1], below=True)
    fig.tight_layout()
    save(fig, out / "propagator.png", dpi=120)
    return {"alpha": alpha, "beta": beta, "gamma": gamma, "t": t, "courant": 0.25,
            "refinement": [{"dx": e.dx, "blocks": e.steps, "max_rel_error": e.max_rel_error,
                            "mass_rel_error": e.mass_rel_error} for e in errs],
            "observed_orders": orders, "wrong_drift_sign_max_rel_error": wrong_err}


def main(args: argparse.Namespace) -> None:
    out = cli.start(args)
    t_start = time.time()
    points, layers, iters, per_cell = (200, 10, 160, 16) if args.quick else (400, 20, 300, 32)
    field, training = train_circles(points=points, layers=layers, iters=iters, seed=args.seed,
                                    progress=not args.no_progress)
    x, y = circles(points, seed=args.seed)
    x = LIFT(x).double()
    metrics = {
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "quick": args.quick,
        "circles_model": training,
        "hamiltonian": hamiltonian_study(field, x[:64], y[:64], per_cell=per_cell, out=out),
        "density": density_study(field, x, per_cell=per_cell, out=out, seed=args.seed),
        "path_integral": path_study(out, seed=args.seed),
        "continuum_limit": continuum_study(out, quick=args.quick),
    }
    metrics["seconds"] = time.time() - t_start
    h, d, p, c = (metrics[k] for k in ("hamiltonian", "density", "path_integral", "continuum_limit"))
    print(cli.finish(out, metrics, [
        f"circles model: train accuracy {training['train_accuracy']:.3f}, loss {training['train_loss']:.4f}",
        f"adjoint vs autograd: rel. error {h['adjoint_vs_autograd_rel_error']:.1e}; H jump vs prediction "
        f"{h['H_jump_rel_error']:.1e}; H change with time-independent theta {h['H_rel_change_time_independent']:.1e}",
        f"entropy change {d['entropy_change_total']:.4f}; log p + log|det J| max {d['logp_plus_logdet_jacobian_max_abs']:.1e}",
        f"path sum vs residual blocks: max diff {p['path_sum_vs_direct_max_abs']:.1e}",
        f"lattice propagator vs Gaussian: observed orders {', '.join(f'{o:.2f}' for o in c['observed_orders'])}",
        f"done in {metrics['seconds']:.1f} s"]))


if __name__ == "__main__":
    main(ARGS)
