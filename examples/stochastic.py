"""Stochastic ResNets (seed 003): dX = f(X, theta(t), t) dt + nu dW, trained and read through the
density of their hidden states.

* Classification: circles (400 + 400 points) and two spirals (1000 + 1000) lifted to R^4 with
  zeros, the drift ``DenseResidual(4, tanh)`` on 8 knots over [0, 4], 16 Euler-Maruyama steps
  (``cd.SDEBlock``: fresh noise every training call), logits = Linear(4, 2); nu in
  {0, 0.05, 0.1, 0.3}; Adam (lr 1e-2), batches of 100. Reported per nu: test accuracy with one
  noise sample, with the mean of 100 samples' probabilities, and with the noise off; the mean
  predictive entropy and the expected calibration error (10 bins) of the 100-sample mean.
* Density through depth: a 1-D stochastic ResNet on the circles' radius r = |x| (the drift
  ``CubicFriction(1)``: W(t) x + b(t) - 0.1 x^3, nu = 0.3, logits = Linear(1, 2)). Histograms
  of X(t) over 250 noise samples per training radius, simulated with 256 steps (the SDE) and with
  the network's 16, against the Fokker-Planck density (``cd.physics.fokker_planck_1d`` with the
  trained drift, from a kernel estimate of the radii's density) at t = 1, 2, 4; sample paths.

    python examples/stochastic.py [--quick] [--out DIR] [--seed S] [--threads N] [--no-progress]

writes DIR/metrics.json (atomically) and DIR/*.png; models are checkpointed in DIR/checkpoints/
(an interrupted run resumes; a finished one re-makes figures and metrics without training).

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 12 s; the full run 25 s.
"""
from __future__ import annotations

import argparse
import math
import time

from _cli import cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared options, parsed before torch is imported (a bad one fails at once)."""
    return cli.example_parser(__doc__, default_out="out/stochastic", quick_help="few epochs and noise samples (for CI)"
                              ).parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import contdepth as cd  # noqa: E402
import contdepth.plot as cplot  # noqa: E402
from contdepth.analysis import expected_calibration_error, mc_probabilities, predictive_entropy  # noqa: E402
from contdepth.data import circles, spirals  # noqa: E402
from contdepth.lift import ZeroAugment  # noqa: E402
from contdepth.physics import fokker_planck_1d  # noqa: E402
from contdepth.train import fit  # noqa: E402

T, KNOTS, STEPS, DIM = 4.0, 8, 16, 4
NUS = (0.0, 0.05, 0.1, 0.3)
DENSITY_NU, DENSITY_TIMES, DENSITY_SAMPLES, FINE_STEPS = 0.3, (1.0, 2.0, 4.0), 250, 256
FULL = {"circles": {"n": 400, "epochs": 100}, "spirals": {"n": 1000, "epochs": 150}, "density_epochs": 100,
        "mc_samples": 100}
QUICK = {"circles": {"n": 400, "epochs": 15}, "spirals": {"n": 400, "epochs": 15}, "density_epochs": 15,
         "mc_samples": 20}


class StochasticNet(nn.Module):
    """x (B, d) lifted to R^dim with zeros -> X(T) of dX = f dt + nu dW -> Linear(dim, 2)."""

    def __init__(self, nu: float, field: cd.fields.ControlledField, dim: int) -> None:
        super().__init__()
        self.field, self.lift = field, ZeroAugment(dim)
        self.block = cd.SDEBlock(field, nu, steps=STEPS)
        self.head = nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.lift(x)))


def classifier(nu: float) -> StochasticNet:
    return StochasticNet(nu, cd.fields.DenseResidual(DIM, cd.ControlGrid(0.0, T, n=KNOTS), activation="tanh"), DIM)


def radius_model() -> StochasticNet:
    field = cd.fields.CubicFriction(1, cd.ControlGrid(0.0, T, n=KNOTS), gamma=0.1, learn_gamma=False)
    return StochasticNet(DENSITY_NU, field, 1)


def train(model: StochasticNet, data, epochs: int, name: str, out, args) -> float:
    history = fit(model, F.cross_entropy, data, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
                  epochs=epochs, batch_size=100, progress=not args.no_progress, seed=args.seed,
                  checkpoint=out / "checkpoints" / f"{'quick' if args.quick else 'full'}-{name}-seed{args.seed}.pt",
                  checkpoint_every=max(1, epochs // 10))
    return history["wall_s"]


def uncertainty(model: StochasticNet, X: torch.Tensor, y: torch.Tensor, samples: int) -> dict:
    """Accuracy with one noise sample, with the mean of ``samples``, with the noise off; entropy, ECE."""
    model.eval()
    block = model.block
    torch.manual_seed(1)
    probs = mc_probabilities(model, X, samples)
    mean = probs.mean(0)
    block.eval_noise = "off"
    with torch.no_grad():
        off = model(X).argmax(1)
    block.eval_noise = "sample"
    accuracy = lambda p: (p.argmax(1) == y).double().mean().item()
    return {"acc_one_sample": accuracy(probs[0]), "acc_mc_mean": accuracy(mean),
            "acc_noise_off": (off == y).double().mean().item(),
            "mean_entropy": predictive_entropy(mean).mean().item(),
            "ece": expected_calibration_error(mean, y)}


def _histogram(values: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    width = (edges[1] - edges[0]).item()
    return torch.histc(values, len(edges) - 1, edges[0].item(), edges[-1].item()) / (len(values) * width)


def density_study(model: StochasticNet, radii: torch.Tensor) -> dict:
    """Histograms of X(t) (DENSITY_SAMPLES noise samples per radius) against the Fokker-Planck
    density of the trained drift: paths of the continuous process (FINE_STEPS Euler-Maruyama
    steps) and of the network itself (its STEPS steps)."""
    x0 = radii.repeat(DENSITY_SAMPLES).unsqueeze(1)
    times = (0.0,) + DENSITY_TIMES
    with torch.no_grad():
        paths = {steps: cd.sdesolve(model.field, x0, noise=DENSITY_NU, steps=steps, t_eval=times, seed=2).ys[1:, :, 0]
                 for steps in (FINE_STEPS, STEPS)}
    lo, hi = min(p.min().item() for p in paths.values()) - 1.0, max(p.max().item() for p in paths.values()) + 1.0
    x = torch.linspace(lo, hi, int((hi - lo) / 0.01) + 1, dtype=torch.float64)
    bandwidth = 0.02  # kernel estimate of the radii's density (the paths start at the radii themselves)
    r = radii.double()
    p0 = torch.exp(-(x[:, None] - r[None, :]) ** 2 / (2 * bandwidth ** 2)).mean(1) / math.sqrt(
        2 * math.pi * bandwidth ** 2)
    field = model.field
    drift = lambda t, z: field(t.float(), z.float().unsqueeze(1)).squeeze(1).double()
    with torch.no_grad():
        start = time.perf_counter()
        p = fokker_planck_1d(drift, DENSITY_NU, x, p0, T, t_eval=DENSITY_TIMES)
        fp_wall = time.perf_counter() - start
    dx = (x[1] - x[0]).item()
    per_bin = 6  # histogram bins of 6 finite-volume cells: the density's bin means are exact cell sums
    bins = len(x) // per_bin
    edges = x[0] - dx / 2 + dx * per_bin * torch.arange(bins + 1, dtype=torch.float64)
    rows = []
    for i, t in enumerate(DENSITY_TIMES):
        p_bins = p[i][:bins * per_bin].reshape(bins, per_bin).mean(1)
        width = dx * per_bin
        l1 = {steps: (_histogram(paths[steps][i].double(), edges) - p_bins).abs().sum().item() * width
              for steps in paths}
        rows.append({"t": t, f"l1_fokker_planck_vs_{FINE_STEPS}_steps": l1[FINE_STEPS],
                     f"l1_fokker_planck_vs_network_{STEPS}_steps": l1[STEPS], "mass": p[i].sum().item() * dx,
                     "mean_paths": paths[FINE_STEPS][i].mean().item(), "mean_fokker_planck": (x * p[i]).sum().item() * dx})
    return {"rows": rows, "fp_cells": len(x), "fp_wall_s": fp_wall, "x": x, "p": p, "paths": paths, "edges": edges}


def plot_accuracy(metrics: dict, out) -> None:
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"wspace": 0.32})
    for name, style in (("circles", "o-"), ("spirals", "s--")):
        rows = metrics[name]
        for key, label, color in (("acc_one_sample", "one noise sample", "C0"),
                                  ("acc_mc_mean", f"mean of {metrics['config']['mc_samples']} samples", "C1"),
                                  ("acc_noise_off", "noise off", "C2")):
            axes[0].plot(NUS, [rows[str(nu)][key] for nu in NUS], style, color=color, label=f"{name}: {label}")
        axes[1].plot(NUS, [rows[str(nu)]["mean_entropy"] for nu in NUS], style, label=name)
        axes[2].plot(NUS, [rows[str(nu)]["ece"] for nu in NUS], style, label=name)
    for ax, ylabel in zip(axes, ("test accuracy", "mean predictive entropy (nats)", "expected calibration error")):
        ax.set_xlabel("noise strength nu")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(0.0, -0.2), ncol=2)
    axes[1].legend(fontsize=8)
    axes[2].legend(fontsize=8)
    fig.suptitle("Stochastic ResNets: accuracy and uncertainty against the noise strength")
    cplot.save(fig, out / "accuracy_uncertainty.png")


def plot_density(study: dict, out) -> None:
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(DENSITY_TIMES), figsize=(4 * len(DENSITY_TIMES), 3.4), sharey=True)
    edges = study["edges"].numpy()
    for i, (ax, row) in enumerate(zip(axes, study["rows"])):
        ax.hist(study["paths"][FINE_STEPS][i].numpy(), bins=edges, density=True, color="0.75",
                label=f"X(t), {FINE_STEPS} steps (the SDE)")
        ax.hist(study["paths"][STEPS][i].numpy(), bins=edges, density=True, histtype="step", color="C0",
                label=f"X(t), {STEPS} steps (the network)")
        ax.plot(study["x"].numpy(), study["p"][i].numpy(), "C3", lw=1.5, label="Fokker-Planck density")
        ax.set_title(f"t = {row['t']:g}: L1 = {row[f'l1_fokker_planck_vs_{FINE_STEPS}_steps']:.3f} / "
                     f"{row[f'l1_fokker_planck_vs_network_{STEPS}_steps']:.3f}", fontsize=9)
        ax.set_xlabel("hidden state X(t)")
    axes[0].set_ylabel("density")
    axes[-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(f"1-D stochastic ResNet on the circles' radius (nu = {DENSITY_NU}): density through depth")
    cplot.save(fig, out / "density.png")


def plot_paths(model: StochasticNet, radii: torch.Tensor, labels: torch.Tensor, out) -> None:
    import matplotlib.pyplot as plt
    ts = cd.solvers.FixedGrid.uniform(0.0, T, STEPS).times
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for cls, color in ((0, "C0"), (1, "C3")):
        r = radii[labels == cls][:1].repeat(20).unsqueeze(1)
        with torch.no_grad():
            noisy = cd.sdesolve(model.field, r, noise=DENSITY_NU, steps=STEPS, t_eval=ts, seed=3 + cls).ys[..., 0]
            clean = cd.odesolve(model.field, r[:1], method="euler", steps=STEPS, t_eval=ts)[..., 0]
        ax.plot(ts, noisy.numpy(), color=color, lw=0.6, alpha=0.5)
        ax.plot(ts, clean.numpy(), color=color, lw=2.5, label=f"class {cls} (r = {r[0, 0]:.2f}): noise off")
    ax.set_xlabel("depth t")
    ax.set_ylabel("hidden state X(t)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title(f"20 sample paths per input, nu = {DENSITY_NU}")
    cplot.save(fig, out / "paths.png")


def main(args: argparse.Namespace) -> None:
    out, quick = cli.start(args), args.quick
    config = QUICK if quick else FULL
    metrics: dict = {"quick": quick, "seed": args.seed, "config": config, "nus": NUS, "T": T, "steps": STEPS,
                     "knots": KNOTS}
    datasets = {"circles": circles, "spirals": spirals}
    for name, make in datasets.items():
        n = config[name]["n"]
        train_data, test_data = make(n, seed=0), make(n, seed=1)
        metrics[name] = {}
        for nu in NUS:
            torch.manual_seed(args.seed)
            model = classifier(nu)
            wall = train(model, train_data, config[name]["epochs"], f"{name}-nu{nu}", out, args)
            metrics[name][str(nu)] = {"train_wall_s": wall, **uncertainty(model, *test_data, config["mc_samples"])}
    X, y = circles(400, seed=0)
    radii = X.norm(dim=1)
    torch.manual_seed(args.seed)
    model = radius_model()
    wall = train(model, (radii.unsqueeze(1), y), config["density_epochs"], "radius", out, args)
    model.eval()
    study = density_study(model, radii)
    Xt, yt = circles(400, seed=1)
    metrics["radius_model"] = {"train_wall_s": wall, **uncertainty(model, Xt.norm(dim=1, keepdim=True), yt,
                                                                    config["mc_samples"]),
                               "density": study["rows"], "fp_cells": study["fp_cells"], "fp_wall_s": study["fp_wall_s"]}
    plot_accuracy(metrics, out)
    plot_density(study, out)
    plot_paths(model, radii, y, out)
    summary = [f"{name:8s} nu={nu:<5g} one sample {metrics[name][str(nu)]['acc_one_sample']:.3f}  mean of "
               f"{config['mc_samples']} {metrics[name][str(nu)]['acc_mc_mean']:.3f}  noise off "
               f"{metrics[name][str(nu)]['acc_noise_off']:.3f}  entropy {metrics[name][str(nu)]['mean_entropy']:.3f}  "
               f"ECE {metrics[name][str(nu)]['ece']:.3f}" for name in datasets for nu in NUS]
    summary += [f"radius model t={row['t']:g}: L1(Fokker-Planck, histogram) {row[f'l1_fokker_planck_vs_{FINE_STEPS}_steps']:.3f} "
                f"({FINE_STEPS} steps), {row[f'l1_fokker_planck_vs_network_{STEPS}_steps']:.3f} (the network's {STEPS}), "
                f"mass {row['mass']:.6f}" for row in study["rows"]]
    print(cli.finish(out, metrics, summary))


if __name__ == "__main__":
    main(ARGS)
