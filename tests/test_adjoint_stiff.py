"""The adjoint of a stiff solve: with an implicit method, the backward pass marches (a, g) alone and
takes y(t) from the forward solve's accepted steps (a cubic Hermite interpolant), because y cannot
be rebuilt backward in time through a field's fast decaying modes.

Closed forms in float64: y' = lam * y (diagonal, lam down to -1e4) has y(t) = exp(lam t) y0, so a
loss sum_k w_k . y(t_k) has dL/dy0 = sum_k w_k exp(lam t_k) and dL/dlam = sum_k w_k t_k exp(lam t_k) y0.
"""
import math

import pytest
import torch

import contdepth as cd
from contdepth.errors import SolverError
from contdepth.gradients import adjoint
from contdepth.gradients.adjoint import ForwardPath
from contdepth.terms import as_term

D = torch.float64


class Diagonal(torch.nn.Module):
    def __init__(self, lam):
        super().__init__()
        self.lam = torch.nn.Parameter(torch.tensor(lam, dtype=D))

    def forward(self, t, y):
        return self.lam * y


def test_forward_path_is_exact_at_the_step_ends_and_fourth_order_inside():
    """y' = cos(t) y, y = exp(sin t): the Hermite interpolant through exact (t_k, y_k) is exact at
    every t_k and its error at the step midpoints falls as h^4 (fitted slope 3.8..4.2)."""
    f = lambda t, y: math.cos(t) * y  # noqa: E731
    exact = lambda t: torch.tensor([math.exp(math.sin(t))], dtype=D)  # noqa: E731
    y0 = exact(0.0)
    term = as_term(f, y0)
    errors, hs = [], []
    for n in (8, 16, 32, 64):
        times = [2.0 * k / n for k in range(n + 1)]
        path = ForwardPath(term, times, [exact(t) for t in times])
        for t in times:
            assert torch.equal(path(t), exact(t))
        mids = [(a + b) / 2 for a, b in zip(times, times[1:])]
        errors.append(max(float((path(t) - exact(t)).abs()) for t in mids))
        hs.append(2.0 / n)
    slope = (math.log(errors[0]) - math.log(errors[-1])) / (math.log(hs[0]) - math.log(hs[-1]))
    assert 3.8 < slope < 4.2, slope


def _closed_form(lam, y0, w, ts):
    lam, y0 = torch.tensor(lam, dtype=D), y0.detach()
    g_y0 = sum(wk * torch.exp(lam * t) for wk, t in zip(w, ts))
    g_lam = sum(wk * t * torch.exp(lam * t) * y0 for wk, t in zip(w, ts))
    return g_y0, g_lam


@pytest.mark.parametrize("reverse", [False, True])
def test_stiff_linear_adjoint_matches_the_closed_form(reverse, method="kvaerno5", rtol=1e-9, tol=1e-5):
    """Eigenvalues -1 and -1e4 on [0, 2] (or +1, +1e4 on [0, -2]: stiff backward in time), outputs
    at three times whose gradients join the backward solve on its way."""
    lam = [1.0, 1e4] if reverse else [-1.0, -1e4]
    ts = [0.0, -0.5, -1.0, -2.0] if reverse else [0.0, 0.5, 1.0, 2.0]
    y0 = torch.tensor([1.0, 0.7], dtype=D, requires_grad=True)
    w = [torch.tensor([0.0, 0.0], dtype=D)] + [torch.tensor([1.0 + k, -0.5], dtype=D) for k in range(3)]
    model = Diagonal(lam)
    sol = cd.solve(model, y0, t0=ts[0], t1=ts[-1], t_eval=ts, method=method, gradient="adjoint",
                   rtol=rtol, atol=1e-12)
    loss = sum((wk * yk).sum() for wk, yk in zip(w, sol.ys))
    loss.backward()
    g_y0, g_lam = _closed_form(lam, y0, w, ts)
    torch.testing.assert_close(y0.grad, g_y0, rtol=tol / 10, atol=1e-12)
    torch.testing.assert_close(model.lam.grad, g_lam, rtol=tol, atol=1e-12)


def test_rebuilding_y_backward_fails_where_the_interpolated_adjoint_is_exact(monkeypatch):
    """Eigenvalues -0.5 and -1e4 on [0, 1]: backward in time the fast mode grows as exp(1e4 (1 - t)).
    With the same budget of 400 backward steps, the interpolated adjoint (222 attempts) matches the
    closed form, while rebuilding y(t) backward along with a (the explicit methods' adjoint, forced
    here) crawls (h ~ 1e-5 near t1) and runs out of steps before t = 0.99; without a budget it ends
    with Newton's iteration diverging after a minute."""
    lam, w, ts = [-0.5, -1e4], [torch.tensor([2.0, 1.0], dtype=D)], [1.0]

    def gradients():
        y0 = torch.tensor([1.0, 0.7], dtype=D, requires_grad=True)
        model = Diagonal(lam)
        sol = cd.solve(model, y0, t0=0.0, t1=1.0, method="kvaerno5", gradient="adjoint", rtol=1e-9, atol=1e-14,
                       adjoint_options={"max_num_steps": 400})
        (w[0] * sol.y1).sum().backward()
        return y0, model

    y0, model = gradients()
    g_y0, g_lam = _closed_form(lam, y0, w, ts)
    torch.testing.assert_close(y0.grad, g_y0, rtol=1e-6, atol=1e-12)
    torch.testing.assert_close(model.lam.grad, g_lam, rtol=1e-5, atol=1e-12)
    monkeypatch.setattr(adjoint, "interpolates", lambda problem: False)
    with pytest.raises(SolverError, match="the adjoint backward solve failed: max_num_steps=400 exceeded at t=0.99"):
        gradients()


@pytest.mark.parametrize("method,marched", [("dopri5", 3), ("kvaerno5", 2)])
def test_only_an_implicit_backward_method_takes_y_from_the_forward_solve(method, marched):
    """x' = -x on [0, 1], L = sum y(1): the backward solve's first step starts from (y(1), a, g) with
    an explicit method (y rebuilt backward, as before) and from (a, g) with an implicit one."""
    seen = []

    class F(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.k = torch.nn.Parameter(torch.ones((), dtype=D))

        def forward(self, t, x):
            return -self.k * x

        def callback_step_adjoint(self, t0, y0, dt):
            seen.append(y0)

    x0 = torch.tensor([1.0, 2.0], dtype=D, requires_grad=True)
    sol = cd.solve(F(), x0, t0=0.0, t1=1.0, method=method, gradient="adjoint", rtol=1e-9, atol=1e-12)
    sol.y1.sum().backward()
    assert len(seen[0]) == marched
    if marched == 3:
        torch.testing.assert_close(seen[0][0], sol.y1.detach(), rtol=0, atol=0)
    torch.testing.assert_close(seen[0][marched - 2], torch.ones(2, dtype=D), rtol=0, atol=0)
    torch.testing.assert_close(x0.grad, torch.full((2,), math.exp(-1.0), dtype=D), rtol=1e-7, atol=0)
