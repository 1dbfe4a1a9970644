"""Fields: Euler == ResNet bit for bit, exact knot choice, state grid vs control grid,
refinement, the PDE stencil formula, parameter counts."""
from fractions import Fraction

import pytest
import torch

import contdepth as cd

DT = torch.float64


def randomise(field, scale=0.5):
    """Random theta; a friction coefficient gamma stays positive (a negative one blows up)."""
    with torch.no_grad():
        for name in field.control_names:
            getattr(field, name).normal_(0, scale)
    return field


FIELDS = {
    "cubic": (lambda g: cd.fields.CubicFriction(3, g, gamma=0.1), (4, 3)),
    "dense": (lambda g: cd.fields.DenseResidual(3, g), (4, 3)),
    "conv": (lambda g: cd.fields.ConvResidual(2, g), (2, 2, 5, 5)),
    "convcubic": (lambda g: cd.fields.ConvCubicFriction(2, g, gamma=0.1), (2, 2, 5, 5)),
    "pde1": (lambda g: cd.fields.PDEStencil(2, g, variant="pde1"), (2, 2, 5, 5)),
    "pde2": (lambda g: cd.fields.PDEStencil(2, g, variant="pde2", activation="relu"), (2, 2, 5, 5)),
    "convnorm": (lambda g: cd.fields.ConvNormResidual(4, g, groups=2), (2, 4, 5, 5)),
}


@pytest.mark.parametrize("name", FIELDS)
@pytest.mark.parametrize("t1", [6.0, 3.0])
def test_euler_is_a_resnet(name, t1):
    """steps == n: x_{j+1} = x_j + h F(x_j, theta_j), bit for bit, for every field."""
    make, shape = FIELDS[name]
    field = randomise(make(cd.ControlGrid(t0=0.0, t1=t1, n=6)), 0.2)
    x = torch.randn(shape)
    h = t1 / 6
    expected = x
    for j in range(6):
        theta = {k: getattr(field, k)[j] for k in field.control_names}
        expected = expected + h * field.vector_field(torch.tensor(j * h), expected, theta)
    got = cd.odesolve(field, x, method="euler")
    assert torch.equal(got, expected)


def test_conv_residual_euler_is_torch_resnet():
    """ConvResidual with h = 1 is x + relu(conv(x)) with nn.Conv2d blocks."""
    grid = cd.ControlGrid(t0=0.0, t1=4.0, n=4)
    field = cd.fields.ConvResidual(3, grid)
    convs = [torch.nn.Conv2d(3, 3, 3, padding=1) for _ in range(4)]
    with torch.no_grad():
        for l, conv in enumerate(convs):
            conv.weight.copy_(field.weight[l])
            conv.bias.copy_(field.bias[l])
    x = torch.randn(2, 3, 7, 7)
    expected = x
    for conv in convs:
        expected = expected + torch.relu(conv(expected))
    assert torch.equal(cd.odesolve(field, x, method="euler"), expected)


def test_conv_norm_residual_is_chens_odefunc():
    """ConvNormResidual at one knot is Chen et al.'s ODEfunc built from torch.nn modules:
    norm1, relu, conv1, norm2, relu, conv2, norm3."""
    grid = cd.ControlGrid(t0=0.0, t1=1.0, n=2)
    field = randomise(cd.fields.ConvNormResidual(4, grid, groups=2)).to(DT)
    assert sum(p.numel() for p in field.parameters()) == 2 * (2 * (4 * 4 * 9 + 4) + 3 * 2 * 4)
    modules = [torch.nn.GroupNorm(2, 4), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.GroupNorm(2, 4),
               torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 3, padding=1), torch.nn.GroupNorm(2, 4)]
    odefunc = torch.nn.Sequential(*modules).to(DT)
    knot = 1  # t = 0.75 lies in the second cell
    with torch.no_grad():
        for m, name in zip(modules, ["norm1", None, "conv1", "norm2", None, "conv2", "norm3"]):
            if name:
                m.weight.copy_(getattr(field, f"{name}_weight")[knot])
                m.bias.copy_(getattr(field, f"{name}_bias")[knot])
    x = torch.randn(3, 4, 6, 6, dtype=DT)
    torch.testing.assert_close(field(0.75, x), odefunc(x), rtol=1e-13, atol=1e-13)
    with pytest.raises(ValueError, match="groups must divide"):
        cd.fields.ConvNormResidual(4, grid, groups=3)
    with pytest.raises(ValueError, match="ConvNormResidual expects"):
        field.check_state(torch.randn(3, 5, 6, 6, dtype=DT))


def manual_rk4_with_exact_cells(field, y, t0, t1, steps):
    """Reference: classical RK4 with the knot of each stage from exact rationals."""
    n = field.grid.n
    h = (t1 - t0) / steps

    def cell(p):
        return min(int(p), n - 1)

    for j in range(steps):
        c0 = cell(Fraction(j * n, steps))
        c1 = cell(Fraction((2 * j + 1) * n, 2 * steps))
        c2 = -(-(j + 1) * n // steps) - 1                # right end, from the left
        th = [{k: getattr(field, k)[c] for k in field.control_names} for c in (c0, c1, c1, c2)]
        t = torch.tensor(t0 + j * h, dtype=y.dtype)
        k1 = field.vector_field(t, y, th[0])
        k2 = field.vector_field(t + h / 2, y + (h * 0.5) * k1, th[1])
        k3 = field.vector_field(t + h / 2, y + (h * 0.5) * k2, th[2])
        k4 = field.vector_field(t + h, y + h * k3, th[3])
        y = y + ((h / 6) * k1 + (h / 3) * k2 + (h / 3) * k3 + (h / 6) * k4)
    return y


@pytest.mark.parametrize("n,steps,t1", [(5, 15, 1.0), (3, 7, 0.3), (10, 30, 0.7), (4, 3, 2.0), (7, 7, 0.1)])
def test_state_grid_independent_of_control_grid(n, steps, t1):
    """Knots are picked from the step's rational position, never by flooring an accumulated float t
    (0.1 * 3 != 0.3 in floating point, so a floor of t/D would pick the wrong knot)."""
    field = randomise(cd.fields.CubicFriction(2, cd.ControlGrid(t0=0.0, t1=t1, n=n), gamma=0.3).to(DT), 1.0)
    y0 = 0.5 * torch.randn(3, 2, dtype=DT)
    assert torch.isfinite(manual_rk4_with_exact_cells(field, y0, 0.0, t1, steps)).all()
    got = cd.odesolve(field, y0, method="rk4", steps=steps)
    assert torch.allclose(got, manual_rk4_with_exact_cells(field, y0, 0.0, t1, steps), rtol=1e-14, atol=1e-14)


def test_steps_multiple_of_n_equals_cellwise_solves():
    field = randomise(cd.fields.CubicFriction(2, cd.ControlGrid(t0=0.0, t1=0.3, n=3)).to(DT), 1.0)
    y0 = torch.randn(3, 2, dtype=DT)
    y = y0
    for l in range(3):
        cell = cd.fields.CubicFriction(2, cd.ControlGrid(t0=0.0, t1=0.1, n=1)).to(DT)
        with torch.no_grad():
            cell.weight.copy_(field.weight[l:l + 1])
            cell.bias.copy_(field.bias[l:l + 1])
            cell.gamma.copy_(field.gamma)
        y = cd.odesolve(cell, y, method="rk4", steps=5)
    assert torch.allclose(cd.odesolve(field, y0, method="rk4", steps=15), y, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("interp", ["constant", "linear"])
@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_refine_control_keeps_the_function(interp, method):
    field = randomise(cd.fields.ConvResidual(2, cd.ControlGrid(t0=0.0, t1=1.0, n=4, interp=interp)).to(DT))
    fine = field.refine_control(2)
    assert type(fine) is type(field)
    assert fine.grid.n == (8 if interp == "constant" else 7)
    assert fine.weight.shape[0] == fine.grid.n
    for t in (0.0, 0.1, 0.37, 0.5, 0.99, 1.0):
        for k in field.control_names:
            assert torch.allclose(field.theta_at(t)[k], fine.theta_at(t)[k], rtol=1e-14, atol=1e-15)
    x = torch.randn(2, 2, 5, 5, dtype=DT)
    a = cd.odesolve(field, x, method=method, steps=24)
    b = cd.odesolve(fine, x, method=method, steps=24)
    if interp == "constant":
        assert torch.equal(a, b)
    else:
        assert torch.allclose(a, b, rtol=1e-13, atol=1e-14)
    assert fine.weight.requires_grad and fine.weight is not field.weight


def test_pde_stencil_on_a_quadratic_image():
    """Central differences are exact on quadratics: F = a^2/2 2A + s b (2A x + C y + D)
    + sigma^2/2 2B + s rho (2B y + C x + E) + gamma psi in the interior (seed 000 eq. 39/40)."""
    H, W = 6, 7
    y, x = torch.meshgrid(torch.arange(H, dtype=DT), torch.arange(W, dtype=DT), indexing="ij")
    A, B, C, D, E, F0 = 0.3, -0.2, 0.15, 0.5, -0.7, 1.1
    psi = (A * x ** 2 + B * y ** 2 + C * x * y + D * x + E * y + F0).expand(1, 1, H, W)
    for variant, s in (("pde1", 1.0), ("pde2", -1 / 8)):
        field = cd.fields.PDEStencil(1, cd.ControlGrid(t0=0.0, t1=1.0, n=1), variant=variant).to(DT)
        a, b, sg, r, g = 0.9, 0.4, 1.3, -0.6, 0.25
        with torch.no_grad():
            for name, v in zip(("alpha", "beta", "sigma", "rho", "gamma"), (a, b, sg, r, g)):
                getattr(field, name).fill_(v)
        got = field(0.0, psi)[0, 0]
        expected = (a ** 2 / 2 * 2 * A + s * b * (2 * A * x + C * y + D) + sg ** 2 / 2 * 2 * B
                    + s * r * (2 * B * y + C * x + E) + g * psi[0, 0])
        assert torch.allclose(got[1:-1, 1:-1], expected[1:-1, 1:-1], rtol=1e-13, atol=1e-13)
        # at the left border the zero padding replaces psi[x = -1] by 0
        left = psi[0, 0, 2, 0]
        right = psi[0, 0, 2, 1]
        up, down = psi[0, 0, 1, 0], psi[0, 0, 3, 0]
        border = (a ** 2 / 2 * (right - 2 * left) + s * b * right / 2 + sg ** 2 / 2 * (down - 2 * left + up)
                  + s * r * (down - up) / 2 + g * left)
        assert torch.isclose(got[2, 0], border, rtol=1e-13)


def test_parameter_counts_and_zero_init():
    grid20 = cd.ControlGrid(t0=0.0, t1=20.0, n=20)
    net = cd.fields.ConvCubicFriction(10, grid20)
    assert sum(p.numel() for p in net.parameters()) == 18201          # seed 002 sec. 5.2
    assert net.weight.abs().sum() == 0 and net.bias.abs().sum() == 0
    m1 = cd.fields.CubicFriction(2, cd.ControlGrid(t0=0.0, t1=100.0, n=100))
    assert sum(p.numel() for p in m1.parameters()) == 601            # seed 002 sec. 5.1, model 1
    m2 = cd.fields.CubicFriction(3, cd.ControlGrid(t0=0.0, t1=20.0, n=20), gamma=0.1, learn_gamma=False)
    assert sum(p.numel() for p in m2.parameters()) == 240            # model 2: gamma fixed
    pde = cd.fields.PDEStencil(4, grid20)
    assert {k: tuple(getattr(pde, k).shape) for k in pde.control_names} == {
        k: (20, 4) for k in ("alpha", "beta", "sigma", "rho", "gamma")}


def test_zero_initialised_cubic_field_trains():
    """Seed 002 sec. 4.4: from W = 0, b = 0 the gradients are nonzero and a step lowers the loss."""
    field = cd.fields.CubicFriction(2, cd.ControlGrid(t0=0.0, t1=5.0, n=5), gamma=0.1, learn_gamma=False)
    x = torch.randn(64, 2)
    target = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    opt = torch.optim.SGD(field.parameters(), lr=0.1)
    losses = []
    for _ in range(20):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(cd.odesolve(field, x, method="euler"), target)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]


def test_float32_and_float64_follow_the_state():
    for dtype in (torch.float32, torch.float64):
        field = cd.fields.ConvResidual(2, cd.ControlGrid(t0=0.0, t1=1.0, n=2)).to(dtype)
        x = torch.randn(1, 2, 4, 4, dtype=dtype)
        for method in ("rk4", "dopri5"):
            assert cd.odesolve(field, x, method=method).dtype == dtype


def test_odeblock_swaps_integrator_after_training():
    field = randomise(cd.fields.DenseResidual(3, cd.ControlGrid(t0=0.0, t1=1.0, n=4)).to(DT))
    block = cd.ODEBlock(field, method="euler", steps=4, gradient="checkpoint")
    x = torch.randn(5, 3, dtype=DT)
    assert torch.equal(block(x), cd.odesolve(field, x, method="euler", steps=4))
    assert block.stats.forward.nfe == 4
    block.method, block.steps = "rk4", 64
    fine = block(x)
    block.method, block.steps, block.gradient = "dopri5", None, "adjoint"
    assert torch.allclose(block(x), fine, atol=1e-6)
    assert "rk4" not in repr(block) and "dopri5" in repr(block)


def test_works_with_torchdiffeq_directly():
    from torchdiffeq import odeint
    field = randomise(cd.fields.DenseResidual(3, cd.ControlGrid(t0=0.0, t1=1.0, n=1)).to(DT))
    x = torch.randn(2, 3, dtype=DT)
    ys = odeint(field, x, torch.tensor([0.0, 1.0], dtype=DT), rtol=1e-10, atol=1e-12)
    assert torch.allclose(ys[-1], cd.odesolve(field, x, method="rk4", steps=200), atol=1e-9)


def test_partial_interval_on_knots_uses_the_right_cells():
    """t0/t1 on knots whose float values are inexact (0.4, 0.8): stages still see only their cell."""
    field = cd.fields.CubicFriction(1, cd.ControlGrid(t0=0.0, t1=4.0, n=10), gamma=0.0, learn_gamma=False).to(DT)
    with torch.no_grad():
        field.bias.copy_(torch.arange(10, dtype=DT).view(10, 1))
    zero = torch.zeros(1, 1, dtype=DT)
    for l in range(10):
        t0, t1 = 0.4 * l, 0.4 * (l + 1)
        for method in ("euler", "rk4"):
            y = cd.odesolve(field, zero, method=method, steps=1, t0=t0, t1=t1)
            assert y.item() == pytest.approx(l * (t1 - t0), rel=1e-12, abs=1e-15)
    whole = cd.odesolve(field, zero, method="rk4", steps=10, t_eval=[0.4 * l for l in range(1, 11)])
    parts, y = [], zero
    for l in range(10):
        y = cd.odesolve(field, y, method="rk4", steps=1, t0=0.4 * l, t1=0.4 * (l + 1))
        parts.append(y)
    assert torch.allclose(whole, torch.stack(parts), rtol=1e-13)


@pytest.mark.parametrize("make,shape", [
    (lambda g, **kw: cd.fields.CubicFriction(3, g, **kw), (4, 3)),
    (lambda g, **kw: cd.fields.ConvCubicFriction(2, g, **kw), (4, 2, 5, 5)),
])
def test_friction_gamma_min_bounds_the_field(make, shape):
    """gamma_min/gamma_max: the field uses gamma clamped to them; gradient 1 on a bound, project_ clamps."""
    grid = cd.ControlGrid(0.0, 1.0, n=2)
    x = torch.randn(*shape)
    bounded, free = make(grid, gamma=0.0, gamma_min=0.0), make(grid, gamma=0.0)
    with torch.no_grad():
        bounded.gamma.fill_(-0.5)
    theta = bounded.theta_at(0.0)
    torch.testing.assert_close(bounded.vector_field(0.0, x, theta), free.vector_field(0.0, x, theta))
    bounded.project_()
    assert float(bounded.gamma.detach()) == 0.0
    bounded.vector_field(0.0, x, theta).sum().backward()
    torch.testing.assert_close(bounded.gamma.grad, -(x ** 3).sum())  # at the bound the gradient flows
    capped = make(grid, gamma=0.0, gamma_min=0.0, gamma_max=0.1)
    with torch.no_grad():
        capped.gamma.fill_(2.0)
        free.gamma.fill_(0.1)
    torch.testing.assert_close(capped.vector_field(0.0, x, theta), free.vector_field(0.0, x, theta))
    capped.project_()
    assert float(capped.gamma.detach()) == pytest.approx(0.1)
    with pytest.raises(ValueError, match="gamma_min"):
        make(grid, gamma=0.0, gamma_min=float("nan"))
    with pytest.raises(ValueError, match="gamma_min"):
        make(grid, gamma=-1.0, gamma_min=0.0)
    with pytest.raises(ValueError, match="gamma_max"):
        make(grid, gamma=1.0, gamma_max=0.5)
    with pytest.raises(ValueError, match="gamma_min must be <= gamma_max"):
        make(grid, gamma=0.0, gamma_min=1.0, gamma_max=0.5)
