"""Cases that once gave a silent wrong answer (a missing gradient, a crash, a poisoned cache): each
must now give the right answer or a clear error. Float64 throughout."""
import subprocess
import sys

import pytest
import torch
from torch import nn

import contdepth as cd

DT = torch.float64


class _SDE(nn.Module):
    """torchsde's idiom: the drift and the diffusion are methods of one module."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.lin = nn.Linear(3, 3).to(DT)
        self.scale = nn.Parameter(torch.tensor(0.2, dtype=DT))

    def f(self, t, y):
        return torch.tanh(self.lin(y)) * (1 + t)

    def g(self, t, y):
        return self.scale * torch.sin(y)


def _y0(requires_grad=False):
    return torch.linspace(-1, 1, 12, dtype=DT).reshape(4, 3).requires_grad_(requires_grad)


def _grads(loss, tensors):
    grads = torch.autograd.grad(loss, tensors, allow_unused=True)
    assert all(g is not None for g in grads), "a parameter got no gradient"
    return grads


def _assert_close(a, b, tol):
    for x, y in zip(a, b):
        assert (x - y).abs().max().item() <= tol * (1 + y.abs().max().item())


@pytest.mark.parametrize("gradient,tol", [("checkpoint", 1e-13), ("adjoint", 1e-9)])
@pytest.mark.parametrize("y0_grad", [False, True])
def test_bound_method_of_a_module_gets_its_parameters(gradient, tol, y0_grad):
    sde = _SDE()
    params = list(sde.lin.parameters())
    run = lambda g: cd.solve(sde.f, _y0(y0_grad), t0=0.0, t1=1.0, method="dopri5", rtol=1e-12, atol=1e-12,
                             gradient=g).y1.pow(2).sum()
    _assert_close(_grads(run(gradient), params), _grads(run("backprop"), params), tol)


@pytest.mark.parametrize("gradient", ["checkpoint", "adjoint"])
def test_closure_over_a_tensor_and_a_module_is_found(gradient):
    k = torch.tensor(0.3, dtype=DT, requires_grad=True)
    torch.manual_seed(1)
    lin = nn.Linear(3, 3).to(DT)
    func = lambda t, y: -k * y + lin(y) * t
    params = [k, *lin.parameters()]
    run = lambda g: cd.solve(func, _y0(), t0=0.0, t1=1.0, method="dopri5", rtol=1e-12, atol=1e-12,
                             gradient=g).y1.sum()
    _assert_close(_grads(run(gradient), params), _grads(run("backprop"), params), 1e-9)


def test_odeint_adjoint_takes_a_closure():
    k = torch.tensor(0.7, dtype=DT, requires_grad=True)
    t = torch.tensor([0.0, 0.5, 1.0], dtype=DT)
    y = cd.odeint_adjoint(lambda t, y: -k * y, torch.ones(2, dtype=DT), t, rtol=1e-12, atol=1e-12)
    dk, = _grads(y[-1].sum(), [k])
    assert abs(dk.item() - 2 * (-1.0) * torch.exp(-k).item()) < 1e-9  # d/dk 2 e^{-k}


@pytest.mark.parametrize("steps", [10, 1])  # one step: its backward step is the first and the last
@pytest.mark.parametrize("gradient", ["checkpoint", "adjoint"])
def test_tensor_used_only_later_is_an_error_naming_adjoint_params(gradient, steps):
    k = torch.tensor(0.5, dtype=DT, requires_grad=True)
    func = lambda t, y: -y * (k if t > 0.5 else 1.0)  # an evaluation at t0 does not see k
    y0 = _y0(requires_grad=True)
    y1 = cd.solve(func, y0, t0=0.0, t1=1.0, method="rk4", steps=steps, gradient=gradient).y1
    with pytest.raises(RuntimeError, match="adjoint_params"):
        y1.sum().backward()


@pytest.mark.parametrize("steps", [10, 1])
def test_reversible_tensor_used_only_later_is_an_error_naming_adjoint_params(steps):
    k = torch.tensor(0.5, dtype=DT, requires_grad=True)
    func = lambda t, s: (s[1], -s[0] * (k if t > 0.5 else 1.0))
    q0 = torch.ones(3, dtype=DT, requires_grad=True)
    q1, _ = cd.solve(func, (q0, torch.zeros(3, dtype=DT)), t0=0.0, t1=1.0, method="leapfrog", steps=steps,
                     gradient="reversible").y1
    with pytest.raises(RuntimeError, match="adjoint_params"):
        q1.sum().backward()


def test_named_adjoint_params_are_respected():
    k = torch.tensor(0.5, dtype=DT, requires_grad=True)
    func = lambda t, y: -y * (k if t > 0.5 else 1.0)
    y1 = cd.solve(func, _y0(), t0=0.0, t1=1.0, method="rk4", steps=10, gradient="checkpoint", adjoint_params=[k]).y1
    dk, = _grads(y1.sum(), [k])
    ref = cd.solve(func, _y0(), t0=0.0, t1=1.0, method="rk4", steps=10).y1
    assert torch.allclose(dk, _grads(ref.sum(), [k])[0], rtol=0, atol=1e-13)


@pytest.mark.parametrize("method", ["euler_maruyama", "milstein"])
def test_sdesolve_bound_methods_get_their_parameters(method):
    sde = _SDE()
    params = list(sde.parameters())
    run = lambda g: cd.sdesolve(sde.f, _y0(), noise=sde.g, method=method, steps=16, t0=0.0, t1=1.0, seed=5,
                                gradient=g).y1.pow(2).sum()
    _assert_close(_grads(run("checkpoint"), params), _grads(run("backprop"), params), 1e-13)


@pytest.mark.parametrize("noise", [lambda t, y: torch.full_like(y, 0.4), lambda t, y: (1 + t) * torch.ones_like(y),
                                   lambda t, y: torch.full((4, 3), 0.3, dtype=DT)],
                         ids=["constant", "time-only", "fresh-tensor"])
def test_milstein_with_noise_independent_of_y_is_euler_maruyama(noise):
    kw = dict(noise=noise, steps=32, t0=0.0, t1=1.0, seed=11)
    mil = cd.sdesolve(lambda t, y: -y, _y0(), method="milstein", **kw).y1
    em = cd.sdesolve(lambda t, y: -y, _y0(), method="euler_maruyama", **kw).y1
    assert torch.equal(mil, em)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint"])
def test_milstein_with_parameter_only_noise(gradient):
    s = torch.tensor(0.3, dtype=DT, requires_grad=True)
    kw = dict(noise=lambda t, y: s * torch.ones_like(y), steps=32, t0=0.0, t1=1.0, seed=11, gradient=gradient)
    mil = cd.sdesolve(lambda t, y: -y, _y0(), method="milstein", **kw).y1
    em = cd.sdesolve(lambda t, y: -y, _y0(), method="euler_maruyama", **kw).y1
    assert torch.equal(mil, em)
    _assert_close(_grads(mil.sum(), [s]), _grads(em.sum(), [s]), 1e-14)


def test_times_that_require_grad_get_their_gradient_not_a_silent_none():
    """Once an error; now dL/dt_i = <ybar_i, f(t_i, y_i)> and dL/dt_0 = -<dL/dy0 - ybar_0, f(t_0, y0)>
    in every interface (tests/test_time_gradients.py checks them against closed forms)."""
    f = lambda t, y: -y
    for odeint in (cd.odeint, lambda *a, **k: cd.odeint_adjoint(*a, adjoint_params=(), **k)):
        y0 = torch.ones(2, dtype=DT, requires_grad=True)
        t = torch.linspace(0, 1, 3, dtype=DT, requires_grad=True)
        ys = odeint(f, y0, t, method="rk4")
        g_t, g_y0 = _grads(ys.sum(), [t, y0])
        _assert_close(g_t[1:], -ys[1:].sum(-1).detach(), 1e-15)
        _assert_close([g_t[0]], [((g_y0 - 1) * y0).sum().detach()], 1e-14)
    t1 = torch.tensor(1.0, dtype=DT, requires_grad=True)
    y1 = cd.solve(f, torch.ones(2, dtype=DT), t0=0.0, t1=t1, steps=4).y1
    _assert_close(_grads(y1.sum(), [t1]), [-y1.sum().detach()], 1e-15)
    with torch.no_grad():  # no gradient wanted: nothing attached
        assert cd.odeint(f, torch.ones(2, dtype=DT), t, method="rk4").shape == (3, 2)


def test_inference_mode_does_not_poison_later_training_solves():
    torch.manual_seed(0)
    lin = nn.Linear(2, 2).to(DT)
    func = lambda t, y: lin(y) * t  # saves t for backward
    t = torch.linspace(0, 1, 5, dtype=DT)
    with torch.inference_mode():
        cd.odeint(func, torch.ones(2, dtype=DT), t, method="rk4")
    cd.odeint(func, torch.ones(2, dtype=DT), t, method="rk4").sum().backward()
    assert lin.weight.grad is not None and torch.isfinite(lin.weight.grad).all()


def test_subpackages_are_reachable_from_the_top_level():
    code = ("import contdepth as cd; "
            "[getattr(cd, m) for m in ('physics', 'data', 'analysis', 'train', 'plot', 'lift', 'io', 'models')]; "
            "assert callable(cd.physics.fokker_planck_1d)")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_adaptive_solve_with_non_finite_derivative_at_the_start_is_a_solver_error():
    """The first-step rule divides by the norm of f(t0, y0): a non-finite one is a SolverError naming
    it, never a ZeroDivisionError."""
    with pytest.raises(cd.SolverError, match=r"^the derivative f\(t0, y0\) at the start \(t0 = 0.0\) is not finite"):
        cd.solve(lambda t, y: y / torch.zeros_like(y), torch.ones(2, dtype=torch.float64), t0=0.0, t1=1.0,
                 method="dopri5")
