"""Time gradients of outputs strictly inside a fixed step (contdepth/gradients/times.py): such an
output is the step's dense output p(t_i) on a grid that does not move with t_i, so
dL/dt_i = <ybar_i, p'(t_i)>: (y_b - y_a)/(b - a) for linear outputs, the Hermite derivative for
interp='cubic'. Checked against the step ends solved for separately and against central
differences of the computed outputs, under every gradient method; t_0, outputs on step ends and
adaptive methods keep the flow formula <ybar_i, f(t_i, y_i)>."""
import pytest
import torch

import contdepth as cd

DT = torch.float64
H = 0.3  # step_size: grid t0 + j H, the last step shortened to end on t1


def field(t, y):
    return -0.7 * y + torch.sin(3 * t) * torch.flip(y, [0])


Y0 = torch.tensor([1.0, 2.0], dtype=DT)


def outputs(t, gradient, method="rk4", interp="linear", y0=Y0, **options):
    """y at every time of t (t[0] the start): cd.odeint, cd.odeint_adjoint, or cd.solve with t_eval."""
    options = {"step_size": H, "interp": interp, **options}
    if gradient == "odeint":
        return cd.odeint(field, y0, t, method=method, options=options)
    if gradient == "odeint_adjoint":
        return cd.odeint_adjoint(field, y0, t, method=method, options=options)
    return cd.solve(field, y0, t0=t[0], t1=t[-1].item(), t_eval=t, method=method, options=options,
                    gradient=gradient).ys


LINEAR_MODES = ["odeint", "odeint_adjoint", "backprop", "checkpoint", "adjoint"]
CUBIC_MODES = ["odeint", "backprop", "checkpoint"]
# (times, the grid steps [a, b] holding the interior outputs 1 and 2), both directions of time
CASES = {"forward": ([0.0, 0.45, 0.7, 1.5], [(0.3, 0.6), (0.6, 0.9)]),
         "backward": ([1.5, 1.05, 0.8, 0.0], [(1.2, 0.9), (0.9, 0.6)])}
W = torch.tensor([[0.5, 1.0], [-2.0, 0.3], [1.5, -1.0], [0.2, 0.9]], dtype=DT)


def central_differences(loss, t, indices, eps=1e-6):
    with torch.no_grad():
        return torch.stack([(loss(t + eps * e) - loss(t - eps * e)) / (2 * eps)
                            for e in torch.eye(len(t), dtype=DT)[indices]])


@pytest.mark.parametrize("mode", LINEAR_MODES)
@pytest.mark.parametrize("method", ["rk4", "euler"])
@pytest.mark.parametrize("case", CASES)
def test_linear_outputs_inside_a_step_get_the_chord_slope(mode, method, case):
    times, steps = CASES[case]
    t = torch.tensor(times, dtype=DT, requires_grad=True)
    ys = outputs(t, mode, method)
    got, = torch.autograd.grad((W * ys).sum(), t)  # ybar_i = W_i
    for i, (a, b) in zip((1, 2), steps):
        ends = cd.odeint(field, Y0, torch.tensor([times[0], a, b], dtype=DT), method=method,
                         options={"step_size": H})  # the same grid up to b: the same y_a, y_b
        chord = (ends[2] - ends[1]) / (b - a)
        assert got[i].item() == pytest.approx((W[i] * chord).sum().item(), rel=1e-12, abs=1e-14)
        flow = (W[i] * field(t[i].detach(), ys[i].detach())).sum().item()
        assert abs(got[i].item() - flow) > 1e-3  # the flow formula would fail the line above
    loss = lambda s: (W * outputs(s, mode, method)).sum()
    torch.testing.assert_close(got[1:3], central_differences(loss, t.detach(), [1, 2]), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("mode", CUBIC_MODES)
@pytest.mark.parametrize("case", CASES)
def test_cubic_outputs_inside_a_step_get_the_hermite_slope(mode, case):
    """interp='cubic': a nonlinear loss of the Hermite outputs, differentiated in each interior t_i,
    against central differences of the computed outputs (exact up to rounding and O(eps^2))."""
    times, _ = CASES[case]
    loss = lambda s: (W * outputs(s, mode, interp="cubic") ** 2).sum()
    t = torch.tensor(times, dtype=DT, requires_grad=True)
    got, = torch.autograd.grad(loss(t), t)
    torch.testing.assert_close(got[1:3], central_differences(loss, t.detach(), [1, 2]), rtol=1e-8, atol=1e-8)
    ys = outputs(t.detach(), mode, interp="cubic")
    for i in (1, 2):  # not the flow formula, nor the linear chord
        flow = (2 * W[i] * ys[i] * field(t[i].detach(), ys[i])).sum()
        assert abs(got[i] - flow) > 1e-4
    linear, = torch.autograd.grad((W * outputs(t, mode) ** 2).sum(), t)
    assert (got[1:3] - linear[1:3]).abs().min() > 1e-3


@pytest.mark.parametrize("mode", LINEAR_MODES)
def test_start_and_outputs_on_step_ends_keep_the_flow_formula(mode):
    """t = [0, 0.3 (end), 0.45 (inside), 0.9 (end), 1.0 (inside), 1.2 (end)] on steps of 0.3:
    dL/dt_i = <ybar_i, f(t_i, y_i)> on the ends, dL/dt_0 = -<dL/dy0 - ybar_0, f(t_0, y0)>, and the
    chords inside (one solve, so the indices of the two kinds are not mixed up)."""
    times = [0.0, 0.3, 0.45, 0.9, 1.0, 1.2]
    w = torch.linspace(-1.0, 2.0, 12, dtype=DT).reshape(6, 2)
    t = torch.tensor(times, dtype=DT, requires_grad=True)
    y0 = Y0.clone().requires_grad_(True)
    ys = outputs(t, mode, y0=y0)
    g_t, g_y0 = torch.autograd.grad((w * ys).sum(), (t, y0))
    ys = ys.detach()
    for i in (1, 3, 5):
        assert g_t[i].item() == pytest.approx((w[i] * field(t[i].detach(), ys[i])).sum().item(), rel=1e-13)
    start = -((g_y0 - w[0]) * field(t[0].detach(), Y0)).sum()
    assert g_t[0].item() == pytest.approx(start.item(), rel=1e-12)
    ends = cd.odeint(field, Y0, torch.tensor([0.0, 0.3, 0.6, 0.9, 1.2], dtype=DT), method="rk4",
                     options={"step_size": H})
    for i, j in ((2, 1), (4, 3)):  # 0.45 in [0.3, 0.6], 1.0 in [0.9, 1.2]
        chord = (ends[j + 1] - ends[j]) / H
        assert g_t[i].item() == pytest.approx((w[i] * chord).sum().item(), rel=1e-12)


def test_steps_grid_of_solve_and_odesolve():
    """cd.solve / cd.odesolve with steps=N (a uniform grid from t0 to t1) and t_eval inside steps:
    the chord slope, against central differences."""
    loss = lambda s: (W[:3] * cd.odesolve(field, Y0, t0=0.0, t1=1.0, t_eval=s, method="midpoint", steps=4) ** 2).sum()
    s = torch.tensor([0.1, 0.4, 0.6], dtype=DT, requires_grad=True)
    got, = torch.autograd.grad(loss(s), s)
    torch.testing.assert_close(got, central_differences(loss, s.detach(), [0, 1, 2]), rtol=1e-8, atol=1e-8)


def test_reversible_gradient_gets_the_chord_slope_too():
    """Leapfrog under gradient='reversible' and 'checkpoint': the same time gradients, and those of
    the interior output match central differences."""
    f = lambda t, y: (y[1], -y[0] - 0.3 * torch.sin(t) * y[1])
    y0 = (torch.tensor([1.0], dtype=DT), torch.tensor([0.0], dtype=DT))

    def loss(s, gradient):
        q, p = cd.solve(f, y0, t0=0.0, t1=1.0, t_eval=s, method="leapfrog", steps=5, gradient=gradient).ys
        return (q[:, 0] * torch.tensor([1.0, -2.0, 0.5], dtype=DT)).sum() + (p ** 2).sum()

    grads = {}
    for gradient in ("reversible", "checkpoint"):
        s = torch.tensor([0.3, 0.5, 1.0], dtype=DT, requires_grad=True)
        grads[gradient], = torch.autograd.grad(loss(s, gradient), s)
    torch.testing.assert_close(grads["reversible"], grads["checkpoint"], rtol=1e-12, atol=1e-14)
    fd = central_differences(lambda s: loss(s, "checkpoint"), torch.tensor([0.3, 0.5, 1.0], dtype=DT), [0, 1])
    torch.testing.assert_close(grads["reversible"][:2], fd, rtol=1e-8, atol=1e-8)


def test_adaptive_methods_keep_the_flow_formula_inside_their_steps():
    t = torch.tensor([0.0, 0.45, 0.7, 1.5], dtype=DT, requires_grad=True)
    ys = cd.odeint(field, Y0, t, method="dopri5")
    got, = torch.autograd.grad((W * ys).sum(), t)
    for i in (1, 2, 3):
        assert got[i].item() == pytest.approx((W[i] * field(t[i].detach(), ys[i].detach())).sum().item(), rel=1e-13)


def test_interior_outputs_cost_no_field_evaluation_in_the_backward_pass():
    """The slope is recorded by the forward march: only the step-end output t1 costs one f."""
    s = torch.tensor([0.45, 0.7, 1.5], dtype=DT, requires_grad=True)
    sol = cd.solve(field, Y0, t0=0.0, t1=1.5, t_eval=s, method="rk4", options={"step_size": H})
    before = sol.stats.backward.nfe
    sol.ys.sum().backward()
    assert sol.stats.backward.nfe == before + 1


@pytest.mark.parametrize("interp", ["linear", "cubic"])
@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_interior_time_gradients_match_torchdiffeq_odeint(method, interp):
    """torchdiffeq's odeint differentiates through its interpolation of a fixed step: the same
    gradients for the interior outputs (same steps, same outputs for these two methods)."""
    torchdiffeq = pytest.importorskip("torchdiffeq")
    got = {}
    for name, lib in (("cd", cd), ("torchdiffeq", torchdiffeq)):
        t = torch.tensor([0.0, 0.45, 0.7, 1.5], dtype=DT, requires_grad=True)
        ys = lib.odeint(field, Y0, t, method=method, options={"step_size": H, "interp": interp})
        got[name], = torch.autograd.grad((W * ys ** 2).sum(), t)
    torch.testing.assert_close(got["cd"][1:3], got["torchdiffeq"][1:3], rtol=1e-12, atol=1e-14)
