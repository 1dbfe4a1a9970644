"""Terminal events (odeint(event_fn=), odeint_adjoint(event_fn=), cd.odeint_event; torchdiffeq's
semantics): event times and states against closed forms, their gradients by the implicit function
theorem against analytic derivatives and float64 central differences, both directions of time,
fixed (event time converging at the declared order) and adaptive methods, the errors."""
import math

import numpy as np
import pytest
import torch

import contdepth as cd
from contdepth.errors import SolverError

DT = torch.float64
TIGHT = dict(rtol=1e-11, atol=1e-13)
INTERFACES = {"odeint": cd.odeint, "odeint_adjoint": cd.odeint_adjoint}


def _ball(g):
    """(height, velocity) under gravity g: h' = v, v' = -g."""
    return lambda t, y: torch.stack([y[1], -g * torch.ones_like(y[1])])


def _ball_event_exact(h0, v0, g, t0):
    """The landing time t0 + (v0 + sqrt(v0^2 + 2 g h0)) / g and the velocity there."""
    t = t0 + (v0 + torch.sqrt(v0 ** 2 + 2 * g * h0)) / g
    return t, v0 - g * (t - t0)


@pytest.mark.parametrize("interface", INTERFACES)
@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3"])
def test_falling_ball_lands_at_the_closed_form_time_with_analytic_gradients(interface, method):
    g = torch.tensor(9.81, dtype=DT, requires_grad=True)
    y0 = torch.tensor([10.0, 2.0], dtype=DT, requires_grad=True)
    t0 = torch.tensor(0.5, dtype=DT, requires_grad=True)
    kw = dict(adjoint_params=(g,)) if interface == "odeint_adjoint" else {}
    t_event, ys = cd.odeint_event(_ball(g), y0, t0, event_fn=lambda t, y: y[0], method=method,
                                  odeint_interface=INTERFACES[interface], **TIGHT, **kw)
    t_exact, v_exact = _ball_event_exact(y0[0], y0[1], g, t0)
    assert ys.shape == (2, 2) and torch.equal(ys[0], y0.detach())
    assert t_event.item() == pytest.approx(t_exact.item(), rel=1e-9)
    assert abs(ys[1, 0].item()) < 1e-9 and ys[1, 1].item() == pytest.approx(v_exact.item(), rel=1e-9)
    loss = t_event + 0.3 * ys[1, 1]
    got = torch.autograd.grad(loss, (y0, g, t0))
    want = torch.autograd.grad(t_exact + 0.3 * v_exact, (y0, g, t0))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("interface", INTERFACES)
@pytest.mark.parametrize("reverse", [False, True])
def test_exponential_decay_to_a_threshold_both_directions(interface, reverse):
    """y' = -k y from y0 at t0 reaches c at t* = t0 + ln(y0 / c) / k: forward for c < y0, backward
    in time (reverse_time) for c > y0. The threshold c is a parameter of event_fn (dg/dtheta); the
    state at the event is c whatever y0, k: its gradient is zero."""
    k = torch.tensor(0.8, dtype=DT, requires_grad=True)
    y0 = torch.tensor([2.0], dtype=DT, requires_grad=True)
    c = torch.tensor(3.0 if reverse else 0.5, dtype=DT, requires_grad=True)
    t0 = torch.tensor(0.2, dtype=DT, requires_grad=True)
    kw = dict(adjoint_params=(k,)) if interface == "odeint_adjoint" else {}
    t_event, ys = cd.odeint_event(lambda t, y: -k * y, y0, t0, event_fn=lambda t, y: y - c, reverse_time=reverse,
                                  odeint_interface=INTERFACES[interface], **TIGHT, **kw)
    t_exact = t0 + torch.log(y0[0] / c) / k
    assert (t_event.item() < t0.item()) == reverse
    assert t_event.item() == pytest.approx(t_exact.item(), rel=1e-9)
    assert ys[1].item() == pytest.approx(c.item(), rel=1e-9)
    got = torch.autograd.grad(t_event, (y0, k, c, t0), retain_graph=True)
    want = torch.autograd.grad(t_exact, (y0, k, c, t0))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b.reshape(a.shape), rtol=1e-7, atol=1e-9)
    state_grads = torch.autograd.grad(ys[1].sum(), (y0, k, c))
    torch.testing.assert_close(torch.stack([x.sum() for x in state_grads]),
                               torch.tensor([0.0, 0.0, 1.0], dtype=DT), rtol=0, atol=1e-8)


def test_event_gradients_match_central_differences_for_a_nonlinear_field():
    """A damped pendulum crossing the vertical (event angle = 0) with an event function that also
    depends on t: dL/d(y0, w, t0) of L = t* + y(t*)^2 against float64 central differences."""
    w = torch.tensor([1.3, 0.4], dtype=DT, requires_grad=True)
    f = lambda t, y: torch.stack([y[1], -w[0] * torch.sin(y[0]) - w[1] * y[1]])
    event = lambda t, y: y[0] + 0.1 * torch.sin(t)

    def loss(y0, w_, t0):
        with torch.no_grad():
            w.copy_(w_)
        t_event, ys = cd.odeint_event(f, y0, t0, event_fn=event, **TIGHT)
        return t_event + (ys[1] ** 2).sum()

    y0 = torch.tensor([1.0, 0.0], dtype=DT, requires_grad=True)
    t0 = torch.tensor(0.0, dtype=DT, requires_grad=True)
    w0 = w.detach().clone()
    got = torch.autograd.grad(loss(y0, w0, t0), (y0, w, t0))
    flat = torch.cat([y0.detach(), w0, t0.detach().reshape(1)])
    eps, fd = 1e-6, []
    for i in range(len(flat)):
        e = torch.zeros_like(flat)
        e[i] = eps
        with torch.no_grad():
            up, down = flat + e, flat - e
            fd.append((loss(up[:2], up[2:4], up[4]) - loss(down[:2], down[2:4], down[4])) / (2 * eps))
    torch.testing.assert_close(torch.cat([got[0], got[1], got[2].reshape(1)]), torch.stack(fd), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("method, order", [("euler", 1), ("midpoint", 2), ("rk4", 2)])
def test_fixed_step_event_time_converges_at_the_declared_order(method, order):
    """Fixed-step methods locate the event on their linear dense output: the event time converges at
    min(method order, 2) in the step size (rk4's steps are exact to O(h^4), the line between them is not)."""
    g, h0 = 9.81, 10.0
    y0 = torch.tensor([h0, 0.0], dtype=DT)
    exact = math.sqrt(2 * h0 / g)
    sizes = [0.1, 0.05, 0.025, 0.0125]
    errors = []
    for h in sizes:
        t_event, _ = cd.odeint(_ball(torch.tensor(g, dtype=DT)), y0, torch.tensor([0.0, 1.0], dtype=DT),
                               event_fn=lambda t, y: y[0], method=method, options={"step_size": h})
        errors.append(abs(t_event.item() - exact))
    fitted = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert abs(fitted - order) < 0.25, (fitted, errors)


def test_fixed_step_event_state_and_gradient_under_both_interfaces():
    """rk4 by step_size: the state at t* is the solve to t* (its last step shortened), exact for the
    ball up to rounding; odeint and odeint_adjoint give the same gradients (the adjoint of rk4 on a
    quadratic trajectory is exact too)."""
    grads = {}
    for name, interface in INTERFACES.items():
        g = torch.tensor(9.81, dtype=DT, requires_grad=True)
        y0 = torch.tensor([10.0, 0.0], dtype=DT, requires_grad=True)
        kw = dict(adjoint_params=(g,)) if name == "odeint_adjoint" else {}
        t_event, ys = interface(_ball(g), y0, torch.tensor([0.0, 1.0], dtype=DT), event_fn=lambda t, y: y[0],
                                method="rk4", options={"step_size": 0.05}, **kw)
        assert ys[1, 1].item() == pytest.approx(-9.81 * t_event.item(), rel=1e-12)
        grads[name] = torch.autograd.grad(t_event + ys[1, 1], (y0, g))
    for a, b in zip(grads["odeint"], grads["odeint_adjoint"]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def test_several_event_functions_the_first_crossing_wins():
    """event_fn returns a vector: the event is the first entry to change sign (torchdiffeq's min of
    the entries made positive at t0). Falling from 10 m, the 'time limit' 1.0 - t comes first."""
    y0 = torch.tensor([10.0, 0.0], dtype=DT)
    g = torch.tensor(9.81, dtype=DT)
    t_limit, _ = cd.odeint(_ball(g), y0, torch.tensor([0.0, 1.0], dtype=DT),
                           event_fn=lambda t, y: torch.stack([y[0], 1.0 - t]), **TIGHT)
    t_ground, _ = cd.odeint(_ball(g), y0, torch.tensor([0.0, 1.0], dtype=DT),
                            event_fn=lambda t, y: torch.stack([y[0], 5.0 - t]), **TIGHT)
    assert t_limit.item() == pytest.approx(1.0, rel=1e-12)
    assert t_ground.item() == pytest.approx(math.sqrt(2 * 10.0 / 9.81), rel=1e-9)


def test_tuple_state_event():
    """A tuple state (q, p) of the harmonic oscillator from (1, 0): q = cos t first hits 0 at pi/2."""
    f = lambda t, y: (y[1], -y[0])
    y0 = (torch.tensor([1.0], dtype=DT), torch.tensor([0.0], dtype=DT))
    t_event, (qs, ps) = cd.odeint(f, y0, torch.tensor([0.0, 1.0], dtype=DT), event_fn=lambda t, y: y[0], **TIGHT)
    assert t_event.item() == pytest.approx(math.pi / 2, rel=1e-10)
    assert qs.shape == (2, 1) and abs(qs[1].item()) < 1e-10 and ps[1].item() == pytest.approx(-1.0, rel=1e-10)


def test_matches_torchdiffeq_odeint_event():
    """Same problem, same answer as torchdiffeq's odeint_event (event function without parameters,
    where torchdiffeq's gradient is the full implicit one)."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    out = {}
    for name, module in (("cd", cd), ("torchdiffeq", torchdiffeq)):
        g = torch.tensor(9.81, dtype=DT, requires_grad=True)
        y0 = torch.tensor([10.0, 1.0], dtype=DT, requires_grad=True)
        t_event, ys = module.odeint_event(_ball(g), y0, torch.tensor(0.0, dtype=DT), event_fn=lambda t, y: y[0],
                                          rtol=1e-10, atol=1e-12)
        out[name] = (t_event.detach(), *torch.autograd.grad(t_event + ys[-1, 1], (y0, g)))
    for a, b in zip(out["cd"], out["torchdiffeq"]):
        torch.testing.assert_close(a.reshape(-1), b.reshape(-1), rtol=1e-7, atol=1e-9)


def test_event_solve_counts_the_search_and_the_solve():
    """The field is evaluated by the event search (no graph), the solve to t*, and once at t* for
    the implicit gradient: 4 * 7 + 4 * 7 + 1 rk4 evaluations for t* = ln 2 by steps of 0.1."""
    calls = []

    def f(t, y):
        calls.append(float(t))
        return -y

    cd.odeint(f, torch.ones(1, dtype=DT), torch.tensor([0.0, 1.0], dtype=DT), event_fn=lambda t, y: y - 0.5,
              method="rk4", options={"step_size": 0.1})
    steps_to_event = math.ceil(math.log(2) / 0.1)  # 7 steps of 0.1 reach past t* = ln 2
    assert len(calls) == 4 * steps_to_event + 4 * steps_to_event + 1


def test_errors():
    f = lambda t, y: -y
    y0 = torch.ones(1, dtype=DT)
    t = torch.tensor([0.0, 1.0], dtype=DT)
    with pytest.raises(ValueError, match=r"needs options=\{'step_size': h\}"):
        cd.odeint(f, y0, t, event_fn=lambda t, y: y - 0.5, method="rk4")
    with pytest.raises(ValueError, match="t must hold two times"):
        cd.odeint(f, y0, torch.tensor([0.0, 1.0, 2.0], dtype=DT), event_fn=lambda t, y: y - 0.5)
    with pytest.raises(ValueError, match="event_fn is zero at t0"):
        cd.odeint(f, y0, t, event_fn=lambda t, y: y - 1.0)
    with pytest.raises(ValueError, match=r"event_fn\(t0, y0\) must be finite"):
        cd.odeint(f, y0, t, event_fn=lambda t, y: y / 0.0)
    with pytest.raises(TypeError, match="event_fn.*floating tensor"):
        cd.odeint(f, y0, t, event_fn=lambda t, y: 1)
    with pytest.raises(SolverError, match="max_num_steps"):  # decay never reaches -1
        cd.odeint(f, y0, t, event_fn=lambda t, y: y + 1.0, options={"max_num_steps": 50})
    with pytest.raises(ValueError, match="t0 must be one time"):
        cd.odeint_event(f, y0, torch.zeros(2, dtype=DT), event_fn=lambda t, y: y - 0.5)
    with pytest.raises(SolverError, match=r"touches zero without crossing at t = 0\.(5|4999)\d* \(dg/dt \+ dg/dy \. f = 0\): "
                                          "the event time is not differentiable there$"):  # a step in t: dg/dt = 0 at t*
        cd.odeint(f, torch.ones(1, dtype=DT, requires_grad=True), t,
                  event_fn=lambda t, y: torch.where(t < 0.5, 1.0, -1.0) * torch.ones_like(y))


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
def test_solve_event_under_every_gradient_method(gradient):
    """cd.solve(event_fn=): Solution.event_t is the landing time and ys holds y(t*), with analytic
    gradients, under backprop, checkpoint and adjoint."""
    g = torch.tensor(9.81, dtype=DT, requires_grad=True)
    y0 = torch.tensor([10.0, 2.0], dtype=DT, requires_grad=True)
    sol = cd.solve(_ball(g), y0, t0=0.0, t1=4.0, method="dopri5", gradient=gradient, event_fn=lambda t, y: y[0],
                   **TIGHT)
    t_exact, v_exact = _ball_event_exact(y0[0], y0[1], g, 0.0)
    assert sol.ys.shape == (1, 2) and sol.ts.tolist() == [sol.event_t.item()]
    assert sol.event_t.item() == pytest.approx(t_exact.item(), rel=1e-9)
    got = torch.autograd.grad(sol.event_t + sol.y1[1], (y0, g))
    want = torch.autograd.grad(t_exact + v_exact, (y0, g))
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_solve_event_reversible_equals_checkpoint():
    """Leapfrog on the oscillator from (q0, 0): q = q0 cos t first hits 0 at pi/2 whatever q0, so
    dt*/dq0 = 0 and p(t*) = -q0; the reversible and checkpoint gradients agree."""
    f = lambda t, y: (y[1], -y[0])
    grads = {}
    for gradient in ("checkpoint", "reversible"):
        q0 = torch.tensor([1.0], dtype=DT, requires_grad=True)
        sol = cd.solve(f, (q0, torch.zeros(1, dtype=DT)), t0=0.0, t1=3.0, method="leapfrog", steps=300,
                       gradient=gradient, event_fn=lambda t, y: y[0])
        assert sol.event_t.item() == pytest.approx(math.pi / 2, abs=1e-4)  # O(h^2), h = 0.01
        grads[gradient] = torch.autograd.grad(sol.event_t + sol.y1[1].sum(), q0)[0]
    assert grads["checkpoint"].item() == pytest.approx(-1.0, abs=1e-4)  # dt*/dq0 = 0, dp(t*)/dq0 = -sin(pi/2)
    torch.testing.assert_close(grads["reversible"], grads["checkpoint"], rtol=1e-10, atol=1e-12)


def test_solve_event_on_a_fixed_grid_keeps_the_solve_s_steps():
    """rk4 with steps=40 on [0, 4]: the solve to t* takes the steps of the grid up to t*, the last
    one ending on t*: the same as odeint by step_size 0.1."""
    g = torch.tensor(9.81, dtype=DT)
    y0 = torch.tensor([10.0, 2.0], dtype=DT)
    sol = cd.solve(_ball(g), y0, t0=0.0, t1=4.0, method="rk4", steps=40, event_fn=lambda t, y: y[0])
    t_event, ys = cd.odeint(_ball(g), y0, torch.tensor([0.0, 1.0], dtype=DT), event_fn=lambda t, y: y[0],
                            method="rk4", options={"step_size": 0.1})
    assert sol.event_t.item() == pytest.approx(t_event.item(), rel=1e-13)
    torch.testing.assert_close(sol.y1, ys[1], rtol=1e-12, atol=1e-12)
    assert sol.stats.forward.accepted_steps == 2 * math.ceil(sol.event_t.item() / 0.1)  # the search, the solve


def test_solve_without_event_before_t1_is_the_plain_solve():
    f = lambda t, y: -y
    y0 = torch.ones(2, dtype=DT)
    sol = cd.solve(f, y0, t0=0.0, t1=0.5, method="rk4", steps=4, event_fn=lambda t, y: y - 0.5)  # e^-0.5 > 0.5
    assert sol.event_t is None
    assert torch.equal(sol.ys, cd.solve(f, y0, t0=0.0, t1=0.5, method="rk4", steps=4).ys)


def test_solve_event_errors():
    f = lambda t, y: -y
    y0 = torch.ones(1, dtype=DT)
    kw = dict(t0=0.0, method="rk4", steps=4)
    with pytest.raises(ValueError, match="not supported with t_eval"):
        cd.solve(f, y0, t1=1.0, t_eval=[0.5, 1.0], event_fn=lambda t, y: y - 0.5, **kw)
    with pytest.raises(ValueError, match="not supported with project"):
        cd.solve(f, y0, t1=1.0, project=torch.relu, event_fn=lambda t, y: y - 0.5, **kw)
    with pytest.raises(ValueError, match="t1 only bounds the event search"):
        cd.solve(f, y0, t1=torch.tensor(1.0, dtype=DT, requires_grad=True), event_fn=lambda t, y: y - 0.5, **kw)
    with pytest.raises(TypeError, match="event_fn must be callable"):
        cd.solve(f, y0, t1=1.0, event_fn=0.5, **kw)
