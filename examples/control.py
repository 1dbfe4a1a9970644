"""Training as optimal control on seed 004's peaks: Adam vs Gauss-Newton with variable projection vs E-MSA.

Seed 004 (ch. 5) trains its peaks ResNet by ``dnnVarProObjFctn(net, pRegTh, pLoss, pRegW, ...)``:
the classifier W is eliminated (the minimiser of its convex softmax sub-problem with the ridge
pRegW) and the network weights theta, smoothed in time by pRegTh, are trained by Gauss-Newton.
Here the same net (an opening layer tanh(K x), a tanh ResNet of width 8 with theta on 8 control
knots, a linear classifier) is trained by Adam on the cross-entropy and by
``fit(optimizer=GaussNewtonVarPro(...))``; E-MSA (``optimizer="msa"``, Li et al. 2018) updates only
the control knots, so its net has no trained opening layer or classifier: the input is duplicated
to width 8 and the first 5 coordinates at T are the logits.

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 9 s; the full run's three trainings 85 + 91 + 230 s.
"""
from __future__ import annotations

import argparse

from _cli import cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared options, parsed before torch is imported (a bad one fails at once)."""
    return cli.example_parser(__doc__, default_out="out/control",
                              quick_help="200 points per class, fewer iterations (about a minute)").parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()

import time  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import contdepth as cd  # noqa: E402
import contdepth.plot as cplot  # noqa: E402
from contdepth.data import peaks  # noqa: E402
from contdepth.train import evaluate, fit  # noqa: E402

WIDTH, N_CLASSES, T, CONTROL = 8, 5, 10.0, 8
FULL = {"mode": "full", "per_class": 1000, "steps": 16, "adam_epochs": 100, "adam_lr": 1e-2, "batch_size": 250,
        "gn_iters": 60, "msa_iters": 400, "alpha_theta": 1e-3, "alpha_w": 1e-3, "cg_iters": 10,
        "msa_lr": 0.02, "msa_rho": 1.0, "msa_inner_steps": 2}
QUICK = {**FULL, "mode": "quick", "per_class": 200, "adam_epochs": 25, "gn_iters": 15, "msa_iters": 100}


class Duplicate(nn.Module):
    """(x1, x2) -> (x1, x2, x1, x2, ...) of width 8 (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, WIDTH // 2)


def seed_net(seed: int, steps: int) -> nn.Sequential:
    """Seed 004's peaks net: tanh(K_open x), the ResNet dpsi/dt = tanh(K(t) psi + b(t)), a linear classifier."""
    torch.manual_seed(seed)
    field = cd.fields.DenseResidual(WIDTH, cd.ControlGrid(0.0, T, n=CONTROL))
    return nn.Sequential(nn.Linear(2, WIDTH, bias=False), nn.Tanh(), cd.ODEBlock(field, method="euler", steps=steps),
                         nn.Linear(WIDTH, N_CLASSES))


def control_only_net(seed: int, steps: int) -> nn.Sequential:
    """The same ResNet with nothing else trainable: duplicated input, logits = the first 5 coordinates."""
    torch.manual_seed(seed)
    field = cd.fields.DenseResidual(WIDTH, cd.ControlGrid(0.0, T, n=CONTROL))
    readout = nn.Linear(WIDTH, N_CLASSES, bias=False).requires_grad_(False)
    with torch.no_grad():
        readout.weight.copy_(torch.eye(N_CLASSES, WIDTH))
    return nn.Sequential(Duplicate(), cd.ODEBlock(field, method="euler", steps=steps), readout)


def run(name: str, model: nn.Module, optimizer, epochs: int, batch_size: int | None, data, test, progress: bool) -> dict:
    t0 = time.perf_counter()
    hist = fit(model, F.cross_entropy, data, optimizer=optimizer, epochs=epochs, batch_size=batch_size,
               progress=progress)
    result = {"wall_s": time.perf_counter() - t0, "train_loss": hist["train_loss"], "train_reg": hist["train_reg"],
              "optimizer_steps": hist["steps"], "train_acc": evaluate(model, data), "test_acc": evaluate(model, test),
              "final_train_loss": hist["train_loss"][-1]}
    print(f"{name}: train {result['train_acc']:.3f}, test {result['test_acc']:.3f}, "
          f"loss {result['final_train_loss']:.4f}, {result['optimizer_steps']} steps, {result['wall_s']:.1f} s")
    return result


def main(args: argparse.Namespace) -> None:
    out, quick = cli.start(args), args.quick
    cfg = {**(QUICK if quick else FULL), "seed": args.seed, "T": T, "control_layers": CONTROL, "width": WIDTH}
    data, test = peaks(n_train_per_class=cfg["per_class"], n_test_per_class=40, seed=0)
    progress = not args.no_progress
    models, results = {}, {}

    model = seed_net(args.seed, cfg["steps"])
    results["adam"] = run("Adam", model, torch.optim.Adam(model.parameters(), lr=cfg["adam_lr"]), cfg["adam_epochs"],
                          cfg["batch_size"], data, test, progress)
    models["adam"] = model

    model = seed_net(args.seed, cfg["steps"])
    gn = cd.control.GaussNewtonVarPro(model[:-1], model[-1], alpha_theta=cfg["alpha_theta"], alpha_w=cfg["alpha_w"],
                                      cg_iters=cfg["cg_iters"])
    results["gn_varpro"] = run("GN-VarPro", model, gn, cfg["gn_iters"], None, data, test, progress)
    models["gn_varpro"] = model

    model = control_only_net(args.seed, cfg["steps"])
    msa = cd.control.EMSA(model[1].field, lr=cfg["msa_lr"], rho=cfg["msa_rho"], inner_steps=cfg["msa_inner_steps"],
                          method="euler", steps=cfg["steps"])
    results["emsa"] = run("E-MSA", model, msa, cfg["msa_iters"], None, data, test, progress)
    models["emsa"] = model

    batches = -(-len(data[1]) // cfg["batch_size"])
    labels = {"adam": f"Adam (epochs of {batches} mini-batches)", "gn_varpro": "GN-VarPro (full-batch iterations)",
              "emsa": "E-MSA (full-batch iterations)"}
    cplot.save(cplot.curves({labels[k]: r["train_loss"] for k, r in results.items()}, log=True, xlabel="epoch",
                            ylabel="train cross entropy", title="peaks: training as optimal control"),
               out / "control_loss.png")

    def draw(ax, i, j):
        key = list(models)[j]
        cplot.decision_boundary(lambda p: models[key](p).argmax(1), *test, ax=ax, extent=(-3, 3, -3, 3),
                                resolution=80, s=3, legend=False,
                                title=f"{key}: test {results[key]['test_acc']:.3f}")
    with torch.no_grad():
        cplot.save(cplot.panel_grid(1, 3, draw, size=3.0, title="peaks test points on the predicted classes"),
                   out / "control_boundaries.png")
    metrics = {"quick": quick, "config": cfg, "n_train": len(data[1]), "n_test": len(test[1]), **results}
    print(cli.finish(out, metrics, [f"Adam {results['adam']['test_acc']:.3f}, GN-VarPro {results['gn_varpro']['test_acc']:.3f}, "
                                f"E-MSA {results['emsa']['test_acc']:.3f} test accuracy"]))


if __name__ == "__main__":
    main(ARGS)
