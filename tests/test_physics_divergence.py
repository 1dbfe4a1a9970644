"""Divergence, log-density change (seed 002 eq. 28) and entropy rate (eq. 32)."""

import math

import pytest
import torch

import contdepth as cd
from contdepth.physics import (
    divergence_exact,
    divergence_hutchinson,
    entropy_rate,
    log_density_trajectory,
)

F64 = torch.float64


def _dense(n: int, *, gamma: float = 0.5, mu: float = 3.0, scale: float = 0.8, seed: int = 0,
           t1: float = 1.0, dim: int = 3) -> cd.fields.CubicFriction:
    field = cd.fields.CubicFriction(dim, cd.ControlGrid(t0=0.0, t1=t1, n=n), gamma=gamma, mu=mu).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        field.weight.copy_(torch.randn(n, dim, dim, generator=gen, dtype=F64) * scale)
        field.bias.copy_(torch.randn(n, dim, generator=gen, dtype=F64) * 0.3)
    return field


def _x(batch: int = 5, dim: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


@pytest.mark.parametrize("mu", [3.0, 2.5])
def test_exact_divergence_closed_form(mu):
    """tr dF/dx = tr W - gamma mu sum |x|^(mu-1) for F = W x + b - gamma sign(x)|x|^mu (eq. 57)."""
    field = _dense(2, mu=mu)
    x = _x()
    t = 0.7  # second cell
    expected = torch.diagonal(field.weight[1]).sum() - 0.5 * mu * (x.abs() ** (mu - 1)).sum(-1)
    torch.testing.assert_close(divergence_exact(field, x, t), expected.detach(), rtol=1e-12, atol=1e-12)


def test_exact_divergence_conv_matches_full_jacobian():
    grid = cd.ControlGrid(t0=0.0, t1=1.0, n=1)
    field = cd.fields.ConvResidual(2, grid, activation="tanh").double()
    x = torch.randn(3, 2, 4, 4, dtype=F64)
    div = divergence_exact(field, x, 0.0)
    for b in range(3):
        jac = torch.autograd.functional.jacobian(lambda y: field(0.0, y[None])[0], x[b]).reshape(32, 32)
        torch.testing.assert_close(div[b], torch.trace(jac), rtol=1e-12, atol=1e-12)


def test_hutchinson_exact_for_diagonal_jacobian_and_unbiased_otherwise():
    field = _dense(1, scale=0.0)  # dF/dx diagonal: one Rademacher probe gives the trace exactly
    x = _x()
    torch.testing.assert_close(divergence_hutchinson(field, x, 0.0), divergence_exact(field, x, 0.0),
                               rtol=1e-12, atol=1e-12)

    grid = cd.ControlGrid(t0=0.0, t1=1.0, n=1)
    conv = cd.fields.ConvCubicFriction(2, grid, gamma=0.3).double()
    with torch.no_grad():
        conv.weight.normal_(0.0, 0.5)
    images = torch.randn(2, 2, 5, 5, dtype=F64)
    exact = divergence_exact(conv, images, 0.0)
    samples = 4000
    for noise in ("rademacher", "gaussian"):
        gen = torch.Generator().manual_seed(7)
        probes = torch.stack([divergence_hutchinson(conv, images, 0.0, samples=1, noise=noise, generator=gen)
                              for _ in range(8)])
        estimate = divergence_hutchinson(conv, images, 0.0, samples=samples, noise=noise, generator=gen)
        stderr = probes.std(0) / math.sqrt(samples)
        assert probes.std(0).min() > 0.1  # the estimator is genuinely random here
        assert ((estimate - exact).abs() < 5 * stderr).all()


def test_log_density_linear_field_exact():
    """F = W x + b (gamma = 0): d log P/dt = -tr W (eq. 28), so delta log P(t) = -t tr W."""
    field = _dense(1, gamma=0.0, t1=2.0)
    traj = log_density_trajectory(field, _x(), steps=8)
    expected = -traj.ts[:, None] * torch.diagonal(field.weight[0]).sum().detach()
    torch.testing.assert_close(traj.delta_logp, expected.expand_as(traj.delta_logp), rtol=1e-12, atol=1e-12)


def test_log_density_equals_minus_log_det_flow_jacobian():
    """Integral of eq. 28 = -log|det dx(T)/dx(0)| (autograd through the same RK4 solve)."""
    field = _dense(4, seed=3)
    x0 = _x()
    traj = log_density_trajectory(field, x0, steps=32)
    for b in range(x0.shape[0]):
        jac = torch.autograd.functional.jacobian(
            lambda y: cd.odesolve(field, y[None], method="rk4", steps=32)[0], x0[b])
        logdet = torch.linalg.slogdet(jac).logabsdet
        assert abs(logdet.item()) > 0.1
        assert abs(traj.delta_logp[-1, b].item() + logdet.item()) < 1e-6
    torch.testing.assert_close(traj.xs[-1], cd.odesolve(field, x0, method="rk4", steps=32), rtol=0, atol=0)


def test_log_density_hutchinson_is_unbiased():
    field = _dense(2, seed=4)
    x0 = _x(batch=3)
    exact = log_density_trajectory(field, x0, steps=8).delta_logp[-1]
    gen = torch.Generator().manual_seed(0)
    singles = torch.stack([log_density_trajectory(field, x0, steps=8, divergence="hutchinson", generator=gen)
                           .delta_logp[-1] for _ in range(16)])
    many = log_density_trajectory(field, x0, steps=8, divergence="hutchinson", samples=1000,
                                  generator=gen).delta_logp[-1]
    assert singles.std(0).min() > 0.05
    assert ((many - exact).abs() < 5 * singles.std(0) / math.sqrt(1000)).all()


def test_entropy_of_gaussian_batch_under_linear_flow():
    """eq. 32 for a linear flow: H(t) - H(0) = t tr W; the Gaussian fit of the pushed batch agrees."""
    field = _dense(1, gamma=0.0, t1=1.5, scale=0.6, seed=5)
    x0 = torch.randn(400, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    traj = log_density_trajectory(field, x0, steps=16)
    tr_w = torch.diagonal(field.weight[0]).sum().item()
    assert abs(entropy_rate(field, x0, 0.0).item() - tr_w) < 1e-12

    def gaussian_entropy(x):
        return 0.5 * torch.logdet(2 * math.pi * math.e * torch.cov(x.T))

    fitted = gaussian_entropy(traj.xs[-1]) - gaussian_entropy(x0)
    assert abs(fitted.item() - 1.5 * tr_w) < 1e-6
    assert abs(traj.entropy_change[-1].item() - 1.5 * tr_w) < 1e-12


def test_entropy_decreases_under_cubic_friction_and_matches_integrated_rate():
    """Zero weights: F = -gamma x^3, entropy rate = -3 gamma E[x^2] < 0 (seed 002 sec. 2.3)."""
    grid = cd.ControlGrid(t0=0.0, t1=1.0, n=1)
    field = cd.fields.CubicFriction(2, grid, gamma=1.0).double()
    x0 = torch.randn(64, 2, generator=torch.Generator().manual_seed(3), dtype=F64)
    traj = log_density_trajectory(field, x0, steps=64)
    rates = torch.stack([entropy_rate(field, x, t) for t, x in zip(traj.ts.tolist(), traj.xs)])
    assert (rates < 0).all()
    dt = traj.ts[1] - traj.ts[0]
    simpson = dt / 3 * (rates[0] + rates[-1] + 4 * rates[1:-1:2].sum() + 2 * rates[2:-1:2].sum())
    assert traj.entropy_change[-1] < -0.5
    assert abs((simpson - traj.entropy_change[-1]).item()) < 5e-5  # measured 9e-6 (Simpson, h = 1/64)


def test_argument_errors():
    field = _dense(1)
    x = _x()
    with pytest.raises(ValueError, match="noise"):
        divergence_hutchinson(field, x, 0.0, noise="uniform")
    with pytest.raises(TypeError, match="samples"):
        divergence_hutchinson(field, x, 0.0, samples=1.5)
    with pytest.raises(ValueError, match="divergence"):
        log_density_trajectory(field, x, steps=4, divergence="approx")
    with pytest.raises(TypeError, match="x0"):
        log_density_trajectory(field, x.long(), steps=4)
    with pytest.raises(TypeError, match="t must"):
        divergence_exact(field, x, "0")
