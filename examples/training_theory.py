"""Two training claims of seed 002, measured on its circles model 2 (R^3, cubic friction, gamma = 0.1).

1. Appendix A (eq. A.8): the gradient of a layer's parameters is dt a(t_{l+1}) dF/dq, so it shrinks
   with the layer spacing dt = T / L. With one learning rate for every depth L, deeper nets learn
   more slowly; with the learning rate scaled as 1/dt, the training curves of all depths coincide
   (they discretise one gradient flow of theta(t)). Trains L = 20, 40, 80, 160 both ways (Euler is stable from L = 20: 3 gamma dt x^2 < 2).
2. Eq. 37-46: time-dependent parameters q(t) (one knot per layer) against one constant q, with
   the same function-space step (knot learning rate lr/dt, constant lr/T): the first step lowers
   the loss by lr int |dL/dq|^2 dt against lr/T |int dL/dq dt|^2 (Cauchy-Schwarz: never less), and
   the training curves over many steps.
3. Eq. 33-36, 103-108 on the trained net (q(t), L = 80): the energy balance
   d(|x|^2/2)/dt = P_w + P_b - P_gamma along the test points' trajectories, integrated through depth,
   and how far the learned w is from the symmetric w under which eq. 83's energy would decrease.

Full-batch SGD (no momentum: the claims are about plain gradient steps), zero initial parameters,
400 training points, T = 20. Compared: the number of steps until the training loss first reaches
0.6 (plain gradient descent at these rates turns unstable after ~130 steps, at the edge of
stability, so final losses are noisy; the figures show both phases).

    python examples/training_theory.py [--quick] [--out DIR] [--seed S] [--threads N] [--no-progress]

writes DIR/metrics.json (atomically) and DIR/depth_scaling.png, DIR/time_dependence.png.

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 14 s; the full run 33 s.
"""
from __future__ import annotations

import argparse

from _cli import cli

FULL = {"iters": 400}
QUICK = {"iters": 120}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared options, parsed before torch is imported (a bad one fails at once)."""
    return cli.example_parser(__doc__, default_out="out/training_theory",
                              quick_help=f"{QUICK['iters']} SGD steps per run instead of {FULL['iters']}"
                              ).parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()

import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import contdepth as cd  # noqa: E402
import contdepth.plot as cplot  # noqa: E402
from contdepth.data import circles  # noqa: E402
from contdepth import physics as ph  # noqa: E402
from contdepth.analysis import trajectory  # noqa: E402
from contdepth.lift import ZeroAugment  # noqa: E402
from contdepth.train import evaluate, fit  # noqa: E402

T = 20.0
DEPTHS = (20, 40, 80, 160)
LR_PER_DT = 0.1  # the function-space learning rate: a knot's lr is LR_PER_DT / dt
TARGET = 0.6  # training cross entropy (from log 2 = 0.693 at zero parameters) whose first step is compared


class Circles(nn.Module):
    """Seed 002 model 2: x in R^2 embedded in R^3 (x3(0) = 0), ``layers`` Euler steps of eq. 56 with
    ``knots`` control values (``knots = layers``: one per layer; 1: constant in t); logit x3(T)."""

    def __init__(self, layers: int, knots: int) -> None:
        super().__init__()
        self.field = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, T, knots), gamma=0.1, learn_gamma=False)
        self.block = cd.ODEBlock(self.field, method="euler", steps=layers)
        self.lift = ZeroAugment(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.lift(x))[:, 2]


def bce(logit: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross entropy of P(inner circle, y = 0) = sigmoid(x3(T))."""
    return F.binary_cross_entropy_with_logits(logit, (y == 0).to(logit.dtype))


def correct(logit: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((logit <= 0).long() == y).sum()


def train(layers: int, knots: int, lr: float, data, test, iters: int, seed: int, progress: bool) -> dict:
    model = Circles(layers, knots)
    hist = fit(model, bce, data, optimizer=torch.optim.SGD(model.parameters(), lr=lr), epochs=iters,
               correct_fn=correct, seed=seed, progress=progress)
    losses = hist["train_loss"]
    reached = next((k + 1 for k, v in enumerate(losses) if v <= TARGET), None)
    return {"layers": layers, "knots": knots, "lr": lr, "train_loss": losses, "steps_to_target": reached,
            "final_train_loss": losses[-1], "test_acc": evaluate(model, test, correct_fn=correct), "model": model}


def energy_report(model: Circles, X: torch.Tensor, refine: int = 8) -> dict:
    """Seed 002 eq. 103-108 along the trajectories of ``X`` (RK4, ``refine`` steps per layer): the
    kinetic energy |x|^2/2 at t = 0 and T, the integrals of P_w, P_b, P_gamma (Simpson per cell)
    and their sum against the change of kinetic energy; and |w_anti|_F / |w|_F per knot."""
    field, steps = model.field, model.block.steps * refine
    with torch.no_grad():
        copy = Circles(model.block.steps, field.grid.n).to(torch.float64)
        copy.load_state_dict(model.state_dict())
        field = copy.field
        ts, xs = trajectory(field, model.lift(X).double(), method="rk4", steps=steps)
        h = field.grid.t1 / steps
        work = {"p_w": 0.0, "p_b": 0.0, "p_gamma": 0.0}
        for c in range(field.grid.n):  # Simpson on each control cell (theta jumps at the knots), refine even
            span = range(c * refine, (c + 1) * refine + 1)
            balances = [ph.energy_balance(field, xs[k], float(ts[k]), cell=c) for k in span]
            for name in work:
                v = torch.stack([getattr(bal, name).mean() for bal in balances])
                work[name] += float(h / 3 * (v[0] + v[-1] + 4 * v[1:-1:2].sum() + 2 * v[2:-1:2].sum()))
        kinetic = 0.5 * (xs ** 2).sum(-1).mean(-1)
        w = field.weight
        asym = ((w - w.transpose(1, 2)) / 2).flatten(1).norm(dim=1) / w.flatten(1).norm(dim=1).clamp_min(1e-300)
    return {"kinetic_t0": float(kinetic[0]), "kinetic_T": float(kinetic[-1]), **{f"int_{k}": v for k, v in work.items()},
            "balance_residual": float(kinetic[-1] - kinetic[0]) - (work["p_w"] + work["p_b"] - work["p_gamma"]),
            "w_antisymmetric_fraction_mean": float(asym.mean()), "w_antisymmetric_fraction_max": float(asym.max())}


def first_step_decrease(layers: int, data) -> dict:
    """The first-order loss decrease of one step from zero parameters (eq. 40 vs eq. 46)."""
    model = Circles(layers, layers)
    X, y = data
    loss = bce(model(X), y)
    grads = torch.autograd.grad(loss, [model.field.weight, model.field.bias])
    dt = T / layers
    # knot l's gradient is dt * (dL/dq)(t_l) (eq. A.8): int |dL/dq|^2 dt = sum |g_l|^2 / dt,
    # and the constant q's gradient is the sum of the knots' (int dL/dq dt).
    time_dependent = sum((g ** 2).sum() for g in grads) / dt
    constant = sum((g.sum(0) ** 2).sum() for g in grads) / T
    return {"layers": layers, "time_dependent": float(time_dependent), "constant": float(constant),
            "ratio": float(time_dependent / constant)}


def main(args: argparse.Namespace) -> None:
    out, quick = cli.start(args), args.quick
    iters = (QUICK if quick else FULL)["iters"]
    data, test = circles(400, seed=0), circles(400, seed=1)
    t_start = time.perf_counter()
    progress = not args.no_progress
    scaled = {L: train(L, L, LR_PER_DT * L / T, data, test, iters, args.seed, progress) for L in DEPTHS}
    fixed = {L: train(L, L, LR_PER_DT * DEPTHS[0] / T, data, test, iters, args.seed, progress) for L in DEPTHS}
    L = DEPTHS[-2]
    constant = train(L, 1, LR_PER_DT / T, data, test, iters, args.seed, progress)
    first = [first_step_decrease(L, data) for L in DEPTHS]

    cplot.save(cplot.panel_grid(1, 2, lambda ax, i, j: cplot.curves(
        {f"L = {L}": (scaled if j == 0 else fixed)[L]["train_loss"] for L in DEPTHS}, ax=ax, log=True,
        title=("lr = %g / dt (scaled)" % LR_PER_DT) if j == 0 else f"lr = {LR_PER_DT * DEPTHS[0] / T:g} (fixed)",
        xlabel="SGD step", ylabel="training cross entropy" if j == 0 else ""), size=3.8, ticks=True,
        title="seed 002 appendix A: per-layer gradients scale with dt"), out / "depth_scaling.png")
    cplot.save(cplot.curves({f"q(t): {L} knots": scaled[L]["train_loss"], "q constant": constant["train_loss"]},
                            log=True, title=f"seed 002 eq. 37-46: time-dependent vs constant parameters (L = {L})",
                            xlabel="SGD step", ylabel="training cross entropy"), out / "time_dependence.png")

    energy = energy_report(scaled[L]["model"], test[0])

    def strip(run: dict) -> dict:
        return {k: v for k, v in run.items() if k not in ("train_loss", "model")}

    def summary(runs: dict) -> dict:
        return {str(L): strip(r) for L, r in runs.items()}

    metrics = {"quick": quick, "seed": args.seed, "iters": iters, "T": T, "lr_per_dt": LR_PER_DT,
               "scaled_lr": summary(scaled), "fixed_lr": summary(fixed),
               "target_loss": TARGET,
               "time_dependent": strip(scaled[L]), "constant": strip(constant), "energy_balance": energy,
               "first_step_decrease": first, "wall_s": time.perf_counter() - t_start}
    print(cli.finish(out, metrics, [
        f"SGD steps to loss {TARGET}, lr ~ 1/dt: " + ", ".join(f"L={L}: {scaled[L]['steps_to_target']}" for L in DEPTHS),
        f"SGD steps to loss {TARGET}, fixed lr: " + ", ".join(f"L={L}: {fixed[L]['steps_to_target']}" for L in DEPTHS),
        f"L={L}: q(t) {scaled[L]['steps_to_target']} steps to {TARGET}, final loss {scaled[L]['final_train_loss']:.4f} "
        f"(test {scaled[L]['test_acc']:.3f}); constant q {constant['steps_to_target']} steps, final loss "
        f"{constant['final_train_loss']:.4f} (test {constant['test_acc']:.3f})",
        "first-step decrease ratio (eq. 40 / eq. 46): " + ", ".join(f"L={r['layers']}: {r['ratio']:.2f}" for r in first),
        f"energy (L={L}, test points): |x|^2/2 {energy['kinetic_t0']:.3f} -> {energy['kinetic_T']:.3f}; "
        f"int P_w {energy['int_p_w']:.3f}, int P_b {energy['int_p_b']:.3f}, int P_gamma {energy['int_p_gamma']:.3f}; "
        f"balance residual {energy['balance_residual']:.1e}; |w_anti|/|w| mean {energy['w_antisymmetric_fraction_mean']:.2f}"]))


if __name__ == "__main__":
    main(ARGS)
