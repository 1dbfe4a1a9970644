"""Closed-form solutions of seed 002 (eq. 85, 87) for every method and gradient method, and
fitted convergence orders."""
import math

import numpy as np
import pytest
import torch

import contdepth as cd

DT = torch.float64
TOL = {"euler": 1e-2, "midpoint": 1e-3, "rk4": 1e-7, "dopri5": 1e-7}
FIXED = ["euler", "midpoint", "rk4"]
ORDER = {"euler": 1, "midpoint": 2, "rk4": 4}


def eq85(x0, w, gamma, t):
    """Seed 002 eq. 85: dx/dt = w x - gamma x^3 (diagonal w)."""
    e = torch.exp(2 * w * t)
    return x0 * torch.exp(w * t) / torch.sqrt(1 + gamma / w * x0 ** 2 * (e - 1))


def eq87(x0, gamma, t):
    """Seed 002 eq. 87: w = 0."""
    return x0 / torch.sqrt(1 + 2 * gamma * x0 ** 2 * t)


def diagonal_field(w, gamma=1.0, n=4, t1=2.0, **kw):
    field = cd.fields.CubicFriction(len(w), cd.ControlGrid(t0=0.0, t1=t1, n=n), gamma=gamma, **kw).to(DT)
    with torch.no_grad():
        field.weight.copy_(torch.diag(torch.tensor(w, dtype=DT)).expand(n, -1, -1))
    return field


# Every valid (method, gradient) pair; checkpointing is for fixed-step methods (dopri5 + checkpoint
# raises, see test_core_errors).
PAIRS = [(m, g) for m in FIXED for g in ("backprop", "checkpoint", "adjoint")] + [
    ("dopri5", "backprop"), ("dopri5", "adjoint")]


@pytest.mark.parametrize("method,gradient", PAIRS)
def test_eq85_diagonal_w(method, gradient):
    w = [-1.0, 0.5, 2.0]
    field = diagonal_field(w, gamma=0.7)
    y0 = torch.tensor([[0.9, -1.3, 0.4], [-0.2, 0.8, -1.1]], dtype=DT)
    kw = dict(rtol=1e-9, atol=1e-11) if method == "dopri5" else dict(steps=64)
    y1 = cd.odesolve(field, y0, method=method, gradient=gradient, **kw)
    expected = eq85(y0, torch.tensor(w, dtype=DT), field.gamma.item(), 2.0)
    assert torch.allclose(y1, expected, atol=TOL[method], rtol=0)
    assert y1.dtype == DT


@pytest.mark.parametrize("method", FIXED + ["dopri5"])
def test_eq87_zero_weights(method):
    field = diagonal_field([0.0, 0.0], gamma=1.3)
    y0 = torch.tensor([[1.5, -0.4]], dtype=DT)
    kw = dict(rtol=1e-9, atol=1e-11) if method == "dopri5" else dict(steps=64)
    y1 = cd.odesolve(field, y0, method=method, **kw)
    assert torch.allclose(y1, eq87(y0, field.gamma.item(), 2.0), atol=TOL[method], rtol=0)


def fitted_order(method, field, y0, expected, ks=range(3, 8)):
    errs, hs = [], []
    for k in ks:
        y1 = cd.odesolve(field, y0, method=method, steps=2 ** k)
        errs.append((y1 - expected).abs().max().item())
        hs.append(field.grid.t1 / 2 ** k)
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


@pytest.mark.parametrize("method", FIXED)
def test_convergence_order(method):
    field = diagonal_field([1.0, -2.0], gamma=1.0, n=1)
    y0 = torch.tensor([[1.2, -0.7]], dtype=DT)
    expected = eq85(y0, torch.tensor([1.0, -2.0], dtype=DT), 1.0, 2.0)
    slope = fitted_order(method, field, y0, expected)
    assert abs(slope - ORDER[method]) < 0.25, slope


def test_rk4_keeps_fourth_order_on_piecewise_constant_theta():
    """theta jumps at 4 knots; steps a multiple of n: each step sees one cell, order stays 4."""
    ws = [-1.0, 1.5, 0.3, -0.6]
    field = diagonal_field([0.0], n=4)
    with torch.no_grad():
        field.weight.copy_(torch.tensor(ws, dtype=DT).view(4, 1, 1))
    y0 = torch.tensor([[0.8]], dtype=DT)
    expected = y0
    for w in ws:  # compose eq. 85 over the four cells of length 0.5
        expected = eq85(expected, torch.tensor([w], dtype=DT), 1.0, 0.5)
    slope = fitted_order("rk4", field, y0, expected, ks=range(5, 9))
    assert abs(slope - 4) < 0.5, slope


@pytest.mark.parametrize("rtol", [1e-4, 1e-7])
def test_dopri5_meets_tolerance(rtol):
    field = diagonal_field([-1.0, 0.5], gamma=1.0, n=1)
    y0 = torch.tensor([[1.2, -0.7]], dtype=DT)
    expected = eq85(y0, torch.tensor([-1.0, 0.5], dtype=DT), 1.0, 2.0)
    y1 = cd.odesolve(field, y0, method="dopri5", rtol=rtol, atol=rtol * 1e-2)
    assert (y1 - expected).abs().max().item() < 10 * rtol


def d_eq87_dgamma(x0, gamma, t):
    return -x0 ** 3 * t * (1 + 2 * gamma * x0 ** 2 * t) ** -1.5


@pytest.mark.parametrize("method,gradient", [p for p in PAIRS if p[0] in ("rk4", "dopri5")])
def test_gamma_gradient_matches_eq87(method, gradient):
    field = diagonal_field([0.0], gamma=0.9, n=3, learn_gamma=True)
    y0 = torch.tensor([[1.1], [-0.6]], dtype=DT)
    kw = dict(rtol=1e-10, atol=1e-12) if method == "dopri5" else dict(steps=96)
    cd.odesolve(field, y0, method=method, gradient=gradient, **kw).sum().backward()
    expected = d_eq87_dgamma(y0, field.gamma.item(), 2.0).sum().item()
    assert math.isclose(field.gamma.grad.item(), expected, rel_tol=1e-7)
