"""The Adams methods' weights assume equal steps: on steps of unequal length the march restarts
their history (uniform_steps), so they keep their order; float64."""
import math

import numpy as np
import pytest
import torch

import contdepth as cd
from contdepth.solvers.rk import RungeKutta
from contdepth.solvers.tableau import RK38

D = torch.float64


def _alternating(n: int):
    """A grid on [0, 2] of n steps alternating h and 2h (n even)."""
    def grid(func, y0, t):
        h = 2.0 / (1.5 * n)
        steps = [h if k % 2 == 0 else 2 * h for k in range(n)]
        return torch.tensor(np.concatenate([[0.0], np.cumsum(steps)]) * (2.0 / sum(steps)), dtype=D)
    return grid


@pytest.mark.parametrize("method", ["explicit_adams", "implicit_adams"])
def test_adams_on_unequal_steps_keeps_fourth_order(method):
    """y' = -y + cos(t) on alternating steps h, 2h: with the equal-step weights the method would be
    first order; restarting (3/8-rule steps) it is fourth order."""
    f = lambda t, y: -y + torch.cos(t)
    exact = lambda t: 0.5 * (math.cos(t) + math.sin(t)) + 0.5 * math.exp(-t)  # y(0) = 1
    errors = []
    for n in (16, 32, 64):
        ys = cd.odeint(f, torch.ones(1, dtype=D), torch.tensor([0.0, 2.0], dtype=D), method=method,
                       options={"grid_constructor": _alternating(n)})
        errors.append(abs(float(ys[-1, 0]) - exact(2.0)))
    slope = np.polyfit(np.log([16, 32, 64]), np.log(errors), 1)[0]
    assert slope < -3.5, (errors, slope)


def test_a_step_size_that_does_not_divide_the_interval_restarts_once_for_the_last_step():
    """Steps of 0.1 on [0, 1.05]: ten equal steps, then one of 0.05. The history restarts before
    it, so the last step is the 3/8 rule from the tenth step's end (checked against that step)."""
    f = lambda t, y: torch.sin(3 * t) * y
    y0 = torch.ones(2, dtype=D)
    kw = dict(method="explicit_adams", options={"step_size": 0.1})
    full = cd.odeint(f, y0, torch.tensor([0.0, 1.05], dtype=D), **kw)[-1]
    at_1 = cd.odeint(f, y0, torch.tensor([0.0, 1.0], dtype=D), **kw)[-1]
    last = cd.odeint(f, at_1, torch.tensor([1.0, 1.05], dtype=D), method="rk4", options={"step_size": 0.05})[-1]
    rk38 = cd.solve(f, at_1, t0=1.0, t1=1.05, method=RungeKutta(RK38), steps=1).ys[-1]
    torch.testing.assert_close(full, rk38, rtol=1e-15, atol=1e-15)
    assert not torch.equal(rk38, last)  # the 3/8 rule, not the classical RK4
