"""Contiguous (NCHW) against channels-last states for the convolutional fields, in one process.

    python benchmarks/channels_last.py [--reps N] [--json out.json]

One training step (solve, loss, backward; the default gradient path) per case, the same input
once as it is and once as ``x.contiguous(memory_format=torch.channels_last)``, timed in
interleaved rounds. ``ratio`` = median(channels-last) / median(contiguous). The MNIST cases swap
the model's stem for one that ends in the other layout. Single-threaded.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import contdepth as cd  # noqa: E402
from baselines import make_field  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from contdepth.models.mnist import ChannelsLast, build_mnist_model  # noqa: E402
from run import interleave, machine  # noqa: E402


def field_cases() -> dict[str, tuple]:
    torch.manual_seed(0)
    cubic = cd.fields.ConvCubicFriction(10, cd.ControlGrid(0.0, 20.0, 20), gamma=1e-3, gamma_min=0.0, gamma_max=1e-3)
    with torch.no_grad():
        cubic.weight.normal_(0.0, 0.02)
    conv, x = make_field("conv", batch=32)
    return {"conv(B=32)/euler/steps=32": (conv, x, "euler", 32), "conv(B=32)/rk4/steps=32": (conv, x, "rk4", 32),
            "cubic field(B=64, C=10)/euler/steps=20": (cubic, torch.rand(64, 10, 28, 28), "euler", 20)}


def layouts_of_field(field, x, method, steps) -> dict[str, Callable[[], None]]:
    def run(inp: torch.Tensor) -> Callable[[], None]:
        def step() -> None:
            for p in field.parameters():
                p.grad = None
            cd.odesolve(field, inp, method=method, steps=steps).square().mean().backward()
        return step
    return {"contiguous": run(x.contiguous()), "channels_last": run(x.contiguous(memory_format=torch.channels_last))}


def layouts_of_model(name: str, batch: int) -> dict[str, Callable[[], None]]:
    torch.manual_seed(0)
    model = build_mnist_model(name)
    x, labels = torch.rand(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
    stem = model.stem  # the cubic model's ends in ChannelsLast: drop it for the contiguous runs
    plain = stem[0] if isinstance(stem, nn.Sequential) and isinstance(stem[-1], ChannelsLast) else stem
    stems = {"contiguous": plain, "channels_last": nn.Sequential(plain, ChannelsLast())}

    def run(stem: nn.Module) -> Callable[[], None]:
        def step() -> None:
            model.stem = stem
            model.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), labels).backward()
        return step
    return {k: run(stem) for k, stem in stems.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = {label: (lambda c=c: layouts_of_field(*c)) for label, c in field_cases().items()}
    cases["mnist-cubic(B=64)"] = lambda: layouts_of_model("cubic", 64)
    cases["mnist-odenet(B=128)"] = lambda: layouts_of_model("odenet", 128)
    rows = []
    for label, make in cases.items():
        times = interleave(make(), args.reps)
        med = {k: statistics.median(v) for k, v in times.items()}
        rows.append({"case": label, "contiguous_s": med["contiguous"], "channels_last_s": med["channels_last"],
                     "ratio": med["channels_last"] / med["contiguous"]})
        print(f"{label:40s} contiguous {med['contiguous'] * 1e3:8.1f} ms  channels-last "
              f"{med['channels_last'] * 1e3:8.1f} ms  ratio {rows[-1]['ratio']:.2f}", flush=True)
    if args.json:
        write_json_atomic(args.json, {"machine": machine(), "reps": args.reps, "cases": rows})


if __name__ == "__main__":
    main()
