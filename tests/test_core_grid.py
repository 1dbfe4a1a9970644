"""The control grid: cells, linear interpolation, prolongation, the smoothness regulariser."""
import pytest
import torch

import contdepth as cd

DT = torch.float64


def test_constant_cells_are_right_continuous():
    grid = cd.ControlGrid(t0=0.0, t1=1.0, n=4)
    assert [grid.cell(t) for t in (0.0, 0.2499, 0.25, 0.5, 0.99, 1.0)] == [0, 0, 1, 2, 3, 3]
    assert grid.jumps() == [0.25, 0.5, 0.75]
    assert grid.dt == 0.25


def test_linear_interpolation_between_knots():
    grid = cd.ControlGrid(t0=1.0, t1=3.0, n=3, interp="linear")
    field = cd.fields.CubicFriction(1, grid)
    with torch.no_grad():
        field.bias.copy_(torch.tensor([[0.0], [4.0], [-2.0]]))
    values = [field.theta_at(t)["bias"].item() for t in (1.0, 1.5, 2.0, 2.25, 3.0)]
    assert values == pytest.approx([0.0, 2.0, 4.0, 2.5, -2.0])
    assert grid.jumps() == []


@pytest.mark.parametrize("interp", ["constant", "linear"])
def test_prolongation_keeps_theta(interp):
    grid = cd.ControlGrid(t0=0.0, t1=2.0, n=5, interp=interp)
    values = torch.randn(5, 3, dtype=DT)
    for factor in (1, 2, 3):
        fine = grid.refine(factor)
        fine_values = grid.prolong(values, factor)
        assert fine_values.shape[0] == fine.n
        for t in torch.linspace(0, 2, 41, dtype=DT).tolist():
            a, b = (_interp(g, v, t) for g, v in ((grid, values), (fine, fine_values)))
            assert torch.allclose(a, b, rtol=1e-14, atol=1e-14)


def _interp(grid, values, t):
    if grid.interp == "constant":
        return values[grid.cell(t)]
    l, r, w = grid.weights(t)
    return torch.lerp(values[l], values[r], w)


def test_smoothness_is_eq82():
    grid = cd.ControlGrid(t0=0.0, t1=2.0, n=4)
    field = cd.fields.CubicFriction(2, grid).to(DT)
    with torch.no_grad():
        field.weight.normal_()
        field.bias.normal_()
    dw, db = field.weight.diff(dim=0), field.bias.diff(dim=0)
    expected = (dw.pow(2).sum() + db.pow(2).sum()) / (2 * 0.5)
    assert torch.isclose(cd.smoothness(field), expected)
    # constant theta -> 0; and refining a piecewise-constant theta keeps sum ||jump||^2 but halves dt
    with torch.no_grad():
        field.weight.copy_(field.weight[:1].expand(4, -1, -1))
        field.bias.zero_()
    assert cd.smoothness(field).item() == 0.0


def test_smoothness_gradient_flows():
    field = cd.fields.DenseResidual(2, cd.ControlGrid(t0=0.0, t1=1.0, n=3))
    cd.smoothness(field).backward()
    assert field.weight.grad is not None and field.weight.grad.abs().sum() > 0
