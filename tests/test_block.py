"""ODEBlock.set_solver: the same field under another integrator, checked like the constructor."""
from __future__ import annotations

import math

import pytest
import torch

import contdepth as cd



@pytest.fixture(autouse=True)
def _float64():
    """float64 defaults inside this module's tests only (a module-level setting leaks to every later test)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _decay_block(**kwargs) -> cd.ODEBlock:
    """dy/dt = -y on [0, 1]: y(1) = exp(-1) y(0)."""
    return cd.ODEBlock(lambda t, y: -y, t0=0.0, t1=1.0, **kwargs)


def test_set_solver_switches_between_fixed_and_adaptive():
    x = torch.ones(3, dtype=torch.float64)
    block = _decay_block(method="euler", steps=4)
    assert torch.allclose(block(x), torch.full((3,), 0.75 ** 4))  # Euler: (1 - h)^N exactly
    block.set_solver("dopri5", rtol=1e-10, atol=1e-12)
    assert (block.method, block.steps, block.rtol, block.atol) == ("dopri5", None, 1e-10, 1e-12)
    assert torch.allclose(block(x), torch.full((3,), math.exp(-1)), rtol=1e-8, atol=0)
    assert block.stats.forward.accepted_steps > 1
    block.set_solver("rk4", 8)
    assert (block.method, block.steps) == ("rk4", 8)
    h = 1 / 8  # RK4 on y' = -y multiplies by the degree-4 Taylor polynomial of exp(-h) per step
    assert torch.allclose(block(x), torch.full((3,), (1 - h + h**2 / 2 - h**3 / 6 + h**4 / 24) ** 8), rtol=1e-14)
    assert block.stats.forward.nfe == 32
    block.set_solver("tsit5")  # adaptive without tolerances: solve's defaults
    assert (block.steps, block.rtol, block.atol) == (None, 1e-6, 1e-8)


def test_set_solver_keeps_gradient_and_projection_and_trains():
    field = cd.fields.DenseResidual(2, cd.ControlGrid(t0=0.0, t1=1.0, n=4), activation="tanh")
    block = cd.ODEBlock(field, method="euler", gradient="checkpoint", project=torch.relu)
    block.set_solver("midpoint", 8)
    assert (block.gradient, block.project) == ("checkpoint", torch.relu)
    block.set_solver("euler")  # a field with a control grid: one step per control interval
    x = torch.rand(5, 2)
    expected = x
    for k in range(4):  # ReLU(psi + h f(t_k, psi)), h = 1/4, by hand
        expected = torch.relu(expected + 0.25 * field(0.25 * k, expected))
    assert torch.allclose(block(x), expected, rtol=1e-13, atol=1e-13)
    assert block.stats.forward.nfe == 4


@pytest.mark.parametrize("call, error, match", [
    (lambda b: b.set_solver("dopri5", 8), ValueError, "steps is for fixed-step methods"),
    (lambda b: b.set_solver("rk4", 8, rtol=1e-3), ValueError, "rtol is for adaptive methods"),
    (lambda b: b.set_solver("rk4"), ValueError, "steps is required.*no control grid"),
    (lambda b: b.set_solver("rk4", 0), ValueError, "steps"),
    (lambda b: b.set_solver("rk4", 2.5), (TypeError, ValueError), "steps"),
    (lambda b: b.set_solver("dopri5", atol=-1.0), ValueError, "atol"),
    (lambda b: b.set_solver("no-such-method", 4), ValueError, "method"),
])
def test_set_solver_rejects_a_bad_configuration_and_changes_nothing(call, error, match):
    block = _decay_block(method="euler", steps=4)
    with pytest.raises(error, match=match):
        call(block)
    assert (block.method, block.steps, block.rtol, block.atol) == ("euler", 4, 1e-6, 1e-8)

