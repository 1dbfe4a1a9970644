"""Gradient methods: checkpoint == backprop exactly, adjoint -> backprop as steps grow and across
control-knot jumps, memory saved for backward, gradcheck of the hand-written backward passes."""
import pytest
import torch

import contdepth as cd
from contdepth.analysis.memory import saved_tensor_bytes

DT = torch.float64


def rough_cubic(n=5, t1=2.0, interp="constant"):
    """A dense cubic field whose theta visibly jumps between knots."""
    field = cd.fields.CubicFriction(3, cd.ControlGrid(t0=0.0, t1=t1, n=n, interp=interp), gamma=0.5).to(DT)
    with torch.no_grad():
        field.weight.normal_(0, 0.8)
        field.bias.normal_(0, 0.8)
    return field


def grads(field, y0, **kw):
    field.zero_grad()
    y0 = y0.clone().requires_grad_()
    loss = cd.odesolve(field, y0, **kw).pow(2).sum()
    loss.backward()
    return [y0.grad] + [p.grad.clone() for p in field.parameters()]


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("interp", ["constant", "linear"])
def test_checkpoint_equals_backprop(method, interp):
    field = rough_cubic(interp=interp)
    y0 = torch.randn(4, 3, dtype=DT)
    for steps in (5, 15, 7):
        a = grads(field, y0, method=method, steps=steps, gradient="backprop")
        b = grads(field, y0, method=method, steps=steps, gradient="checkpoint")
        for ga, gb in zip(a, b):
            assert torch.allclose(ga, gb, rtol=1e-12, atol=1e-14)


def test_checkpoint_equals_backprop_conv_with_t_eval():
    field = cd.fields.ConvResidual(3, cd.ControlGrid(t0=0.0, t1=1.0, n=4), activation="tanh").to(DT)
    y0 = torch.randn(2, 3, 6, 6, dtype=DT)
    t_eval = [0.0, 0.25, 0.5, 1.0]
    out = {}
    for gradient in ("backprop", "checkpoint"):
        field.zero_grad()
        x = y0.clone().requires_grad_()
        ys = cd.odesolve(field, x, method="rk4", steps=8, gradient=gradient, t_eval=t_eval)
        (ys * torch.arange(1, 5, dtype=DT).view(4, 1, 1, 1, 1)).sin().sum().backward()
        out[gradient] = [x.grad] + [p.grad.clone() for p in field.parameters()]
    for ga, gb in zip(out["backprop"], out["checkpoint"]):
        assert torch.allclose(ga, gb, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_adjoint_converges_to_backprop_across_jumps(method):
    """The backward solve crosses the same jumps from the other side: error shrinks with h at the method's order."""
    field = rough_cubic(n=5)
    y0 = torch.randn(4, 3, dtype=DT)
    errors = []
    for steps in (20, 40, 80):
        a = grads(field, y0, method=method, steps=steps, gradient="backprop")
        b = grads(field, y0, method=method, steps=steps, gradient="adjoint")
        errors.append(max(((ga - gb).abs().max() / ga.abs().max()).item() for ga, gb in zip(a, b)))
    rate = errors[0] / errors[2]
    expected = {"euler": 4.0, "rk4": 256.0}[method]   # (80/20)^order
    assert rate > 0.6 * expected, errors
    assert errors[2] < {"euler": 0.3, "rk4": 1e-6}[method]


def test_dopri5_adjoint_agrees_with_backprop_and_fine_rk4():
    field = rough_cubic(n=5)
    y0 = torch.randn(4, 3, dtype=DT)
    ref = grads(field, y0, method="rk4", steps=400, gradient="backprop")
    for gradient in ("backprop", "adjoint"):
        g = grads(field, y0, method="dopri5", rtol=1e-10, atol=1e-12, gradient=gradient)
        for ga, gb in zip(ref, g):
            assert torch.allclose(ga, gb, rtol=1e-6, atol=1e-8), gradient


def saved_bytes(gradient, method="rk4", steps=64):
    field = cd.fields.ConvResidual(4, cd.ControlGrid(t0=0.0, t1=1.0, n=8))
    y0 = torch.randn(2, 4, 8, 8)
    with saved_tensor_bytes() as m:
        cd.odesolve(field, y0, method=method, steps=steps, gradient=gradient).sum()
    return m.bytes


def test_checkpoint_and_adjoint_save_less_than_backprop():
    state = 2 * 4 * 8 * 8 * 4
    backprop, checkpoint, adjoint = (saved_bytes(g) for g in ("backprop", "checkpoint", "adjoint"))
    assert checkpoint <= 65 * state + 2048          # 65 boundary states (+ small bookkeeping)
    assert checkpoint * 4 <= backprop
    assert adjoint <= 2 * state
    assert saved_bytes("adjoint", steps=256) == saved_bytes("adjoint", steps=8)
    assert saved_bytes("backprop", steps=128) > 1.8 * backprop


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint"])
@pytest.mark.parametrize("make", [
    lambda g: cd.fields.CubicFriction(2, g, mu=2.5),
    lambda g: cd.fields.DenseResidual(2, g),
    lambda g: cd.fields.ConvResidual(2, g, activation="tanh"),
    lambda g: cd.fields.ConvCubicFriction(2, g),
    lambda g: cd.fields.PDEStencil(2, g, variant="pde2", activation="tanh"),
])
def test_gradcheck(make, gradient):
    field = make(cd.ControlGrid(t0=0.0, t1=1.0, n=3)).to(DT)
    with torch.no_grad():
        for p in field.parameters():
            p.normal_(0, 0.3)
    shape = (2, 2) if field.__class__.__name__ in ("CubicFriction", "DenseResidual") else (1, 2, 4, 4)
    y0 = (torch.randn(shape, dtype=DT) + 0.1).requires_grad_()
    params = list(field.parameters())

    def fn(y, *ps):
        return cd.odesolve(field, y, method="rk4", steps=4, gradient=gradient)

    assert torch.autograd.gradcheck(fn, (y0, *params), atol=1e-6)


def test_adjoint_gradient_of_t_eval_outputs():
    """Loss on intermediate states: the adjoint adds each output's gradient on the way back."""
    field = rough_cubic(n=4)
    y0 = torch.randn(3, 3, dtype=DT)
    res = {}
    for gradient in ("backprop", "adjoint"):
        field.zero_grad()
        ys = cd.odesolve(field, y0, method="rk4", steps=200, gradient=gradient, t_eval=[0.5, 1.0, 2.0])
        ys.pow(2).sum().backward()
        res[gradient] = [p.grad.clone() for p in field.parameters()]
    for ga, gb in zip(res["backprop"], res["adjoint"]):
        assert torch.allclose(ga, gb, rtol=1e-6, atol=1e-9)


def test_stats_count_backward_work():
    field = rough_cubic(n=5)
    y0 = torch.randn(2, 3, dtype=DT)
    for gradient, expected in (("backprop", 0), ("checkpoint", 40), ("adjoint", 40)):
        sol = cd.solve(field, y0, method="rk4", steps=10, gradient=gradient)
        assert sol.stats.forward.nfe == 40 and sol.stats.forward.accepted_steps == 10
        sol.y1.sum().backward()
        assert sol.stats.backward.nfe == expected


@pytest.mark.parametrize("method", ["bosh3", "dopri5", "tsit5"])
@pytest.mark.parametrize("interp", ["constant", "linear"])
def test_adaptive_checkpoint_equals_backprop(method, interp):
    """Checkpointing an adaptive solve replays the accepted steps: gradients equal backprop's to
    1e-10 (float64), with outputs inside steps (dense output) and jumps at the knots."""
    field = rough_cubic(n=4, interp=interp)
    y0 = torch.randn(4, 3, dtype=DT)
    kw = dict(method=method, rtol=1e-6, atol=1e-8, t_eval=[0.0, 0.3, 1.0, 1.7, 2.0])
    out = {}
    for gradient in ("backprop", "checkpoint"):
        field.zero_grad()
        x = y0.clone().requires_grad_()
        sol = cd.solve(field, x, gradient=gradient, **kw)
        (sol.ys * torch.arange(1, 6, dtype=DT).view(5, 1, 1)).sin().sum().backward()
        out[gradient] = [x.grad] + [p.grad.clone() for p in field.parameters()]
        if gradient == "checkpoint":
            assert sol.stats.backward.accepted_steps == sol.stats.forward.accepted_steps
    for ga, gb in zip(out["backprop"], out["checkpoint"]):
        assert torch.allclose(ga, gb, rtol=1e-10, atol=1e-13)


def test_adaptive_checkpoint_saves_less_than_half_of_backprop():
    field = cd.fields.ConvResidual(4, cd.ControlGrid(t0=0.0, t1=1.0, n=4), activation="tanh")
    y0 = torch.randn(2, 4, 8, 8)
    saved = {}
    for gradient in ("backprop", "checkpoint"):
        with saved_tensor_bytes() as m:
            cd.odesolve(field, y0, method="dopri5", rtol=1e-5, atol=1e-7, gradient=gradient).sum()
        saved[gradient] = m.bytes
    assert saved["checkpoint"] < 0.5 * saved["backprop"], saved


def test_seminorm_saves_backward_work_same_gradient():
    """adjoint_options={"norm": "seminorm"}: the parameter integrals leave the backward error control
    (Kidger et al. 2021): fewer backward evaluations, the same gradient to 1e-3."""
    field = rough_cubic(n=1, t1=4.0)
    y0 = torch.randn(8, 3, dtype=DT)
    res, nfe = {}, {}
    for norm in ("default", "seminorm"):
        field.zero_grad()
        sol = cd.solve(field, y0, method="dopri5", gradient="adjoint", rtol=1e-5, atol=1e-7,
                       adjoint_options={"norm": norm})
        sol.y1.pow(2).sum().backward()
        res[norm] = [p.grad.clone() for p in field.parameters()]
        nfe[norm] = sol.stats.backward.nfe
    assert nfe["seminorm"] < nfe["default"], nfe
    for ga, gb in zip(res["default"], res["seminorm"]):
        assert torch.allclose(ga, gb, rtol=1e-3, atol=1e-3 * ga.abs().max().item())
