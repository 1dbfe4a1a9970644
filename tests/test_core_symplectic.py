"""Symplectic steppers (leapfrog, symplectic Euler), the Hamiltonian field of Chang et al. 2018,
and the reversible gradient: orders, bounded energy error, reversibility, conservation of H,
gradients equal to backprop's with memory constant in depth, and errors."""
import math

import numpy as np
import pytest
import torch

import contdepth as cd
from contdepth.analysis.memory import saved_tensor_bytes

DT = torch.float64
SYMPLECTIC = {"symplectic_euler": 1, "leapfrog": 2}


def oscillator(t, y):
    q, p = y
    return p, -q


def pair(q=1.0, p=0.0, batch=1):
    return torch.full((batch, 1), q, dtype=DT), torch.full((batch, 1), p, dtype=DT)


@pytest.mark.parametrize("method", SYMPLECTIC)
@pytest.mark.parametrize("t0,t1", [(0.0, 2.0), (2.0, 0.0)])
def test_order_on_the_harmonic_oscillator(method, t0, t1):
    q0, p0 = math.cos(t0), -math.sin(t0)
    hs, errs = [], []
    for k in range(5, 9):
        q, p = cd.odesolve(oscillator, pair(q0, p0), t0=t0, t1=t1, method=method, steps=2 ** k)
        errs.append(max(abs(q.item() - math.cos(t1)), abs(p.item() + math.sin(t1))))
        hs.append(abs(t1 - t0) / 2 ** k)
    assert abs(np.polyfit(np.log(hs), np.log(errs), 1)[0] - SYMPLECTIC[method]) < 0.3, errs


def energy_error(method):
    ts = torch.linspace(0.0, 1000.0, 101, dtype=DT)
    qs, ps = cd.odesolve(oscillator, pair(), t0=0.0, t1=1000.0, method=method, steps=10_000, t_eval=ts)
    return ((qs ** 2 + ps ** 2) / 2 - 0.5).abs().max().item() / 0.5


def test_energy_error_stays_bounded_over_ten_thousand_steps():
    """h = 0.1, 10^4 steps: leapfrog's energy error stays below 1 %, explicit Euler's grows past 100 %."""
    assert energy_error("leapfrog") < 0.01
    assert energy_error("euler") > 1.0


def test_symplectic_euler_energy_error_is_bounded_by_h():
    """Symplectic Euler conserves a modified energy: its error oscillates at O(h) without drift:
    the same bound over 10^3 and 10^4 steps."""
    ts = torch.linspace(0.0, 1000.0, 1001, dtype=DT)
    qs, ps = cd.odesolve(oscillator, pair(), t0=0.0, t1=1000.0, method="symplectic_euler", steps=10_000, t_eval=ts)
    err = ((qs ** 2 + ps ** 2) / 2 - 0.5).abs().flatten() / 0.5
    assert err.max() < 0.11 and err[-100:].max() < 1.1 * err[:100].max()


def hamiltonian_net(n=4, t1=2.0, width=6, seed=0):
    torch.manual_seed(seed)
    return cd.fields.Hamiltonian(3, cd.ControlGrid(0.0, t1, n=n), width=width).to(DT)


def test_leapfrog_forward_then_backward_returns_the_start():
    field = hamiltonian_net()
    y0 = (torch.randn(5, 3, dtype=DT), torch.randn(5, 3, dtype=DT))
    y1 = cd.odesolve(field, y0, method="leapfrog", steps=64)
    back = cd.odesolve(field, y1, t0=2.0, t1=0.0, method="leapfrog", steps=64)
    for a, b in zip(back, y0):
        assert (a - b).abs().max() < 1e-10


@pytest.mark.parametrize("method", SYMPLECTIC)
def test_reversible_gradients_equal_backprop(method):
    field = hamiltonian_net()
    y0 = (torch.randn(4, 3, dtype=DT), torch.randn(4, 3, dtype=DT))
    out = {}
    for gradient in ("backprop", "reversible", "checkpoint"):
        field.zero_grad()
        x = tuple(v.clone().requires_grad_() for v in y0)
        ys, zs = cd.odesolve(field, x, method=method, steps=32, gradient=gradient, t_eval=[0.0, 0.9, 2.0])
        (ys.sin().sum() + (zs ** 2).sum()).backward()
        out[gradient] = [v.grad for v in x] + [p.grad.clone() for p in field.parameters()]
    for gradient in ("reversible", "checkpoint"):
        for a, b in zip(out["backprop"], out[gradient]):
            assert torch.allclose(a, b, rtol=1e-8, atol=1e-10), gradient


def test_reversible_memory_is_constant_in_depth():
    field = hamiltonian_net(n=8)
    y0 = (torch.randn(64, 3, dtype=DT), torch.randn(64, 3, dtype=DT))
    saved = {}
    for steps in (16, 256):
        for gradient in ("reversible", "backprop"):
            with saved_tensor_bytes() as m:
                cd.odesolve(field, y0, method="leapfrog", steps=steps, gradient=gradient)
            saved[gradient, steps] = m.bytes
    assert saved["reversible", 256] <= 1.1 * saved["reversible", 16]
    assert saved["backprop", 256] > 10 * saved["backprop", 16] / 2 and saved["reversible", 256] < saved["backprop", 16]


def test_hamiltonian_of_a_one_knot_net_is_conserved_at_second_order():
    """theta constant in t: H(y, z) is conserved; leapfrog's error over 2000 steps is O(h^2)."""
    field = hamiltonian_net(n=1, t1=20.0)
    y0 = (torch.randn(8, 3, dtype=DT), torch.randn(8, 3, dtype=DT))
    h0 = field.energy(y0, 0.0)
    drift = []
    for steps in (1000, 2000):
        ts = torch.linspace(0.0, 20.0, 41, dtype=DT)
        ys, zs = cd.odesolve(field, y0, method="leapfrog", steps=steps, t_eval=ts)
        drift.append(max((field.energy((y, z), 0.0) - h0).abs().max().item() for y, z in zip(ys, zs)))
    assert drift[1] < 1e-3 * h0.abs().max().item()
    assert 3.0 < drift[0] / drift[1] < 5.0  # halving h divides the error by 4


def test_energy_is_the_hamiltonian_of_the_field():
    """dy/dt = dH/dz and dz/dt = -dH/dy (autograd), so the field is Hamiltonian."""
    field = hamiltonian_net(n=2)
    y = torch.randn(5, 3, dtype=DT, requires_grad=True)
    z = torch.randn(5, 3, dtype=DT, requires_grad=True)
    dh_dy, dh_dz = torch.autograd.grad(field.energy((y, z), 0.3).sum(), (y, z))
    dy, dz = field(torch.tensor(0.3, dtype=DT), (y, z))
    assert torch.allclose(dy, dh_dz, atol=1e-12) and torch.allclose(dz, -dh_dy, atol=1e-12)


def test_steppers_ask_for_one_half_at_a_time():
    """Leapfrog: three half-evaluations per step (two of dz/dt, one of dy/dt), same numbers as the
    whole-field evaluation (one knot: a plain function has no side to read a knot from)."""
    field = hamiltonian_net(n=1)
    y0 = (torch.randn(2, 3, dtype=DT), torch.randn(2, 3, dtype=DT))
    sol = cd.solve(field, y0, method="leapfrog", steps=8)
    assert sol.stats.forward.nfe == 3 * 8
    whole = cd.solve(lambda t, y: field(t, y), y0, t0=0.0, t1=2.0, method="leapfrog", steps=8)
    for a, b in zip(sol.y1, whole.y1):
        assert torch.allclose(a, b, rtol=1e-14, atol=1e-14)


def test_errors():
    field = hamiltonian_net()
    y0 = (torch.randn(2, 3, dtype=DT), torch.randn(2, 3, dtype=DT))
    with pytest.raises(ValueError, match="reversible.*'rk4'"):
        cd.odesolve(field, y0, method="rk4", steps=4, gradient="reversible")
    with pytest.raises(ValueError, match="adjoint.*'leapfrog'"):
        cd.odesolve(field, y0, method="leapfrog", steps=4, gradient="adjoint")
    with pytest.raises(ValueError, match="'leapfrog' needs a pair state"):
        cd.odesolve(lambda t, y: -y, torch.ones(3, dtype=DT), t0=0.0, t1=1.0, method="leapfrog", steps=4)
    with pytest.raises(ValueError, match="pair state"):
        cd.odesolve(field, torch.ones(2, 3, dtype=DT), method="leapfrog", steps=4)


def test_antisymmetric_residual_jacobian_has_no_growing_modes():
    """act((K - K^T - gamma I) x + b) with tanh: every eigenvalue of dF/dx has real part <= 0
    (<= -gamma * min tanh' when the layer is linear), unlike the plain layer act(K x + b)."""
    from contdepth.analysis import field_jacobian
    torch.manual_seed(0)
    grid = cd.ControlGrid(0.0, 1.0, n=3)
    anti = cd.fields.AntisymmetricResidual(6, grid, gamma=0.05).to(DT)
    plain = cd.fields.DenseResidual(6, grid).to(DT)
    with torch.no_grad():
        for f in (anti, plain):
            f.weight.normal_(0, 1.0)
    x = torch.randn(50, 6, dtype=DT)
    for t in (0.1, 0.5, 0.9):
        assert torch.linalg.eigvals(field_jacobian(anti, t, x)).real.max() <= 1e-12
    assert max(torch.linalg.eigvals(field_jacobian(plain, t, x)).real.max() for t in (0.1, 0.5, 0.9)) > 0.1
    with torch.no_grad():  # the linear layer: eigenvalues of K - K^T - gamma I have real part exactly -gamma
        lin = cd.fields.AntisymmetricResidual(6, grid, gamma=0.05, activation="identity").to(DT)
        lin.weight.copy_(anti.weight)
    eig = torch.linalg.eigvals(field_jacobian(lin, 0.5, x[:1]))
    assert torch.allclose(eig.real, torch.full_like(eig.real, -0.05), atol=1e-12)
    with pytest.raises(ValueError, match="gamma"):
        cd.fields.AntisymmetricResidual(2, grid, gamma=-1.0)


def test_spirals_are_deterministic_balanced_and_interleaved():
    from contdepth.data import spirals
    X, y = spirals(400, noise=0.0, turns=1.5, seed=3)
    X2, y2 = spirals(400, noise=0.0, turns=1.5, seed=3)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    assert X.shape == (400, 2) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert int((y == 0).sum()) == 200
    r = X.double().norm(dim=1)
    assert r.min() >= 0.1 - 1e-6 and r.max() <= 1.0 + 1e-6
    # noise-free: each point sits on its class's arm, the other class's arm is pi away in angle
    s = r
    angle = torch.atan2(X[:, 1].double(), X[:, 0].double())
    expected = 2 * math.pi * 1.5 * s + math.pi * y.double()
    assert torch.allclose(torch.remainder(angle - expected + math.pi, 2 * math.pi) - math.pi,
                          torch.zeros_like(angle), atol=1e-5)
    with pytest.raises(ValueError, match="even"):
        spirals(3)
