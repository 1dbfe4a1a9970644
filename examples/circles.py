"""Concentric circles with the cubic-friction ODE (seed 002 sec. 5.1, figs. 2-5).

Model 1: R^2, forward Euler with 100 steps of h = 1 (so theta are the seed's scaled parameters,
eq. 109-110), learnable gamma, softmax on the final 2-D state: 100 * (4 + 2) + 1 = 601 parameters.
Model 2: R^3 with x3(0) = 0, 20 Euler steps, gamma = 0.1 fixed, P(inner circle) = sigmoid(x3):
20 * (9 + 3) = 240 parameters. Both: loss eq. 113 = cross entropy + lambda * smoothness
(contdepth.smoothness is eq. 113's penalty when the knot spacing is 1), lambda = 1.0, all
parameters initialised to zero, SGD (momentum 0.9, cosine-annealed learning rate).
Model 2 is trained on randomly rotated copies of the training points (the data are rotation
invariant; without it the 400 points are over-fitted) and, for comparison, once more without
(``model2_no_augmentation``, mini-batches of 50 as in the first release).

``--learn-depth`` runs instead the depth experiment (seed 002 eq. 16, time as a variable): Model 2's
net with 4 control intervals, solved by dopri5 (rtol 1e-4, atol 1e-6), trained on the 400 points
(no augmentation), full batch, by Adam (lr 1e-2, cosine-annealed, lambda = 1) for 1500 epochs from
the same initial parameters with the depth T fixed and with T learned (``ODEBlock(learn_time=True)``:
theta stretched over [0, T]), for each start T0 in {0.5, 2, 8}. After every step T is projected onto
T >= 0.05 (the block refuses T <= t0). Per epoch it records T, dL/dT, the forward solve's function
evaluations (nfe: the cost; backprop differentiates those same steps), the training loss and the
test accuracy and loss; figure learn_depth.png.

    python examples/circles.py [--learn-depth] [--quick] [--out DIR] [--seed S] [--threads N] [--no-progress]

writes DIR/metrics.json (atomically) and DIR/*.png (DIR defaults to out/circles, with --learn-depth
to out/circles_learn_depth). Each model is checkpointed in DIR/checkpoints/
(every 1 % of its epochs and at the end): an interrupted run resumes where it stopped, and a finished
one re-makes its figures and metrics without training again (delete the folder to retrain).

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 19 s; the full run 5 min 48 s; ``--learn-depth`` 9 s quick, 7 min 41 s full (loaded).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from _cli import cli

DEPTH = {"knots": 4, "starts": (0.5, 2.0, 8.0), "epochs": 1500, "lr": 1e-2, "rtol": 1e-4, "atol": 1e-6, "t_min": 0.05}
QUICK_DEPTH = {**DEPTH, "epochs": 40}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared options, parsed before torch is imported (a bad one fails at once)."""
    parser = cli.example_parser(__doc__, default_out=None, quick_help=(
        "model 1 for 200 epochs, the no-augmentation model 2 for 60 (CI, about 1 min); with --learn-depth "
        f"{QUICK_DEPTH['epochs']} epochs per run"))
    parser.add_argument("--learn-depth", action="store_true",
                        help="run the learned-depth experiment (T fixed vs learned) instead of the seed's models")
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = Path("out/circles_learn_depth" if args.learn_depth else "out/circles")
    return args


if __name__ == "__main__":
    ARGS = parse_args()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

import contdepth as cd  # noqa: E402
import contdepth.plot as cplot  # noqa: E402
from contdepth.analysis import trajectory  # noqa: E402
from contdepth.data import circles, random_rotation  # noqa: E402
from contdepth.lift import ZeroAugment  # noqa: E402
from contdepth.train import count_correct, evaluate, fit  # noqa: E402

TRAIN_SEED, TEST_SEED = 0, 1  # model 2's training settings were chosen on validation sets (seed 100), see docs/RESULTS.md
EXTRA_TEST_SEEDS = (2, 3, 4, 5)
EXPECTED_SEED, EXPECTED_N = 999, 200_000  # Monte Carlo estimate of the expected (population) accuracy
BAYES_RADIUS = 1.51  # best radial threshold (about Bayes-optimal): 99.35 % expected accuracy (Monte Carlo, 4e6 points)
LAMBDA = 1.0
MODEL2 = {"epochs": 3000, "lr": 1e-2, "batch_size": None, "clip_grad_norm": 1.0, "augment": True}
MODEL2_NO_AUG = {"epochs": 300, "lr": 1e-2, "batch_size": 50, "clip_grad_norm": None, "augment": False}
FULL = {"model1": {"epochs": 15000, "lr": 1e-4, "batch_size": None, "clip_grad_norm": None, "augment": False},
        "model2": MODEL2, "model2_no_augmentation": MODEL2_NO_AUG}
# --quick: Model 2 exactly as in the full run (its >= 99 % is the result); Model 1 and the
# no-augmentation comparison for a fraction of their epochs
QUICK = {**FULL, "model1": {**FULL["model1"], "epochs": 200}, "model2_no_augmentation": {**MODEL2_NO_AUG, "epochs": 60}}


class Model1(nn.Module):
    """Seed 002 model 1: the final 2-D state of the Euler-discretised eq. 56 is the logit vector."""

    def __init__(self) -> None:
        super().__init__()
        self.field = cd.fields.CubicFriction(2, cd.ControlGrid(0.0, 100.0, n=100), gamma=0.0, learn_gamma=True)
        self.block = cd.ODEBlock(self.field, method="euler", steps=100)

    def initial_state(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x)

    def prob_class2(self, x: torch.Tensor) -> torch.Tensor:
        return self(x).softmax(dim=1)[:, 1]


class Model2(nn.Module):
    """Seed 002 model 2: input augmented to R^3 with x3(0) = 0; the logit of the first class is x3(T)."""

    def __init__(self) -> None:
        super().__init__()
        self.field = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, 20.0, n=20), gamma=0.1, learn_gamma=False)
        self.block = cd.ODEBlock(self.field, method="euler", steps=20)
        self.initial_state = ZeroAugment(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.initial_state(x))[:, 2]

    def prob_class2(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(-self(x))


def model2_loss(logit_class1: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Binary cross entropy of P(first class = inner circle, y = 0) = sigmoid(x3)."""
    return F.binary_cross_entropy_with_logits(logit_class1, (y == 0).to(logit_class1.dtype))


def model2_correct(logit_class1: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return ((logit_class1 <= 0).long() == y).sum()


def radial_rule_accuracy(data) -> float:
    """Accuracy of the near-Bayes-optimal rule class = 1 iff |x| > BAYES_RADIUS (a reference, not a model)."""
    X, y = data
    return float(((X.norm(dim=1) > BAYES_RADIUS).long() == y).double().mean())


def fit_circles(model: nn.Module, loss_fn, correct_fn, data, *, epochs: int, lr: float, batch_size: int | None,
                clip_grad_norm: float | None, augment: bool, optimizer: str = "sgd", lam: float = LAMBDA, seed: int = 0,
                checkpoint: Path | None = None, progress: bool = False) -> dict:
    """Loss eq. 113 (``loss_fn`` + lam * smoothness), SGD with momentum 0.9 (or Adam) and a cosine-annealed
    learning rate; random-rotation augmentation if ``augment``. Returns ``fit``'s history."""
    opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam(model.parameters(), lr=lr))
    return fit(model, loss_fn, data, optimizer=opt, epochs=epochs, batch_size=batch_size,
               regularizer=lambda: lam * cd.smoothness(model.field),
               scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs), correct_fn=correct_fn,
               seed=seed, progress=progress, clip_grad_norm=clip_grad_norm, transform=random_rotation if augment else None,
               checkpoint=checkpoint, checkpoint_every=max(1, epochs // 100))


def train(model: nn.Module, loss_fn, correct_fn, data, test, expected, checkpoint: Path, *, epochs: int, lr: float,
          batch_size: int | None, clip_grad_norm: float | None, augment: bool, seed: int, progress: bool) -> dict:
    hist = fit_circles(model, loss_fn, correct_fn, data, epochs=epochs, lr=lr, batch_size=batch_size,
                       clip_grad_norm=clip_grad_norm, augment=augment, checkpoint=checkpoint, seed=seed,
                       progress=progress)
    return {
        "train_acc": evaluate(model, data, correct_fn=correct_fn),
        "test_acc": evaluate(model, test, correct_fn=correct_fn),
        "test_acc_extra_sets": [evaluate(model, circles(400, seed=s), correct_fn=correct_fn) for s in EXTRA_TEST_SEEDS],
        "expected_acc": evaluate(model, expected, correct_fn=correct_fn, batch_size=EXPECTED_N),
        "gamma": float(model.field.gamma.detach()),
        "params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "final_train_loss": hist["train_loss"][-1],
        "final_smoothness_penalty": hist["train_reg"][-1],
        "train_loss_per_epoch": hist["train_loss"],
        "epochs": epochs, "lr": lr, "batch_size": batch_size or len(data[1]), "clip_grad_norm": clip_grad_norm,
        "augmentation": "random_rotation" if augment else None,
        "optimizer": "SGD(momentum=0.9), cosine-annealed lr (per epoch)",
        "lambda": LAMBDA, "wall_s": hist["wall_s"],
    }


def figures(name: str, model: nn.Module, X: torch.Tensor, y: torch.Tensor, out: Path) -> None:
    with torch.no_grad():
        p2 = model.prob_class2(X)
        _, ys = trajectory(model.field, model.initial_state(X), method="euler", steps=model.block.steps)
    cplot.save(cplot.transformed_points(ys[-1], p2, title=f"{name}: final states"), out / f"{name}_output.png")
    pick = torch.tensor([int(torch.nonzero(y == 0)[0]), int(torch.nonzero(y == 1)[0])])
    cplot.save(cplot.trajectories(ys[:, pick], color=y[pick].float(), annotate_every=max(1, model.block.steps // 10),
                                  title=f"{name}: sample trajectories"), out / f"{name}_trajectory.png")
    cplot.save(cplot.params_vs_layer(model.field, names=("bias", "weight"), title=f"{name}: parameters vs layer"),
               out / f"{name}_params.png")
    cplot.save(cplot.decision_boundary(lambda pts: (model.prob_class2(pts) > 0.5).long(), X, y,
                                       title=f"{name}: decision regions"), out / f"{name}_boundary.png")


class DepthModel(Model2):
    """Model 2 with ``knots`` control intervals and the depth T a parameter (``learn``) or held fixed at T0:
    x3(T) of dy/ds = (T / knots) F(y, theta(s)), s in [0, knots], solved by dopri5. The same code path for
    both, so fixed and learned T differ only in whether T is trained. Each training forward records T and
    the forward solve's nfe, each ``project_`` (after the optimizer step) dL/dT; the records are buffers,
    saved with the checkpoint, so a resumed run continues them."""

    def __init__(self, T0: float, learn: bool, *, knots: int, rtol: float, atol: float, t_min: float,
                 epochs: int) -> None:
        nn.Module.__init__(self)
        self.field = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, float(knots), n=knots), gamma=0.1,
                                             learn_gamma=False)
        self.block = cd.ODEBlock(self.field, method="dopri5", rtol=rtol, atol=atol, learn_time=True, t1=T0)
        self.block.t1.requires_grad_(learn)
        self.initial_state = ZeroAugment(3)
        self.t_min = t_min
        self.register_buffer("records", torch.zeros((), dtype=torch.long))
        self.register_buffer("depth", torch.full((epochs,), float("nan")))
        self.register_buffer("depth_grad", torch.full((epochs,), float("nan")))
        self.register_buffer("nfe", torch.zeros(epochs, dtype=torch.long))
        self.register_buffer("projected", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        if self.training and int(self.records) < len(self.depth):
            self.depth[self.records] = self.block.t1.detach()
            self.nfe[self.records] = self.block.stats.forward.nfe
            self.records += 1
        return out

    def project_(self) -> None:
        """Record dL/dT of the step just taken; project T onto T >= t_min (counted in ``projected``)."""
        t1 = self.block.t1
        with torch.no_grad():
            if t1.grad is not None and int(self.records) > 0:
                self.depth_grad[self.records - 1] = t1.grad
            if t1 < self.t_min:
                t1.fill_(self.t_min)
                self.projected += 1


def depth_run(T0: float, learn: bool, data, test, checkpoint: Path, *, seed: int, progress: bool, knots: int,
              epochs: int, lr: float, rtol: float, atol: float, t_min: float) -> dict:
    """Train a ``DepthModel`` (initial parameters drawn from ``seed``: N(0, 0.1^2), the same for every run)
    full batch with Adam (cosine-annealed lr) and loss eq. 113; its per-epoch records and final accuracies."""
    torch.manual_seed(seed)
    model = DepthModel(T0, learn, knots=knots, rtol=rtol, atol=atol, t_min=t_min, epochs=epochs)
    with torch.no_grad():
        for p in (model.field.weight, model.field.bias):
            p.normal_(0.0, 0.1)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    hist = fit(model, model2_loss, data, optimizer=opt, epochs=epochs,
               regularizer=lambda: LAMBDA * cd.smoothness(model.field),
               scheduler=torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs), correct_fn=model2_correct,
               eval_data=test, seed=seed, progress=progress, checkpoint=checkpoint,
               checkpoint_every=max(1, epochs // 100))
    model.eval()
    with torch.no_grad():
        model(test[0])
    return {
        "T0": T0, "learn_time": learn, "T_final": float(model.block.t1.detach()),
        "T_per_epoch": model.depth.tolist(), "dL_dT_per_epoch": model.depth_grad.tolist() if learn else None,
        "nfe_per_epoch": model.nfe.tolist(), "nfe_test_forward_final": model.block.stats.forward.nfe,
        "times_projected_onto_t_min": int(model.projected),
        "train_loss_per_epoch": hist["train_loss"], "test_acc_per_epoch": hist["eval_acc"],
        "test_loss_per_epoch": hist["eval_loss"],
        "train_acc": evaluate(model, data, correct_fn=model2_correct),
        "test_acc": evaluate(model, test, correct_fn=model2_correct),
        "test_acc_extra_sets": [evaluate(model, circles(400, seed=s), correct_fn=model2_correct)
                                for s in EXTRA_TEST_SEEDS],
        "wall_s": hist["wall_s"],
    }


def depth_figure(runs: list[dict], title: str):
    """T, training loss, test accuracy and nfe per epoch: one colour per start, learned solid, fixed dashed."""
    panels = (("T_per_epoch", "depth T", True), ("train_loss_per_epoch", "training cross entropy", True),
              ("test_acc_per_epoch", "test accuracy", False), ("nfe_per_epoch", "nfe per forward solve", False))
    starts = sorted({r["T0"] for r in runs})

    def draw(ax, i, j):
        key, label, log = panels[2 * i + j]
        for r in runs:
            c = f"C{starts.index(r['T0'])}"
            ax.plot(range(1, len(r[key]) + 1), r[key], color=c, lw=1.2, linestyle="-" if r["learn_time"] else "--",
                    label=f"T0 = {r['T0']:g}, {'learned' if r['learn_time'] else 'fixed'}")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        if i == j == 0:
            ax.legend(fontsize=7)

    return cplot.panel_grid(2, 2, draw, size=3.6, ticks=True, title=title)


def learn_depth(args: argparse.Namespace) -> None:
    out, config = cli.start(args), QUICK_DEPTH if args.quick else DEPTH
    data, test = circles(400, seed=TRAIN_SEED), circles(400, seed=TEST_SEED)
    t0 = time.perf_counter()
    runs = []
    for T0 in config["starts"]:
        for learn in (False, True):
            kind = "learned" if learn else "fixed"
            name = f"{'quick' if args.quick else 'full'}-depth{T0:g}-{kind}-seed{args.seed}.pt"
            runs.append(depth_run(T0, learn, data, test, out / "checkpoints" / name, seed=args.seed,
                                  progress=not args.no_progress,
                                  **{k: v for k, v in config.items() if k != "starts"}))
    cplot.save(depth_figure(runs, f"circles: depth T fixed (dashed) and learned (solid), dopri5, "
                                  f"{config['knots']} control intervals"), out / "learn_depth.png")
    metrics = {"quick": args.quick, "seed": args.seed, "train_seed": TRAIN_SEED, "test_seed": TEST_SEED,
               "config": {**config, "starts": list(config["starts"]), "lambda": LAMBDA, "gamma": 0.1,
                          "optimizer": "Adam, full batch, cosine-annealed lr",
                          "init": "weight, bias ~ N(0, 0.1^2) from seed"},
               "runs": runs, "wall_s": time.perf_counter() - t0}
    print(cli.finish(out, metrics, [
        f"T0 {r['T0']:g} {'learned' if r['learn_time'] else 'fixed  '}: T {r['T0']:g} -> {r['T_final']:.3f}, "
        f"test {r['test_acc']:.4f}, nfe/epoch {r['nfe_per_epoch'][0]} -> {r['nfe_per_epoch'][-1]} "
        f"(mean {sum(r['nfe_per_epoch']) / len(r['nfe_per_epoch']):.1f}), {r['wall_s']:.1f} s" for r in runs]))


def main(args: argparse.Namespace) -> None:
    out, quick = cli.start(args), args.quick
    config = QUICK if quick else FULL

    data, test = circles(400, seed=TRAIN_SEED), circles(400, seed=TEST_SEED)
    expected = circles(EXPECTED_N, seed=EXPECTED_SEED)
    cplot.save(cplot.scatter_classes(*data, title="circles: training data"), out / "data.png")
    metrics = {"quick": quick, "seed": args.seed, "train_seed": TRAIN_SEED, "test_seed": TEST_SEED, "n_train": 400, "n_test": 400,
               "extra_test_seeds": list(EXTRA_TEST_SEEDS), "expected_acc_set": {"seed": EXPECTED_SEED, "n": EXPECTED_N},
               "radial_rule": {"radius": BAYES_RADIUS, "test_acc": radial_rule_accuracy(test),
                               "test_acc_extra_sets": [radial_rule_accuracy(circles(400, seed=s)) for s in EXTRA_TEST_SEEDS],
                               "expected_acc": radial_rule_accuracy(expected)}}
    t0 = time.perf_counter()
    for name, model, loss_fn, correct_fn in (
            ("model1", Model1(), F.cross_entropy, count_correct),
            ("model2", Model2(), model2_loss, model2_correct),
            ("model2_no_augmentation", Model2(), model2_loss, model2_correct)):
        checkpoint = out / "checkpoints" / f"{'quick' if quick else 'full'}-{name}-seed{args.seed}.pt"
        metrics[name] = train(model, loss_fn, correct_fn, data, test, expected, checkpoint, seed=args.seed,
                              progress=not args.no_progress, **config[name])
        figures(name, model, *data, out)
    names = ("model1", "model2", "model2_no_augmentation")
    cplot.save(cplot.panel_grid(1, 3, lambda ax, i, j: cplot.curves(
        {names[j]: metrics[names[j]]["train_loss_per_epoch"]}, ax=ax, log=True, title=names[j],
        ylabel="training cross entropy" if j == 0 else ""), size=3.6, ticks=True,
        title="circles: training loss per epoch (batches as trained on, without the smoothness penalty)"),
        out / "training_loss.png")
    metrics["wall_s"] = time.perf_counter() - t0
    print(cli.finish(out, metrics, [
        f"{name}: train {m['train_acc']:.4f} test {m['test_acc']:.4f} expected {m['expected_acc']:.4f} "
        f"gamma {m['gamma']:.4f} params {m['params']} ({m['wall_s']:.1f} s)"
        for name, m in ((k, metrics[k]) for k in ("model1", "model2", "model2_no_augmentation"))]))


if __name__ == "__main__":
    if ARGS.learn_depth:
        learn_depth(ARGS)
    else:
        main(ARGS)
