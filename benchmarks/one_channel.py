"""One-channel convolutions: ``ConvResidual(1, ...)`` runs the batch as one depthwise convolution.

    python benchmarks/one_channel.py [--reps N] [--json out.json]

One training step (forward, cross-entropy, backward) of the MNIST ResNet with seed 000's block
(``build_mnist_model("resnet", depth)``, batch 128, the 1x28x28 image as the state), timed in
interleaved rounds with the field's convolution as it is (``depthwise``) and as a plain
``F.conv2d`` of the (B, 1, H, W) state (``plain``: the field's ``vector_field`` patched to it; the
same function, checked here to 1e-5). ``ratio`` = median(depthwise) / median(plain), at one
thread and at torch's default thread count.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from unittest import mock

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from contdepth.fields import ConvResidual  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from contdepth.models.mnist import build_mnist_model  # noqa: E402
from run import interleave, machine  # noqa: E402


def plain(self, t, psi, theta):
    """The convolution as one (B, 1, H, W) conv2d."""
    return self._act(F.conv2d(psi, theta["weight"], theta["bias"], padding=self.kernel_size // 2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--depths", type=int, nargs="+", default=[15, 50])
    p.add_argument("--json", default=None)
    args = p.parse_args()
    default_threads = torch.get_num_threads()
    torch.manual_seed(0)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 10, (128,))
    rows = []
    for depth in args.depths:
        net = build_mnist_model("resnet", depth)

        def step() -> torch.Tensor:
            net.zero_grad()
            loss = F.cross_entropy(net(x), y)
            loss.backward()
            return loss.detach()

        def step_plain() -> torch.Tensor:
            with mock.patch.object(ConvResidual, "vector_field", plain):
                return step()

        torch.testing.assert_close(step(), step_plain(), rtol=1e-5, atol=1e-5)
        for threads in (1, default_threads):
            torch.set_num_threads(threads)
            times = interleave({"depthwise": step, "plain": step_plain}, args.reps)
            med = {k: statistics.median(v) for k, v in times.items()}
            rows.append({"depth": depth, "threads": threads, "depthwise_s": med["depthwise"], "plain_s": med["plain"],
                         "ratio": med["depthwise"] / med["plain"]})
            print(f"resnet depth {depth:3d}, {threads} thread(s): depthwise {1e3 * med['depthwise']:8.1f} ms  "
                  f"plain {1e3 * med['plain']:8.1f} ms  ratio {rows[-1]['ratio']:.3f}")
        torch.set_num_threads(default_threads)
    if args.json:
        write_json_atomic(args.json, {"command": " ".join(["python", *sys.argv]), "machine": machine(),
                                      "reps": args.reps, "rows": rows})


if __name__ == "__main__":
    main()
