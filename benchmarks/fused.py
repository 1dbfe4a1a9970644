"""The hand-written fixed-step backward (contdepth/gradients/fused.py) on and off, in one process.

    python benchmarks/fused.py [--reps N] [--only SUBSTRING] [--json out.json]

One training step (solve, loss, backward) per case, timed in interleaved rounds with the fields'
vector-Jacobian products switched on (the default) and off (``ControlledField.has_vjp`` patched
to False: autograd records the same steps). ``ratio`` = median(on) / median(off). Cases: the
benchmark fields of ``baselines.py`` with each gradient method, and one training step of each
fixed-step MNIST model (``build_mnist_model``, the example's batch). Single-threaded.
"""
from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Callable
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import contdepth as cd  # noqa: E402
from baselines import make_field  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from contdepth.models.mnist import build_mnist_model  # noqa: E402
from run import case_parser, interleave, machine  # noqa: E402

# (field, batch, method, steps) x gradient methods
FIELD_CASES = [("conv", 32, "euler", 32), ("conv", 32, "rk4", 32), ("dense", 64, "euler", 64),
               ("dense", 64, "rk4", 64), ("dense", 5000, "rk4", 64), ("pde", 32, "euler", 32)]
GRADIENTS = ("backprop", "checkpoint", "adjoint")
MNIST_CASES = [("pde1", 128), ("pde2", 128), ("resnet", 128), ("cubic", 64)]


def _compiled(forward: Callable[[], torch.Tensor], backend: str | None) -> Callable[[], torch.Tensor]:
    return forward if backend is None else torch.compile(forward, backend=backend)


def field_step(kind: str, batch: int, method: str, steps: int, gradient: str, *,
               compile_backend: str | None = None) -> Callable[[], None]:
    """One training step (solve, mean-square loss, backward) of a benchmark field; with
    ``compile_backend`` the solve and the loss go through ``torch.compile``."""
    if kind == "pde":
        torch.manual_seed(0)
        f, x = cd.fields.PDEStencil(16, cd.ControlGrid(0.0, 1.0, 16)), torch.randn(batch, 16, 28, 28)
    else:
        f, x = make_field(kind, batch=batch)
    forward = _compiled(lambda: cd.odesolve(f, x, method=method, steps=steps, gradient=gradient).square().mean(),
                        compile_backend)

    def run() -> None:
        for p in f.parameters():
            p.grad = None
        forward().backward()
    return run


def mnist_step(name: str, batch: int, *, compile_backend: str | None = None) -> Callable[[], None]:
    """One training step (cross entropy) of ``build_mnist_model(name)``; with ``compile_backend``
    the model and the loss go through ``torch.compile``."""
    torch.manual_seed(0)
    model = build_mnist_model(name)
    x, labels = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    forward = _compiled(lambda: torch.nn.functional.cross_entropy(model(x), labels), compile_backend)

    def run() -> None:
        model.zero_grad(set_to_none=True)
        forward().backward()
    return run


def step_cases(gradients: tuple[str, ...], mnist: list[tuple[str, int]]) -> dict[str, Callable[[], Callable]]:
    """label -> a factory of the training step: ``FIELD_CASES`` with each of ``gradients``, then one
    step of each MNIST model in ``mnist`` (name, batch)."""
    cases = {f"{k}(B={b})/{m}/{g}/steps={s}": (lambda k=k, b=b, m=m, s=s, g=g: field_step(k, b, m, s, g))
             for k, b, m, s in FIELD_CASES for g in gradients}
    cases.update({f"mnist-{n}(B={b})": (lambda n=n, b=b: mnist_step(n, b)) for n, b in mnist})
    return cases


def autograd_only():
    """Within it, no field offers its VJP: every gradient goes through autograd."""
    return mock.patch.object(cd.fields.ControlledField, "has_vjp", property(lambda self: False))


def main() -> None:
    args = case_parser(__doc__).parse_args()
    torch.set_num_threads(1)
    cases = step_cases(GRADIENTS, MNIST_CASES)
    rows = []
    for label, make in cases.items():
        if args.only not in label:
            continue
        run = make()

        def off(run=run) -> None:
            with autograd_only():
                run()
        times = interleave({"on": run, "off": off}, args.reps)
        on, off = statistics.median(times["on"]), statistics.median(times["off"])
        rows.append({"case": label, "on_s": on, "off_s": off, "ratio": on / off, "times_on_s": times["on"],
                     "times_off_s": times["off"]})
        print(f"{label:40s} fused {on * 1e3:8.1f} ms  autograd {off * 1e3:8.1f} ms  ratio {on / off:.2f}", flush=True)
    if args.json:
        write_json_atomic(args.json, {"machine": machine(), "reps": args.reps, "cases": rows})


if __name__ == "__main__":
    main()
