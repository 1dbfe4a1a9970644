"""Bad input: a clear, early error naming the argument, what was given and what was expected."""
import math

import pytest
import torch

import contdepth as cd


@pytest.fixture
def field():
    return cd.fields.CubicFriction(2, cd.ControlGrid(t0=0.0, t1=1.0, n=4))


@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(method="rk5"), ValueError, ["method", "rk5", "rk4"]),
    (dict(gradient="magic"), ValueError, ["gradient", "magic", "adjoint"]),
    (dict(steps=0), ValueError, ["steps", ">= 1", "0"]),
    (dict(steps=2.5), TypeError, ["steps", "2.5"]),
    (dict(t0=0.5, t1=0.5), ValueError, ["t1", "t0", "0.5"]),
    (dict(t1=2.0), ValueError, ["control grid", "2.0"]),
    (dict(method="dopri5", steps=10), ValueError, ["steps", "dopri5"]),
    (dict(method="dopri5", rtol=-1.0), ValueError, ["rtol", "-1.0"]),
    (dict(t_eval=[0.5, 0.25]), ValueError, ["t_eval", "increasing"]),
])
def test_bad_solver_arguments(field, kwargs, exc, words):
    with pytest.raises(exc) as err:
        cd.odesolve(field, torch.zeros(3, 2), **kwargs)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize("y0,exc,words", [
    (torch.zeros(3, 1), ValueError, ["CubicFriction", "(B, dim)", "(3, 1)"]),
    (torch.zeros(2), ValueError, ["CubicFriction", "(2,)"]),
    (torch.tensor([[0.0, math.nan]]), ValueError, ["y0", "finite"]),
    (torch.tensor([[0.0, math.inf]]), ValueError, ["y0", "finite"]),
    (torch.zeros(3, 2, dtype=torch.long), TypeError, ["y0", "floating"]),
    ([[0.0, 1.0]], TypeError, ["y0", "Tensor"]),
])
def test_bad_states(field, y0, exc, words):
    with pytest.raises(exc) as err:
        cd.odesolve(field, y0)
    for word in words:
        assert word in str(err.value)


def test_conv_state_shape_mismatch():
    f = cd.fields.ConvResidual(3, cd.ControlGrid(t0=0.0, t1=1.0, n=2))
    with pytest.raises(ValueError, match=r"ConvResidual expects .*\(B, C, H, W\).*3 on axis 1.*\(1, 4, 5, 5\)"):
        cd.odesolve(f, torch.zeros(1, 4, 5, 5))


@pytest.mark.parametrize("kwargs,exc,word", [
    (dict(n=0), ValueError, "n"),
    (dict(n=1.5), TypeError, "n"),
    (dict(t0=1.0, t1=1.0), ValueError, "t1 > t0"),
    (dict(t0=0.0, t1=math.inf), TypeError, "t1"),
    (dict(interp="cubic"), ValueError, "interp"),
    (dict(n=1, interp="linear"), ValueError, "n must be >= 2"),
])
def test_bad_grids(kwargs, exc, word):
    with pytest.raises(exc, match=word):
        cd.ControlGrid(**kwargs)


def test_bad_field_arguments():
    grid = cd.ControlGrid(t0=0.0, t1=1.0, n=2)
    with pytest.raises(ValueError, match="activation"):
        cd.fields.ConvResidual(2, grid, activation="swish")
    with pytest.raises(ValueError, match="variant"):
        cd.fields.PDEStencil(2, grid, variant="pde3")
    with pytest.raises(ValueError, match="kernel_size must be odd"):
        cd.fields.ConvResidual(2, grid, kernel_size=4)
    with pytest.raises(TypeError, match="grid"):
        cd.fields.CubicFriction(2, (0.0, 1.0, 4))
    with pytest.raises(ValueError, match="mu"):
        cd.fields.CubicFriction(2, grid, mu=-1.0)
    with pytest.raises(ValueError, match="factor"):
        cd.fields.CubicFriction(2, grid).refine_control(0)
    with pytest.raises(ValueError, match="t0 and t1 are required for a plain func"):
        cd.odesolve(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def test_dopri5_underflow_is_a_solver_error():
    """x' = x^2 (W = I x... here -gamma x^3 with gamma < 0) blows up in finite time: step size underflows."""
    f = cd.fields.CubicFriction(1, cd.ControlGrid(t0=0.0, t1=10.0, n=1), gamma=-1.0).double()
    with pytest.raises(cd.SolverError, match="rtol") as err:
        cd.odesolve(f, torch.ones(1, 1, dtype=torch.float64), method="dopri5")
    assert isinstance(err.value, ValueError)


def test_unstable_adjoint_backward_solve_raises():
    """x' = -50 x + 1 contracts onto x = 0.02 forward; rebuilding y backward amplifies rounding
    errors by R(2.5) ~ 11 per RK4 step until they overflow. Checkpointing is unaffected."""
    f = cd.fields.CubicFriction(1, cd.ControlGrid(t0=0.0, t1=20.0, n=1), gamma=0.0, learn_gamma=False).double()
    with torch.no_grad():
        f.weight.fill_(-50.0)
        f.bias.fill_(1.0)
    y0 = torch.ones(2, 1, dtype=torch.float64)
    y1 = cd.odesolve(f, y0, method="rk4", steps=400, gradient="adjoint")
    assert torch.allclose(y1, torch.full_like(y1, 0.02))
    with pytest.raises(cd.SolverError, match="checkpoint"):
        y1.sum().backward()
    cd.odesolve(f, y0, method="rk4", steps=400, gradient="checkpoint").sum().backward()
    assert f.bias.grad.item() == pytest.approx(2 * 0.02, rel=1e-6)
