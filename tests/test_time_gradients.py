"""Gradients with respect to the times of a solve (contdepth/gradients/times.py): closed forms,
float64 central differences, every gradient method, both directions of time, fixed and adaptive
methods. For outputs y_i = y(t_i): dL/dt_i = <ybar_i, f(t_i, y_i)>, and
dL/dt_0 = -<dL/dy0 - ybar_0, f(t_0, y0)> (outputs strictly inside a fixed step get the slope of
the step's dense output instead: tests/test_time_grads_interp.py)."""
import math

import numpy as np
import pytest
import torch

import contdepth as cd

DT = torch.float64
TIGHT = dict(rtol=1e-11, atol=1e-13)


def _decay_loss(times, k, y0, w):
    """sum_i w_i y(t_i) for y' = -k y, y(t_0) = y0 (closed form, differentiable in everything)."""
    return sum(wi * y0 * torch.exp(-k * (ti - times[0])) for wi, ti in zip(w, times)).sum()


def _solve_outputs(f, y0, t, gradient, method="dopri5", **kw):
    """y at every time of t by cd.odeint (backprop), cd.odeint_adjoint, or cd.solve with t0, t_eval."""
    if gradient == "odeint":
        return cd.odeint(f, y0, t, method=method, **kw)
    if gradient == "odeint_adjoint":
        return cd.odeint_adjoint(f, y0, t, method=method, **kw)
    return cd.solve(f, y0, t0=t[0], t1=t[-1].item(), t_eval=t, method=method, gradient=gradient, **kw).ys


MODES = ["odeint", "odeint_adjoint", "backprop", "checkpoint", "adjoint"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("times", [[0.3, 0.8, 1.1, 2.0], [2.0, 1.1, 0.8, 0.3]], ids=["forward", "backward"])
def test_decay_time_gradients_match_the_closed_form(mode, times):
    k = torch.tensor(0.9, dtype=DT)
    y0 = torch.tensor([1.5, -0.5], dtype=DT)
    w = torch.tensor([0.7, -1.3, 2.0, 0.4], dtype=DT)
    t = torch.tensor(times, dtype=DT, requires_grad=True)
    ys = _solve_outputs(lambda s, y: -k * y, y0, t, mode, **TIGHT)
    got, = torch.autograd.grad((w[:, None] * ys).sum(), t)
    t_exact = torch.tensor(times, dtype=DT, requires_grad=True)
    want, = torch.autograd.grad(_decay_loss(t_exact, k, y0, w), t_exact)
    torch.testing.assert_close(got, want, rtol=1e-8, atol=1e-10)


def _forced(k):
    return lambda t, y: -k * y + torch.sin(3 * t) * torch.flip(y, [0])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("times", [[0.2, 0.5, 1.3], [1.3, 0.6, -0.2]], ids=["forward", "backward"])
def test_time_gradients_of_a_forced_system_match_central_differences(mode, times):
    k = torch.tensor(0.7, dtype=DT)
    y0 = torch.tensor([1.0, 2.0], dtype=DT)
    w = torch.tensor([[0.5, 1.0], [-2.0, 0.3], [1.5, -1.0]], dtype=DT)
    loss = lambda t: (w * _solve_outputs(_forced(k), y0, t, mode, **TIGHT) ** 2).sum()
    t = torch.tensor(times, dtype=DT, requires_grad=True)
    got, = torch.autograd.grad(loss(t), t)
    eps = 1e-5
    with torch.no_grad():
        fd = torch.stack([(loss(t + eps * e) - loss(t - eps * e)) / (2 * eps) for e in torch.eye(3, dtype=DT)])
    torch.testing.assert_close(got, fd, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
def test_start_and_end_of_solve_against_the_closed_form(gradient):
    """cd.solve with tensors t0, t1 (no t_eval): y(t1) = y0 exp(-k (t1 - t0)), the parameter too."""
    k = torch.tensor(1.3, dtype=DT, requires_grad=True)
    y0 = torch.tensor([0.4, 2.0], dtype=DT, requires_grad=True)
    t0 = torch.tensor(-0.25, dtype=DT, requires_grad=True)
    t1 = torch.tensor(0.9, dtype=DT, requires_grad=True)
    y1 = cd.solve(lambda s, y: -k * y, y0, t0=t0, t1=t1, method="dopri5", gradient=gradient, **TIGHT).y1
    got = torch.autograd.grad((y1 * torch.tensor([1.0, -3.0], dtype=DT)).sum(), (t0, t1, y0, k))
    exact = (y0 * torch.exp(-k * (t1 - t0)) * torch.tensor([1.0, -3.0], dtype=DT)).sum()
    want = torch.autograd.grad(exact, (t0, t1, y0, k))
    for g, h in zip(got, want):
        torch.testing.assert_close(g, h, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
def test_gradcheck_of_times_state_and_parameter_on_a_fine_fixed_grid(gradient):
    """torch.autograd.gradcheck (float64 central differences) of (t0, t1, y0, k) -> y(t1); on 200
    rk4 steps the exact-flow time gradient and the derivative of the discrete solve agree to
    O(h^4) ~ 1e-9, far inside gradcheck's tolerance."""
    def fn(t0, t1, y0, k):
        f = lambda t, y: -k * y + torch.cos(t)
        return cd.solve(f, y0, t0=t0, t1=t1, method="rk4", steps=200, gradient=gradient).y1

    inputs = (torch.tensor(0.1, dtype=DT, requires_grad=True), torch.tensor(1.2, dtype=DT, requires_grad=True),
              torch.tensor([0.3, -1.0], dtype=DT, requires_grad=True), torch.tensor(0.8, dtype=DT, requires_grad=True))
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2), ("rk4", 4)])
def test_fixed_step_time_gradient_is_the_flow_formula_converging_at_the_method_order(method, order):
    """Fixed-step methods give <ybar, f(t1, y1)> at the computed y1 (not the derivative of the
    discretisation): its error against the exact dL/dt1 falls at the method's order."""
    k, y0, t0, t1 = 1.0, torch.tensor([1.0], dtype=DT), 0.0, 1.0
    steps = [8, 16, 32, 64]
    errors = []
    for n in steps:
        t = torch.tensor(t1, dtype=DT, requires_grad=True)
        y1 = cd.solve(lambda s, y: -k * y, y0, t0=t0, t1=t, method=method, steps=n).y1
        got, = torch.autograd.grad(y1.sum(), t)
        assert got.item() == pytest.approx(-k * y1.item(), rel=1e-15)  # the formula, at the computed state
        errors.append(abs(got.item() - (-k * math.exp(-k * (t1 - t0)))))
    fitted = -np.polyfit(np.log(steps), np.log(errors), 1)[0]
    assert abs(fitted - order) < 0.15, (fitted, errors)


def test_reversible_gradient_gives_the_same_time_gradients_as_checkpoint():
    """Leapfrog on the harmonic oscillator (q, p): t0 and t1 gradients of both exact methods agree,
    and dL/dt1 = <ybar, f(t1, y1)> = p(t1) for L = q(t1)."""
    f = lambda t, y: (y[1], -y[0])
    y0 = (torch.tensor([1.0], dtype=DT), torch.tensor([0.0], dtype=DT))
    grads = {}
    for gradient in ("checkpoint", "reversible"):
        t0 = torch.tensor(0.2, dtype=DT, requires_grad=True)
        t1 = torch.tensor(1.7, dtype=DT, requires_grad=True)
        q1, p1 = cd.solve(f, y0, t0=t0, t1=t1, method="leapfrog", steps=64, gradient=gradient).y1
        grads[gradient] = torch.autograd.grad(q1.sum(), (t0, t1))
        assert grads[gradient][1].item() == pytest.approx(p1.item(), rel=1e-14)
        assert grads[gradient][0].item() == pytest.approx(-p1.item(), abs=1e-3)  # autonomous: -dL/dt1 up to O(h^2)
    torch.testing.assert_close(grads["reversible"], grads["checkpoint"], rtol=1e-12, atol=1e-14)


def test_t1_with_t_eval_gets_gradient_zero_not_none():
    """With t_eval the outputs do not depend on t1 (the exact flow): its gradient is 0, not None."""
    t1 = torch.tensor(1.0, dtype=DT, requires_grad=True)
    t_eval = torch.tensor([0.25, 0.5], dtype=DT, requires_grad=True)
    ys = cd.solve(lambda s, y: -y, torch.ones(2, dtype=DT), t0=0.0, t1=t1, t_eval=t_eval, method="rk4", steps=8).ys
    g_t1, g_eval = torch.autograd.grad(ys.sum(), (t1, t_eval))
    assert g_t1.item() == 0.0
    torch.testing.assert_close(g_eval, -ys.sum(-1).detach(), rtol=1e-15, atol=0)


def test_time_gradient_dtype_and_shape_follow_t():
    """A float32 t with a float64 state: the gradient is float32, one entry per time; t[0] gets the
    start and output terms summed; no grad mode is not an error."""
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float32, requires_grad=True)
    ys = cd.odeint(lambda s, y: -2 * y, torch.ones(3, dtype=DT), t, method="dopri5", **TIGHT)
    g, = torch.autograd.grad(ys[-1].sum(), t)
    assert g.dtype == torch.float32 and g.shape == (3,)
    want = 3 * 2 * math.exp(-2.0)
    torch.testing.assert_close(g, torch.tensor([want, 0.0, -want], dtype=torch.float32))
    with torch.no_grad():
        assert cd.odeint(lambda s, y: -y, torch.ones(2, dtype=DT), t, method="rk4").shape == (3, 2)


def test_time_gradient_counts_its_field_evaluations_in_the_backward_statistics():
    t1 = torch.tensor(1.0, dtype=DT, requires_grad=True)
    sol = cd.solve(lambda s, y: -y, torch.ones(2, dtype=DT), t0=0.0, t1=t1, method="rk4", steps=4)
    before = sol.stats.backward.nfe
    sol.y1.sum().backward()
    assert sol.stats.backward.nfe == before + 1  # one f(t1, y1)


def test_time_gradients_with_project_are_an_error():
    with pytest.raises(ValueError, match="project="):
        cd.solve(lambda s, y: -y, torch.ones(2, dtype=DT), t0=0.0, t1=torch.tensor(1.0, requires_grad=True),
                 method="euler", steps=4, project=torch.relu)


def test_sde_times_that_require_grad_are_still_an_error():
    with pytest.raises(NotImplementedError, match="t1 requires grad.*stochastic"):
        cd.sdesolve(lambda t, y: -y, torch.ones(2, dtype=DT), noise=lambda t, y: 0.1 * y, steps=4, t0=0.0,
                    t1=torch.tensor(1.0, dtype=DT, requires_grad=True), seed=0)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
def test_controlled_field_with_jumps_matches_central_differences(gradient):
    """Piecewise-constant theta (knots at 0.25, 0.5, 0.75): dopri5 stops on the knots, so the solve
    is smooth in t0 and t1 and the flow formula matches central differences. (A fixed grid that
    straddles a knot is not: moving its ends moves the straddling step across the jump, an O(1)
    change of its derivative, which the flow formula leaves out.)"""
    torch.manual_seed(0)
    field = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 1.0, n=4)).to(DT)
    y0 = torch.randn(5, 3, dtype=DT)
    loss = lambda a, b: (cd.solve(field, y0, t0=a, t1=b, method="dopri5", gradient=gradient, **TIGHT).y1 ** 2).sum()
    t0 = torch.tensor(0.1, dtype=DT, requires_grad=True)
    t1 = torch.tensor(0.8, dtype=DT, requires_grad=True)
    got = torch.stack(torch.autograd.grad(loss(t0, t1), (t0, t1)))
    eps = 1e-5
    with torch.no_grad():
        fd = torch.stack([(loss(t0 + eps, t1) - loss(t0 - eps, t1)) / (2 * eps),
                          (loss(t0, t1 + eps) - loss(t0, t1 - eps)) / (2 * eps)])
    torch.testing.assert_close(got, fd, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("times", [[0.2, 0.5, 1.3], [1.3, 0.6, -0.2]], ids=["forward", "backward"])
def test_time_gradients_match_torchdiffeq_adjoint(times):
    """torchdiffeq's odeint_adjoint differentiates t the same way (its adjoint integrates the time
    gradients along): same numbers to the solver tolerance."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    k = torch.tensor(0.7, dtype=DT, requires_grad=True)
    w = torch.tensor([[0.5, 1.0], [-2.0, 0.3], [1.5, -1.0]], dtype=DT)
    out = {}
    for name, adjoint in (("cd", cd.odeint_adjoint), ("torchdiffeq", torchdiffeq.odeint_adjoint)):
        t = torch.tensor(times, dtype=DT, requires_grad=True)
        y0 = torch.tensor([1.0, 2.0], dtype=DT, requires_grad=True)
        ys = adjoint(_forced(k), y0, t, adjoint_params=(k,), **TIGHT)
        out[name] = torch.autograd.grad((w * ys ** 2).sum(), (t, y0, k))
    for a, b in zip(out["cd"], out["torchdiffeq"]):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-8)
