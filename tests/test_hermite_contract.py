"""Cubic Hermite outputs (contdepth/solvers/hermite.py) take the wrapped method's steps unchanged: a method
whose history assumes equal steps (Adams) is restarted at a change of step length as without the wrapper."""
from __future__ import annotations

import torch

import contdepth as cd


def test_cubic_outputs_keep_the_restarts_of_a_uniform_steps_method():
    # steps of 0.3 on [0, 1]: the last one is 0.1, where explicit_adams restarts its history
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    t = torch.tensor([0.0, 0.45, 1.0], dtype=torch.float64)
    f = lambda t, y: torch.stack([y[1], -torch.sin(y[0])])
    linear = cd.odeint(f, y0, t, method="explicit_adams", options={"step_size": 0.3})
    cubic = cd.odeint(f, y0, t, method="explicit_adams", options={"step_size": 0.3, "interp": "cubic"})
    assert torch.equal(cubic[-1], linear[-1])
    assert not torch.equal(cubic[1], linear[1])  # the output inside a step is the cubic one


def test_cubic_outputs_carry_a_two_step_history_across_unequal_steps():
    # LinearTwoStep keeps x_{l-1} whatever the step lengths: the wrapper must not restart it either
    y0 = torch.tensor([1.0, 0.5], dtype=torch.float64)
    t = torch.tensor([0.0, 0.45, 1.0], dtype=torch.float64)
    f = lambda t, y: torch.stack([y[1], -torch.sin(y[0])])
    stepper = cd.solvers.LinearTwoStep(cd.ControlGrid(0.0, 1.0, 4, interp="constant"), k_init=0.3).double()
    with torch.no_grad():
        linear = cd.odeint(f, y0, t, method=stepper, options={"step_size": 0.3})
        cubic = cd.odeint(f, y0, t, method=stepper, options={"step_size": 0.3, "interp": "cubic"})
    assert torch.equal(cubic[-1], linear[-1])
