"""PDEStencil.coefficients: the factors the network applies, by a closed form on quadratic images;
and what Adam makes of pde2's drift factor s = -1/8 (seed 000 eq. 40)."""
from __future__ import annotations

import pytest
import torch

from contdepth import ControlGrid
from contdepth.fields import PDEStencil
from contdepth.models import build_mnist_model

D = torch.float64


@pytest.mark.parametrize("variant", ["pde1", "pde2"])
def test_coefficients_are_the_factors_of_the_derivatives(variant):
    """On psi = c0 + c1 x + c2 y + c3 x^2 + c4 y^2 the central differences are exact in the
    interior: F = 2 c3 Dxx + (c1 + 2 c3 x) Vx + 2 c4 Dyy + (c2 + 2 c4 y) Vy + G psi."""
    n, H, W = 3, 6, 7
    field = PDEStencil(1, ControlGrid(0.0, float(n), n=n), variant=variant).to(D)
    gen = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name in ("alpha", "beta", "sigma", "rho", "gamma"):
            getattr(field, name).copy_(torch.randn(n, 1, generator=gen, dtype=D))
    c = torch.randn(5, generator=gen, dtype=D)
    y, x = torch.meshgrid(torch.arange(H, dtype=D), torch.arange(W, dtype=D), indexing="ij")
    psi = (c[0] + c[1] * x + c[2] * y + c[3] * x ** 2 + c[4] * y ** 2)[None, None]
    k = field.coefficients()
    assert set(k) == {"diffusion_x", "drift_x", "diffusion_y", "drift_y", "reaction"}
    for layer in range(n):
        out = field(layer + 0.5, psi)[0, 0, 1:-1, 1:-1]
        kl = {name: v[layer, 0] for name, v in k.items()}
        expected = (2 * c[3] * kl["diffusion_x"] + (c[1] + 2 * c[3] * x) * kl["drift_x"] + 2 * c[4] * kl["diffusion_y"]
                    + (c[2] + 2 * c[4] * y) * kl["drift_y"] + kl["reaction"] * psi[0, 0])[1:-1, 1:-1]
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    assert not any(v.requires_grad for v in k.values())


def test_adam_moves_pde2_drift_eight_times_less_than_pde1_from_the_same_start():
    """At beta = rho = 0 pde1 and pde2 compute the same function, so every gradient agrees except
    the drift's, which pde2 scales by s = -1/8. Adam's step is invariant to a constant factor on
    a parameter's gradient (up to its eps), so pde2's beta moves by minus pde1's and the applied
    drift s beta by 1/8 of it: eq. 40's factor is an 8x smaller drift learning rate under Adam
    (under SGD it would be 64x), not a no-op. Every other parameter takes the identical step."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 1, 28, 28), torch.randint(0, 10, (16,))
    nets = {}
    for name in ("pde1", "pde2"):
        torch.manual_seed(1)
        net = build_mnist_model(name, 4)
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        nets[name] = net
    p1, p2 = dict(nets["pde1"].named_parameters()), dict(nets["pde2"].named_parameters())
    for name in p1:
        if name.endswith((".beta", ".rho")):
            assert p1[name].abs().min() > 1e-4  # the drift moved, by about lr
            torch.testing.assert_close(p2[name], -p1[name], rtol=2e-3, atol=0)  # eps / |grad| ~ 1e-4
        else:
            assert torch.equal(p1[name], p2[name]), name
    k1, k2 = nets["pde1"].block.field.coefficients(), nets["pde2"].block.field.coefficients()
    for name in ("drift_x", "drift_y"):
        torch.testing.assert_close(k2[name], k1[name] / 8, rtol=2e-3, atol=0)
