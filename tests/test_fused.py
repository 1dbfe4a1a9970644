"""The hand-written fixed-step gradients (contdepth/gradients/fused.py) against autograd.

Each built-in field's ``vector_field_vjp`` is checked against autograd's VJP of its
``vector_field``; each fused solve's gradient against the same solve differentiated by autograd
(the fused path switched off by patching ``has_vjp``), to float64 rounding. Also: that the fused
path is the one taken, when it must not be (fields whose VJP does not match their field), and
second derivatives.
"""
from __future__ import annotations

from unittest import mock

import pytest
import torch

import contdepth as cd
from contdepth.fields import ControlledField

GRID = cd.ControlGrid(0.0, 1.0, 4)
LINEAR = cd.ControlGrid(0.0, 1.0, 5, interp="linear")


def _randomised(field: ControlledField) -> ControlledField:
    """``field`` in float64 with every parameter drawn at random (zero-initialised fields included)."""
    field = field.double()
    with torch.no_grad():
        for name, p in field.named_parameters():
            p.normal_(0.6 if name == "gamma" else 0.0, 0.2 if name == "gamma" else 0.7)
    return field


FIELDS = {
    "dense-tanh": (lambda g: cd.fields.DenseResidual(3, g), (5, 3)),
    "dense-relu": (lambda g: cd.fields.DenseResidual(3, g, activation="relu"), (5, 3)),
    "dense-identity": (lambda g: cd.fields.DenseResidual(3, g, activation="identity"), (5, 3)),
    "cubic": (lambda g: cd.fields.CubicFriction(3, g), (5, 3)),
    "cubic-mu2.5-bounded": (lambda g: cd.fields.CubicFriction(3, g, mu=2.5, gamma=0.5, gamma_min=0.0,
                                                               gamma_max=1.0), (5, 3)),
    "conv-relu": (lambda g: cd.fields.ConvResidual(2, g), (2, 2, 5, 5)),
    "conv-tanh-k5": (lambda g: cd.fields.ConvResidual(2, g, kernel_size=5, activation="tanh"), (2, 2, 6, 5)),
    "conv-cubic": (lambda g: cd.fields.ConvCubicFriction(2, g), (2, 2, 5, 5)),
    "conv-16-channels": (lambda g: cd.fields.ConvResidual(16, g), (2, 16, 4, 3)),  # conv_vjp's other branch
    "pde1": (lambda g: cd.fields.PDEStencil(2, g, variant="pde1"), (2, 2, 5, 6)),
    "pde2-tanh": (lambda g: cd.fields.PDEStencil(2, g, variant="pde2", activation="tanh"), (2, 2, 5, 6)),
}


def _no_vjp():
    """Switch the fused path off: every field reports no hand-written VJP."""
    return mock.patch.object(ControlledField, "has_vjp", property(lambda self: False))


@pytest.mark.parametrize("name", FIELDS)
def test_vector_field_vjp_matches_autograd(name):
    make, shape = FIELDS[name]
    field = _randomised(make(GRID))
    assert field.has_vjp
    psi = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    theta = {k: v.detach().requires_grad_() for k, v in field.theta_at(0.3).items()}
    own = dict(field.named_parameters(recurse=False))
    others = {k: p for k, p in own.items() if k not in field.control_names}
    t = torch.tensor(0.3, dtype=torch.float64)
    out = field.vector_field(t, psi, theta)
    cot = torch.randn_like(out)
    wrt = [psi, *theta.values(), *others.values()]
    expected = torch.autograd.grad(out, wrt, cot, allow_unused=True)
    with torch.no_grad():
        psi_bar, named = field.vector_field_vjp(t, psi, theta, out, cot)
    got = [psi_bar] + [named.get(k) for k in [*theta, *others]]
    for k, e, g in zip(["psi", *theta, *others], expected, got):
        e = torch.zeros_like(own.get(k, psi)) if e is None else e
        g = torch.zeros_like(e) if g is None else g
        torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12, msg=f"{name}: d/d{k}")


def test_bounded_gamma_outside_its_bounds_has_zero_gradient():
    field = _randomised(cd.fields.CubicFriction(3, GRID, gamma=0.5, gamma_min=0.0, gamma_max=1.0))
    x = torch.randn(4, 3, dtype=torch.float64)
    for value, nonzero in ((1.5, False), (-0.2, False), (1.0, True), (0.0, True), (0.4, True)):
        with torch.no_grad():
            field.gamma.fill_(value)
        g_fused, = torch.autograd.grad(cd.odesolve(field, x, method="rk4", steps=4).sum(), [field.gamma])
        with _no_vjp():
            g_auto, = torch.autograd.grad(cd.odesolve(field, x, method="rk4", steps=4).sum(), [field.gamma])
        assert (g_fused != 0) == nonzero, value
        torch.testing.assert_close(g_fused, g_auto, rtol=1e-12, atol=1e-14)


def _gradients(field, x, **kwargs):
    sol = cd.solve(field, x, **kwargs)
    out = sol.ys if kwargs.get("t_eval") is not None else sol.y1
    weights = torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).view_as(out)
    params = [p for p in field.parameters() if p.requires_grad]
    wrt = [x, *params] if x.requires_grad else params
    return out, torch.autograd.grad((out * weights).sum(), wrt), sol


def _assert_same_as_autograd(field, x, **kwargs):
    """The solve's gradients with the fields' VJPs equal those with autograd's."""
    _, by_hand, _ = _gradients(field, x, **kwargs)
    with _no_vjp():
        _, auto, _ = _gradients(field, x, **kwargs)
    for g, e in zip(by_hand, auto):
        torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint"])
@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("name", ["dense-tanh", "cubic-mu2.5-bounded", "conv-cubic", "pde2-tanh"])
@pytest.mark.parametrize("grid,steps,t_eval", [(GRID, 8, None), (GRID, 6, (0.0, 0.3, 0.5, 1.0)),
                                               (LINEAR, 7, (0.2, 0.25, 0.9))])
def test_fused_gradient_equals_autograd(gradient, method, name, grid, steps, t_eval):
    make, shape = FIELDS[name]
    field = _randomised(make(grid))
    x = (0.5 * torch.randn(shape, dtype=torch.float64)).requires_grad_()
    kwargs = dict(method=method, steps=steps, gradient=gradient, t_eval=t_eval)
    out, fused, sol = _gradients(field, x, **kwargs)
    assert type((sol.ys.grad_fn)).__name__ == "_FusedBackward"
    with _no_vjp():
        out_auto, auto, sol_auto = _gradients(field, x, **kwargs)
    assert type(sol_auto.ys.grad_fn).__name__ != "_FusedBackward"
    assert torch.equal(out, out_auto)
    for g, e in zip(fused, auto):
        torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-13)
    if gradient == "checkpoint":  # the backward pass recomputes every stage once
        assert sol.stats.backward.nfe == steps * {"euler": 1, "midpoint": 2, "rk4": 4}[method]


def test_backward_in_time_and_y0_without_grad():
    field = _randomised(cd.fields.ConvResidual(2, GRID, activation="tanh"))
    x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    _assert_same_as_autograd(field, x, method="rk4", steps=5, t0=1.0, t1=0.0, t_eval=(1.0, 0.55, 0.0))


def test_fields_whose_vjp_does_not_fit_fall_back_to_autograd():
    assert not cd.fields.AntisymmetricResidual(3, GRID).has_vjp

    class Shifted(cd.fields.DenseResidual):
        def vector_field(self, t, psi, theta):
            return super().vector_field(t, psi, theta) + 1.0

    field = Shifted(3, GRID).double()
    assert not field.has_vjp
    assert type(cd.solve(field, torch.randn(2, 3, dtype=torch.float64), method="rk4",
                         t_eval=(0.0, 1.0)).ys.grad_fn).__name__ != "_FusedBackward"
    outside = torch.zeros((), dtype=torch.float64, requires_grad=True)
    plain = cd.fields.DenseResidual(3, GRID).double()
    assert not plain.make_term(params=[*plain.parameters(), outside]).has_vjp
    assert plain.make_term().has_vjp


def test_second_derivative_through_the_fused_path():
    field = _randomised(cd.fields.CubicFriction(3, GRID))
    x = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    v = torch.randn_like(x)

    def hessian_vector():
        y = cd.odesolve(field, x, method="rk4", steps=4)
        g, = torch.autograd.grad(y.pow(2).sum(), [x], create_graph=True)
        return torch.autograd.grad((g * v).sum(), [x, field.gamma])

    fused = hessian_vector()
    with _no_vjp():
        auto = hessian_vector()
    for g, e in zip(fused, auto):
        torch.testing.assert_close(g, e, rtol=1e-11, atol=1e-13)


def test_no_grad_solves_keep_nothing():
    field = cd.fields.DenseResidual(3, GRID)
    with torch.no_grad():
        y = cd.odesolve(field, torch.randn(2, 3), method="rk4", gradient="backprop")
    assert y.grad_fn is None


@pytest.mark.parametrize("method", ["euler", "midpoint", "rk4"])
@pytest.mark.parametrize("grid,steps,t_eval", [(GRID, 8, None), (LINEAR, 7, (0.0, 0.2, 0.25, 0.9))])
def test_adjoint_quadrature_by_hand_equals_autograd(method, grid, steps, t_eval):
    """The fixed-step adjoint with the fields' VJPs: the same continuous-adjoint gradient as with
    autograd's (the stage weights -h b_i applied to each stage's parameter VJP)."""
    field = _randomised(FIELDS["cubic-mu2.5-bounded"][0](grid))
    x = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    _assert_same_as_autograd(field, x, method=method, steps=steps, gradient="adjoint", t_eval=t_eval)


def test_adjoint_by_hand_on_a_non_uniform_grid():
    field = _randomised(cd.fields.DenseResidual(3, GRID))
    x = torch.randn(4, 3, dtype=torch.float64)
    t = torch.tensor([0.0, 0.1, 0.45, 0.5, 1.0], dtype=torch.float64)
    weights = torch.randn(5, 4, 3, dtype=torch.float64)
    by_hand = torch.autograd.grad((cd.odeint_adjoint(field, x, t, method="rk4") * weights).sum(), [field.weight])
    with _no_vjp():
        auto = torch.autograd.grad((cd.odeint_adjoint(field, x, t, method="rk4") * weights).sum(), [field.weight])
    torch.testing.assert_close(by_hand[0], auto[0], rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint"])
def test_channels_last_states_keep_their_layout_and_gradients(gradient):
    """A channels-last state (faster convolutions on CPU) stays channels-last through the fused
    solve, with the gradients of the contiguous one."""
    field = _randomised(cd.fields.ConvCubicFriction(3, GRID))
    x = 0.5 * torch.randn(2, 3, 5, 5, dtype=torch.float64)
    runs = []
    for layout in (torch.contiguous_format, torch.channels_last):
        xi = x.contiguous(memory_format=layout).requires_grad_()
        out, grads, sol = _gradients(field, xi, method="rk4", steps=4, gradient=gradient)
        assert out.is_contiguous(memory_format=layout)
        runs.append((out, grads))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-12, atol=1e-14)
    for a, b in zip(runs[0][1], runs[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_fused_checkpoint_is_bit_for_bit_fused_backprop(method):
    """Both run the same stage arithmetic (checkpoint recomputes it): identical gradients."""
    field = _randomised(cd.fields.ConvResidual(2, GRID, activation="tanh"))
    x = torch.randn(2, 2, 5, 5, dtype=torch.float64, requires_grad=True)
    grads = [_gradients(field, x, method=method, steps=8, gradient=g, t_eval=(0.0, 0.3, 1.0))[1]
             for g in ("backprop", "checkpoint")]
    assert all(torch.equal(a, b) for a, b in zip(*grads))


@pytest.mark.parametrize("name, per_stage", [("conv-cubic", 1), ("conv-relu", 2)])
def test_backprop_tape_keeps_stage_derivatives_only_when_the_vjp_uses_them(name, per_stage):
    """The friction fields' VJPs need only the stage states: their tape holds one state per stage
    (the relu field's also each stage's derivative), all seen by the memory accounting."""
    from contdepth.analysis.memory import saved_tensor_bytes
    make, shape = FIELDS[name]
    field = _randomised(make(GRID))
    x = 0.5 * torch.randn(shape, dtype=torch.float64)
    with saved_tensor_bytes() as saved:
        cd.odesolve(field, x, method="rk4", steps=4)
    assert saved.tensors == 4 * 4 * per_stage
    assert saved.bytes == saved.tensors * x.numel() * 8
