"""The adjoint with many output times: y restarts from the forward pass at each of them.

torchdiffeq's ``odeint_adjoint`` solves backward from one output time to the previous one,
starting each interval from the forward solution there. On a grid that contains the output
times contdepth's fixed-step adjoint is then the same algorithm, so the gradients agree to
rounding; before the restart, y was rebuilt backward from y(t1) alone across [t0, t1] and the
Euler gradient error was 3.3-5x torchdiffeq's (dL/dtheta off by 1e9 for a contracting field).
"""
from __future__ import annotations

import re

import pytest
import torch
import torchdiffeq

import contdepth as cd

DT = torch.float64
T = torch.linspace(0, 2, 11, dtype=DT)  # ten output times after t0
W = torch.linspace(0.3, 1.2, 11, dtype=DT)[:, None] * torch.tensor([1.0, -0.7], dtype=DT)
Y0 = torch.tensor([1.1, -0.6], dtype=DT)


class Cubic(torch.nn.Module):
    """dy/dt = -y^3 + sin(3t) theta + y reversed / 2: nonlinear, time-dependent, coupled."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor([0.8, -0.3], dtype=DT))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -y ** 3 + torch.sin(3 * t) * self.theta + 0.5 * y.flip(0)


class CubicPair(Cubic):
    """:class:`Cubic` on the state as a tuple of its two components."""

    def forward(self, t: torch.Tensor, y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        f = super().forward(t, torch.stack(y))
        return f[0], f[1]


class Uncubic(Cubic):
    """dy/dt = -(:class:`Cubic`'s f): stable when integrated backward in time."""

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -super().forward(t, y)


class Relax(torch.nn.Module):
    """dy/dt = -theta (y - sin t), theta = 20: contracting forward, so expanding backward."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(20.0, dtype=DT))

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return -self.theta * (y - torch.sin(t))


def gradient(run, field: type[torch.nn.Module] = Cubic, y0: torch.Tensor = Y0, w: torch.Tensor = W) -> torch.Tensor:
    """(dL/dy0, dL/dtheta) flattened, for L = sum_k w_k . y(t_k) and ys = run(field, y0)."""
    f, y0 = field(), y0.clone().requires_grad_()
    ys = run(f, y0)
    return torch.cat([g.flatten() for g in torch.autograd.grad((w * ys).sum(), (y0, f.theta))])


# The exact gradients (dL/dy0, dL/dtheta): backprop through RK4 with h = 5e-4, which agrees with
# h = 1e-3 to 1e-12 (Cubic) and 6e-11 (Relax); test_exact_gradients checks them against h = 0.02.
EXACT = torch.tensor([0.8167200969314562, -2.276684703922664, -0.48899650791659793, -0.6083147078405619], dtype=DT)
W_RELAX = torch.linspace(0.5, 1.5, 11, dtype=DT)
Y0_RELAX = torch.tensor(1.0, dtype=DT)
EXACT_RELAX = torch.tensor([0.5112292259316956, 0.006350077206764274], dtype=DT)


def test_exact_gradients():
    rk4 = lambda f, y: cd.odeint(f, y, T, method="rk4", options={"step_size": 0.02})  # errs 1.5e-7, 1.4e-5
    torch.testing.assert_close(gradient(rk4), EXACT, rtol=0, atol=3e-7)
    torch.testing.assert_close(gradient(rk4, Relax, Y0_RELAX, W_RELAX), EXACT_RELAX, rtol=0, atol=3e-5)


@pytest.mark.parametrize("method, h", [("euler", 0.2), ("euler", 0.05), ("euler", 0.025), ("midpoint", 0.05)])
def test_fixed_step_adjoint_equals_torchdiffeq_with_ten_outputs(method, h):
    """Output times on the grid: the same steps forward and backward, the same restarts."""
    opts = {"step_size": h}
    ours = gradient(lambda f, y: cd.odeint_adjoint(f, y, T, method=method, options=opts))
    theirs = gradient(lambda f, y: torchdiffeq.odeint_adjoint(f, y, T, method=method, options=opts))
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)  # was 0.43 apart (euler, h = 0.05)


def test_euler_adjoint_error_is_first_order_and_torchdiffeqs():
    """The issue's measurement: error against the converged gradient, halving with h."""
    errors = []
    for h in (0.1, 0.05, 0.025):
        opts = {"step_size": h}
        ours = gradient(lambda f, y: cd.odeint_adjoint(f, y, T, method="euler", options=opts))
        theirs = gradient(lambda f, y: torchdiffeq.odeint_adjoint(f, y, T, method="euler", options=opts))
        errors.append((ours - EXACT).norm().item())
        assert errors[-1] <= 1.05 * (theirs - EXACT).norm().item()  # was 3.8-4.7x
    assert 1.8 < errors[0] / errors[1] < 2.2 and 1.8 < errors[1] / errors[2] < 2.2


def test_tuple_state_restarts_each_leaf():
    """The restart rebuilds a tuple state leaf by leaf (torchdiffeq takes tuples too)."""
    opts = {"step_size": 0.05}
    pair = lambda odeint: lambda f, y: torch.stack(odeint(f, (y[0], y[1]), T, method="euler", options=opts), -1)
    ours = gradient(pair(cd.odeint_adjoint), CubicPair)
    theirs = gradient(pair(torchdiffeq.odeint_adjoint), CubicPair)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_contracting_field_gradient_is_accurate():
    """y rebuilt backward over [0, 2] grows like 1.2^200; restarted every 0.2 only like 1.2^20.
    Before the restart dL/dtheta was -8.7e8 (exact 0.0064), silently."""
    opts = {"step_size": 0.02}
    ours = gradient(lambda f, y: cd.odeint_adjoint(f, y, T, method="euler", options=opts), Relax, Y0_RELAX, W_RELAX)
    theirs = gradient(lambda f, y: torchdiffeq.odeint_adjoint(f, y, T, method="euler", options=opts),
                      Relax, Y0_RELAX, W_RELAX)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    assert (ours - EXACT_RELAX).abs().max() < 0.01  # first order: 0.0076 at h = 0.02


@pytest.mark.parametrize("method, h", [("euler", 0.05), ("midpoint", 0.1), ("euler", 2.0)])
def test_single_output_is_one_backward_solve(method, h):
    """Outputs at t1 (and t0) only: no restart, the one-interval torchdiffeq adjoint (h = 2: one step)."""
    t, w = T[[0, -1]], W[[0, -1]]
    opts = {"step_size": h}
    theirs = gradient(lambda f, y: torchdiffeq.odeint_adjoint(f, y, t, method=method, options=opts), w=w)
    both = gradient(lambda f, y: cd.odeint_adjoint(f, y, t, method=method, options=opts), w=w)
    torch.testing.assert_close(both, theirs, rtol=0, atol=1e-12)
    last = gradient(lambda f, y: cd.solve(f, y, t0=0.0, t1=2.0, method=method, options=opts,
                                          gradient="adjoint").y1, w=w[1])
    torch.testing.assert_close(last + torch.cat([w[0], torch.zeros(2, dtype=DT)]), both, rtol=0, atol=1e-15)


def test_interpolated_output_restarts_at_the_steps_later_end():
    """An output inside step t_j -> t_j+1 restarts y at t_j+1 from the forward value: the same
    gradient as with t_j+1 as an extra output of zero weight (an output on the grid)."""
    solve = lambda times: lambda f, y: cd.solve(f, y, t0=0.0, t1=2.0, method="euler", steps=20, t_eval=times,
                                                gradient="adjoint").ys
    w = W[[2, 5]]
    inside = gradient(solve([0.37, 1.23]), w=w)   # in steps 0.3 -> 0.4 and 1.2 -> 1.3
    ends = gradient(solve([0.37, 0.4, 1.23, 1.3]), w=torch.stack([w[0], 0 * w[0], w[1], 0 * w[1]]))
    torch.testing.assert_close(inside, ends, rtol=0, atol=1e-15)
    earlier = gradient(solve([0.3, 0.37, 1.2, 1.23]), w=torch.stack([0 * w[0], w[0], 0 * w[1], w[1]]))
    assert (inside - earlier).abs().max() > 1e-4  # where y restarts matters


def test_interpolated_output_injects_with_the_interpolation_weights():
    """y(0.37) = 0.3 y(0.3) + 0.7 y(0.4) on the grid of h = 0.1: with the same restarts (0.3 and 0.4
    outputs) the adjoint is linear in the output gradients, so w . y(0.37) has 0.3 and 0.7 of the
    gradients of w . y(0.3) and w . y(0.4)."""
    solve = lambda times: lambda f, y: cd.solve(f, y, t0=0.0, t1=2.0, method="euler", steps=20, t_eval=times,
                                                gradient="adjoint").ys
    w, zero = W[3], 0 * W[3]
    inside = gradient(solve([0.3, 0.37, 0.4]), w=torch.stack([zero, w, zero]))
    left = gradient(solve([0.3, 0.4]), w=torch.stack([w, zero]))
    right = gradient(solve([0.3, 0.4]), w=torch.stack([zero, w]))
    torch.testing.assert_close(inside, 0.3 * left + 0.7 * right, rtol=0, atol=1e-14)


def test_backward_in_time_equals_torchdiffeq():
    """Decreasing output times (t1 < t0): the grid is walked the other way round."""
    t, opts = T.flip(0), {"step_size": 0.05}
    ours = gradient(lambda f, y: cd.odeint_adjoint(f, y, t, method="euler", options=opts), Uncubic)
    theirs = gradient(lambda f, y: torchdiffeq.odeint_adjoint(f, y, t, method="euler", options=opts), Uncubic)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    solve = lambda times: lambda f, y: cd.solve(f, y, t0=2.0, t1=0.0, method="euler", steps=20, t_eval=times,
                                                gradient="adjoint").ys
    inside = gradient(solve([1.63, 0.5]), Uncubic, w=W[[4, 7]])
    on_grid = gradient(solve([1.63, 1.6, 0.5]), Uncubic, w=torch.stack([W[4], 0 * W[4], W[7]]))
    torch.testing.assert_close(inside, on_grid, rtol=0, atol=1e-15)  # restarts at 1.6, the step's later end


def test_interpolated_outputs_error_close_to_torchdiffeqs():
    """h = 0.03 puts the outputs at multiples of 0.2 inside steps; torchdiffeq restarts at the
    interpolated value on its own backward grid. Without the restart the error was 4.6x its."""
    opts = {"step_size": 0.03}
    ours = gradient(lambda f, y: cd.odeint_adjoint(f, y, T, method="euler", options=opts))
    theirs = gradient(lambda f, y: torchdiffeq.odeint_adjoint(f, y, T, method="euler", options=opts))
    assert (ours - EXACT).norm() <= 1.1 * (theirs - EXACT).norm()  # 1.046x


def test_adaptive_adjoint_restarts_at_outputs():
    """dopri5 with rtol 1e-3: the restart took the error from 4.3x torchdiffeq's to 0.96x."""
    kw = dict(method="dopri5", rtol=1e-3, atol=1e-5)
    ours = gradient(lambda f, y: cd.odeint_adjoint(f, y, T, **kw))
    theirs = gradient(lambda f, y: torchdiffeq.odeint_adjoint(f, y, T, **kw))
    assert (ours - EXACT).norm() <= 1.05 * (theirs - EXACT).norm()


def test_y1_is_kept_when_t1_is_not_an_output():
    """The last output inside the last step (1.95 in 1.9 -> 2): the backward solve starts from the
    saved y(t1) with a part of its gradient, the same as with t1 an output of zero weight (also
    with a kept step value, y(0.6), saved before y(t1))."""
    solve = lambda times: lambda f, y: cd.solve(f, y, t0=0.0, t1=2.0, method="euler", steps=20, t_eval=times,
                                                gradient="adjoint").ys
    w = W[[3, 6]]
    without = gradient(solve([0.55, 1.95]), w=w)
    with_t1 = gradient(solve([0.55, 1.95, 2.0]), w=torch.cat([w, 0 * w[:1]]))
    torch.testing.assert_close(without, with_t1, rtol=0, atol=1e-15)


def test_output_within_rounding_of_a_grid_time():
    """An output time within 1e-12 |t| of a step end is that step end, as the forward march takes
    it: 1.5 + 1.2e-12 is 1.5. Past that, 1.5 + 1.7e-12 lies in the step 1.5 -> 1.6: y restarts at
    1.6 (as with 1.6 an output of zero weight), not at 1.5 (which would be the on-grid gradient)."""
    solve = lambda times: lambda f, y: cd.solve(f, y, t0=0.0, t1=2.0, method="euler", steps=20, t_eval=times,
                                                gradient="adjoint").ys
    w = W[[5]]
    on_grid = gradient(solve([1.5]), w=w)
    torch.testing.assert_close(gradient(solve([1.5 + 1.2e-12]), w=w), on_grid, rtol=0, atol=1e-15)
    past = gradient(solve([1.5 + 1.7e-12]), w=w)
    torch.testing.assert_close(past, gradient(solve([1.5 + 1.7e-12, 1.6]), w=torch.cat([w, 0 * w])),
                               rtol=0, atol=1e-15)
    assert (past - on_grid).abs().max() > 1e-4


def test_non_runge_kutta_stepper_marches_the_parameter_integral():
    """A fixed stepper without a tableau (LinearTwoStep, k = 0 frozen: Euler) marches (y, a, g)
    instead of the quadrature, to the same gradient as Euler's."""
    from contdepth.solvers.multistep import LinearTwoStep
    two_step = LinearTwoStep(cd.ControlGrid(0.0, 2.0, 20), 0.0).double().requires_grad_(False)
    solve = lambda method: lambda f, y: cd.solve(f, y, t0=0.0, t1=2.0, method=method, steps=40, t_eval=T.tolist(),
                                                 gradient="adjoint").ys
    torch.testing.assert_close(gradient(solve(two_step)), gradient(solve("euler")), rtol=0, atol=1e-15)


def test_seminorm_adjoint_restarts_at_outputs():
    kw = dict(method="dopri5", rtol=1e-3, atol=1e-5, adjoint_options={"norm": "seminorm"})
    ours = gradient(lambda f, y: cd.odeint_adjoint(f, y, T, **kw))
    theirs = gradient(lambda f, y: torchdiffeq.odeint_adjoint(f, y, T, **kw))
    assert (ours - EXACT).norm() <= 1.05 * (theirs - EXACT).norm()  # 0.98x


class Pumped(torch.nn.Module):
    """dy/dt = -y^3 + y reversed / 2 + sin(10 t) theta y on a tuple state: the parameter integrals
    oscillate, so their error would set the backward steps."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor([0.8, -0.3], dtype=DT))

    def forward(self, t: torch.Tensor, y: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.stack(y)
        f = -z ** 3 + 0.5 * z.flip(0) + torch.sin(10 * t) * self.theta * z
        return f[0], f[1]


def test_seminorm_leaves_out_only_the_parameter_integrals():
    """Tuple state (y and a two leaves each): without parameters the seminorm is the full norm
    (same steps, same gradient); with theta it skips g's error: 89 backward evaluations, not 149."""
    def run(norm: str, params: bool) -> tuple[torch.Tensor, int]:
        f = Pumped()
        y0 = Y0.clone().requires_grad_()
        sol = cd.solve(f, (y0[0], y0[1]), t0=0.0, t1=2.0, method="dopri5", rtol=1e-4, atol=1e-6,
                       t_eval=T.tolist(), gradient="adjoint", adjoint_options={"norm": norm},
                       adjoint_params=[f.theta] if params else [])
        (W[:, 0] * sol.ys[0] + W[:, 1] * sol.ys[1]).sum().backward()
        return y0.grad, sol.stats.backward.nfe
    (g_full, n_full), (g_semi, n_semi) = run("default", False), run("seminorm", False)
    assert n_semi == n_full
    torch.testing.assert_close(g_semi, g_full, rtol=0, atol=0)
    assert run("seminorm", True)[1] < run("default", True)[1]


class Ramp(torch.nn.Module):
    """dy/dt = theta t, y-independent: every method of order >= 2 is exact, so the forward method
    does not change y(t1), and the backward solve depends only on its own method and tolerances."""

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor([0.7, -1.3], dtype=DT))
        self.calls = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.theta * t + 0 * y


def test_backward_solve_uses_the_adjoint_method_and_tolerances():
    """odeint_adjoint(method=dopri5, adjoint_method=bosh3, adjoint_rtol=1e-6) takes the backward
    steps of odeint_adjoint(method=bosh3, rtol=1e-6): its stepper's order and its tolerances."""
    def backward_calls(**kw) -> int:
        f = Ramp()
        ys = cd.odeint_adjoint(f, Y0.clone().requires_grad_(), T, atol=1e-8, **kw)
        f.calls = 0
        (W * ys).sum().backward()
        return f.calls
    expected = backward_calls(method="bosh3", rtol=1e-6)
    assert backward_calls(method="dopri5", rtol=1e-3, adjoint_method="bosh3", adjoint_rtol=1e-6) == expected
    assert backward_calls(method="bosh3", rtol=1e-3) != expected  # the tolerance does change the steps
    assert backward_calls(method="dopri5", rtol=1e-6) != expected  # and so does the order


def test_failed_backward_solve_names_the_adjoint():
    kw = dict(method="dopri5", rtol=1e-6, atol=1e-8, adjoint_options={"max_num_steps": 2})
    ys = cd.odeint_adjoint(Cubic(), Y0.clone().requires_grad_(), T, **kw)
    with pytest.raises(cd.SolverError, match=r"^the adjoint backward solve failed: max_num_steps=2 exceeded"):
        (W * ys).sum().backward()


def test_non_finite_y_alone_is_an_error():
    """dy/dt = -20 (y - sin t), Euler with h = 0.09: y rebuilt backward grows by 1 + 1.8 per step
    and overflows while a, with da/dt = 20 a, shrinks by |1 - 1.8| per step and stays finite."""
    y1 = cd.solve(Relax(), Y0_RELAX.clone().requires_grad_(), t0=0.0, t1=72.0, method="euler", steps=800,
                  gradient="adjoint").y1
    message = ("the adjoint backward solve (euler) became non-finite: reconstructing y backward in time is "
               "unstable for this field (e.g. strong friction, which contracts forward and expands backward), "
               "or the loss gradient is not finite; use gradient='checkpoint' or more steps")
    with pytest.raises(cd.SolverError, match="^" + re.escape(message) + "$"):
        y1.backward()


FINITE_A = r"^the adjoint backward solve \(\w+\) gave non-finite parameter gradients with a finite adjoint state"
ADAPTIVE_START = (r"^the adjoint backward solve failed: the derivative f\(t0, y0\) at the start \(t0 = 1.0\) is "
                  "not finite")


@pytest.mark.parametrize("method,kw,match", [
    ("euler", {"steps": 4}, FINITE_A), ("rk4", {"steps": 4}, FINITE_A),
    ("dopri5", {"rtol": 1e-6, "atol": 1e-8}, ADAPTIVE_START),
    ("dopri5", {"rtol": 1e-6, "atol": 1e-8, "adjoint_options": {"norm": "seminorm"}}, FINITE_A)])
def test_non_finite_parameter_gradient_alone_is_an_error(method, kw, match):
    """f = sqrt(c) y with c = 0: df/dy = 0 keeps y and a finite, df/dc = y / (2 sqrt(c)) is infinite.
    The quadrature (fixed tableaux), the augmented solve (dopri5: its step-size control sees the
    infinite rate at once) and the seminorm solve (which does not look at it) all refuse to return it."""
    c = torch.zeros((), dtype=torch.float64, requires_grad=True)
    y0 = torch.ones(2, dtype=torch.float64, requires_grad=True)
    y1 = cd.solve(lambda t, y: torch.sqrt(c) * y, y0, t0=0.0, t1=1.0, method=method, gradient="adjoint",
                  adjoint_params=[c], **kw).y1
    with pytest.raises(cd.SolverError, match=match):
        y1.sum().backward()


def test_stepper_evaluating_more_stages_than_its_tableau_is_refused():
    """The quadrature of g weights stage i by b_i: a stepper whose evaluations do not match its
    tableau would get the wrong parameter gradient, so the backward pass refuses it."""
    from contdepth.solvers import EULER, RungeKutta

    class ExtraStage(RungeKutta):
        def step(self, term, t, h, y, state):
            term(t, y, 1 if h > 0 else -1)
            return super().step(term, t, h, y, state)

    ys = cd.solve(Cubic(), Y0.clone().requires_grad_(), t0=0.0, t1=2.0, method=ExtraStage(EULER), steps=4,
                  gradient="adjoint").ys
    with pytest.raises(RuntimeError, match="^the stepper evaluated 2 stages, its tableau has 1$"):
        ys.sum().backward()


@pytest.mark.parametrize("times, states", [(None, 1), ([0.5, 1.0, 2.0], 3), ([0.55, 1.0], 4)])
def test_saved_states(times, states):
    """Saved for backward: the outputs, y(t1) unless it is the last, and y at the later end of a
    step an output is interpolated in (0.55 in 0.5 -> 0.6 keeps y(0.6))."""
    sol = cd.solve(Cubic(), Y0.clone().requires_grad_(), t0=0.0, t1=2.0, method="euler", steps=20, t_eval=times,
                   gradient="adjoint")
    storages = {x.untyped_storage().data_ptr(): x.untyped_storage().nbytes() for x in sol.ys.grad_fn.saved_tensors}
    assert sum(storages.values()) == states * Y0.numel() * 8
