"""Seed 002's energy identities for the cubic-friction network (contdepth.physics.energy):
eq. 33-36/83 (a Lyapunov energy for symmetric w), 69-70 (the parameter gradients' own flow),
91-94 (the stationary state and the adjoint's decay), 103-108 (the energy balance)."""
import math

import pytest
import torch

import contdepth as cd
from contdepth import physics as ph

F64 = torch.float64


def _field(dim=3, n=1, T=1.0, *, symmetric=False, mu=3.0, gamma=0.7, seed=0):
    g = torch.Generator().manual_seed(seed)
    field = cd.fields.CubicFriction(dim, cd.ControlGrid(0.0, T, n), gamma=gamma, mu=mu).to(F64)
    with torch.no_grad():
        w = torch.randn(n, dim, dim, generator=g, dtype=F64)
        field.weight.copy_((w + w.transpose(1, 2)) / 2 if symmetric else w)
        field.bias.copy_(torch.randn(n, dim, generator=g, dtype=F64))
    return field


def _x0(batch=4, dim=3, seed=1):
    return torch.randn(batch, dim, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _trajectory(field, x0, steps):
    with torch.no_grad():
        sol = cd.solve(field, x0, method="rk4", steps=steps, t_eval=torch.linspace(0, field.grid.t1, steps + 1))
    return sol.ys


@pytest.mark.parametrize("mu", [3.0, 2.5])
def test_energy_decreases_at_the_rate_minus_F_squared_for_symmetric_w(mu):
    """Eq. 36: E(T) - E(0) = -int |F|^2 dt, and E falls at every step."""
    field, x0, steps = _field(symmetric=True, mu=mu), _x0(), 400
    xs = _trajectory(field, x0, steps)
    E = torch.stack([ph.lyapunov_energy(field, x, 0.5) for x in xs])
    assert bool((E[1:] < E[:-1]).all())
    with torch.no_grad():
        speed2 = torch.stack([(field(torch.tensor(0.5, dtype=F64), x) ** 2).sum(1) for x in xs])
    h = field.grid.t1 / steps
    simpson = h / 3 * (speed2[0] + speed2[-1] + 4 * speed2[1:-1:2].sum(0) + 2 * speed2[2:-1:2].sum(0))
    torch.testing.assert_close(E[-1] - E[0], -simpson, rtol=1e-7, atol=1e-10)


def test_the_energy_is_the_potential_of_F_for_symmetric_w_only():
    """Eq. 34: F = -dE/dx exactly when w is symmetric; otherwise the antisymmetric part is missing."""
    x = _x0().requires_grad_()
    for symmetric in (True, False):
        field = _field(symmetric=symmetric)
        (grad,) = torch.autograd.grad(ph.lyapunov_energy(field, x, 0.3).sum(), x)
        with torch.no_grad():
            F = field(torch.tensor(0.3, dtype=F64), x)
        w = field.weight[0]
        expected = F if symmetric else F - x.detach() @ ((w - w.T) / 2).T
        torch.testing.assert_close(-grad, expected, rtol=0, atol=1e-12)
        assert symmetric or (F + grad).abs().max() > 1e-2


def test_energy_can_rise_for_a_nonsymmetric_w():
    """Eq. 36 needs eq. 33: a rotation with gain (w not symmetric) and no friction raises |x|."""
    field = cd.fields.CubicFriction(2, cd.ControlGrid(0.0, 1.0, 1), gamma=0.0).to(F64)
    with torch.no_grad():
        field.weight.copy_(torch.tensor([[[0.1, -1.0], [1.0, 0.1]]], dtype=F64))
    xs = _trajectory(field, torch.tensor([[1.0, 0.0]], dtype=F64), 50)
    K = torch.stack([ph.energy_balance(field, x, 0.0).kinetic for x in xs])
    torch.testing.assert_close(K[-1], K[0] * math.exp(0.2), rtol=1e-8, atol=0)


@pytest.mark.parametrize("mu", [3.0, 2.5])
def test_energy_balance_integrates_to_the_change_of_kinetic_energy(mu):
    """Eq. 104: d(|x|^2/2)/dt = P_w + P_b - P_gamma, pointwise equal to x . F and integrated."""
    field, x0, steps = _field(mu=mu), _x0(), 400
    xs = _trajectory(field, x0, steps)
    balances = [ph.energy_balance(field, x, 0.5) for x in xs]
    with torch.no_grad():
        for x, bal in zip(xs[::50], balances[::50]):
            torch.testing.assert_close(bal.rate, (x * field(torch.tensor(0.5, dtype=F64), x)).sum(1),
                                       rtol=0, atol=1e-12)
    rate = torch.stack([b.rate for b in balances])
    h = field.grid.t1 / steps
    simpson = h / 3 * (rate[0] + rate[-1] + 4 * rate[1:-1:2].sum(0) + 2 * rate[2:-1:2].sum(0))
    torch.testing.assert_close(balances[-1].kinetic - balances[0].kinetic, simpson, rtol=1e-7, atol=1e-10)
    assert bool((balances[0].p_gamma > 0).all())


def test_the_antisymmetric_part_of_w_does_no_work():
    """Eq. 104-106: with w antisymmetric, b = 0 and gamma = 0, |x| is conserved (a rotation)."""
    field = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, 2.0, 1), gamma=0.0).to(F64)
    with torch.no_grad():
        w = torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=F64)
        field.weight.copy_((w - w.T)[None])
    x0 = _x0()
    xs = _trajectory(field, x0, 200)
    bal = ph.energy_balance(field, xs[-1], 1.0)
    torch.testing.assert_close(bal.p_w, torch.zeros_like(bal.p_w), rtol=0, atol=1e-13)
    torch.testing.assert_close(bal.kinetic, 0.5 * (x0 * x0).sum(1), rtol=1e-9, atol=0)


@pytest.mark.parametrize("mu", [3.0, 2.5])
def test_stationary_state_and_adjoint_decay(mu):
    """Eq. 91-94: with w = 0 and constant b the fixed point is sign(b)(|b|/gamma)^(1/mu); started there,
    x stays and a(t) = a(T) exp(-mu gamma |x_inf|^(mu-1) (T - t)) exactly."""
    gamma, T = 0.75, 2.0  # exact in float32, the dtype the field's gamma starts in
    b = torch.tensor([0.5, -1.5, 2.0], dtype=F64)
    x_inf, rate = ph.stationary_state(b, gamma, mu)
    if mu == 3.0:
        torch.testing.assert_close(rate, 3 * gamma ** (1 / 3) * b.abs() ** (2 / 3), rtol=1e-14, atol=0)
    field = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, T, 1), gamma=gamma, mu=mu).to(F64)
    with torch.no_grad():
        field.bias.copy_(b[None])
    # from elsewhere the flow converges to x_inf
    far = cd.odesolve(field, torch.tensor([[3.0, 2.0, -1.0]], dtype=F64), method="dopri5", t0=0.0, t1=T,
                      rtol=1e-10, atol=1e-12)
    long = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, 40.0, 1), gamma=gamma, mu=mu).to(F64)
    with torch.no_grad():
        long.bias.copy_(b[None])
        far = cd.odesolve(long, torch.tensor([[3.0, 2.0, -1.0]], dtype=F64), method="dopri5", rtol=1e-10,
                          atol=1e-12)
    torch.testing.assert_close(far[0], x_inf, rtol=0, atol=1e-8)
    c = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    traj = ph.adjoint_trajectory(field, x_inf[None].clone(), lambda x: (x[0] * c).sum(), steps=200)
    torch.testing.assert_close(traj.xs[-1, 0], x_inf, rtol=0, atol=1e-13)
    expected = c * torch.exp(-rate * (T - traj.ts[:, None]))
    torch.testing.assert_close(traj.adjoints[:, 0], expected, rtol=1e-6, atol=0)  # RK4, 200 steps


def test_stationary_state_rejects_bad_arguments():
    with pytest.raises(ValueError, match="gamma must be > 0"):
        ph.stationary_state(torch.ones(2), 0.0)
    with pytest.raises(ValueError, match="mu must be a number > 1"):
        ph.stationary_state(torch.ones(2), 1.0, mu=1.0)
    with pytest.raises(TypeError, match="b must be a floating-point tensor"):
        ph.stationary_state([1.0], 1.0)


@pytest.mark.parametrize("mu", [3.0, 2.5])
def test_parameter_gradients_obey_their_own_flow(mu):
    """Eq. 69-70: dw = a x^T and db = a along a trajectory satisfy d(dw)/dt, d(db)/dt = the rate;
    checked by central differences of the products, whose error falls as h^2."""
    field = _field(mu=mu, T=1.0)
    x0 = _x0(batch=2)
    c = torch.tensor([0.3, -1.0, 0.7], dtype=F64)
    errors = []
    for steps in (200, 400):
        traj = ph.adjoint_trajectory(field, x0, lambda x: (x * c).sum(), steps=steps)
        xs, a = traj.xs, traj.adjoints
        dw, db = a[..., :, None] * xs[..., None, :], a
        h = field.grid.t1 / steps
        err = 0.0
        for k in range(1, steps, steps // 8):
            dw_rate, db_rate = ph.gradient_flow_rate(field, xs[k], dw[k], db[k], float(traj.ts[k]))
            err = max(err, ((dw[k + 1] - dw[k - 1]) / (2 * h) - dw_rate).abs().max().item(),
                      ((db[k + 1] - db[k - 1]) / (2 * h) - db_rate).abs().max().item())
        errors.append(err)
    assert errors[0] < 1e-4
    assert 3.5 < errors[0] / errors[1] < 4.5  # second order: the rate is the derivative


def test_gradient_flow_rate_sign_matters():
    """A rate with the sign of w^T dw flipped is far from the central difference (the check has teeth)."""
    field = _field()
    traj = ph.adjoint_trajectory(field, _x0(batch=1), lambda x: x.sum(), steps=400)
    k, h = 200, field.grid.t1 / 400
    dw = traj.adjoints[..., :, None] * traj.xs[..., None, :]
    rate, _ = ph.gradient_flow_rate(field, traj.xs[k], dw[k], traj.adjoints[k], float(traj.ts[k]))
    w = field.weight[0].detach()
    wrong = rate + 2 * w.T @ dw[k]
    fd = (dw[k + 1] - dw[k - 1]) / (2 * h)
    assert (fd - rate).abs().max() < 1e-5 < (fd - wrong).abs().max()


def test_energy_functions_check_their_arguments():
    field = _field()
    with pytest.raises(TypeError, match="CubicFriction"):
        ph.energy_balance(cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 1.0, 1)), _x0(), 0.0)
    with pytest.raises(ValueError, match=r"t must lie in \[0.0, 1.0\]"):
        ph.lyapunov_energy(field, _x0(), 2.0)
    with pytest.raises(ValueError, match="dw must have shape"):
        ph.gradient_flow_rate(field, _x0(), torch.zeros(4, 3, dtype=F64), torch.zeros(4, 3, dtype=F64), 0.0)
