"""Training-step time of this checkout against the first release (commit 27d1110), in one process.

    python benchmarks/first_release.py [--reps N] [--only SUBSTRING] [--json out.json]

The first release is checked out with ``git worktree`` into a temporary folder and imported as
the package ``contdepth_first`` (its imports are relative), beside this checkout's ``contdepth``;
each case builds the same field and input with both and times one training step (solve,
mean-square loss, backward) in interleaved rounds, the order alternating. ``ratio`` =
median(now) / median(first release); ``paired_ratio`` = median of the per-round ratios.
Then, last (compiled code slows later eager steps in its process), the cases in ``COMPILED``: this
checkout's step under ``torch.compile`` (inductor) against the first release's eager step, timed
before anything is compiled (``compile.measure`` with the first release as the baseline).
Single-threaded. Needs the git history (a clone, not an sdist).
"""
from __future__ import annotations

import importlib
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import contdepth as cd  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from compile import measure  # noqa: E402
from fused import mnist_step  # noqa: E402
from run import case_parser, interleave, machine  # noqa: E402

FIRST_RELEASE = "27d1110"
# (field, batch, method, steps or None for dopri5 at rtol 1e-3, gradient)
CASES = [("conv", 32, "euler", 32, "backprop"), ("conv", 32, "rk4", 32, "backprop"),
         ("pde", 32, "euler", 32, "backprop"), ("dense", 64, "euler", 64, "backprop"),
         ("dense", 64, "rk4", 64, "backprop"), ("dense", 5000, "rk4", 64, "backprop"),
         ("dense", 64, "rk4", 64, "checkpoint"), ("dense", 64, "rk4", 64, "adjoint"),
         ("conv", 32, "rk4", 32, "checkpoint"), ("conv", 32, "rk4", 32, "adjoint"),
         ("dense", 64, "dopri5", None, "backprop"), ("dense", 64, "dopri5", None, "adjoint"),
         ("conv", 8, "dopri5", None, "backprop"),
         # one training step of each MNIST model at examples/mnist.py's default batch: an epoch's time
         # is this times the number of batches (data loading and the optimizer are the same in both). The
         # ODE-Net is left out: its field has two convolutions now (Chen et al.'s), the first release's one
         ("mnist-pde1", 128, "euler", 15, "backprop"), ("mnist-pde2", 128, "euler", 15, "backprop"),
         ("mnist-resnet", 128, "euler", 15, "backprop"), ("mnist-cubic", 64, "euler", 20, "backprop")]
# MNIST models (name, batch) whose training pays for torch.compile (docs/PERFORMANCE.md, compile.json)
COMPILED = [("cubic", 64)]


def load_first_release(folder: Path):
    """Import commit FIRST_RELEASE's package as ``contdepth_first``."""
    tree = folder / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), FIRST_RELEASE],
                   check=True, capture_output=True)
    try:
        shutil.copytree(tree / "contdepth", folder / "pkg" / "contdepth_first")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True,
                       capture_output=True)
    sys.path.insert(0, str(folder / "pkg"))
    return importlib.import_module("contdepth_first")


def training_step(lib, kind: str, batch: int, method: str, steps: int | None, gradient: str) -> Callable[[], None]:
    torch.manual_seed(0)
    if kind.startswith("mnist-"):  # the model as built by build_mnist_model (its own method and gradient)
        model = importlib.import_module(f"{lib.__name__}.models.mnist").build_mnist_model(kind[6:])
        x, labels = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))

        def step() -> None:
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), labels).backward()
        return step
    if kind == "dense":  # the peaks network of seed 004 ch. 3
        f, x = lib.fields.DenseResidual(8, lib.ControlGrid(0.0, 20.0, 16), activation="tanh"), torch.randn(batch, 8)
    elif kind == "conv":
        f, x = lib.fields.ConvResidual(16, lib.ControlGrid(0.0, 1.0, 16)), torch.randn(batch, 16, 28, 28)
    else:
        f, x = lib.fields.PDEStencil(16, lib.ControlGrid(0.0, 1.0, 16)), torch.randn(batch, 16, 28, 28)
    kwargs = dict(method=method, gradient=gradient, **(dict(steps=steps) if steps else dict(rtol=1e-3, atol=1e-5)))

    def run() -> None:
        for p in f.parameters():
            p.grad = None
        lib.odesolve(f, x, **kwargs).square().mean().backward()
    return run


def main() -> None:
    args = case_parser(__doc__).parse_args()
    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        first = load_first_release(Path(folder))
        for case in CASES:
            label = "/".join(str(c) for c in case)
            if args.only not in label:
                continue
            times = interleave({"now": training_step(cd, *case), "first": training_step(first, *case)}, args.reps)
            now, old = statistics.median(times["now"]), statistics.median(times["first"])
            paired = statistics.median(a / b for a, b in zip(times["now"], times["first"]))
            rows.append({"case": label, "now_s": now, "first_release_s": old, "ratio": now / old, "paired_ratio": paired})
            print(f"{label:32s} now {now * 1e3:8.1f} ms  first release {old * 1e3:8.1f} ms  ratio {now / old:.2f} "
                  f"(paired {paired:.2f})", flush=True)
        for name, batch in COMPILED:
            label = f"mnist-{name}/{batch}/compiled"
            if args.only in label:
                runs = {"first": training_step(first, f"mnist-{name}", batch, "euler", None, "backprop"),
                        "compiled": mnist_step(name, batch, compile_backend="inductor")}
                rows.append(measure(label, runs, args.reps, baseline="first"))
    if args.json:
        write_json_atomic(args.json, {"machine": machine(), "first_release": FIRST_RELEASE, "reps": args.reps,
                                      "cases": rows})


if __name__ == "__main__":
    main()
