"""The pullback of a same-padded 3x3 convolution on CPU: autograd's ``convolution_backward`` against
the input gradient as a forward convolution with the flipped kernel, and channels-last copies.

    python benchmarks/conv_vjp.py [--rounds N] [--json out.json]

Why ``contdepth.fields.conv.conv_vjp`` computes psi's gradient as ``conv2d(g, flip(W)^T)``: the
two are the same numbers (checked here to float32 rounding), and this measures which is faster
for the shapes of this project's models (single-threaded, variants interleaved per round,
median times in ms).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from contdepth.io import write_json_atomic  # noqa: E402
from run import interleave, machine  # noqa: E402

# (batch, channels, height): cubic MNIST, the conv benchmark field, the ODE-Net (width 64), resnet MNIST
SHAPES = [(64, 10, 28), (32, 16, 28), (128, 64, 7), (128, 1, 28)]
CL = torch.channels_last


def variants(x: torch.Tensor, w: torch.Tensor, g: torch.Tensor) -> dict:
    c = w.shape[0]
    back = lambda g, x, mask: torch.ops.aten.convolution_backward(g, x, w, [c], [1, 1], [1, 1], [1, 1], False,
                                                                   [0, 0], 1, mask)
    flipped = lambda: F.conv2d(g, w.flip(-1, -2).transpose(0, 1), padding=1)
    return {
        "convolution_backward (autograd's)": lambda: back(g, x, [True, True, True])[:2],
        "input by flipped conv + weight by convolution_backward": lambda: (flipped(), back(g, x, [False, True, True])[1]),
        "input by flipped conv + weight channels-last": lambda: (
            flipped(), back(g.contiguous(memory_format=CL), x.contiguous(memory_format=CL), [False, True, True])[1]),
        "convolution_backward channels-last": lambda: back(g.contiguous(memory_format=CL),
                                                           x.contiguous(memory_format=CL), [True, True, True])[:2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for b, c, h in SHAPES:
        x, w, g = torch.randn(b, c, h, h), torch.randn(c, c, 3, 3), torch.randn(b, c, h, h)
        fns = variants(x, w, g)
        ref = next(iter(fns.values()))()
        for name, fn in fns.items():
            for got, want in zip(fn(), ref):
                torch.testing.assert_close(got.contiguous(), want.contiguous(), rtol=1e-4, atol=1e-3, msg=name)
        times = interleave(fns, args.rounds)
        ms = {name: statistics.median(t) * 1e3 for name, t in times.items()}
        base = ms["convolution_backward (autograd's)"]
        rows.append({"batch": b, "channels": c, "size": h, "median_ms": ms,
                     "ratio_to_autograd": {name: v / base for name, v in ms.items()}})
        print(f"B={b} C={c} {h}x{h}: " + ", ".join(f"{name} {v:.2f} ms" for name, v in ms.items()), flush=True)
    if args.json:
        write_json_atomic(args.json, {"machine": machine(), "rounds": args.rounds, "shapes": rows})


if __name__ == "__main__":
    main()
