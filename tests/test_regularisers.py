"""Seed 004's regularisers (contdepth.control.time_smoothness = pRegTh, ridge = pRegW): values and
gradients against closed forms written out by hand, float64."""
import pytest
import torch

import contdepth as cd
from contdepth.control import ridge, time_smoothness


def test_time_smoothness_of_a_tensor_is_the_sum_of_squared_differences_over_2h():
    knots = torch.tensor([[1.0, 0.0], [3.0, -1.0], [2.0, 2.0]], dtype=torch.float64)
    # differences (2, -1) and (-1, 3): squared norms 5 and 10
    assert time_smoothness(knots, 0.5, alpha=3.0).item() == pytest.approx(3.0 / (2 * 0.5) * 15.0, rel=1e-15)
    assert time_smoothness(knots[:1], 0.5).item() == 0.0


def test_time_smoothness_gradient_is_the_second_difference_closed_form():
    torch.manual_seed(0)
    knots = torch.randn(5, 3, 2, dtype=torch.float64, requires_grad=True)
    alpha, h = 0.7, 0.25
    time_smoothness(knots, h, alpha=alpha).backward()
    k = knots.detach()
    expected = torch.empty_like(k)
    expected[0] = k[0] - k[1]
    expected[-1] = k[-1] - k[-2]
    expected[1:-1] = 2 * k[1:-1] - k[:-2] - k[2:]
    assert (knots.grad - alpha / h * expected).abs().max() < 1e-14


def test_time_smoothness_of_a_field_sums_its_control_parameters_with_the_knot_spacing():
    field = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 2.0, n=4)).double()
    h = field.grid.dt
    assert h == 0.5
    by_hand = sum(time_smoothness(getattr(field, name), h, alpha=2.0) for name in field.control_names)
    assert time_smoothness(field, alpha=2.0).item() == pytest.approx(by_hand.item(), rel=1e-14)
    assert time_smoothness(field, alpha=2.0).item() == pytest.approx(2.0 * cd.smoothness(field).item(), rel=1e-14)
    # a constant-in-time control costs nothing
    with torch.no_grad():
        field.weight.copy_(field.weight[:1].expand_as(field.weight))
        field.bias.zero_()
    assert time_smoothness(field).item() == 0.0


def test_time_smoothness_is_the_quadratic_form_whose_gradient_at_v_is_A_v():
    torch.manual_seed(1)
    n, h = 6, 0.3
    diff = torch.diff(torch.eye(n, dtype=torch.float64), dim=0)  # (n-1, n): rows e_{l+1} - e_l
    a = diff.T @ diff / h
    v = torch.randn(n, dtype=torch.float64, requires_grad=True)
    value = time_smoothness(v, h)
    assert value.item() == pytest.approx(0.5 * (v @ a @ v).item(), rel=1e-14)
    value.backward()
    assert (v.grad - a @ v.detach()).abs().max() < 1e-14


def test_ridge_value_and_gradient():
    torch.manual_seed(2)
    w = torch.randn(5, 9, dtype=torch.float64, requires_grad=True)
    value = ridge(w, alpha=0.3)
    assert value.item() == pytest.approx(0.15 * (w.detach() ** 2).sum().item(), rel=1e-14)
    value.backward()
    assert (w.grad - 0.3 * w.detach()).abs().max() < 1e-15
    assert ridge(torch.tensor([3.0, 4.0]), alpha=1.0).item() == 12.5


@pytest.mark.parametrize("call, match", [
    (lambda: time_smoothness(torch.zeros(3, 2), None), "h .*knot spacing"),
    (lambda: time_smoothness(torch.zeros(3, 2), 0.0), "h .*knot spacing"),
    (lambda: time_smoothness(torch.zeros(3, 2), 0.1, alpha=-1.0), "alpha must be"),
    (lambda: time_smoothness(torch.zeros(3, dtype=torch.long), 0.1), "knots must be a floating-point"),
    (lambda: time_smoothness([1.0, 2.0], 0.1), "knots must be a ControlledField"),
    (lambda: time_smoothness(cd.fields.DenseResidual(2, cd.ControlGrid(0.0, 1.0, n=2)), 0.5), "pass h=None"),
    (lambda: ridge(torch.zeros(2), alpha=float("nan")), "alpha must be"),
    (lambda: ridge([1.0], alpha=1.0), "weight must be"),
])
def test_bad_input_is_a_clear_error(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()
