"""Time gradients where f jumps in t: an output's slope is f seen from where the solve came
(behind the output time), the start's from the side the solve goes (ahead of t0); float64."""
import math

import pytest
import torch

import contdepth as cd

D = torch.float64
KNOT = 0.5


def field(t, y):
    """y' = a(t) y, a = 1 before t = 0.5 and -2 from it on (declared as a jump)."""
    return torch.where(t < KNOT, 1.0, -2.0).to(y) * y


def exact(t0: float, t: float) -> float:
    """y(t) from y(t0) = 1."""
    rate = lambda s: s if s < KNOT else KNOT - 2 * (s - KNOT)  # integral of a from 0 to s
    return math.exp(rate(t) - rate(t0))


@pytest.mark.parametrize("reverse", [False, True])
def test_an_output_on_the_jump_moves_with_f_from_behind(reverse):
    """L = y(0.5): dL/dt_1 = a(0.5 from behind) y(0.5): a = 1 forward, -2 backward."""
    t0, t_end = (1.0, 0.0) if reverse else (0.0, 1.0)
    t = torch.tensor([t0, KNOT, t_end], dtype=D, requires_grad=True)
    ys = cd.odeint(field, torch.ones(1, dtype=D), t, method="dopri5", rtol=1e-10, atol=1e-12,
                   options={"jump_t": [KNOT]})
    ys[1].sum().backward()
    behind = -2.0 if reverse else 1.0
    torch.testing.assert_close(t.grad[1], torch.tensor(behind * exact(t0, KNOT), dtype=D), rtol=1e-8, atol=0)


@pytest.mark.parametrize("reverse", [False, True])
def test_a_start_on_the_jump_moves_with_f_ahead(reverse):
    """t0 = 0.5, L = y(t_end): dL/dt0 = -a(0.5 toward t_end) y(t_end): -(-2) forward, -(1) backward."""
    t_end = 0.0 if reverse else 1.0
    t = torch.tensor([KNOT, t_end], dtype=D, requires_grad=True)
    for gradient in ("backprop", "adjoint"):
        run = cd.odeint_adjoint if gradient == "adjoint" else cd.odeint
        ys = run(field, torch.ones(1, dtype=D), t, method="dopri5", rtol=1e-10, atol=1e-12,
                 options={"jump_t": [KNOT]})
        (g,) = torch.autograd.grad(ys[-1].sum(), t)
        ahead = 1.0 if reverse else -2.0
        torch.testing.assert_close(g[0], torch.tensor(-ahead * exact(KNOT, t_end), dtype=D), rtol=1e-8, atol=0)
