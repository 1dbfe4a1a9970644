"""Path-integral view of the 1-D stencil block (seed 000 eq. 21-25, 33-38): exact lattice identities
and the continuum limit against the Gaussian kernel."""

import math

import pytest
import torch

import contdepth as cd
from contdepth.physics import (
    continuum_errors,
    gaussian_kernel,
    lattice_kernel,
    path_sum,
    propagator,
    residual_propagate,
    stencil_kernel,
    step_weights,
    transfer_matrix,
)

F64 = torch.float64


def test_stencil_kernel_is_eq24_for_unit_spacing():
    a, b, g = 0.7, 0.3, -0.2
    k = stencil_kernel(a, b, g, dtype=F64)
    expected = torch.tensor([(a * a + b) / 2, g - a * a, (a * a - b) / 2], dtype=F64)
    assert torch.equal(k, expected)
    # a step of +1 takes its value from psi(x - 1): weight k_-; a step of -1 from psi(x + 1): k_+
    assert torch.equal(step_weights(k), torch.tensor([k[0], 1 + k[1], k[2]], dtype=F64))


@pytest.mark.parametrize("per_layer", [False, True])
def test_path_sum_equals_residual_blocks_and_transfer_matrices(per_layer):
    gen = torch.Generator().manual_seed(0)
    steps, size = 6, 9
    # arbitrary (also negative) weights: the path expansion is exact linear algebra
    kernel = torch.randn((steps, 3) if per_layer else (3,), generator=gen, dtype=F64)
    psi0 = torch.randn(2, size, generator=gen, dtype=F64)
    direct = residual_propagate(psi0, kernel, steps)[-1]
    paths = path_sum(psi0, kernel, steps)
    matrices = psi0 @ propagator(kernel, size, steps).T
    assert direct.abs().max() > 1.0  # not a trivially small comparison
    torch.testing.assert_close(paths, direct, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(matrices, direct, rtol=1e-12, atol=1e-12)


def test_path_sum_sees_a_wrong_weight():
    kernel = stencil_kernel(0.9, 0.4, 0.1, dtype=F64)
    psi0 = torch.zeros(7, dtype=F64)
    psi0[3] = 1.0
    swapped = kernel.flip(0)  # drift sign reversed
    assert (path_sum(psi0, kernel, 4) - residual_propagate(psi0, swapped, 4)[-1]).abs().max() > 0.1


def test_transfer_matrix_entries_are_path_weights():
    k = stencil_kernel(0.8, 0.2, 0.05, dtype=F64)
    t = transfer_matrix(k, 5)
    w = step_weights(k)
    assert t[2, 3] == w[0] and t[2, 2] == w[1] and t[3, 2] == w[2]
    assert t[0, 4] == 0


def test_residual_propagate_matches_core_pde_stencil_euler():
    """Euler with h = 1 on the core PDEStencil field (H = 1 image, sigma = rho = 0) is eq. 25."""
    n, width = 4, 11
    grid = cd.ControlGrid(t0=0.0, t1=float(n), n=n)
    field = cd.fields.PDEStencil(1, grid).double()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        field.alpha.copy_(0.5 + torch.rand(n, 1, generator=gen, dtype=F64))
        field.beta.copy_(torch.randn(n, 1, generator=gen, dtype=F64) * 0.3)
        field.gamma.copy_(torch.randn(n, 1, generator=gen, dtype=F64) * 0.1)
        field.sigma.zero_()
    psi0 = torch.randn(3, 1, 1, width, generator=gen, dtype=F64)
    kernels = torch.stack([
        stencil_kernel(field.alpha[l, 0], field.beta[l, 0], field.gamma[l, 0]) for l in range(n)
    ]).detach()
    with torch.no_grad():
        core = cd.odesolve(field, psi0, method="euler", steps=n)
    ours = residual_propagate(psi0[:, 0, 0], kernels, n)[-1]
    torch.testing.assert_close(core[:, 0, 0], ours, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(path_sum(psi0[:, 0, 0], kernels, n), ours, rtol=1e-12, atol=1e-12)


def test_continuum_limit_gaussian_kernel_second_order():
    alpha, beta, gamma, t = 1.0, 0.5, 0.3, 1.0
    errs = continuum_errors(alpha=alpha, beta=beta, gamma=gamma, t=t, dxs=[0.4, 0.2, 0.1])
    maxes = [e.max_rel_error for e in errs]
    for coarse, fine in zip(maxes, maxes[1:]):
        assert 3.5 < coarse / fine < 4.5  # O(dx^2) with dt ~ dx^2
    assert maxes[-1] < 2e-3
    assert errs[-1].mass_rel_error < 2e-4


def test_continuum_drift_sign_is_minus_beta():
    """The stencil moves mass towards -x for beta > 0: the kernel with drift +beta is far off."""
    alpha, beta, gamma, t = 1.0, 0.5, 0.0, 1.0
    x, density, steps = lattice_kernel(alpha=alpha, beta=beta, gamma=gamma, t=t, dx=0.1)
    dt = t / steps
    mean = (x * density).sum() / density.sum()
    assert abs(mean.item() + beta * t) < 1e-9  # -beta dt per block
    variance = ((x - mean) ** 2 * density).sum() / density.sum()
    assert abs(variance.item() - (alpha**2 - beta**2 * dt) * t) < 1e-9  # alpha^2 dt - (beta dt)^2 per block
    right = gaussian_kernel(x, t=t, alpha=alpha, beta=beta, gamma=gamma)
    wrong = gaussian_kernel(x, t=t, alpha=alpha, beta=-beta, gamma=gamma)
    assert (density - right).abs().max() / right.max() < 2e-3
    assert (density - wrong).abs().max() / wrong.max() > 0.3


def test_growth_is_exp_gamma_t():
    gamma, t = -0.7, 2.0
    x, density, steps = lattice_kernel(alpha=0.8, beta=0.0, gamma=gamma, t=t, dx=0.1)
    mass = (density.sum() * (x[1] - x[0])).item()
    dt = t / steps
    assert abs(mass - (1 + gamma * dt) ** steps) < 1e-12  # total weight per block: 1 + gamma dt
    assert abs(mass / math.exp(gamma * t) - 1) < gamma**2 * t * dt  # -> exp(gamma t), error O(dt)
    assert abs(mass / math.exp(-gamma * t) - 1) > 0.9


def test_argument_errors():
    k = stencil_kernel(1.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="kernel"):
        residual_propagate(torch.zeros(5), torch.zeros(4), 2)
    with pytest.raises(ValueError, match="steps"):
        residual_propagate(torch.zeros(5), k, -1)
    with pytest.raises(ValueError, match="too large"):
        path_sum(torch.zeros(50), k, 14)
    with pytest.raises(ValueError, match="courant"):
        lattice_kernel(alpha=1.0, beta=0.0, gamma=0.0, t=1.0, dx=0.1, courant=0.6)
    with pytest.raises(ValueError, match="dx"):
        stencil_kernel(1.0, 0.0, 0.0, dx=0.0)
    with pytest.raises(TypeError, match="alpha"):
        stencil_kernel("1", 0.0, 0.0)
    with pytest.raises(ValueError, match="size"):
        transfer_matrix(k, 0)
    with pytest.raises(ValueError, match="size"):
        propagator(k, 0, 0)
    with pytest.raises(TypeError, match="kernel"):
        path_sum(torch.zeros(5), [0.5, 0.0, 0.5], 2)
