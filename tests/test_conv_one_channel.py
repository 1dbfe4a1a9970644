"""ConvResidual with one channel runs the batch as one depthwise convolution: the same function
and gradients as the plain convolution (float64)."""
import pytest
import torch
import torch.nn.functional as F

from contdepth import ControlGrid
from contdepth.fields import ConvResidual

D = torch.float64


@pytest.mark.parametrize("kernel_size, activation", [(3, "relu"), (5, "identity")])
def test_one_channel_field_equals_the_plain_convolution(kernel_size, activation):
    gen = torch.Generator().manual_seed(0)
    field = ConvResidual(1, ControlGrid(0.0, 2.0, n=2), kernel_size=kernel_size, activation=activation).to(D)
    psi = torch.randn(5, 1, 7, 6, generator=gen, dtype=D, requires_grad=True)
    cot = torch.randn(5, 1, 7, 6, generator=gen, dtype=D)
    out = field(1.5, psi)
    theta = {"weight": field.weight[1], "bias": field.bias[1]}
    ref = F.conv2d(psi, theta["weight"], theta["bias"], padding=kernel_size // 2)
    ref = torch.relu(ref) if activation == "relu" else ref
    torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
    got = torch.autograd.grad(out, [psi, field.weight, field.bias], cot)
    want = torch.autograd.grad(ref, [psi, field.weight, field.bias], cot)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    assert got[1][0].abs().sum() == 0 and got[1][1].abs().sum() > 0  # only the knot of t = 1.5


def test_a_non_contiguous_one_channel_state_takes_the_plain_convolution():
    field = ConvResidual(1, ControlGrid(0.0, 1.0, n=1)).to(D)
    psi = torch.randn(4, 1, 6, 9, dtype=D).transpose(-1, -2)  # (4, 1, 9, 6), not contiguous
    ref = torch.relu(F.conv2d(psi.contiguous(), field.weight[0], field.bias[0], padding=1))
    torch.testing.assert_close(field(0.5, psi), ref, rtol=1e-13, atol=1e-13)
