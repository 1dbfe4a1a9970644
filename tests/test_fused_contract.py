"""The hand-written fixed-step gradients' contract (contdepth/gradients/fused.py) beyond test_fused.py: a
second derivative with respect to the field's parameters alone (y0 not differentiated) equals autograd's; the
backward pass counts its steps; replaced parameters are an error naming the gradient method."""
from __future__ import annotations

import re
from unittest import mock

import pytest
import torch

import contdepth as cd
from contdepth.fields import ControlledField

GRID = cd.ControlGrid(0.0, 1.0, 4)


def test_second_derivative_with_respect_to_the_parameters_alone():
    field = cd.fields.CubicFriction(3, GRID).double()
    with torch.no_grad():
        for p in field.parameters():
            p.normal_(0.5, 0.3)
    x = torch.randn(4, 3, dtype=torch.float64)  # no gradient wanted for y0
    params = [p for p in field.parameters()]

    def hessian_vector(fused):
        y = cd.odesolve(field, x, method="rk4", steps=4)
        assert (type(y.grad_fn.next_functions[0][0]).__name__ == "_FusedBackward") == fused
        g = torch.autograd.grad(y.pow(2).sum(), params, create_graph=True)
        return torch.autograd.grad(sum((gi * gi).sum() for gi in g), params)

    got = hessian_vector(True)
    with mock.patch.object(ControlledField, "has_vjp", property(lambda self: False)):
        want = hessian_vector(False)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-13)


def test_the_backward_pass_counts_one_step_per_forward_step():
    field = cd.fields.DenseResidual(3, GRID).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    for gradient in ("backprop", "checkpoint"):
        sol = cd.solve(field, x, method="rk4", steps=6, gradient=gradient)
        assert type(sol.ys.grad_fn).__name__ == "_FusedBackward"
        sol.ys.sum().backward()
        assert sol.stats.backward.accepted_steps == 6


def test_replaced_parameters_are_an_error_naming_the_gradient():
    field = cd.fields.DenseResidual(3, GRID).double()
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    ys = cd.solve(field, x, method="rk4", steps=2, gradient="checkpoint").ys
    name = next(n for n, _ in field.named_parameters())
    setattr(field, name, torch.nn.Parameter(getattr(field, name).detach().clone()))
    with pytest.raises(RuntimeError, match=re.escape("gradient='checkpoint' recomputes f in the backward pass")):
        ys.sum().backward()
