"""ODEBlock(learn_time=True): the depth T is a parameter, theta(t) stretched over [t0, T]; its
gradient equals a central difference of the loss, in every gradient mode. Float64."""
import pytest
import torch

import contdepth as cd

DT = torch.float64


def _field(T=2.0, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    field = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, T, n), gamma=0.3).to(DT)
    with torch.no_grad():
        field.weight.copy_(0.5 * torch.randn(n, 3, 3, generator=g, dtype=DT))
        field.bias.copy_(0.5 * torch.randn(n, 3, generator=g, dtype=DT))
    return field


X = torch.linspace(-1, 1, 12, dtype=DT).reshape(4, 3)


def _loss(block):
    return (block(X) ** 2).sum()


def test_forward_equals_the_field_on_the_stretched_grid():
    """T = 3 on a grid [0, 2]: the same as a field with the same knots on [0, 3] (rk4, 8 steps)."""
    field = _field()
    block = cd.ODEBlock(field, method="rk4", steps=8, learn_time=True, t1=3.0).to(DT)
    stretched = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, 3.0, 4), gamma=0.3).to(DT)
    stretched.load_state_dict(field.state_dict())
    expected = cd.odesolve(stretched, X, method="rk4", steps=8)
    torch.testing.assert_close(block(X), expected, rtol=1e-13, atol=1e-13)
    assert isinstance(block.t1, torch.nn.Parameter) and block.t1.item() == 3.0


TIGHT = {"rtol": 1e-10, "atol": 1e-12}


@pytest.mark.parametrize("method,kw,gradient", [
    ("euler", {"steps": 8}, "backprop"), ("euler", {"steps": 8}, "checkpoint"), ("rk4", {}, "backprop"),
    ("rk4", {}, "checkpoint"), ("dopri5", TIGHT, "backprop"), ("dopri5", TIGHT, "checkpoint"),
    ("dopri5", TIGHT, "adjoint")])  # the continuous adjoint of a fixed grid is only O(h^p) near the discrete gradient
def test_depth_gradient_equals_central_difference(method, kw, gradient):
    block = cd.ODEBlock(_field(), method=method, gradient=gradient, learn_time=True, **kw).to(DT)
    (dT,) = torch.autograd.grad(_loss(block), [block.t1])
    eps = 1e-6
    values = []
    for shift in (eps, -eps):
        with torch.no_grad():
            block.t1 += shift
            values.append(_loss(block).item())
            block.t1 -= shift
    fd = (values[0] - values[1]) / (2 * eps)
    tol = 1e-6 if method == "dopri5" and gradient == "adjoint" else 1e-7
    assert abs(dT.item() - fd) < tol * max(1.0, abs(fd)), (dT.item(), fd)
    assert abs(fd) > 1e-2  # the depth matters for this loss


def test_field_parameters_still_get_their_gradients():
    block = cd.ODEBlock(_field(), method="dopri5", gradient="adjoint", learn_time=True, **TIGHT).to(DT)
    loss = _loss(block)
    grads = torch.autograd.grad(loss, [block.field.weight, block.field.bias, block.t1])
    reference = cd.ODEBlock(_field(), method="dopri5", gradient="backprop", learn_time=True, **TIGHT).to(DT)
    expected = torch.autograd.grad(_loss(reference), [reference.field.weight, reference.field.bias, reference.t1])
    for a, b in zip(grads, expected):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-9)


def test_learn_time_errors():
    with pytest.raises(ValueError, match="learn_time=True stretches theta"):
        cd.ODEBlock(lambda t, y: -y, t0=0.0, t1=1.0, method="rk4", steps=2, learn_time=True)
    with pytest.raises(ValueError, match="t0 must be None or 0.0"):
        cd.ODEBlock(_field(), t0=0.5, learn_time=True)
    with pytest.raises(ValueError, match=r"t1 must be > t0 = 0.0"):
        cd.ODEBlock(_field(), t1=-1.0, learn_time=True)
    with pytest.raises(TypeError, match="learn_time must be a bool"):
        cd.ODEBlock(_field(), learn_time=1)
    block = cd.ODEBlock(_field(), learn_time=True).to(DT)
    with torch.no_grad():
        block.t1.fill_(-0.5)
    with pytest.raises(ValueError, match="the learned depth T = -0.5 is not above t0 = 0.0"):
        block(X)
