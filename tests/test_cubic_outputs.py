"""options={"interp": "cubic"} for fixed-step methods (torchdiffeq's option): outputs and event
times inside a step from the cubic Hermite interpolant through the step's ends and their slopes.

Closed forms in float64: y' = 3 t^2 (y = t^3; rk4 integrates it exactly) makes the interpolant
exact; y' = cos(t) y (y = exp(sin t)) fits its error order at the step midpoints (4, against 2 for
the linear default); the event y = 1.5 is at t = asin(log 1.5).
"""
import math

import pytest
import torch

import contdepth as cd
from contdepth.solvers.hermite import CubicOutputs

D = torch.float64


def growth(t, y):
    return torch.cos(t) * y


def test_a_cubic_is_interpolated_exactly():
    ts = torch.tensor([0.0, 0.13, 0.5, 0.77, 1.0], dtype=D)
    ys = cd.odeint(lambda t, y: 3 * t ** 2 * torch.ones_like(y), torch.zeros(1, dtype=D), ts, method="rk4",
                   options={"step_size": 0.25, "interp": "cubic"})
    torch.testing.assert_close(ys[:, 0], ts ** 3, rtol=0, atol=1e-15)


@pytest.mark.parametrize("interp, order", [("cubic", 4), ("linear", 2)])
def test_output_error_order_inside_the_steps(interp, order):
    errors, hs = [], [0.2, 0.1, 0.05, 0.025]
    for h in hs:
        mids = (torch.arange(round(2.0 / h), dtype=D) + 0.5) * h  # every step's midpoint on [0, 2]
        ts = torch.cat([torch.zeros(1, dtype=D), mids])
        ys = cd.odeint(growth, torch.ones(1, dtype=D), ts, method="rk4", options={"step_size": h, "interp": interp})
        errors.append(float((ys[:, 0] - torch.exp(torch.sin(ts))).abs().max()))
    slope = math.log(errors[0] / errors[-1]) / math.log(hs[0] / hs[-1])
    assert order - 0.3 < slope < order + 0.3, (interp, slope, errors)


@pytest.mark.parametrize("method", ["euler", "rk4", "implicit_euler"])
def test_only_steps_with_an_output_inside_pay_two_evaluations(method):
    ts = torch.tensor([0.0, 0.05, 0.35, 0.4, 1.0], dtype=D)  # inside steps 0 and 3; 0.4 and 1.0 are step ends
    counts = {}
    for interp in ("linear", "cubic"):
        sol = cd.solve(growth, torch.ones(1, dtype=D), t0=0.0, t1=1.0, t_eval=ts, method=method, steps=10,
                       options={"interp": interp})
        counts[interp] = sol.stats.forward.nfe
    assert counts["cubic"] == counts["linear"] + 4


def test_event_time_from_the_cubic_interpolant():
    exact = math.asin(math.log(1.5))
    errors = {}
    for interp in ("linear", "cubic"):
        t, y = cd.odeint(growth, torch.ones(1, dtype=D), torch.tensor([0.0, 2.0], dtype=D), method="rk4",
                         event_fn=lambda t, y: (y - 1.5).sum(), options={"step_size": 0.1, "interp": interp})
        errors[interp] = abs(float(t) - exact)
    assert errors["cubic"] < 1e-6 < 1e-4 < errors["linear"]


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint"])
def test_gradients_through_a_cubic_output(gradient):
    """d y(0.55) / d (y0, k) for y' = k cos(t) y: y(0.55) = y0 exp(k sin 0.55) to the method's and the
    interpolant's accuracy (rk4, h = 0.01), and checkpoint equals backprop exactly."""
    k = torch.tensor(0.8, dtype=D, requires_grad=True)
    y0 = torch.tensor([1.3], dtype=D, requires_grad=True)
    sol = cd.solve(lambda t, y: k * torch.cos(t) * y, y0, t0=0.0, t1=1.0, t_eval=[0.0, 0.555, 1.0], method="rk4",
                   steps=100, gradient=gradient, options={"interp": "cubic"}, adjoint_params=[k])
    g_y0, g_k = torch.autograd.grad(sol.ys[1, 0], (y0, k))
    s = math.sin(0.555)
    torch.testing.assert_close(g_y0, torch.tensor([math.exp(0.8 * s)], dtype=D), rtol=1e-9, atol=0)
    torch.testing.assert_close(g_k, torch.tensor(1.3 * s * math.exp(0.8 * s), dtype=D), rtol=1e-9, atol=0)


def test_bad_interp_is_refused_by_name():
    y0 = torch.ones(1, dtype=D)
    with pytest.raises(ValueError, match="options\\['interp'\\] must be 'linear'.* or 'cubic'"):
        cd.solve(growth, y0, t0=0.0, t1=1.0, method="rk4", steps=4, options={"interp": "quadratic"})
    with pytest.raises(ValueError, match="not available with gradient='adjoint'"):
        cd.solve(growth, y0, t0=0.0, t1=1.0, method="rk4", steps=4, options={"interp": "cubic"}, gradient="adjoint")
    with pytest.raises(ValueError, match="interp"):
        cd.solve(growth, y0, t0=0.0, t1=1.0, method="dopri5", options={"interp": "cubic"})
    with pytest.raises(ValueError, match="fixed-step methods .*, got 'dopri5'$"):
        CubicOutputs(cd.solvers.get_stepper("dopri5"))


def test_the_wrapper_is_the_wrapped_method_to_everything_but_outputs():
    """Name, orders and flags are the wrapped method's; a history-carrying method (Adams) is
    initialised as without the wrapper, so the step ends are bit-identical to interp='linear'."""
    for name in ("rk4", "implicit_midpoint", "explicit_adams"):
        inner = cd.solvers.get_stepper(name)
        wrapped = CubicOutputs(inner)
        assert (wrapped.name, wrapped.order, wrapped.fsal, wrapped.adaptive) == (inner.name, inner.order, inner.fsal,
                                                                                  False)
        assert wrapped.implicit == getattr(inner, "implicit", False)
        ts = torch.tensor([0.0, 0.5, 1.0], dtype=D)
        runs = [cd.odeint(growth, torch.ones(1, dtype=D), ts, method=name, options={"step_size": 0.1, "interp": i})
                for i in ("linear", "cubic")]
        assert torch.equal(runs[0], runs[1])
    sol = cd.solve(growth, torch.ones(1, dtype=D), t0=0.0, t1=1.0, method="rk4", steps=4, options={"interp": "cubic"})
    assert sol.stats.method == "rk4"


def test_slopes_are_taken_from_inside_the_step_at_a_jump():
    """y' = 1 before t = 0.5 and 3 after, Euler steps of 0.5 with perturb=True (every step end is a
    jump): inside each step the slope at both ends is that step's own, so the cubic is exact:
    y(0.25) = 0.25, y(0.75) = 0.5 + 3 * 0.25."""
    f = lambda t, y: torch.where(t < 0.5, 1.0, 3.0) * torch.ones_like(y)  # noqa: E731
    ts = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0], dtype=D)
    ys = cd.odeint(f, torch.zeros(1, dtype=D), ts, method="euler",
                   options={"step_size": 0.5, "interp": "cubic", "perturb": True})
    torch.testing.assert_close(ys[:, 0], torch.tensor([0.0, 0.25, 0.5, 1.25, 2.0], dtype=D), rtol=0, atol=1e-14)
    back = cd.odeint(f, torch.full((1,), 2.0, dtype=D), ts.flip(0), method="euler",
                     options={"step_size": 0.5, "interp": "cubic", "perturb": True})
    torch.testing.assert_close(back[:, 0], torch.tensor([2.0, 1.25, 0.5, 0.25, 0.0], dtype=D), rtol=0, atol=1e-14)


def test_a_symplectic_method_keeps_its_pair_state_under_the_wrapper():
    """leapfrog on the oscillator (q, p): the wrapper hands y0 to the method's init (which checks
    the pair), and the step ends equal interp='linear' bit for bit."""
    f = lambda t, s: (s[1], -s[0])  # noqa: E731
    y0 = (torch.ones(1, dtype=D), torch.zeros(1, dtype=D))
    ts = torch.tensor([0.0, 0.5, 1.0], dtype=D)
    runs = [cd.odeint(f, y0, ts, method="leapfrog", options={"step_size": 0.1, "interp": i}) for i in ("linear", "cubic")]
    assert all(torch.equal(a, b) for a, b in zip(*runs))
