"""Two spirals (seed 003's toy): a Hamiltonian network with leapfrog, a ResNet (Euler) and a
linear two-step net (seed 002 eq. 111) of about equal parameter count.

* Hamiltonian (Chang et al. 2018): state (y, z) in R^4 x R^4, y(0) = (x, 0, 0), z(0) = 0;
  ``cd.fields.Hamiltonian(4, width=16)`` on [0, 4] with 8 knots, 32 leapfrog steps, gradients by
  ``gradient="reversible"``; logits = Linear(4, 2)(y(4)).
* ResNet: ``DenseResidual(8, tanh)`` with 17 knots on [0, 4], 17 Euler steps (one block per
  knot), x lifted to R^8 with zeros; logits = Linear(8, 2).
* LinearTwoStep: the same field and steps with ``cd.LinearTwoStep`` (trainable k per knot).

Adam (lr 1e-2), batches of 100, the same epochs for all; 1000 training and 1000 test points
(``cd.data.spirals``, noise 0.05, 1.5 turns). Reported: accuracies, parameters, wall time,
decision boundaries, H along the Hamiltonian net's trajectories (leapfrog vs Euler on the same
trained field), the learned k, and the saved-for-backward bytes of ``reversible`` vs
``backprop`` as the number of leapfrog steps grows.

    python examples/spirals.py [--quick] [--out DIR] [--seed S] [--threads N] [--no-progress]

writes DIR/metrics.json (atomically) and DIR/*.png; models are checkpointed in DIR/checkpoints/
(an interrupted run resumes; a finished one re-makes figures and metrics without training).

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 11 s; the full run 34 s.
"""
from __future__ import annotations

import argparse
import time

from _cli import cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared options, parsed before torch is imported (a bad one fails at once)."""
    return cli.example_parser(__doc__, default_out="out/spirals", quick_help="small data and few epochs (for CI)").parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import contdepth as cd  # noqa: E402
import contdepth.plot as cplot  # noqa: E402
from contdepth.analysis.memory import saved_tensor_bytes  # noqa: E402
from contdepth.data import spirals  # noqa: E402
from contdepth.lift import ZeroAugment  # noqa: E402
from contdepth.train import evaluate, fit  # noqa: E402

T = 4.0
FULL = {"n_train": 1000, "n_test": 1000, "epochs": 100}
QUICK = {"n_train": 400, "n_test": 400, "epochs": 40}
MEMORY_STEPS = (16, 64, 256)


class HamiltonianNet(nn.Module):
    def __init__(self, dim: int = 4, width: int = 16, knots: int = 8, steps: int = 32) -> None:
        super().__init__()
        self.dim, self.steps = dim, steps
        self.lift = ZeroAugment(dim)
        self.field = cd.fields.Hamiltonian(dim, cd.ControlGrid(0.0, T, n=knots), width=width)
        self.head = nn.Linear(dim, 2)

    def initial_state(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y0 = self.lift(x)
        return y0, torch.zeros_like(y0)

    def forward(self, x: torch.Tensor, *, method: str = "leapfrog", gradient: str = "reversible") -> torch.Tensor:
        y, _ = cd.odesolve(self.field, self.initial_state(x), method=method, steps=self.steps, gradient=gradient)
        return self.head(y)


class ResidualNet(nn.Module):
    """``method`` "euler" (a ResNet) or a ``cd.LinearTwoStep`` on the same kind of field."""

    def __init__(self, two_step: bool, dim: int = 8, knots: int = 17) -> None:
        super().__init__()
        self.dim, self.steps = dim, knots
        self.lift = ZeroAugment(dim)
        grid = cd.ControlGrid(0.0, T, n=knots)
        self.field = cd.fields.DenseResidual(dim, grid, activation="tanh")
        self.block = cd.ODEBlock(self.field, method=cd.LinearTwoStep(grid) if two_step else "euler", steps=knots)
        self.head = nn.Linear(dim, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.lift(x)))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def energy_along(model: HamiltonianNet, x: torch.Tensor, method: str) -> list[float]:
    """Mean H(y, z) over the points at every step time, theta at that time (jumps at the knots)."""
    ts = cd.solvers.FixedGrid.uniform(0.0, T, model.steps).times
    with torch.no_grad():
        ys, zs = cd.odesolve(model.field, model.initial_state(x), method=method, steps=model.steps, t_eval=ts)
        return [model.field.energy((y, z), t).mean().item() for t, y, z in zip(ts, ys, zs)]


def memory_rows(model: HamiltonianNet, x: torch.Tensor) -> list[dict]:
    rows = []
    for steps in MEMORY_STEPS:
        for gradient in ("backprop", "reversible"):
            with saved_tensor_bytes() as m:
                y, _ = cd.odesolve(model.field, model.initial_state(x), method="leapfrog", steps=steps, gradient=gradient)
            rows.append({"steps": steps, "gradient": gradient, "saved_bytes": m.bytes})
    return rows


def main(args: argparse.Namespace) -> None:
    out, quick = cli.start(args), args.quick
    config = QUICK if quick else FULL
    train = spirals(config["n_train"], noise=0.05, seed=0)
    test = spirals(config["n_test"], noise=0.05, seed=1)
    models = {}
    for name, make in (("hamiltonian", HamiltonianNet), ("resnet", lambda: ResidualNet(False)),
                       ("linear_two_step", lambda: ResidualNet(True))):
        torch.manual_seed(args.seed)
        models[name] = make()
    metrics: dict = {"quick": quick, "seed": args.seed, "config": config, "T": T}
    for name, model in models.items():
        t_start = time.perf_counter()
        history = fit(model, F.cross_entropy, train, optimizer=torch.optim.Adam(model.parameters(), lr=1e-2),
                      epochs=config["epochs"], batch_size=100, eval_data=test, seed=args.seed,
                      progress=not args.no_progress,
                      checkpoint=out / "checkpoints" / f"{'quick' if quick else 'full'}-{name}-seed{args.seed}.pt",
                      checkpoint_every=max(1, config["epochs"] // 10))
        metrics[name] = {"params": n_params(model), "train_acc": evaluate(model, train),
                         "test_acc": evaluate(model, test), "train_wall_s": history["wall_s"],
                         "session_wall_s": time.perf_counter() - t_start, "test_acc_per_epoch": history["eval_acc"]}
    ham = models["hamiltonian"]
    metrics["learned_k"] = models["linear_two_step"].block.method.k.detach().tolist()
    energy = {method: energy_along(ham, test[0][:200], method) for method in ("leapfrog", "euler")}
    metrics["energy_along_trajectories"] = energy
    metrics["memory"] = memory_rows(ham, test[0][:256])

    cplot.save(cplot.panel_grid(1, 3, lambda ax, i, j: cplot.decision_boundary(
        lambda pts: models[list(models)[j]](pts).argmax(1), *test, ax=ax,
        title=f"{list(models)[j]}: test {metrics[list(models)[j]]['test_acc']:.3f}", legend=j == 2), size=3.2), out / "boundaries.png")
    cplot.save(cplot.curves(energy, xlabel="step", ylabel="mean H(y, z) over 200 test points",
                            title="Hamiltonian net: H along trajectories (jumps at the 8 knots)"), out / "energy.png")
    cplot.save(cplot.curves({"k_l": metrics["learned_k"]}, xlabel="knot l (1-based)", ylabel="learned k",
                            title="LinearTwoStep: learned k per knot"), out / "k.png")
    cplot.save(cplot.curves({g: [r["saved_bytes"] / 2 ** 10 for r in metrics["memory"] if r["gradient"] == g]
                             for g in ("backprop", "reversible")}, x=MEMORY_STEPS, logx=True, xlabel="leapfrog steps",
                            ylabel="saved for backward (KiB)", log=True,
                            title="memory: reversible vs backprop"), out / "memory.png")
    print(cli.finish(out, metrics, [f"{name:16s} params {m['params']:5d}  train {m['train_acc']:.3f}  test "
                                f"{m['test_acc']:.3f}  train wall {m['train_wall_s']:.1f} s"
                                for name, m in ((k, metrics[k]) for k in models)]))


if __name__ == "__main__":
    main(ARGS)
