"""Peaks classification with control layers vs state layers (seed 004 ch. 3).

Network: the 2 input features duplicated 4x (width 8), the dense field F = tanh(K(t) x + b(t))
(seed 004 eq. 2.13) with piecewise-constant theta on a control grid, forward Euler over a state
grid, a linear layer to 5 classes and softmax cross entropy. ``--optimizer adam`` (default): Adam
on mini-batches. ``--optimizer gn-varpro``: seed 004's own training (ch. 5, MegaNet's
``dnnVarProObjFctn(net, pRegTh, pLoss, pRegW, ...)``), :class:`contdepth.control.GaussNewtonVarPro`
on the full batch, one Gauss-Newton step per epoch: the classifier W eliminated as the minimiser of
CE + alpha_w/2 ||W||^2 (pRegW) and theta trained on the reduced objective plus
alpha_theta/(2h) sum_l ||theta_{l+1} - theta_l||^2 (pRegTh), alpha_theta = alpha_w = 1e-3 as in
examples/control.py. Every experiment uses the same data, initial weights and evaluation with
either optimizer.

(a) sec. 3.1 / fig. 3.3: T = 20, 16 control layers; train at each state-layer count and
    evaluate every trained field at every count (accuracy matrix + 6x6 decision-boundary panels);
    each Euler-trained net is also evaluated with RK4 (same steps) and adaptive dopri5.
(b) sec. 3.2 / figs. 3.4-3.6: T = 10, standard ResNets (steps = control layers = 8, 16, 32);
    eigenvalues of h J per layer against the Euler disc |1 + z| <= 1 (eq. 3.1) and RK4's region.
(c) sec. 3.3 / figs. 3.7-3.8: T = 5, 8- and 20-layer ResNets; loss along two filter-normalised
    random directions (eq. 3.2-3.3).
(d) sec. 3.4 / fig. 3.9: T = 10, 8 control layers; Euler with 32 steps vs RK4 with 8 steps (4x the
    step): both trained from the same initialisation, and the Euler-trained field's landscape
    evaluated with either method.
(b) is also run with the antisymmetric layer of Haber & Ruthotto 2017 beside the plain one, and
(e) seed 002 eq. 111: the linear two-step net against the ResNet (T = 20, 16 layers).

    python examples/peaks.py [--optimizer {adam,gn-varpro}] [--quick] [--out DIR] [--seed S] [--threads N]
                             [--no-progress]

writes DIR/metrics.json (atomically; ``config.optimizer`` names the optimizer) and DIR/*.png; DIR
defaults to out/peaks (adam) or out/peaks-varpro (gn-varpro). Every trained net is checkpointed in
DIR/checkpoints/ under a name that includes the optimizer (every 5 epochs and at the end): an
interrupted run resumes where it stopped, and a finished one re-makes its figures and metrics
without training again (delete the folder to retrain).

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 16 s (``--optimizer gn-varpro``: 27 s); the full run 2 min 40 s (gn-varpro: 14 min 19
s, loaded).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from _cli import cli

OPTIMIZERS = {"adam": "out/peaks", "gn-varpro": "out/peaks-varpro"}  # optimizer -> default --out
TITLES = {"adam": "Adam", "gn-varpro": "GN-VarPro"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, parsed before torch is imported (a bad one fails at once); --out defaults per optimizer."""
    parser = cli.example_parser(__doc__, default_out=None,
                                quick_help="smaller data, fewer epochs and depths (CI, about 1 min)")
    parser.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default="adam",
                        help="adam: mini-batch Adam; gn-varpro: seed 004's Gauss-Newton with variable projection "
                             "and its regularisers pRegTh, pRegW (full batch); default --out: "
                             + ", ".join(f"{k} -> {v}" for k, v in OPTIMIZERS.items()))
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path(OPTIMIZERS[args.optimizer])
    return args


if __name__ == "__main__":
    ARGS = parse_args()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import contdepth as cd  # noqa: E402
import contdepth.plot as cplot  # noqa: E402
from contdepth.analysis import layer_spectra, loss_landscape, random_direction  # noqa: E402
from contdepth.data import peaks  # noqa: E402
from contdepth.train import evaluate, fit  # noqa: E402

WIDTH, N_CLASSES = 8, 5
FULL = {
    "mode": "full", "per_class": 1000, "epochs": 60, "batch_size": 250, "lr": 1e-2,
    "state_layers": [8, 16, 32, 64, 128, 256], "eig_layers": [8, 16, 32], "landscape_layers": [8, 20],
    "landscape_points": 41, "landscape_range": 1.0, "dopri5": True,
}
QUICK = {
    "mode": "quick", "per_class": 200, "epochs": 25, "batch_size": 250, "lr": 1e-2,
    "state_layers": [8, 32], "eig_layers": [8, 16, 32], "landscape_layers": [8, 20],
    "landscape_points": 11, "landscape_range": 1.0, "dopri5": True,
}
GN_VARPRO = {"epochs": 60, "batch_size": None, "alpha_theta": 1e-3, "alpha_w": 1e-3, "cg_iters": 10}
GN_VARPRO_QUICK = {**GN_VARPRO, "epochs": 15}
DOPRI5_TOL = {"rtol": 1e-4, "atol": 1e-6}
ANTI_GAMMA = 0.01


def config(optimizer: str, *, quick: bool, seed: int) -> dict:
    """The run's settings: FULL or QUICK, with GN_VARPRO('s quick budget) for ``optimizer="gn-varpro"``
    (its ``epochs`` are full-batch Gauss-Newton steps and it has no learning rate)."""
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {optimizer!r}")
    cfg = {**(QUICK if quick else FULL), "optimizer": optimizer, "seed": seed}
    if optimizer == "gn-varpro":
        del cfg["lr"]
        cfg.update(GN_VARPRO_QUICK if quick else GN_VARPRO)
    return cfg


class Duplicate(nn.Module):
    """(x1, x2) -> (x1, x2, x1, x2, ...) of width 8 (no parameters)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat(1, WIDTH // 2)


class PeaksNet(nn.Module):
    """Duplicate (x1, x2) to width 8, flow with tanh(K(t) x + b(t)) over [0, T], classify linearly.

    ``layer="antisymmetric"``: tanh((K - K^T - gamma I) x + b) instead (Haber & Ruthotto 2017);
    ``two_step=True``: the linear two-step stepper (seed 002 eq. 111, trainable k per control layer)
    in place of Euler.
    """

    def __init__(self, *, T: float, control: int, steps: int, method: str = "euler", layer: str = "plain",
                 two_step: bool = False) -> None:
        super().__init__()
        grid = cd.ControlGrid(0.0, T, n=control)
        self.field = (cd.fields.AntisymmetricResidual(WIDTH, grid, gamma=ANTI_GAMMA) if layer == "antisymmetric"
                      else cd.fields.DenseResidual(WIDTH, grid, activation="tanh"))
        self.block = cd.ODEBlock(self.field, method=cd.LinearTwoStep(grid) if two_step else method, steps=steps)
        self.head = nn.Linear(WIDTH, N_CLASSES)
        self.duplicate = Duplicate()

    def sequential(self) -> nn.Sequential:
        """The same modules as ``nn.Sequential(duplicate, block, head)`` (the form GaussNewtonVarPro trains)."""
        return nn.Sequential(self.duplicate, self.block, self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.duplicate(x)))


def make_net(seed: int, **kwargs) -> PeaksNet:
    """A freshly initialised net; the same ``seed`` gives the same initial weights (seed 004 sec. 3.1)."""
    torch.manual_seed(seed)
    return PeaksNet(**kwargs)


def checkpoint_path(cfg: dict, out: Path, name: str) -> Path:
    """``out/checkpoints/MODE-NAME-seedS.pt`` (Adam) or ``MODE-gn-varpro-NAME-seedS.pt``: one file per optimizer."""
    tag = "" if cfg["optimizer"] == "adam" else f"{cfg['optimizer']}-"
    return out / "checkpoints" / f"{cfg['mode']}-{tag}{name}-seed{cfg['seed']}.pt"


def train(net: PeaksNet, data, cfg: dict, out: Path, name: str, *, progress: bool, eval_data=None) -> dict:
    """Train on cross entropy with ``cfg["optimizer"]`` (Adam, or GaussNewtonVarPro on ``net.sequential()``
    with pRegTh, pRegW); resumes from / checkpoints to :func:`checkpoint_path`."""
    if cfg["optimizer"] == "adam":
        model, opt = net, torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    else:
        model = net.sequential()
        opt = cd.control.GaussNewtonVarPro(model[:-1], model[-1], alpha_theta=cfg["alpha_theta"],
                                           alpha_w=cfg["alpha_w"], cg_iters=cfg["cg_iters"])
    hist = fit(model, F.cross_entropy, data, optimizer=opt, epochs=cfg["epochs"], batch_size=cfg["batch_size"],
               seed=cfg["seed"], progress=progress, eval_data=eval_data,
               checkpoint=checkpoint_path(cfg, out, name), checkpoint_every=5)
    return {"wall_s": hist["wall_s"], "final_train_loss": hist["train_loss"][-1], "train_loss": hist["train_loss"],
            "final_train_reg": hist["train_reg"][-1], "eval_loss": hist["eval_loss"]}


def accuracy_with(net: PeaksNet, data, *, method: str, steps: int | None, **tol) -> float:
    """Accuracy of ``net`` with its field solved by ``method``/``steps`` (restores the block's settings)."""
    saved = (net.block.method, net.block.steps, net.block.rtol, net.block.atol)
    net.block.method, net.block.steps = method, steps
    net.block.rtol, net.block.atol = tol.get("rtol", net.block.rtol), tol.get("atol", net.block.atol)
    try:
        return evaluate(net, data)
    finally:
        net.block.method, net.block.steps, net.block.rtol, net.block.atol = saved


def predict_with(net: PeaksNet, steps: int):
    def predict(points: torch.Tensor) -> torch.Tensor:
        saved = net.block.steps
        net.block.steps = steps
        try:
            return net(points).argmax(dim=1)
        finally:
            net.block.steps = saved
    return predict


def cross_evaluation(cfg, train_data, test_data, out: Path, progress: bool) -> dict:
    counts = cfg["state_layers"]
    nets, infos = {}, {}
    for n in counts:
        net = make_net(0, T=20.0, control=16, steps=n)
        infos[n] = train(net, train_data, cfg, out, f"cross_eval_{n}", progress=progress)
        nets[n] = net
        print(f"(a) trained at {n} state layers: test {evaluate(net, test_data):.3f} ({infos[n]['wall_s']:.1f} s)")
    test_acc = [[accuracy_with(nets[i], test_data, method="euler", steps=j) for j in counts] for i in counts]
    train_acc = [[accuracy_with(nets[i], train_data, method="euler", steps=j) for j in counts] for i in counts]
    other = {}
    for n in counts:
        other[str(n)] = {"euler": test_acc[counts.index(n)][counts.index(n)],
                         "rk4_same_steps": accuracy_with(nets[n], test_data, method="rk4", steps=n)}
        if cfg["dopri5"]:
            other[str(n)]["dopri5"] = accuracy_with(nets[n], test_data, method="dopri5", steps=None, **DOPRI5_TOL)

    def draw(ax, i, j):
        cplot.decision_boundary(predict_with(nets[counts[i]], counts[j]), *test_data, ax=ax,
                                extent=(-3, 3, -3, 3), resolution=80, s=3, legend=False,
                                title=f"trained {counts[i]}, eval {counts[j]}: {test_acc[i][j]:.2f}")
    cplot.save(cplot.panel_grid(len(counts), len(counts), draw, title="rows: trained at; columns: evaluated at "
                                f"(state layers, T = 20, 16 control layers; {TITLES[cfg['optimizer']]})"),
               out / "peaks_cross_eval.png")
    return {"state_layers": counts, "test_acc": test_acc, "train_acc": train_acc,
            "train_wall_s": [infos[n]["wall_s"] for n in counts],
            "final_train_loss": [infos[n]["final_train_loss"] for n in counts],
            "final_train_reg": [infos[n]["final_train_reg"] for n in counts], "T": 20.0, "control_layers": 16, "other_solvers_test_acc": other,
            "dopri5_tolerances": DOPRI5_TOL}


def stability(cfg, train_data, test_data, out: Path, progress: bool) -> dict:
    """(b) for the plain layer and, beside it, the antisymmetric layer (``nets_antisymmetric``)."""
    result = {"T": 10.0, "layers": cfg["eig_layers"], "antisymmetric_gamma": ANTI_GAMMA}
    probe = train_data[0][:20]
    for layer, key, tag in (("plain", "nets", ""), ("antisymmetric", "nets_antisymmetric", "antisymmetric_")):
        result[key] = {}
        for n in cfg["eig_layers"]:
            net = make_net(0, T=10.0, control=n, steps=n, layer=layer)
            wall = train(net, train_data, cfg, out, f"stability_{tag}{n}", progress=progress)["wall_s"]
            spec = layer_spectra(net.field, net.duplicate(probe), steps=n)
            shown = list(range(n)) if n <= 16 else list(range(0, n, n // 16))
            side = 4 if len(shown) <= 16 else 6
            rows = (len(shown) + side - 1) // side

            def draw(ax, i, j, spec=spec, shown=shown, side=side):
                k = i * side + j
                if k >= len(shown):
                    ax.axis("off")
                    return
                cplot.eigenvalues(spec.eigenvalues[shown[k]], ax=ax, methods=("euler", "rk4"), s=3,
                                  title=f"layer {shown[k]}", legend=False)
            cplot.save(cplot.panel_grid(rows, side, draw, ticks=True, title=f"h*eig(J), {layer} layer, {n} layers, "
                                        f"T = 10, {TITLES[cfg['optimizer']]} (red: Euler |1+z|=1, green: RK4)"),
                       out / f"peaks_eigenvalues_{tag}{n}.png")
            inside_euler = spec.inside_fraction("euler")
            result[key][str(n)] = {
                "h": spec.h, "test_acc": evaluate(net, test_data), "train_wall_s": wall,
                "fraction_inside_euler": float(inside_euler.mean()),
                "layers_all_inside_euler": int((inside_euler == 1).sum()),
                "fraction_inside_rk4": float(spec.inside_fraction("rk4").mean()),
                "max_real_lambda": float(spec.max_real().max()),
                "max_abs_hlambda": float(spec.eigenvalues.abs().max()),
            }
            print(f"(b) {layer} layer, {n} layers: inside Euler disc {float(inside_euler.mean()):.3f}, "
                  f"max Re lambda {result[key][str(n)]['max_real_lambda']:.3f}")
    result["probe_points"] = len(probe)
    return result


def two_step_vs_resnet(cfg, train_data, test_data, out: Path, progress: bool) -> dict:
    """(e) seed 002 eq. 111 on the peaks task: the ResNet (Euler) and the linear two-step net with
    the same field, initialisation, data and epochs (T = 20, 16 control layers = 16 steps)."""
    result = {"T": 20.0, "layers": 16}
    for name, two_step in (("resnet", False), ("linear_two_step", True)):
        net = make_net(0, T=20.0, control=16, steps=16, two_step=two_step)
        wall = train(net, train_data, cfg, out, f"two_step_{name}", progress=progress)["wall_s"]
        result[name] = {"test_acc": evaluate(net, test_data), "train_acc": evaluate(net, train_data),
                        "train_wall_s": wall, "params": sum(p.numel() for p in net.parameters())}
        if two_step:
            result[name]["learned_k"] = net.block.method.k.detach().tolist()
        print(f"(e) {name}: test {result[name]['test_acc']:.3f} ({wall:.1f} s)")
    return result


def landscapes(cfg, train_data, test_data, out: Path, progress: bool) -> dict:
    k = cfg["landscape_points"]
    grid = torch.linspace(-cfg["landscape_range"], cfg["landscape_range"], k)
    result = {"T": 5.0, "points": k, "range": cfg["landscape_range"], "nets": {}}
    for n in cfg["landscape_layers"]:
        net = make_net(0, T=5.0, control=n, steps=n)
        wall = train(net, train_data, cfg, out, f"landscape_{n}", progress=progress)["wall_s"]
        t = time.perf_counter()
        land = loss_landscape(net, lambda m: F.cross_entropy(m(train_data[0]), train_data[1]),
                              alphas=grid, betas=grid, seed=1)
        cplot.save(cplot.landscape_contour(land, log=True, title=f"{n}-layer ResNet, T = 5 (train loss, "
                                                                  f"{TITLES[cfg['optimizer']]})"),
                   out / f"peaks_landscape_{n}.png")
        result["nets"][str(n)] = {"test_acc": evaluate(net, test_data), "train_wall_s": wall,
                                  "landscape_wall_s": time.perf_counter() - t,
                                  "loss_center": float(land.loss[k // 2, k // 2]),
                                  "loss_max": float(land.loss.max()),
                                  "nonconvex_fraction": land.nonconvex_fraction()}
        print(f"(c) {n} layers: non-convex fraction {land.nonconvex_fraction():.3f}")
    return result


def euler_vs_rk4(cfg, train_data, test_data, out: Path, progress: bool) -> dict:
    n_euler, n_rk4 = 32, 8
    result = {"T": 10.0, "control_layers": 8, "euler_steps": n_euler, "rk4_steps": n_rk4}
    for method, steps in (("euler", n_euler), ("rk4", n_rk4)):
        net = make_net(0, T=10.0, control=8, steps=steps, method=method)
        info = train(net, train_data, cfg, out, f"trained_{method}", progress=progress, eval_data=test_data)
        result[f"trained_{method}"] = {"test_acc": evaluate(net, test_data), "train_acc": evaluate(net, train_data),
                                       "final_train_loss": info["final_train_loss"],
                                       "final_train_reg": info["final_train_reg"], "train_loss": info["train_loss"],
                                       "test_loss": info["eval_loss"], "train_wall_s": info["wall_s"]}
        if method == "euler":
            euler_net = net
    cplot.save(cplot.curves({f"{m} ({k} steps), {split}": result[f"trained_{m}"][f"{split}_loss"]
                             for m, k in (("euler", n_euler), ("rk4", n_rk4)) for split in ("train", "test")},
                            log=True, ylabel="cross entropy",
                            title=f"trained with Euler vs RK4 with 4x the step ({TITLES[cfg['optimizer']]})"),
               out / "peaks_rk4_vs_euler_curves.png")
    grid = torch.linspace(-cfg["landscape_range"], cfg["landscape_range"], cfg["landscape_points"])
    gen = torch.Generator().manual_seed(2)
    dirs = (random_direction(euler_net, generator=gen), random_direction(euler_net, generator=gen))
    lands = {}
    for method, steps in (("rk4", n_rk4), ("euler", n_euler)):
        euler_net.block.method, euler_net.block.steps = method, steps
        for split, (X, y) in (("train", train_data), ("test", test_data)):
            lands[method, split] = loss_landscape(euler_net, lambda m, X=X, y=y: F.cross_entropy(m(X), y),
                                                  alphas=grid, betas=grid, directions=dirs)
    euler_net.block.method, euler_net.block.steps = "euler", n_euler
    order = [("rk4", "train"), ("rk4", "test"), ("euler", "train"), ("euler", "test")]

    def draw(ax, i, j):
        method, split = order[2 * i + j]
        cplot.landscape_contour(lands[method, split], ax=ax, log=True,
                                title=f"{method} ({n_rk4 if method == 'rk4' else n_euler} steps), {split}")
    cplot.save(cplot.panel_grid(2, 2, draw, size=4.0, ticks=True,
                                title=f"Euler-trained field ({TITLES[cfg['optimizer']]}): "
                                      "RK4 with 4x the step vs Euler"), out / "peaks_rk4_vs_euler.png")
    centre = cfg["landscape_points"] // 2
    for split in ("train", "test"):
        rel = (lands["rk4", split].loss - lands["euler", split].loss).abs() / lands["euler", split].loss
        result[f"landscape_{split}"] = {
            "loss_at_trained_euler": float(lands["euler", split].loss[centre, centre]),
            "loss_at_trained_rk4": float(lands["rk4", split].loss[centre, centre]),
            "median_rel_diff": float(rel.median()), "max_rel_diff": float(rel.max())}
    data_splits = (("train", train_data), ("test", test_data))
    result["euler_trained_acc"] = {f"{method}_{split}": accuracy_with(euler_net, d, method=method, steps=steps)
                                   for method, steps in (("euler", n_euler), ("rk4", n_rk4)) for split, d in data_splits}
    print(f"(d) Euler {n_euler} vs RK4 {n_rk4} on the Euler-trained field: {result['euler_trained_acc']}")
    return result


def main(args: argparse.Namespace) -> None:
    out, quick = cli.start(args), args.quick
    cfg = config(args.optimizer, quick=quick, seed=args.seed)
    train_data, test_data = peaks(n_train_per_class=cfg["per_class"], n_test_per_class=40, seed=0)
    cplot.save(cplot.scatter_classes(*train_data, s=3, title="peaks: training data"), out / "peaks_data.png")
    progress = not args.no_progress
    t0 = time.perf_counter()
    metrics = {"quick": quick, "config": cfg, "n_train": len(train_data[1]), "n_test": len(test_data[1])}
    metrics["cross_eval"] = cross_evaluation(cfg, train_data, test_data, out, progress)
    metrics["stability"] = stability(cfg, train_data, test_data, out, progress)
    metrics["landscape"] = landscapes(cfg, train_data, test_data, out, progress)
    metrics["euler_vs_rk4"] = euler_vs_rk4(cfg, train_data, test_data, out, progress)
    metrics["two_step_vs_resnet"] = two_step_vs_resnet(cfg, train_data, test_data, out, progress)
    metrics["wall_s"] = time.perf_counter() - t0
    print(cli.finish(out, metrics, [f"done in {metrics['wall_s']:.1f} s"]))


if __name__ == "__main__":
    main(ARGS)
