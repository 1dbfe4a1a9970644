"""``project=``: a map applied to the state after every accepted step (a projected, or splitting,
scheme), and seed 000's block psi <- ReLU(psi + D psi) (eq. 26, sec. 4.1) as projected Euler.

Checked: the MNIST models' seed block equals the hand-written ReLU(psi + D psi) loop bit for bit
(PDE1, PDE2, the conv control, several depths); checkpoint equals backprop through projected
solves (fixed, FSAL adaptive, outputs inside steps); an FSAL stepper restarts from the projected
end; outputs inside a step are the projected dense output; the fused backward pass is not taken;
the errors naming ``project``.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import contdepth as cd
from contdepth.fields.pde import DRIFT_SCALE, stencil_kernel
from contdepth.gradients import backprop
from contdepth.models import build_mnist_model
from contdepth.solution import StepCounts
from contdepth.solvers import DOPRI5, FixedGrid, RungeKutta, march
from contdepth.terms import as_term

COEFFS = ("alpha", "beta", "sigma", "rho", "gamma")


def _images(n: int = 3, dtype=torch.float32) -> torch.Tensor:
    """Normalised-MNIST-like inputs: negative background, positive strokes."""
    return torch.randn(n, 1, 28, 28, dtype=dtype)


def _conv1(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """K * x + b for one channel, written as ConvResidual evaluates it: the images as the channels of
    one depthwise convolution (the same sums as F.conv2d; tests/test_conv_one_channel.py)."""
    n = x.shape[0]
    return F.conv2d(x.reshape(1, n, 28, 28), weight.expand(n, 1, 3, 3), bias.expand(n), padding=1,
                    groups=n).view(n, 1, 28, 28)


def _randomise_pde(field) -> None:
    with torch.no_grad():
        for name in COEFFS:
            getattr(field, name).uniform_(-1, 1)


def _seed_pde_loop(field, x: torch.Tensor, depth: int) -> torch.Tensor:
    """psi <- ReLU(psi + D_l psi), D_l the stencil operator of knot l as one depthwise 3x3 convolution."""
    b, c, h, w = x.shape
    for l in range(depth):
        kernel = stencil_kernel(*(getattr(field, n)[l] for n in COEFFS), DRIFT_SCALE[field.variant])
        d = F.conv2d(x.reshape(1, b * c, h, w), kernel.repeat(b, 1, 1, 1), padding=1, groups=b * c)
        x = F.relu(x + d.view(b, c, h, w))
    return x


@pytest.mark.parametrize("depth", [1, 4, 9])
@pytest.mark.parametrize("name", ["pde1", "pde2"])
def test_seed_pde_block_is_the_hand_written_relu_loop_bit_for_bit(name, depth):
    model = build_mnist_model(name, depth)  # block="seed" by default
    field = model.block.field
    _randomise_pde(field)
    x = _images()
    with torch.no_grad():
        assert torch.equal(model.block(x), _seed_pde_loop(field, x, depth))
    assert model.block.method == "euler" and model.block.steps == depth and field.grid.t1 == depth  # h = 1


def test_seed_pde_block_is_the_stencil_of_eq_39_and_40():
    """The operator D of the loop above is seed 000's finite differences (eq. 22-24, 39, 40), written
    out pixel by pixel; the skip inside the ReLU (eq. 26)."""
    for name in ("pde1", "pde2"):
        model = build_mnist_model(name, 3)
        f = model.block.field
        _randomise_pde(f)
        x = _images(2, torch.float64)
        model.double()
        s = 1.0 if name == "pde1" else -1.0 / 8.0
        ref = x
        for l in range(3):
            a, b, sg, r, g = (getattr(f, n)[l].view(-1, 1, 1) for n in COEFFS)
            p = F.pad(ref, (1, 1, 1, 1))
            c, right, left, down, up = (p[..., 1:-1, 1:-1], p[..., 1:-1, 2:], p[..., 1:-1, :-2], p[..., 2:, 1:-1],
                                        p[..., :-2, 1:-1])
            d = (a ** 2 / 2 * (right - 2 * c + left) + s * b * (right - left) / 2
                 + sg ** 2 / 2 * (down - 2 * c + up) + s * r * (down - up) / 2 + g * c)
            ref = torch.relu(ref + d)
        with torch.no_grad():
            torch.testing.assert_close(model.block(x), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("depth", [1, 4, 9])
def test_seed_conv_control_is_the_hand_written_relu_loop_bit_for_bit(depth):
    model = build_mnist_model("resnet", depth)
    f = model.block.field
    x = _images()
    ref = x
    for l in range(depth):
        ref = F.relu(ref + _conv1(ref, f.weight[l], f.bias[l]))
    with torch.no_grad():
        assert torch.equal(model.block(x), ref)


def test_ode_block_option_keeps_the_ode_form():
    """block="ode": psi + ReLU(D psi) and psi + ReLU(K psi + b), bit for bit; not the seed block."""
    x = _images()
    pde = build_mnist_model("pde1", 3, block="ode")
    _randomise_pde(pde.block.field)
    conv = build_mnist_model("resnet", 3, block="ode")
    f = conv.block.field
    ref_pde, ref_conv = x, x
    for l in range(3):
        k = stencil_kernel(*(getattr(pde.block.field, n)[l] for n in COEFFS), 1.0)
        ref_pde = ref_pde + F.relu(F.conv2d(ref_pde.reshape(1, 3, 28, 28), k.repeat(3, 1, 1, 1), padding=1,
                                            groups=3).view(3, 1, 28, 28))
        ref_conv = ref_conv + F.relu(_conv1(ref_conv, f.weight[l], f.bias[l]))
    with torch.no_grad():
        assert torch.equal(pde.block(x), ref_pde) and torch.equal(conv.block(x), ref_conv)
        assert not torch.equal(pde.block(x), _seed_pde_loop(pde.block.field, x, 3))
    assert pde.block.project is None and build_mnist_model("pde1", 3).block.project is torch.relu
    with pytest.raises(ValueError, match="block"):
        build_mnist_model("pde1", 3, block="relu")
    with pytest.raises(ValueError, match="block"):
        build_mnist_model("cubic", block="ode")


@pytest.mark.parametrize("name", ["pde1", "pde2", "resnet"])
def test_seed_block_checkpoint_equals_backprop(name):
    model = build_mnist_model(name, 6).double()
    if name != "resnet":
        _randomise_pde(model.block.field)
        with torch.no_grad():
            model.block.field.alpha.mul_(0.5), model.block.field.sigma.mul_(0.5)
    x = _images(2, torch.float64).requires_grad_()
    params = [x, *model.block.field.parameters()]
    grads = {}
    for gradient in ("backprop", "checkpoint"):
        model.block.gradient = gradient
        out = model.block(x)
        grads[gradient] = torch.autograd.grad((out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype)
                                               .view_as(out)).sum(), params)
    assert (out == 0).any() and (out > 0).any()  # the ReLU is active somewhere, passive elsewhere
    for a, b in zip(grads["backprop"], grads["checkpoint"]):
        assert a.abs().max() > 0
        torch.testing.assert_close(b, a, rtol=1e-13, atol=1e-13)


class Linear(torch.nn.Module):
    """f(t, y) = y W - 1 + t: drives states below 0, so the projection acts."""

    def __init__(self, n: int = 4) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(n, n, dtype=torch.float64) * 0.8)

    def forward(self, t, y):
        return y @ self.w - 1.0 + t


@pytest.mark.parametrize("method,kwargs", [("euler", {"steps": 7}), ("rk4", {"steps": 5}), ("dopri5", {})])
def test_projected_solve_checkpoint_equals_backprop(method, kwargs):
    """Outputs at step ends and inside steps, fixed and adaptive (dopri5: FSAL, restarted at the
    projected ends): checkpoint replays the projected steps exactly."""
    f = Linear()
    y0 = torch.rand(3, 4, dtype=torch.float64, requires_grad=True)
    t_eval = [0.0, 0.3, 1.0, 1.55, 2.0]
    res = {}
    for gradient in ("backprop", "checkpoint"):
        sol = cd.solve(f, y0, method=method, t0=0.0, t1=2.0, gradient=gradient, project=torch.relu,
                       t_eval=t_eval, **kwargs)
        weights = torch.linspace(-1, 2, sol.ys.numel(), dtype=torch.float64).view_as(sol.ys)
        res[gradient] = (sol.ys.detach(), *torch.autograd.grad((sol.ys * weights).sum(), [y0, f.w]))
    ys = res["backprop"][0]
    assert (ys >= 0).all() and (ys[1:] == 0).any()  # projected, and the projection was active
    assert torch.equal(res["checkpoint"][0], ys)
    for a, b in zip(res["backprop"][1:], res["checkpoint"][1:]):
        assert a.abs().max() > 0
        torch.testing.assert_close(b, a, rtol=1e-13, atol=1e-13)


def test_outputs_inside_a_step_are_the_projected_dense_output():
    """Euler: the output at t + s h is ReLU of the step's linear interpolant, i.e. a projected
    Euler step of length s h; at the step's end the projected state; y0 unprojected."""
    f = Linear()
    y0 = torch.randn(3, 4, dtype=torch.float64)
    with torch.no_grad():
        ys = cd.solve(f, y0, method="euler", steps=1, t0=0.0, t1=1.0, project=torch.relu,
                      t_eval=[0.0, 0.25, 1.0]).ys
        step = f(torch.tensor(0.0, dtype=torch.float64), y0)
    assert torch.equal(ys[0], y0) and (y0 < 0).any()
    torch.testing.assert_close(ys[1], torch.relu(y0 + 0.25 * step), rtol=1e-15, atol=1e-15)
    assert torch.equal(ys[2], torch.relu(y0 + 1.0 * step))


def test_adaptive_projection_after_accepted_steps():
    """dy/dt = -1, y(0) = 1 on y >= 0: the projected flow is max(1 - t, 0). dopri5 is exact on the
    constant field, so the projected solve hits it: 0 at t = 3 (unprojected: -2), 0.5 at t = 0.5."""
    minus_one = lambda t, y: -torch.ones_like(y)
    y0 = torch.ones(2, dtype=torch.float64)
    ys = cd.solve(minus_one, y0, method="dopri5", t0=0.0, t1=3.0, t_eval=[0.5, 3.0], project=torch.relu).ys
    assert torch.equal(ys[1], torch.zeros(2, dtype=torch.float64))
    torch.testing.assert_close(ys[0], torch.full((2,), 0.5, dtype=torch.float64), rtol=1e-14, atol=1e-14)
    plain = cd.solve(minus_one, y0, method="dopri5", t0=0.0, t1=3.0).y1
    torch.testing.assert_close(plain, torch.full((2,), -2.0, dtype=torch.float64))


def test_fsal_stepper_restarts_from_the_projected_end():
    """march with dopri5's stepper on a fixed grid equals a loop that takes each step from the
    projected state with f evaluated there, bit for bit; carrying the derivative of the
    unprojected end instead gives other numbers."""
    f = Linear()
    y0 = torch.randn(3, 4, dtype=torch.float64)
    term, stepper, grid = as_term(f, y0), RungeKutta(DOPRI5), FixedGrid.uniform(0.0, 2.0, 4)
    with torch.no_grad():
        _, y1 = march(term, stepper, grid.controller(0.0, 2.0), y0, 0.0, 2.0, (2.0,), StepCounts(),
                      project=torch.relu)
        fresh, carried, state = y0, y0, stepper.init(term, 0.0, y0, 1)
        for t0, t1 in zip(grid.times, grid.times[1:]):
            fresh = torch.relu(stepper.step(term, t0, t1 - t0, fresh, stepper.init(term, t0, fresh, 1))[0])
            end, state, _, _ = stepper.step(term, t0, t1 - t0, carried, state)
            carried = torch.relu(end)
    assert torch.equal(y1, fresh) and not torch.equal(y1, carried)


def test_project_none_and_identity_change_nothing():
    """project=None is the plain solve; an identity projection gives the same numbers (dopri5 too:
    its restarted derivative is the one it carried)."""
    f = Linear()
    y0 = torch.rand(3, 4, dtype=torch.float64)
    with torch.no_grad():
        for method, kwargs in (("rk4", {"steps": 6}), ("dopri5", {})):
            plain = cd.solve(f, y0, method=method, t0=0.0, t1=2.0, t_eval=[0.5, 2.0], **kwargs).ys
            none = cd.solve(f, y0, method=method, t0=0.0, t1=2.0, t_eval=[0.5, 2.0], project=None, **kwargs).ys
            same = cd.solve(f, y0, method=method, t0=0.0, t1=2.0, t_eval=[0.5, 2.0], project=lambda y: y * 1.0,
                            **kwargs).ys
            assert torch.equal(none, plain) and torch.equal(same, plain)


def test_fused_backward_is_not_taken_with_a_projection(monkeypatch):
    """The hand-written backward pass has no projection in it: with ``project`` the solve takes
    autograd's path (and differentiates the projection)."""
    calls = []
    applies = backprop.fused_applies
    monkeypatch.setattr(backprop, "fused_applies", lambda *a: calls.append(applies(*a)) or calls[-1])
    field = cd.fields.PDEStencil(1, cd.ControlGrid(0.0, 3.0, 3)).double()
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    for project in (None, torch.relu):
        cd.odesolve(field, x, method="euler", project=project).sum().backward()
    assert calls == [True, False]


def test_tuple_states_are_projected_leafwise():
    f = lambda t, y: (-y[1] - 1.0, y[0])
    y0 = (torch.rand(3, dtype=torch.float64), torch.rand(3, dtype=torch.float64))
    relu2 = lambda y: (torch.relu(y[0]), torch.relu(y[1]))
    q, p = cd.odesolve(f, y0, method="euler", steps=5, t0=0.0, t1=2.0, project=relu2)
    assert (q >= 0).all() and (p >= 0).all() and (q == 0).any()


def test_project_errors_name_the_argument():
    f = Linear()
    y0 = torch.rand(3, 4, dtype=torch.float64)
    common = dict(method="euler", steps=2, t0=0.0, t1=1.0)
    with pytest.raises(TypeError, match="project must be callable"):
        cd.solve(f, y0, project="relu", **common)
    with pytest.raises(TypeError, match="project must be callable"):
        cd.ODEBlock(f, project=1.0, **common)
    with pytest.raises(ValueError, match="project.*gradient='adjoint'"):
        cd.solve(f, y0, project=torch.relu, gradient="adjoint", **common)
    with pytest.raises(ValueError, match="project.*gradient='adjoint'"):
        cd.ODEBlock(f, project=torch.relu, gradient="adjoint", **common)
    with pytest.raises(ValueError, match="project.*gradient='reversible'"):
        cd.solve(lambda t, y: (y[1], -y[0]), (y0, y0), method="leapfrog", steps=2, t0=0.0, t1=1.0,
                 gradient="reversible", project=lambda y: y)
    for bad, what in ((lambda y: y[:2], r"returned shape \(2, 4\), but the state has shape \(3, 4\)"),
                      (lambda y: y.float(), "returned dtype torch.float32"),
                      (lambda y: (y,), "must return the structure"), (lambda y: y.tolist(), "must return the structure")):
        with pytest.raises(ValueError, match=f"^project .*{what}"):
            cd.solve(f, y0, project=bad, **common)
    with pytest.raises(ValueError, match="project must .*structure"):
        cd.solve(lambda t, y: (y[1], -y[0]), (y0, y0), project=lambda y: (y[0],), **common)


def test_odeblock_with_projection():
    f = Linear()
    x = torch.rand(3, 4, dtype=torch.float64)
    block = cd.ODEBlock(f, t0=0.0, t1=2.0, method="euler", steps=4, project=torch.relu)
    assert torch.equal(block(x), cd.odesolve(f, x, t0=0.0, t1=2.0, method="euler", steps=4, project=torch.relu))
    assert "project=relu" in repr(block)

