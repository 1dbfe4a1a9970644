"""Train a continuous-depth MNIST classifier (seed 000 ch. 4, seed 002 sec. 5.2, Chen et al. 2018).

    python examples/mnist.py [--model {pde1,pde2,resnet,cubic,odenet}] [--depth N] [--epochs E] [--quick] [--out DIR]
        [--block {seed,ode}] [--optimizer O] [--lr LR] [--gamma-lr LR] [--schedule {constant,cosine,warmup-cosine}] [--batch-size B] [--clip C]
        [--shift K] [--compile] [--seed S] [--threads N] [--no-progress] [--data DIR]
    torchrun --standalone --nproc_per_node=2 examples/mnist.py ...   # DistributedDataParallel

``--model`` defaults to resnet (seed 000's conv ResNet), so ``python examples/mnist.py --quick`` is a
short CI run of it. Writes DIR/metrics.json (atomically), DIR/training.png and DIR/checkpoint.pt after every epoch; rerunning the same
command resumes from the checkpoint and ends with the same weights as an uninterrupted run
(``--schedule warmup-cosine`` spans ``--epochs``: resume with the same ``--epochs``).
``--block`` (pde1, pde2, resnet): ``seed`` (default), seed 000's layer ReLU(psi + D psi) with the
skip inside the ReLU (a projected Euler step); ``ode``, the ODE form psi + ReLU(D psi).
After training, ``--eval-method``/``--eval-steps`` re-evaluate the trained field with other
integrators and depths. At the end it also writes DIR/activations.png (the first test image of a
0 through the layers: seed 002 fig. 7), DIR/controls.png (theta(t) per layer: seed 002 fig. 6) and,
for the Euler blocks (all but odenet), the activation mass budget per layer into metrics.json
(``mass_budget``: mass, border band, source, outflow, projection; contdepth.analysis.mass_budget).

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 6 s (resnet) to 40 s (odenet); full runs per model and budget in docs/RESULTS.md (10
epochs of pde1 at depth 15: 109 s, loaded; the cubic net's 40 epochs: 4,536 s, compiled).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path

from _cli import cli

SCHEDULES = ("constant", "cosine", "warmup-cosine")
SEED_000 = ("pde1", "pde2", "resnet")  # the models with a choice of --block
# contdepth.models' MNIST_MODELS and BLOCKS, spelled out so that the options are checked before torch is imported
MODELS = ("pde1", "pde2", "resnet", "cubic", "odenet")
BLOCKS = ("seed", "ode")
DEFAULT_MODEL = "resnet"
# (optimizer, lr, batch size, schedule, clip). Seed 000: Adam, lr 1e-3. Seed 002 says SGD and gives neither
# lr nor batch. Cubic, measured (docs/RESULTS.md): Adam learns far faster than SGD (5k images, 1 epoch:
# SGD momentum lr 0.01 clip 1 35 %, Adam 1e-3 58 %); clipping slows it (Adam 1e-3, 10k images, epoch 1:
# no clip 53 %, clip 10 43 %); label smoothing 0.1 (--label-smoothing) helps (12.8k images, Adam 2e-3:
# 74.7 % vs 63.8 %). With gamma unbounded the 60k run went non-finite in epoch 2 even at peak lr 1e-3
# (build_mnist_model bounds gamma to [0, 1e-3] now). Cosine decay to 0 after a 5 % linear warm-up.
DEFAULTS = {"pde1": ("adam", 1e-3, 128, "constant", None), "pde2": ("adam", 1e-3, 128, "constant", None),
            "resnet": ("adam", 1e-3, 128, "constant", None), "odenet": ("adam", 1e-3, 128, "constant", None),
            "cubic": ("adam", 1e-3, 64, "warmup-cosine", None)}
# --quick (CI, about a minute or two per model): per model the images, epochs and any other settings that
# replace the defaults. pde1/pde2 with the seed block (measured, seed 0): 5,000 images x 3 epochs 84.6 % both
# (the ODE form: 89.0 %), x 5 epochs 89.7 / 90.4 %; 10,000 images x 3 epochs 91.8 / 91.9 %. The cubic net is the
# slowest per image and needs 40,000 images for 85 % (15,000: 74-80 %); its quick run is a smoke test of
# learning on 8,000 images (seed 0, one epoch: 67.5 % at lr 2e-3, 69.5 % at 4e-3; chance 10 %).
# QUICK_MIN_ACCURACY: what tests/test_mnist.py requires of each quick run.
QUICK: dict[str, dict] = {
    "pde1": {"train_images": 10000, "test_images": 1000, "epochs": 3},
    "pde2": {"train_images": 10000, "test_images": 1000, "epochs": 3},
    "resnet": {"train_images": 5000, "test_images": 1000, "epochs": 2},
    "cubic": {"train_images": 8000, "test_images": 1000, "epochs": 1, "batch_size": 32, "lr": 4e-3},
    "odenet": {"train_images": 10000, "test_images": 1000, "epochs": 2, "width": 16, "batch_size": 32, "lr": 3e-3},
}
QUICK_MIN_ACCURACY = {"pde1": 0.85, "pde2": 0.85, "resnet": 0.85, "cubic": 0.6, "odenet": 0.85}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, checked and completed with the model's defaults (and QUICK's under ``--quick``);
    contdepth (and torch) is imported only after every check has passed."""
    p = cli.example_parser(__doc__, default_out=None,
                           quick_help="CI: per model fewer images and epochs, and the settings in QUICK; "
                                      "options given explicitly still apply")
    p.add_argument("--model", choices=MODELS, default=DEFAULT_MODEL, help="the network (seed 000, 002, Chen et al.)")
    p.add_argument("--depth", type=cli.positive_int, default=None, help="control knots = Euler layers (default per model)")
    p.add_argument("--block", choices=BLOCKS, default="seed",
                   help="pde1, pde2, resnet: seed = seed 000's layer ReLU(psi + D psi) (Euler, then the projection "
                        "onto psi >= 0; default), ode = psi + ReLU(D psi)")
    p.add_argument("--epochs", type=cli.nonnegative_int, default=None, help="default 1")
    p.add_argument("--batch-size", type=cli.positive_int, default=None, help="per process (default per model)")
    p.add_argument("--optimizer", choices=("adam", "sgd"), default=None, help="default per model")
    p.add_argument("--lr", type=cli.positive_float, default=None, help="default per model")
    p.add_argument("--gamma-lr", type=cli.positive_float, default=None,
                   help="cubic only: the learning rate of gamma (default --lr x gamma's upper bound 1e-3: Adam moves "
                        "every parameter by about lr per step, gamma's range is [0, 1e-3])")
    p.add_argument("--momentum", type=cli.nonnegative_float, default=0.9, help="SGD only")
    p.add_argument("--schedule", choices=SCHEDULES, default=None,
                   help="learning rate: constant; cosine (decay per epoch); warmup-cosine (per batch: linear "
                        "warm-up over --warmup of the steps, then cosine to 0). Default per model")
    p.add_argument("--cosine", action="store_true", help="same as --schedule cosine")
    p.add_argument("--warmup", type=cli.nonnegative_float, default=0.05,
                   help="warmup-cosine: fraction of all training steps spent warming up (default 0.05)")
    p.add_argument("--clip", type=cli.positive_float, default=None,
                   help="clip the gradient's global norm (default per model)")
    p.add_argument("--label-smoothing", type=cli.nonnegative_float, default=None,
                   help="of the cross entropy; default 0.1 for cubic (caps the logit scale the max pool chases), else 0")
    p.add_argument("--smooth", type=cli.nonnegative_float, default=None,
                   help="lambda of the smoothness regulariser (seed 002 eq. 82); default 0.1 for cubic, else 0")
    p.add_argument("--width", type=cli.positive_int, default=None,
                   help="odenet channels, a multiple of 8 (default 64)")
    p.add_argument("--rtol", type=cli.positive_float, default=None, help="odenet's dopri5 (default 1e-3)")
    p.add_argument("--atol", type=cli.positive_float, default=None, help="odenet's dopri5 (default 1e-3)")
    p.add_argument("--shift", type=cli.nonnegative_int, default=0,
                   help="translate each training image by up to this many pixels (Chen et al.: 4; default 0)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (model.compile()); pays for the cubic net only (docs/PERFORMANCE.md)")
    p.add_argument("--train-images", type=cli.positive_int, default=None, help="random subset of the 60,000 (default all)")
    p.add_argument("--test-images", type=cli.positive_int, default=None, help="random subset of the 10,000 (default all)")
    p.add_argument("--eval-method", nargs="*", default=[], choices=("euler", "midpoint", "rk4", "dopri5"))
    p.add_argument("--eval-steps", nargs="*", type=cli.positive_int, default=[])
    p.add_argument("--data", default=None, help="MNIST folder with the four IDX files (default $CONTDEPTH_DATA)")
    args = p.parse_args(argv)
    if args.model == "cubic" and args.depth not in (None, 20):
        p.error(f"argument --depth: must be 20 for --model cubic (seed 002 sec. 5.2), got {args.depth}")
    if args.block != "seed" and args.model not in SEED_000:
        p.error(f"argument --block: only pde1, pde2 and resnet have a choice of block, got --model {args.model}")
    if args.gamma_lr is not None and args.model != "cubic":
        p.error(f"argument --gamma-lr: only --model cubic has a learned gamma, got --model {args.model}")
    if args.quick:
        for name, value in QUICK[args.model].items():
            if getattr(args, name) is None:
                setattr(args, name, value)
    args.width = args.width or 64
    if args.model == "odenet" and args.width % 8:
        p.error(f"argument --width: must be a multiple of 8 (GroupNorm with 8 channels per group), got {args.width}")
    for name in ("rtol", "atol"):
        if getattr(args, name) is not None and args.model != "odenet":
            p.error(f"argument --{name}: only --model odenet solves adaptively, got --model {args.model}")
    data = args.data or os.environ.get("CONTDEPTH_DATA")
    if not data:
        p.error("argument --data: no MNIST folder; pass --data DIR or set CONTDEPTH_DATA (nothing is downloaded)")
    if not Path(data).expanduser().is_dir():
        p.error(f"argument --data: MNIST folder {data!r} does not exist (from {'--data' if args.data else 'CONTDEPTH_DATA'})")
    args.data = data
    if args.cosine and args.schedule not in (None, "cosine"):
        p.error(f"argument --cosine: not allowed with --schedule {args.schedule}")
    if args.label_smoothing is not None and args.label_smoothing >= 1:
        p.error(f"argument --label-smoothing: must be in [0, 1), got {args.label_smoothing}")
    from contdepth.models.mnist import CUBIC_GAMMA_MAX, DEFAULT_DEPTH

    args.epochs = 1 if args.epochs is None else args.epochs
    args.depth = DEFAULT_DEPTH[args.model] if args.depth is None else args.depth
    opt, lr, bs, schedule, clip = DEFAULTS[args.model]
    args.optimizer = args.optimizer or opt
    args.lr = args.lr if args.lr is not None else lr
    args.batch_size = bs if args.batch_size is None else args.batch_size
    args.schedule = "cosine" if args.cosine else (args.schedule or schedule)
    args.clip = args.clip if args.clip is not None else clip
    if args.model == "cubic" and args.gamma_lr is None:
        args.gamma_lr = args.lr * CUBIC_GAMMA_MAX
    if args.label_smoothing is None:
        args.label_smoothing = 0.1 if args.model == "cubic" else 0.0
    args.smooth = args.smooth if args.smooth is not None else (0.1 if args.model == "cubic" else 0.0)
    args.rtol = 1e-3 if args.rtol is None else args.rtol
    args.atol = 1e-3 if args.atol is None else args.atol
    args.out = args.out or Path(f"runs/mnist/{args.model}-d{args.depth}" + ("-ode" if args.block == "ode" else ""))
    return args


if __name__ == "__main__":
    ARGS = parse_args()

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

import contdepth as cd  # noqa: E402
import contdepth.plot as cplot  # noqa: E402
from contdepth.analysis import layer_states, mass_budget, trajectory  # noqa: E402
from contdepth.data.mnist import load_mnist, random_shift  # noqa: E402
from contdepth.errors import CheckpointError  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from contdepth.models import build_mnist_model  # noqa: E402
from contdepth.train import evaluate, fit  # noqa: E402


def steps_per_epoch(images: int, batch_size: int, world: int) -> int:
    """Optimizer steps in one epoch of ``images`` sharded over ``world`` processes."""
    return math.ceil(math.ceil(images / world) / batch_size)


def check_resume_block(out: Path, model: str, block: str) -> None:
    """Exit if ``out`` holds a checkpoint of ``model`` with the other block: both blocks have the same
    parameter shapes, so the checkpoint would load. Runs that recorded no block used the ODE form."""
    metrics = out / "metrics.json"
    if model not in SEED_000 or not (out / "checkpoint.pt").exists() or not metrics.exists():
        return
    saved = json.loads(metrics.read_text()).get("block", "ode")
    if saved != block:
        raise SystemExit(f"{Path(__file__).name}: error: {out} holds a checkpoint of the {saved!r} block, not "
                         f"--block {block}; delete it or choose another --out")


def make_optimizer(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """Adam or SGD over the model's parameters at ``args.lr``; the cubic field's gamma in its own group
    at ``args.gamma_lr`` (schedules scale both groups alike; the PDE fields' gamma is a stencil weight)."""
    own = {"block.field.gamma"} if args.model == "cubic" else set()
    gamma = [p for name, p in model.named_parameters() if name in own]
    rest = [p for name, p in model.named_parameters() if name not in own]
    groups = [{"params": rest}] + ([{"params": gamma, "lr": args.gamma_lr}] if gamma else [])
    if args.optimizer == "adam":
        return torch.optim.Adam(groups, lr=args.lr)
    return torch.optim.SGD(groups, lr=args.lr, momentum=args.momentum)


def make_scheduler(opt: torch.optim.Optimizer, schedule: str, *, epochs: int, steps_per_epoch: int,
                   warmup: float) -> torch.optim.lr_scheduler.LRScheduler | None:
    """None for "constant"; cosine over the epochs (stepped per epoch) for "cosine"; for
    "warmup-cosine" a per-batch factor rising linearly over ``warmup`` of all steps, then cosine to 0."""
    if schedule == "constant":
        return None
    if schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    total = max(epochs * steps_per_epoch, 1)
    ramp = max(round(warmup * total), 1)

    def factor(step: int) -> float:
        if step < ramp:
            return (step + 1) / ramp
        return 0.5 * (1.0 + math.cos(math.pi * min(step - ramp, total - ramp) / max(total - ramp, 1)))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


SEED_ACCURACY = {"cubic": ("seed 002", 0.978), "odenet": ("Chen et al. 2018", 0.9958)}  # published, drawn beside ours


def plot_training(history: dict, path: Path, *, model: str, label_smoothing: float = 0.0) -> None:
    """Training loss and train/test accuracy per epoch, side by side (with the seed's accuracy if known)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    loss_label = f"cross entropy (label smoothing {label_smoothing:g})" if label_smoothing else "cross entropy"
    cplot.curves({"train (mean over batches)": history["train_loss"]}, ax=left, ylabel=loss_label,
                 title=f"MNIST {model}: training loss")
    cplot.curves({"train (during the epoch)": history["train_acc"], "test (after the epoch)": history["eval_acc"]},
                 ax=right, ylabel="accuracy", title=f"MNIST {model}: accuracy")
    if model in SEED_ACCURACY:
        source, acc = SEED_ACCURACY[model]
        right.axhline(acc, color="k", lw=0.8, ls=":", label=f"{source}: {100 * acc:.1f} %")
        right.set_ylim(top=max(right.get_ylim()[1], acc + 0.01))
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        cplot.legend_outside(ax, below=True)
    cplot.save(fig, path)


MASS_IMAGES = 100  # test images averaged in metrics.json's mass_budget
DIGIT = 0  # activations.png follows the first test image of this digit


def first_test_image(data: str, label: int = DIGIT, *, normalize: bool) -> torch.Tensor:
    """The first image labelled ``label`` in the full 10,000-image test set (the same image for
    every run, whatever its --test-images subset): (1, 1, 28, 28)."""
    X, y = load_mnist(data, train=False, normalize=normalize)
    return X[int((y == label).nonzero()[0])][None]


@torch.no_grad()
def digit_states(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[float] | None]:
    """The block's states of the one input ``x`` (1, 1, 28, 28): (L + 1, C, H, W) at the Euler layers
    (times None), or, for an adaptive block (odenet), at 11 equally spaced times (returned too)."""
    block = model.block
    if block.method == "euler":
        return layer_states(model, x)[:, 0], None
    ts, ys = trajectory(block.field, model.stem(x), method=block.method, steps=block.steps, n_points=11,
                        rtol=block.rtol, atol=block.atol)
    return ys[:, 0], ts.tolist()


def layer_figures(model: torch.nn.Module, out: Path, *, name: str, x: torch.Tensor,
                  images: torch.Tensor) -> dict | None:
    """Write ``out``/activations.png (``x`` through the layers) and ``out``/controls.png (theta(t) per
    layer); return the mass budget of ``images`` as a dict for metrics.json (None for a non-Euler block)."""
    states, times = digit_states(model, x)
    cplot.save(cplot.activations(states, times=times, title=f"MNIST {name}: the first test image of a {DIGIT} "
                                                           f"through the block"), out / "activations.png")
    cplot.save(cplot.controls(model.block.field, title=f"MNIST {name}: theta(t) per layer"), out / "controls.png")
    if model.block.method != "euler":
        return None
    budget = mass_budget(model, images)
    return {**budget.as_dict(), "images": len(images),
            "note": "means over the first images of the test set; layer 0 = the block's input (definitions: "
                    "contdepth.analysis.MassBudget)"}


def main(argv: list[str] | None = None, *, args: argparse.Namespace | None = None) -> dict:
    """Train (or resume) and evaluate one model; ``args`` if already parsed, else ``parse_args(argv)``."""
    args = args if args is not None else parse_args(argv)
    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    device = torch.device(f"cuda:{os.environ.get('LOCAL_RANK', 0)}" if torch.cuda.is_available() else "cpu")
    t_start = time.perf_counter()

    normalize = args.model != "cubic"  # the cubic net sees raw [0, 1] pixels on zero channels
    try:
        train = load_mnist(args.data, train=True, limit=args.train_images, seed=args.seed, normalize=normalize)
        test = load_mnist(args.data, train=False, limit=args.test_images, seed=args.seed, normalize=normalize)
    except (FileNotFoundError, ValueError) as e:  # missing or damaged IDX files: one line, no traceback
        raise SystemExit(f"{Path(__file__).name}: error: {e}") from None

    torch.manual_seed(args.seed)
    check_resume_block(args.out, args.model, args.block)
    model = build_mnist_model(args.model, args.depth, width=args.width, rtol=args.rtol, atol=args.atol,
                              block=args.block).to(device)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if args.compile:
        model.compile()  # in place: the state dict (and so the checkpoint) is the eager model's
    opt = make_optimizer(model, args)
    sched = make_scheduler(opt, args.schedule, epochs=args.epochs, warmup=args.warmup,
                           steps_per_epoch=steps_per_epoch(len(train[1]), args.batch_size, world))
    field = model.block.field
    regularizer = (lambda: args.smooth * cd.smoothness(field)) if args.smooth > 0 else None

    if rank == 0:
        cli.start(args)
    metrics = {
        "model": args.model, "block": args.block if args.model in SEED_000 else None,
        "depth": args.depth, "params": params, "epochs": args.epochs,
        "train_images": len(train[1]), "test_images": len(test[1]), "batch_size": args.batch_size,
        "world_size": world, "optimizer": args.optimizer, "lr": args.lr, "schedule": args.schedule,
        "warmup": args.warmup if args.schedule == "warmup-cosine" else None,
        "momentum": args.momentum if args.optimizer == "sgd" else None, "gamma_lr": args.gamma_lr,
        "smooth_lambda": args.smooth,
        "label_smoothing": args.label_smoothing,
        "gamma_bounds": [getattr(field, "gamma_min", None), getattr(field, "gamma_max", None)],
        "clip_grad_norm": args.clip, "shift": args.shift, "compile": args.compile,
        "seed": args.seed, "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
        "command": " ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        "train_method": model.block.method, "train_steps": model.block.steps, "gradient": model.block.gradient,
    }

    nfe_epochs: list[dict] = []

    def log(record: dict) -> None:
        total = model.nfe_totals()
        done = {k: sum(e[k] for e in nfe_epochs) for k in total}
        epoch = {k: total[k] - done[k] for k in total}
        nfe_epochs.append(epoch)
        record["nfe_per_call"] = {k: epoch[k] / max(epoch["calls"], 1) for k in ("nfe_forward", "nfe_backward")}
        if rank == 0:
            write_json_atomic(args.out / "metrics.json", {**metrics, "status": "training", "last_epoch": record})

    try:
        loss_fn = functools.partial(F.cross_entropy, label_smoothing=args.label_smoothing)
        res = fit(model, loss_fn, train, optimizer=opt, epochs=args.epochs, batch_size=args.batch_size,
                  regularizer=regularizer, checkpoint=args.out / "checkpoint.pt", seed=args.seed,
                  progress=not args.no_progress, eval_data=test, log=log, scheduler=sched,
                  clip_grad_norm=args.clip,
                  transform=functools.partial(random_shift, max_shift=args.shift) if args.shift else None,
                  scheduler_interval="batch" if args.schedule == "warmup-cosine" else "epoch")
    except CheckpointError as e:  # a checkpoint of another configuration in --out
        raise SystemExit(f"{Path(__file__).name}: error: {e}") from None
    nfe = model.nfe_totals()

    test_acc = evaluate(model, test)
    evals = []
    trained = (model.block.method, model.block.steps)
    for method in args.eval_method or [trained[0]]:
        for steps in (args.eval_steps or [trained[1]]) if method != "dopri5" else [None]:
            if (method, steps) == trained:
                continue
            model.set_solver(method, steps)
            t0 = time.perf_counter()
            acc = evaluate(model, test)
            evals.append({"method": method, "steps": steps, "test_acc": acc, "wall_s": time.perf_counter() - t0})
    model.set_solver(*trained)

    metrics.update({
        "status": "done", "test_acc": test_acc, "test_error": 1.0 - test_acc, "wall_s": res["wall_s"],
        "session_wall_s": time.perf_counter() - t_start, "resumed_from_epoch": res["resumed_from_epoch"],
        "steps": res["steps"], "eval": evals,
        "history": {k: res[k] for k in ("train_loss", "train_reg", "train_acc", "eval_acc", "epoch_wall_s")},
    })
    if nfe["calls"]:
        metrics["nfe"] = {**nfe, "per_call_forward": nfe["nfe_forward"] / nfe["calls"],
                          "per_call_backward": nfe["nfe_backward"] / nfe["calls"],
                          "per_epoch": nfe_epochs,
                          "note": "training calls (one per batch) of this session only, not carried over a resume"}
    if args.model == "cubic":
        metrics["gamma"] = field.gamma.item()
    if rank == 0:
        plot_training(metrics["history"], args.out / "training.png", model=args.model,
                      label_smoothing=args.label_smoothing)
        model.eval()
        digit = first_test_image(args.data, normalize=normalize).to(device)
        budget = layer_figures(model, args.out, name=args.model, x=digit, images=test[0][:MASS_IMAGES].to(device))
        if budget is not None:
            metrics["mass_budget"] = budget
        block = f" ({args.block} block)" if metrics["block"] else ""
        summary = [f"{args.model}{block} depth {args.depth}: test accuracy {test_acc:.4f} ({params} params, "
                   f"{len(train[1])} train images, {args.epochs} epochs, {res['wall_s']:.0f} s)"]
        summary += [f"  re-evaluated with {e['method']} steps={e['steps']}: {e['test_acc']:.4f}" for e in evals]
        print(cli.finish(args.out, metrics, summary))
    if world > 1:
        dist.barrier()  # tear gloo down together: a rank leaving early aborts its peer
        dist.destroy_process_group()
    return metrics


if __name__ == "__main__":
    main(args=ARGS)
