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


def test_rebuilding_y_backward_would_blow_up_where_the_interpolated_adjoint_does_not():
    """Backward in time y' = -1e4 y grows as exp(1e4 t): rebuilding y(t) from y(1) = exp(-1e4) y0
    (about 1e-4343, zero in float64) cannot recover y; the interpolated adjoint's dL/dlam needs y(t)
    on the way and matches the closed form w t exp(lam t) y0 at t = 1e-3."""
    lam, t1 = [-1e4], 1e-3
    y0 = torch.tensor([1.0], dtype=D, requires_grad=True)
    model = Diagonal(lam)
    sol = cd.solve(model, y0, t0=0.0, t1=t1, method="kvaerno5", gradient="adjoint", rtol=1e-9, atol=1e-14)
    sol.y1.sum().backward()
    g_y0, g_lam = _closed_form(lam, y0, [torch.ones(1, dtype=D)], [t1])
    torch.testing.assert_close(y0.grad, g_y0, rtol=1e-6, atol=0)
    torch.testing.assert_close(model.lam.grad, g_lam, rtol=1e-5, atol=0)


def test_an_explicit_method_still_rebuilds_y_backward():
    """Non-stiff adjoints are unchanged: with dopri5 the backward solve marches (y, a, g) and its
    evaluation count includes rebuilding y (more evaluations than the (a, g) of an implicit march)."""
    from contdepth.gradients.adjoint import interpolates
    from contdepth.solvers import get_stepper

    class P:
        class adjoint:
            stepper = get_stepper("dopri5")
        term = as_term(lambda t, y: -y, torch.ones(1, dtype=D))
    assert not interpolates(P)
    P.adjoint.stepper = get_stepper("kvaerno5")
    assert interpolates(P)
