"""contdepth.analysis.activations: the states of every layer and the activation mass budget
(seed 000 sec. 4.2: features diffusing and drifting out of the image), checked on small fields
with closed forms in float64; and what Adam does to the drift factor of seed 000's eq. 40.

Closed forms: a pure-shift stencil (PDE1 with beta = alpha^2, PDE2 with beta = -8 alpha^2) moves
the image one pixel per layer and loses exactly the column (row) that leaves; a stencil on a state
away from the edge loses nothing and creates h gamma M; a uniform image loses h (2H a + 2W s) by
diffusion whatever the drift; a convolution with bias creates h (sum(k) M + b H W), for 3x3 and 5x5
kernels (the padding ring follows the kernel's reach); the ReLU projection adds sum(ReLU(-z)) >= 0
and nothing to a convex (stable, drift-bounded) diffusion step of a non-negative state.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contdepth import ControlGrid, ODEBlock
from contdepth.analysis import MassBudget, layer_states, mass_budget
from contdepth.fields import ConvResidual, PDEStencil
from contdepth.fields.pde import DRIFT_SCALE, stencil_kernel
from contdepth.models import build_mnist_model

D = torch.float64


def _pde(variant: str, depth: int, *, project=torch.relu, dtype=D, **coeffs) -> ODEBlock:
    """A one-channel PDEStencil block, depth Euler layers of h = 1, coefficients set per name."""
    field = PDEStencil(1, ControlGrid(0.0, float(depth), n=depth), variant=variant).to(dtype)
    with torch.no_grad():
        for name, value in coeffs.items():
            getattr(field, name).fill_(value)
    return ODEBlock(field, method="euler", steps=depth, project=project)


def _closes(b: MassBudget, tol: float = 1e-12) -> None:
    """M_{l+1} - M_l = S_l - Phi_l + R_l."""
    torch.testing.assert_close(b.mass[1:] - b.mass[:-1], b.source - b.outflow + b.projection, rtol=0, atol=tol)


# ---- the states ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, block", [("pde1", "seed"), ("pde2", "seed"), ("resnet", "seed"), ("pde1", "ode")])
def test_states_are_the_blocks_layers(name, block):
    """The last state is the block's output bit for bit; every state is the hand-written layer of
    the one before: ReLU(psi + D_l psi) (seed block) or psi + ReLU(D_l psi) (ODE form)."""
    torch.manual_seed(0)
    model = build_mnist_model(name, 4, block=block).to(D)
    with torch.no_grad():
        for p in model.block.field.parameters():
            p.add_(0.2 * torch.randn_like(p))
    x = torch.randn(2, 1, 28, 28, dtype=D)
    states = layer_states(model, x)
    assert states.shape == (5, 2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(states[-1], model.block(model.stem(x)))
    field = model.block.field
    for l in range(4):
        if name == "resnet":
            lin = F.conv2d(states[l], field.weight[l], field.bias[l], padding=1)
        else:
            kernel = stencil_kernel(*(getattr(field, c)[l] for c in ("alpha", "beta", "sigma", "rho", "gamma")),
                                    DRIFT_SCALE[name])
            lin = F.conv2d(states[l], kernel, padding=1, groups=1)
        expected = torch.relu(states[l] + lin) if block == "seed" else states[l] + torch.relu(lin)
        torch.testing.assert_close(states[l + 1], expected, rtol=1e-13, atol=1e-13)


def test_states_of_a_block_and_of_the_cubic_net():
    """An ODEBlock takes x as its input (no stem); the cubic net's 10 channels, 20 layers."""
    block = _pde("pde1", 3, alpha=0.7, beta=0.1)
    x = torch.rand(1, 1, 6, 7, dtype=D)
    states = layer_states(block, x)
    assert torch.equal(states[0], x) and torch.equal(states[-1], block(x))
    cubic = build_mnist_model("cubic")
    assert layer_states(cubic, torch.rand(1, 1, 28, 28)).shape == (21, 1, 10, 28, 28)


# ---- closed forms -------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["pde1", "pde2"])
@pytest.mark.parametrize("axis", ["x", "y"])
def test_pure_shift_loses_exactly_the_edge_that_leaves(variant, axis):
    """alpha^2/2 = s beta/2 (sigma likewise for y) makes the kernel [0, -1, 1]: psi_{l+1}(i, j) =
    psi_l(i, j + 1) (x) or psi_l(i + 1, j) (y). Layer l loses column (row) l of the input, the
    field creates nothing, the projection adds nothing to the non-negative states."""
    s = DRIFT_SCALE[variant]
    drift = 1.0 / s  # s * drift = 1 = alpha^2 with alpha = 1
    coeffs = dict(alpha=1.0, beta=drift, sigma=0.0, rho=0.0) if axis == "x" else \
        dict(alpha=0.0, beta=0.0, sigma=1.0, rho=drift)
    block = _pde(variant, 3, **coeffs)
    torch.manual_seed(1)
    x = torch.rand(2, 1, 5, 6, dtype=D)
    states = layer_states(block, x)
    dim = -1 if axis == "x" else -2
    for l in range(3):
        expected = torch.cat([states[l].narrow(dim, 1, states[l].shape[dim] - 1),
                              torch.zeros_like(states[l].narrow(dim, 0, 1))], dim=dim)
        torch.testing.assert_close(states[l + 1], expected, rtol=0, atol=1e-15)
    b = mass_budget(block, x, band_width=1)
    leaving = torch.stack([x.select(dim, l).sum(dim=(1, 2)).mean() for l in range(3)])
    torch.testing.assert_close(b.outflow, leaving, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(b.source, torch.zeros(3, dtype=D), rtol=0, atol=1e-14)
    assert torch.equal(b.projection, torch.zeros(3, dtype=D))
    torch.testing.assert_close(b.mass, torch.stack([s_.sum(dim=(1, 2, 3)).mean() for s_ in states]), rtol=1e-14,
                               atol=0)
    _closes(b)


def test_interior_state_loses_nothing_and_gamma_is_the_source():
    """A state zero on the outer pixel ring: no flux through the boundary whatever the stencil;
    the field creates h gamma M (diffusion and drift only move mass)."""
    torch.manual_seed(2)
    x = torch.zeros(3, 1, 8, 9, dtype=D)
    x[..., 1:-1, 1:-1] = torch.rand(3, 1, 6, 7, dtype=D)
    block = _pde("pde1", 1, project=None, alpha=0.9, beta=-0.3, sigma=0.4, rho=0.6, gamma=0.25)
    b = mass_budget(block, x)
    assert b.outflow.abs().item() < 1e-14
    torch.testing.assert_close(b.source, 0.25 * b.mass[:1], rtol=1e-13, atol=0)
    _closes(b)


def test_uniform_image_loses_diffusion_through_each_side_whatever_the_drift():
    """psi = 1 on H x W: the left and right rings receive (a2 +- s beta/2) per row, top and bottom
    (s2 +- s rho/2) per column: Phi = h (2 H a2 + 2 W s2), a2 = alpha^2/2, s2 = sigma^2/2."""
    H, W, h = 5, 7, 0.5
    field = PDEStencil(1, ControlGrid(0.0, 1.0, n=2), variant="pde2").to(D)
    with torch.no_grad():
        field.alpha.copy_(torch.tensor([[0.8], [0.3]]))
        field.sigma.copy_(torch.tensor([[0.6], [1.1]]))
        field.beta.copy_(torch.tensor([[2.0], [-1.0]]))
        field.rho.copy_(torch.tensor([[-3.0], [0.5]]))
    block = ODEBlock(field, method="euler", steps=2)
    b = mass_budget(block, torch.ones(1, 1, H, W, dtype=D))
    expected = h * (2 * H * field.alpha[:1, 0] ** 2 / 2 + 2 * W * field.sigma[:1, 0] ** 2 / 2)
    torch.testing.assert_close(b.outflow[:1], expected.detach(), rtol=1e-14, atol=0)
    assert b.band[0].item() == H * W - (H - 4) * (W - 4)  # band_width 2
    _closes(b)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_convolution_source_is_kernel_sum_times_mass_plus_bias(kernel_size):
    """F = K psi + b (C = 2 channels): the mass the field creates in a step is
    h sum_c (sum_{c'} sum(K[c', c]) M_c + b_c H W); the zero ring of the padding is as wide as the
    kernel's reach, so the identity also holds for 5x5 kernels."""
    torch.manual_seed(3)
    field = ConvResidual(2, ControlGrid(0.0, 1.0, n=1), kernel_size=kernel_size, activation="identity").to(D)
    block = ODEBlock(field, method="euler", steps=1)
    x = torch.rand(2, 2, 6, 6, dtype=D)
    b = mass_budget(block, x)
    per_channel_mass = x.sum(dim=(2, 3)).mean(0)
    k_sum = field.weight[0].sum(dim=(2, 3))  # (out, in)
    expected = (k_sum.sum(0) * per_channel_mass).sum() + field.bias[0].sum() * 36
    torch.testing.assert_close(b.source[0], expected.detach(), rtol=1e-13, atol=1e-13)
    assert b.outflow[0].abs().item() > 0.01  # the random kernel does write into the ring
    _closes(b)


def test_projection_adds_the_negative_part_and_never_removes_mass():
    """R = sum(ReLU(-z)) >= 0 for the seed block; 0 for the ODE form (no projection)."""
    torch.manual_seed(4)
    x = torch.randn(4, 1, 10, 10, dtype=D)
    seed = _pde("pde1", 3, alpha=1.2, beta=0.7, sigma=0.9, rho=-0.4, gamma=-0.8)
    b = mass_budget(seed, x)
    assert (b.projection > 0).all()
    states = layer_states(seed, x)
    field = seed.field
    kernel = stencil_kernel(*(getattr(field, c)[0] for c in ("alpha", "beta", "sigma", "rho", "gamma")), 1.0)
    z0 = states[0] + F.conv2d(states[0], kernel, padding=1)
    torch.testing.assert_close(b.projection[0], torch.relu(-z0).sum(dim=(1, 2, 3)).mean().detach(), rtol=1e-13, atol=0)
    _closes(b)
    free = mass_budget(_pde("pde1", 3, project=None, alpha=1.2, beta=0.7, sigma=0.9, rho=-0.4, gamma=-0.8), x)
    assert torch.equal(free.projection, torch.zeros(3, dtype=D))
    _closes(free)


def test_convex_diffusion_step_keeps_a_non_negative_state_and_its_interior_mass():
    """h (2 a2 + 2 s2) <= 1 and |s beta| <= 2 a2, |s rho| <= 2 s2: z is a convex combination of
    neighbours, so z >= 0, R = 0, and on an interior state M is conserved exactly (gamma = 0)."""
    torch.manual_seed(5)
    x = torch.zeros(2, 1, 9, 9, dtype=D)
    x[..., 2:-2, 2:-2] = torch.rand(2, 1, 5, 5, dtype=D)
    block = _pde("pde2", 1, alpha=0.5, beta=-1.0, sigma=0.5, rho=0.8)  # s beta = 0.125 = 2 a2
    b = mass_budget(block, x)
    assert torch.equal(b.projection, torch.zeros(1, dtype=D))
    torch.testing.assert_close(b.mass[1], b.mass[0], rtol=1e-14, atol=0)


def test_float32_model_budget_is_float64_and_json_ready():
    model = build_mnist_model("pde1", 3)
    b = mass_budget(model, torch.randn(2, 1, 28, 28))
    assert b.mass.dtype == D and b.mass.shape == (4,) and b.outflow.shape == (3,)
    d = b.as_dict()
    assert set(d) == {"mass", "band", "source", "outflow", "projection", "band_width"} and len(d["mass"]) == 4
    _closes(b, tol=1e-3)


def test_bad_inputs_are_named():
    with pytest.raises(TypeError, match="model must be"):
        mass_budget(torch.nn.Linear(2, 2), torch.zeros(1, 2))
    model = build_mnist_model("pde1", 2)
    model.set_solver("rk4", 2)
    with pytest.raises(ValueError, match="method must be 'euler'"):
        layer_states(model, torch.zeros(1, 1, 28, 28))
    with pytest.raises(ValueError, match="band_width"):
        mass_budget(build_mnist_model("pde1", 2), torch.zeros(1, 1, 28, 28), band_width=0)
    with pytest.raises(ValueError, match="band_width must be at most"):
        mass_budget(build_mnist_model("pde1", 2), torch.zeros(1, 1, 28, 28), band_width=15)
    with pytest.raises(ValueError, match="learn_time"):
        layer_states(ODEBlock(PDEStencil(1, ControlGrid(0.0, 2.0, n=2)), method="euler", steps=2, learn_time=True),
                     torch.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        layer_states(ODEBlock(PDEStencil(1, ControlGrid(0.0, 2.0, n=2)), method="euler", steps=2), torch.zeros(4, 4))
