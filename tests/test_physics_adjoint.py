"""Adjoint as momentum (seed 002 eq. 10-11, 19-25): closed forms (eq. 85, 87, 89, 90), autograd,
conservation of H for time-independent theta, and its visible failure for time-dependent theta."""

import math

import pytest
import torch

import contdepth as cd
from contdepth.physics import (
    adjoint_trajectory,
    autograd_adjoints,
    hamiltonian,
    hamiltonian_along,
    hamiltonian_jump,
    hamiltonian_rate,
)

F64 = torch.float64


def _random_field(n: int, dim: int = 3, *, interp: str = "constant", t1: float = 1.0, seed: int = 0,
                  same_knots: bool = False) -> cd.fields.CubicFriction:
    field = cd.fields.CubicFriction(dim, cd.ControlGrid(t0=0.0, t1=t1, n=n, interp=interp), gamma=0.5).double()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w = torch.randn(n, dim, dim, generator=gen, dtype=F64) * 0.8
        b = torch.randn(n, dim, generator=gen, dtype=F64) * 0.5
        if same_knots:
            w, b = w[:1].expand_as(w), b[:1].expand_as(b)
        field.weight.copy_(w)
        field.bias.copy_(b)
    return field


def _x0(batch: int = 4, dim: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_closed_form_eq85_87_89_90_diagonal_w():
    gamma, big_t = 0.7, 2.0
    w = torch.tensor([-0.5, 0.0, 0.8], dtype=F64)
    field = cd.fields.CubicFriction(3, cd.ControlGrid(t0=0.0, t1=big_t, n=1), gamma=gamma).double()
    with torch.no_grad():
        field.weight[0] = torch.diag(w)
    gamma = field.gamma.item()  # the float32 -> float64 value the field actually uses
    x0 = torch.tensor([[0.5, -1.2, 0.3], [1.5, 0.4, -0.9]], dtype=F64)
    c = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.2, 1.0]], dtype=F64)  # L = sum c x(T): a(T) = c
    traj = adjoint_trajectory(field, x0, lambda x: (c * x).sum(), steps=200)

    def growth(t: float) -> torch.Tensor:  # the denominator of eq. 85 squared; eq. 87 for w = 0
        cols = []
        for i, wi in enumerate(w.tolist()):
            s = x0[:, i] ** 2
            cols.append(1 + 2 * gamma * s * t if wi == 0 else 1 + gamma / wi * s * (math.exp(2 * wi * t) - 1))
        return torch.stack(cols, -1)

    for t, x, a in zip(traj.ts.tolist(), traj.xs, traj.adjoints):
        x_exact = x0 * torch.exp(w * t) / growth(t).sqrt()  # eq. 85 / 87
        a_exact = c * torch.exp(w * (big_t - t)) * (growth(t) / growth(big_t)) ** 1.5  # eq. 89 / 90
        torch.testing.assert_close(x, x_exact, rtol=0, atol=5e-10)  # measured 4.5e-11
        torch.testing.assert_close(a, a_exact, rtol=0, atol=1e-8)  # measured 1.2e-9


def test_adjoint_matches_autograd_through_fine_solve():
    """a(t_k) = dL/dx(t_k) (eq. 11) against autograd through a 16x finer RK4 solve; 4th order."""
    field = _random_field(4, seed=2)
    x0 = _x0()
    target = torch.tensor([1.0, -1.0, 0.5], dtype=F64)

    def loss_fn(x):
        return ((x - target) ** 2).sum()

    errors = []
    for steps in (32, 64):
        traj = adjoint_trajectory(field, x0, loss_fn, steps=steps)
        autograd = autograd_adjoints(field, x0, loss_fn, steps=steps, refine=16)
        assert autograd.abs().max() > 0.5
        errors.append((traj.adjoints - autograd).abs().max().item())
        # the forward states are the core solver's states, bit for bit
        assert torch.equal(cd.odesolve(field, x0, method="rk4", steps=steps, t_eval=traj.ts), traj.xs)
    assert errors[1] < 1e-6  # measured 1.3e-7
    assert errors[0] / errors[1] > 10  # RK4: 16x per halving


def test_autograd_adjoints_is_backprop_through_the_core_solver():
    field = _random_field(4, seed=7)
    x0 = _x0().requires_grad_()
    reference = autograd_adjoints(field, x0, lambda x: x.pow(3).sum(), steps=4, refine=8)
    cd.odesolve(field, x0, method="rk4", steps=32).pow(3).sum().backward()
    torch.testing.assert_close(reference[0], x0.grad, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(reference[-1], 3 * cd.odesolve(field, x0, method="rk4", steps=32).detach() ** 2,
                               rtol=1e-13, atol=1e-13)


def test_adjoint_at_t0_matches_core_adjoint_gradient():
    field = _random_field(4, seed=3)
    x0 = _x0().requires_grad_()
    traj = adjoint_trajectory(field, x0, lambda x: x.pow(2).sum(), steps=32)
    cd.odesolve(field, x0, method="rk4", steps=32, gradient="adjoint").pow(2).sum().backward()
    torch.testing.assert_close(traj.adjoints[0], x0.grad, rtol=0, atol=1e-7)


def test_hamiltonian_conserved_for_time_independent_theta():
    field = _random_field(4, seed=4, same_knots=True, t1=2.0)
    traj = adjoint_trajectory(field, _x0(), lambda x: x.sin().sum(), steps=128)
    h = hamiltonian_along(field, traj)
    assert h.abs().min() > 0.02
    assert ((h - h[0]) / h[0]).abs().max() < 2e-7  # eq. 24-25; measured 3.5e-8 (RK4, h = 1/64)
    end = (traj.adjoints[-1] * field(traj.ts[-1].item(), traj.xs[-1])).sum(-1)
    torch.testing.assert_close(h[0], end.detach(), rtol=2e-7, atol=0)  # eq. 25: = dL/dx(T) . F(x(T))


def test_hamiltonian_not_conserved_for_time_dependent_theta_but_jumps_as_predicted():
    n = 4
    field = _random_field(n, seed=5, t1=2.0)
    steps = 32 * n
    traj = adjoint_trajectory(field, _x0(), lambda x: x.sin().sum(), steps=steps)
    h = hamiltonian_along(field, traj)
    # visibly not conserved
    assert ((h - h[0]).abs().max(0).values / h.abs().max(0).values).min() > 0.1
    per_cell = steps // n
    for cell in range(n):  # constant inside each control cell ...
        block = h[cell * per_cell:(cell + 1) * per_cell]
        assert ((block - block[0]).abs() / block[0].abs()).max() < 2e-7  # measured 2.7e-8
    for knot in field.grid.jumps():  # ... and jumping at the knots by a.(F(theta_l) - F(theta_{l-1}))
        j = round(knot / traj.ts[1].item())
        measured = h[j] - h[j - 1]
        predicted = hamiltonian_jump(field, traj.xs[j], traj.adjoints[j], knot)
        assert predicted.abs().min() > 1e-3
        torch.testing.assert_close(measured, predicted, rtol=1e-6, atol=1e-9)


def test_hamiltonian_rate_for_linear_theta():
    """dH/dt along the solution = explicit dH/dt (Hamilton's equations, eq. 22-23)."""
    field = _random_field(3, seed=6, interp="linear", t1=1.0)
    traj = adjoint_trajectory(field, _x0(), lambda x: x.pow(2).sum(), steps=200)
    h = hamiltonian_along(field, traj)
    dt = traj.ts[1].item()
    for j in (20, 70, 130, 180):
        finite = (h[j + 1] - h[j - 1]) / (2 * dt)
        rate = hamiltonian_rate(field, traj.xs[j], traj.adjoints[j], traj.ts[j].item())
        assert rate.abs().max() > 0.1
        assert (finite - rate).abs().max() / rate.abs().max() < 2e-4  # O(dt^2) finite difference; measured 3e-5
    piecewise = _random_field(2, seed=6)
    assert torch.equal(hamiltonian_rate(piecewise, _x0(), _x0(seed=2), 0.3), torch.zeros(4, dtype=F64))


def test_argument_errors():
    field = _random_field(2)
    x0 = _x0()
    with pytest.raises(ValueError, match="method"):
        adjoint_trajectory(field, x0, lambda x: x.sum(), steps=4, method="dopri5")
    with pytest.raises(ValueError, match="steps"):
        adjoint_trajectory(field, x0, lambda x: x.sum(), steps=0)
    with pytest.raises(ValueError, match="scalar"):
        adjoint_trajectory(field, x0, lambda x: x, steps=4)
    with pytest.raises(TypeError, match="loss_fn"):
        adjoint_trajectory(field, x0, None, steps=4)
    with pytest.raises(ValueError, match="CubicFriction"):
        adjoint_trajectory(field, torch.zeros(4, 2, dtype=F64), lambda x: x.sum(), steps=4)
    with pytest.raises(TypeError, match="field"):
        hamiltonian(torch.nn.Linear(3, 3), x0, x0, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        hamiltonian(field, x0, x0[:2], 0.0)
    with pytest.raises(ValueError, match=r"t must lie"):
        hamiltonian(field, x0, x0, 2.0)
    with pytest.raises(ValueError, match="jumps"):
        hamiltonian_jump(field, x0, x0, 0.25)
