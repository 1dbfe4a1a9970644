"""Seed 000 table 4.1/4.2: PDE1, PDE2 and the conv ResNet at depths 5, 15, 27, 50 on MNIST.

    python examples/mnist_sweep.py [--block {seed,ode}] [--epochs E] [--schedule S] [--train-images N] [--quick]
        [--out DIR] [--seed S] [--threads N]

Runs ``examples/mnist.py`` once per (model, depth) in its own folder DIR/MODEL-dDEPTH (with
``--block ode``: DIR/MODEL-dDEPTH-ode; so an interrupted sweep resumes where it stopped), then
writes DIR/table.md (ours beside the seed's numbers), DIR/accuracy_vs_depth.png, DIR/curves.png,
DIR/metrics.json and, for every depth with finished pde1 and pde2 runs, DIR/fig45.png (seed 000
fig. 4.5: the first test image of a 0 through the layers of the trained PDE1 and PDE2 side by
side, from their checkpoints). Every run's folder has its own activations.png and controls.png. ``--block seed`` (default) trains seed 000's layer ReLU(psi + D psi) (eq. 26,
the skip inside the ReLU); ``--block ode`` the ODE form psi + ReLU(D psi).

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 36 s; the 12 cells at 10 epochs about 2,500 s of training (docs/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _cli import cli

BLOCKS = ("seed", "ode")  # contdepth.models.BLOCKS, spelled out: the options are checked before torch is imported
DEPTHS = [5, 15, 27, 50]
# --quick: two depths, 2,000 training and 500 test images per run (mnist.py's --quick settings otherwise)
QUICK = {"depths": [5, 15], "train_images": 2000, "test_images": 500}

# seed 000 table 4.1 (50 epochs, Adam lr 1e-3); pde2 and the second resnet column: table 4.2
SEED = {
    "pde1": {5: 97.4, 15: 96.5, 27: 95.8, 50: 89.2},
    "pde2": {27: 97.0, 50: 96.9},
    "resnet": {15: 97.3, 27: 97.0, 50: 96.2},
}
SEED_RESNET_T42 = {27: 96.7, 50: 97.3}
HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = cli.example_parser(__doc__, default_out="runs/mnist-sweep",
                           quick_help="pass --quick to every run; unless given, --depths 5 15, --train-images 2000, "
                                      "--test-images 500")
    p.add_argument("--models", nargs="+", default=["pde1", "pde2", "resnet"], choices=["pde1", "pde2", "resnet"])
    p.add_argument("--depths", nargs="+", type=cli.positive_int, default=None, help=f"default {DEPTHS}")
    p.add_argument("--block", choices=BLOCKS, default="seed",
                   help="seed = seed 000's layer ReLU(psi + D psi) (default); ode = psi + ReLU(D psi)")
    p.add_argument("--epochs", type=cli.positive_int, default=None, help="default 1")
    p.add_argument("--schedule", choices=["constant", "cosine"], default=None,
                   help="learning-rate schedule of every run (default: the model's, constant)")
    p.add_argument("--train-images", type=cli.positive_int, default=None)
    p.add_argument("--test-images", type=cli.positive_int, default=None)
    p.add_argument("--data", default=None, help="MNIST folder with the four IDX files (default $CONTDEPTH_DATA)")
    p.add_argument("--table-only", action="store_true",
                   help="train nothing; tabulate the finished runs in --out (missing ones: 'not run')")
    args = p.parse_args(argv)
    if args.table_only and args.quick:
        p.error("argument --table-only: not allowed with --quick (it trains nothing)")
    if not args.table_only and not (args.data or os.environ.get("CONTDEPTH_DATA")):
        p.error("argument --data: no MNIST folder; pass --data DIR or set CONTDEPTH_DATA (nothing is downloaded)")
    for name, value in QUICK.items() if args.quick else ():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.depths = args.depths or DEPTHS
    args.epochs = 1 if args.epochs is None else args.epochs
    return args


if __name__ == "__main__":
    ARGS = parse_args()

import contdepth.plot as cplot  # noqa: E402  (first: selects matplotlib's Agg backend)
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from contdepth.analysis import layer_states  # noqa: E402
from contdepth.data.mnist import load_mnist  # noqa: E402
from contdepth.io import write_text_atomic  # noqa: E402
from contdepth.models import build_mnist_model  # noqa: E402


def run_one(args: argparse.Namespace, model: str, depth: int) -> dict | None:
    out = run_dir(args, model, depth)
    metrics = out / "metrics.json"
    if metrics.exists():
        done = json.loads(metrics.read_text())
        same = done.get("block", "ode") == args.block and (args.table_only or (
            done.get("epochs") == args.epochs and done.get("schedule") == (args.schedule or "constant")))
        if done.get("status") == "done" and same:
            return done
    if args.table_only:
        return None
    cmd = [sys.executable, str(HERE / "mnist.py"), "--model", model, "--depth", str(depth), "--block", args.block,
           "--epochs", str(args.epochs), "--out", str(out), "--threads", str(args.threads), "--seed", str(args.seed),
           "--no-progress"]
    for flag, value in (("--train-images", args.train_images), ("--test-images", args.test_images),
                        ("--data", args.data), ("--schedule", args.schedule)):
        if value is not None:
            cmd += [flag, str(value)]
    if args.quick:
        cmd.append("--quick")
    if subprocess.run(cmd).returncode:
        raise SystemExit(f"mnist_sweep.py: error: {' '.join(cmd[1:])} failed (its message is above)")
    return json.loads(metrics.read_text())


def table(results: dict[tuple[str, int], dict | None], args: argparse.Namespace) -> str:
    budgets = sorted({(r["epochs"], r["train_images"], r["test_images"]) for r in results.values() if r})
    lines = [
        "Ours: " + "; ".join(f"{e} epoch(s) on {n} training images, tested on {t}" for e, n, t in budgets)
        + ". Seed 000: 50 epochs on 60,000. Test accuracy (%); wall s = our training time.",
        "Our layer: " + ("ReLU(psi + D psi), seed 000's block (eq. 26)." if args.block == "seed" else
                         "psi + ReLU(D psi), the ODE form (not seed 000's block)."),
        "",
        "| depth | " + " | ".join(f"{m} (ours) | {m} (seed)" for m in args.models) + " | wall s (ours, per model) |",
        "|---:|" + "---:|---:|" * len(args.models) + "---|",
    ]
    for d in args.depths:
        cells = []
        walls = []
        for m in args.models:
            r = results[(m, d)]
            seed = SEED[m].get(d)
            if r is None:
                cells += ["not run", "—" if seed is None else f"{seed}"]
                walls.append("—")
                continue
            if m == "resnet" and d in SEED_RESNET_T42:
                seed_txt = f"{seed} (t. 4.2: {SEED_RESNET_T42[d]})"
            else:
                seed_txt = "—" if seed is None else f"{seed}"
            cells += [f"{100 * r['test_acc']:.2f}", seed_txt]
            walls.append(f"{r['wall_s']:.0f}")
        lines.append(f"| {d} | " + " | ".join(cells) + " | " + " / ".join(walls) + " |")
    return "\n".join(lines) + "\n"


def plot(results: dict[tuple[str, int], dict], args: argparse.Namespace, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, m in enumerate(args.models):
        color = f"C{i}"
        done = [(d, results[(m, d)]) for d in args.depths if results[(m, d)] is not None]
        ax.plot([d for d, _ in done], [100 * r["test_acc"] for _, r in done], "o-", color=color, label=f"{m} (ours)")
        seed = sorted(SEED[m].items())
        ax.plot([d for d, _ in seed], [a for _, a in seed], "s--", color=color, alpha=0.6, label=f"{m} (seed 000)")
    ax.set_xlabel("depth (Euler layers)")
    ax.set_ylabel("test accuracy (%)")
    epochs = sorted({r["epochs"] for r in results.values() if r})
    ax.set_title(f"MNIST, {args.block} block: ours after {'/'.join(map(str, epochs))} epoch(s) vs seed 000 after 50")
    ax.grid(alpha=0.3)
    cplot.legend_outside(ax)
    cplot.save(fig, path, dpi=120)


def plot_curves(results: dict[tuple[str, int], dict], args: argparse.Namespace, path: Path) -> None:
    """Test accuracy per epoch: one panel per model, one line per depth, the seed's 50-epoch
    numbers as dotted levels."""
    fig, axes = plt.subplots(1, len(args.models), figsize=(4.2 * len(args.models), 3.6), sharey=True,
                             squeeze=False)
    for ax, m in zip(axes[0], args.models):
        series = {f"depth {d}": [100 * a for a in results[(m, d)]["history"]["eval_acc"]]
                  for d in args.depths if results[(m, d)] is not None}
        if series:
            cplot.curves(series, ax=ax, ylabel="test accuracy (%)", title=m)
        for i, d in enumerate(args.depths):
            if d in SEED[m]:
                ax.axhline(SEED[m][d], color=f"C{i}", ls=":", lw=1)
        ax.grid(alpha=0.3)
    fig.suptitle(f"MNIST test accuracy by epoch, {args.block} block (dotted: seed 000 after 50 epochs)")
    fig.tight_layout()
    cplot.save(fig, path, dpi=120)


def run_dir(args: argparse.Namespace, model: str, depth: int) -> Path:
    """The folder of one (model, depth) run."""
    return Path(args.out) / (f"{model}-d{depth}" + ("-ode" if args.block == "ode" else ""))


def trained_net(args: argparse.Namespace, model: str, depth: int) -> torch.nn.Module:
    """The trained run's network, from its checkpoint, in eval mode."""
    net = build_mnist_model(model, depth, block=args.block)
    # written by this sweep's runs (contdepth.train.fit), with numpy RNG state: not a weights-only file
    net.load_state_dict(torch.load(run_dir(args, model, depth) / "checkpoint.pt", weights_only=False)["model"])
    return net.eval()


def trained_states(args: argparse.Namespace, model: str, depth: int, x: torch.Tensor) -> torch.Tensor:
    """The states (depth + 1, 1, 28, 28) of the one image ``x`` through the trained run's layers (its checkpoint)."""
    return layer_states(trained_net(args, model, depth), x)[:, 0]


def learned_table(results: dict[tuple[str, int], dict | None], args: argparse.Namespace) -> str:
    """What the trained PDE layers apply, from each pde run's checkpoint: the mean over layers of
    |coefficient| (:meth:`~contdepth.fields.PDEStencil.coefficients`; layer 0 apart, it sees the raw
    image), and the activation mass of 100 test images (metrics.json's mass budget): M_L / M_1
    and the mass that left through the image border in all layers, as a fraction of M_1."""
    lines = ["| run | layer | diffusion x, y | drift x, y | reaction | M_L / M_1 | border outflow / M_1 |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for (m, d), r in results.items():
        if m not in ("pde1", "pde2") or r is None or not (run_dir(args, m, d) / "checkpoint.pt").exists():
            continue
        k = {name: v.abs() for name, v in trained_net(args, m, d).block.field.coefficients().items()}
        mass = r["mass_budget"]["mass"]
        budget = f"{mass[-1] / mass[1]:.3g} | {sum(r['mass_budget']['outflow']) / mass[1]:.2g}"
        for label, rows in (("0", slice(0, 1)), (f"1-{d - 1}", slice(1, None))):
            if rows.start >= d:
                continue
            mean = {name: v[rows].mean().item() for name, v in k.items()}
            lines.append(f"| {m} depth {d} | {label} | {mean['diffusion_x']:.1e}, {mean['diffusion_y']:.1e} | "
                         f"{mean['drift_x']:.1e}, {mean['drift_y']:.1e} | {mean['reaction']:.3f} | "
                         + (budget if label == "0" else " | ") + " |")
    return "\n".join(lines) + "\n"


def plot_fig45(results: dict[tuple[str, int], dict | None], args: argparse.Namespace, path: Path) -> list[int]:
    """Seed 000 fig. 4.5: the first test image of a 0 through the layers of PDE1 (left) and PDE2
    (right), one row per depth at which both runs finished with a checkpoint; returns those depths
    (none: no figure). Needs the MNIST folder (--data or $CONTDEPTH_DATA) for the image."""
    depths = [d for d in args.depths if all(results.get((m, d)) is not None and
                                            (run_dir(args, m, d) / "checkpoint.pt").exists() for m in ("pde1", "pde2"))]
    data = args.data or os.environ.get("CONTDEPTH_DATA")
    if not depths or not data:
        return []
    X, y = load_mnist(data, train=False)
    x = X[int((y == 0).nonzero()[0])][None]
    rows = {m: {f"depth {d}": trained_states(args, m, d, x) for d in depths} for m in ("pde1", "pde2")}
    epochs = sorted({results[(m, d)]["epochs"] for m in ("pde1", "pde2") for d in depths})
    fig = cplot.compare_layer_states(rows["pde1"], rows["pde2"], names=("PDE1 (eq. 39)", "PDE2 (eq. 40)"),
                                     title=f"Seed 000 fig. 4.5: the first test image of a 0 through the layers, "
                                           f"{args.block} block, after {'/'.join(map(str, epochs))} epoch(s)")
    cplot.save(fig, path)
    return depths


def main(argv: list[str] | None = None, *, args: argparse.Namespace | None = None) -> dict:
    """Run (or resume) every (model, depth) and tabulate; ``args`` if already parsed, else ``parse_args(argv)``."""
    args = args if args is not None else parse_args(argv)
    cli.start(args)
    results = {(m, d): run_one(args, m, d) for m in args.models for d in args.depths}
    out = Path(args.out)
    md = table(results, args)
    if args.block == "seed" and any(m in ("pde1", "pde2") for m in args.models):
        md += "\nLearned PDE layers (mean |coefficient| over the layers; init: diffusion 0.125, drift and reaction 0):\n\n" \
            + learned_table(results, args)
    write_text_atomic(out / "table.md", md)
    plot(results, args, out / "accuracy_vs_depth.png")
    plot_curves(results, args, out / "curves.png")
    plot_fig45(results, args, out / "fig45.png")
    summary = {f"{m}-d{d}": {k: r[k] for k in ("model", "depth", "params", "epochs", "train_images", "test_acc",
                                               "wall_s", "command")}
               for (m, d), r in results.items() if r is not None}
    print(cli.finish(out, summary, [md.rstrip()]))
    return summary


if __name__ == "__main__":
    main(args=ARGS)
