"""Quickstart: train one continuous-depth model, then evaluate it at other depths and integrators.

    python examples/quickstart.py [--quick] [--out DIR] [--seed S] [--threads N] [--no-progress]

Two noisy concentric circles (seed 002 sec. 5.1), lifted to R^3 with x3(0) = 0 (ZeroAugment); the
field is the cubic-friction ODE dx/dt = W(t) x + b(t) - gamma x^3 (seed 002 eq. 56) on 8 control
knots, trained with RK4 at 8 steps (full batch, Adam, 300 epochs; --quick: 60), then solved with
Euler/RK4 at other step counts and with dopri5. Writes DIR/metrics.json and DIR/boundary.png (the
decision regions of all five solves side by side).

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 5 s; the full run 5 s.
"""
import argparse
import time

from _cli import cli

EVALUATIONS = [("euler", 8), ("euler", 64), ("rk4", 8), ("rk4", 32), ("dopri5", None)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared options, parsed before torch is imported (a bad one fails at once)."""
    return cli.example_parser(__doc__, default_out="out/quickstart",
                              quick_help="60 epochs instead of 300").parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import contdepth as cd  # noqa: E402
import contdepth.plot as cplot  # noqa: E402  (first: selects matplotlib's Agg backend)
import matplotlib.pyplot as plt  # noqa: E402
from contdepth.data import circles  # noqa: E402
from contdepth.lift import ZeroAugment  # noqa: E402
from contdepth.train import evaluate, fit  # noqa: E402


def boundary_figure(model, logit, test, rows: list[dict], block):
    """One panel per evaluated integrator: its decision regions on the test set, test accuracy in the title."""
    fig, axes = plt.subplots(1, len(rows), figsize=(3.1 * len(rows), 3.3), sharey=True)
    for ax, row in zip(axes, rows):
        block.method, block.steps = row["method"], row["steps"]
        steps = f"{row['steps']} steps" if row["steps"] else "adaptive"
        steps += " (as trained)" if (row["method"], row["steps"]) == ("rk4", 8) else ""
        cplot.decision_boundary(lambda pts: (logit(model(pts)) > 0).long(), *test, ax=ax, resolution=100,
                                legend=ax is axes[-1],
                                title=f"{row['method']}, {steps}: test acc {row['test_acc']:.3f}")
    for ax in axes[1:]:
        ax.set_ylabel("")
    fig.suptitle("quickstart: one field trained with RK4 at 8 steps, solved five ways", fontsize=10)
    return fig


def main(args: argparse.Namespace) -> None:
    out = cli.start(args)
    t_start = time.perf_counter()
    data, test = circles(400, seed=0), circles(400, seed=1)
    torch.manual_seed(args.seed)
    field = cd.fields.CubicFriction(3, cd.ControlGrid(t0=0.0, t1=4.0, n=8), gamma=0.1, learn_gamma=False)
    block = cd.ODEBlock(field, method="rk4", steps=8)
    model = nn.Sequential(ZeroAugment(3), block)       # (B, 2) -> (B, 3) with x3 = 0 -> psi(4)
    logit = lambda psi: psi[:, 2]                      # sigmoid(x3(4)) = P(outer circle)
    loss = lambda psi, y: F.binary_cross_entropy_with_logits(logit(psi), y.to(psi.dtype))
    correct = lambda psi, y: ((logit(psi) > 0).long() == y).sum()
    epochs = 60 if args.quick else 300
    hist = fit(model, loss, data, optimizer=torch.optim.Adam(field.parameters(), lr=0.05), epochs=epochs,
               regularizer=lambda: 1e-3 * cd.smoothness(field), correct_fn=correct, seed=args.seed,
               progress=not args.no_progress)

    rows = []
    for method, steps in EVALUATIONS:
        block.method, block.steps = method, steps
        acc = evaluate(model, test, correct_fn=correct)
        rows.append({"method": method, "steps": steps, "test_acc": acc, "nfe": block.stats.forward.nfe})
    cplot.save(boundary_figure(model, logit, test, rows, block), out / "boundary.png")
    block.method, block.steps = "rk4", 8
    metrics = {"quick": args.quick, "seed": args.seed, "epochs": epochs, "final_train_loss": hist["train_loss"][-1],
               "train_wall_s": hist["wall_s"], "evaluations": rows, "wall_s": time.perf_counter() - t_start}
    table = [f"{'method':>8} {'steps':>6} {'test acc':>9} {'f-evals':>8}"] + [
        f"{r['method']:>8} {str(r['steps'] or 'adapt'):>6} {r['test_acc']:9.3f} {r['nfe']:8d}" for r in rows]
    print(cli.finish(out, metrics, table))


if __name__ == "__main__":
    main(ARGS)
