"""The linear two-step stepper (seed 002 eq. 111): Euler at k = 0 bit for bit, the recurrence by
hand, gradients of k by backprop, checkpoint and finite differences, the continuous equation
it approximates, zero-stability, and errors."""
import math

import pytest
import torch

import contdepth as cd

DT = torch.float64


def random_field(grid, seed=0):
    torch.manual_seed(seed)
    field = cd.fields.DenseResidual(3, grid).to(DT)
    with torch.no_grad():
        field.weight.normal_(0, 0.5)
        field.bias.normal_(0, 0.5)
    return field


@pytest.mark.parametrize("steps", [6, 12])
def test_k_zero_is_euler_bit_for_bit(steps):
    grid = cd.ControlGrid(0.0, 3.0, n=6)
    field = random_field(grid)
    y0 = torch.randn(4, 3, dtype=DT)
    lm = cd.LinearTwoStep(grid, k_init=0.0).to(DT)
    assert torch.equal(cd.odesolve(field, y0, method=lm, steps=steps),
                       cd.odesolve(field, y0, method="euler", steps=steps))


def test_recurrence_by_hand_on_linear_ode():
    """dx/dt = lam x, k_l random on 5 cells, 10 steps: x_{l+1} = (1 - k_l) x_l + k_l x_{l-1} + h lam x_l."""
    lam, t1, steps = -0.7, 2.0, 10
    lm = cd.LinearTwoStep(cd.ControlGrid(0.0, t1, n=5)).to(DT)
    with torch.no_grad():
        lm.k.copy_(torch.tensor([0.3, -0.5, 0.8, 0.1, -0.2], dtype=DT))
    x0 = torch.tensor([1.3, -0.4], dtype=DT)
    h = t1 / steps
    prev, x = x0, x0
    for l in range(steps):
        k = lm.k[l * 5 // steps].item()
        prev, x = x, (1 - k) * x + k * prev + h * lam * x
    got = cd.odesolve(lambda t, y: lam * y, x0, t0=0.0, t1=t1, method=lm, steps=steps)
    assert torch.allclose(got, x, rtol=1e-12, atol=1e-14)


def test_gradient_of_k_backprop_checkpoint_and_finite_differences():
    grid = cd.ControlGrid(0.0, 2.0, n=4)
    field = random_field(grid, seed=1)
    y0 = torch.randn(3, 3, dtype=DT)
    lm = cd.LinearTwoStep(grid, k_init=0.2).to(DT)

    def loss(gradient="backprop"):
        return cd.odesolve(field, y0, method=lm, steps=8, gradient=gradient).pow(2).sum()

    grads = {}
    for gradient in ("backprop", "checkpoint"):
        lm.zero_grad()
        field.zero_grad()
        loss(gradient).backward()
        grads[gradient] = (lm.k.grad.clone(), field.weight.grad.clone())
    for a, b in zip(grads["backprop"], grads["checkpoint"]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-13)
    eps = 1e-6
    fd = []
    with torch.no_grad():
        for l in range(grid.n):
            lm.k[l] += eps
            up = loss().item()
            lm.k[l] -= 2 * eps
            down = loss().item()
            lm.k[l] += eps
            fd.append((up - down) / (2 * eps))
    assert torch.allclose(grads["backprop"][0], torch.tensor(fd, dtype=DT), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("k", [0.5, -0.4])
def test_approximates_dx_dt_equals_f_over_one_plus_k(k):
    """Constant k: as h -> 0 the recurrence solves dx/dt = F / (1 + k), at first order in h."""
    lam, t1 = -1.0, 1.0
    lm = cd.LinearTwoStep(cd.ControlGrid(0.0, t1, n=1), k_init=k).to(DT)
    x0 = torch.tensor([1.0], dtype=DT)
    exact = math.exp(lam * t1 / (1 + k))
    errors = [abs(cd.odesolve(lambda t, y: lam * y, x0, t0=0.0, t1=t1, method=lm, steps=n).item() - exact)
              for n in (200, 400, 800)]
    assert errors[-1] < 2e-3
    assert 1.6 < errors[0] / errors[1] < 2.4 and 1.6 < errors[1] / errors[2] < 2.4  # first order


def test_zero_stability_bound():
    """F = 0: the recurrence's roots are 1 and -k, so |k| > 1 grows like |k|^l and |k| < 1 stays bounded."""
    zero = lambda t, y: torch.zeros_like(y)
    grid = cd.ControlGrid(0.0, 1.0, n=1)
    x0 = torch.tensor([1.0], dtype=DT)
    for k, bounded in ((0.9, True), (-0.9, True), (1.5, False), (-1.5, False)):
        lm = cd.LinearTwoStep(grid, k_init=k).to(DT)
        # seed a difference between x_0 and x_1 with one step of a nonzero field, then let F = 0
        kick = cd.odesolve(lambda t, y: torch.ones_like(y), x0, t0=0.0, t1=0.01, method="euler", steps=1)
        prev = torch.stack([x0, kick])
        out = cd.odesolve(zero, kick, t0=0.0, t1=1.0, method=lm, steps=60)
        assert torch.equal(out, kick)  # x_{-1} = x_0 and F = 0: nothing moves without a difference
        x, xp = prev[1], prev[0]
        for _ in range(60):
            x, xp = (1 - k) * x + k * xp, x
        assert (x.abs().item() < 10) == bounded


def test_adjoint_refuses_trainable_stepper_and_grid_checks():
    grid = cd.ControlGrid(0.0, 1.0, n=2)
    field = random_field(grid)
    lm = cd.LinearTwoStep(grid).to(DT)
    with pytest.raises(ValueError, match="adjoint.*LinearTwoStep"):
        cd.odesolve(field, torch.randn(2, 3, dtype=DT), method=lm, steps=4, gradient="adjoint")
    with pytest.raises(ValueError, match="interp must be 'constant'"):
        cd.LinearTwoStep(cd.ControlGrid(0.0, 1.0, n=3, interp="linear"))
    with pytest.raises(TypeError, match="ControlGrid"):
        cd.LinearTwoStep((0.0, 1.0, 3))


def test_trains_inside_an_odeblock():
    """As ``method`` of an ODEBlock the stepper is a submodule: k is among the block's parameters."""
    grid = cd.ControlGrid(0.0, 1.0, n=4)
    block = cd.ODEBlock(random_field(grid), method=cd.LinearTwoStep(grid, k_init=0.1).to(DT), steps=8)
    names = {name for name, _ in block.named_parameters()}
    assert "method.k" in names
    block(torch.randn(2, 3, dtype=DT)).sum().backward()
    assert block.method.k.grad is not None and block.method.k.grad[1:].abs().sum() > 0
