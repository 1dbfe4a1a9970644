"""fokker_planck_1d's RK4 step count: accepted iff h rho(A) <= RK4's reach 2.785... on the negative
real axis, rho the spectral radius of the finite-volume operator A with the drift frozen at t0.

The issue: dx = 0.01, nu = 0.5, F = -x on [-4, 4], 2,000 steps on [0, 1] (h rho = 2.4995) were
refused ("use steps >= 2320", a Gershgorin bound on rho divided by 2.5). The tests keep dx, nu, F
and h = 5e-4 on [0, 0.1] (200 steps; the old bound asked for 232 on [-4, 4], 216 on [-2, 2]).
"""
from __future__ import annotations

import functools
import math
import re

import pytest
import torch

from contdepth.physics import fokker_planck as fp
from contdepth.physics import fokker_planck_1d

DT = torch.float64
REACH = 2.785293563405282  # the real root of z^3 + 4 z^2 + 12 z + 24: |R(z)| = 1 for RK4's R
OU = lambda t, z: -z


def grid(half_width: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres on [-half_width, half_width] with dx = 0.01, and p0 = N(1, 0.1) there."""
    n = round(100 * half_width)
    x = torch.arange(-n, n + 1, dtype=DT) / 100
    return x, torch.exp(-(x - 1) ** 2 / 0.2) / math.sqrt(0.2 * math.pi)


def operator(drift, nu: float, x: torch.Tensor, t0: float = 0.0) -> torch.Tensor:
    """A with dp/dt = A p, column j the rhs of the unit vector e_j (the flux of the module docstring)."""
    dx, diff = (x[1] - x[0]).item(), nu ** 2 / 2
    f = drift(torch.tensor(t0, dtype=DT), (x[1:] + x[:-1]) / 2)[:, None]
    p = torch.eye(len(x), dtype=DT)
    zero = p.new_zeros(1, len(x))
    flux = torch.cat([zero, f * (p[1:] + p[:-1]) / 2 - diff * (p[1:] - p[:-1]) / dx, zero])
    return -(flux[1:] - flux[:-1]) / dx


def spectral_radius(a: torch.Tensor) -> float:
    """rho of a tridiagonal A with A_i,i+1 A_i+1,i >= 0: that of the symmetric matrix with
    off-diagonals sqrt(A_i,i+1 A_i+1,i) (a diagonal similarity; eigvals of A itself is ill-conditioned)."""
    assert torch.equal(a, a.triu(-1).tril(1))
    prods = a.diagonal(1) * a.diagonal(-1)
    assert prods.min() >= 0
    s = torch.diag(a.diagonal()) + torch.diag(prods.sqrt(), 1) + torch.diag(prods.sqrt(), -1)
    eig = torch.linalg.eigvalsh(s)
    assert eig.max() < 1e-9  # <= 0: A is Metzler with zero column sums
    return -eig[0].item()


@functools.cache
def issue_reference() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, p0 and expm(0.1 A) p0: the exact solution in time of the semi-discrete OU problem on [-2, 2]."""
    x, p0 = grid(2.0)
    return x, p0, torch.linalg.matrix_exp(0.1 * operator(OU, 0.5, x)) @ p0


def test_rk4_reach_is_where_the_stability_polynomial_is_one():
    r = lambda z: 1 + z + z ** 2 / 2 + z ** 3 / 6 + z ** 4 / 24
    assert r(-REACH) == pytest.approx(1.0, abs=1e-14) and fp._RK4_REACH == REACH
    assert min(r(-REACH * k / 1000) for k in range(1001)) > 0.27  # no sign change inside: |R| <= 1 there


def test_issue_step_size_runs_and_matches_the_exact_semi_discrete_solution():
    """h = 5e-4 (h rho = 2.4995): RK4 against expm(0.1 A) p0, the exact solution in time."""
    x, p0, exact = issue_reference()
    p = fokker_planck_1d(OU, 0.5, x, p0, 0.1, steps=200)
    assert (p - exact).abs().max() < 1e-12  # RK4's time error, h^4 ~ 6e-14
    assert p.min() >= 0
    assert abs((p.sum() - p0.sum()).item()) * 0.01 < 1e-14
    assert (p - p0).abs().max() > 0.1  # it did move


@pytest.mark.parametrize("drift, nu, span", [(OU, 0.5, 0.5), (lambda t, z: -z + 2 * torch.sin(3 * z + t), 0.5, 0.3),
                                             (lambda t, z: 4 * torch.tanh(5 * z) - z, 0.6, 0.4)])
def test_fewest_steps_is_the_exact_stability_limit(drift, nu, span, monkeypatch):
    """On 81 cells: steps = ceil(span rho / 2.785) run, one fewer is refused naming that count, and
    the default is ceil(span rho / 2.5); rho from the eigenvalues of the autograd Jacobian."""
    x = torch.linspace(-2, 2, 81, dtype=DT)
    p0 = torch.exp(-x ** 2 / 0.5)
    rho = spectral_radius(operator(drift, nu, x))
    fewest, default = math.ceil(span * rho / REACH), math.ceil(span * rho / 2.5)
    assert fewest < default and span * rho / REACH % 1 > 1e-6  # not a borderline ceil
    assert fokker_planck_1d(drift, nu, x, p0, span, steps=fewest).isfinite().all()
    with pytest.raises(ValueError, match=re.escape(f"steps={fewest - 1} is too few") + ".*"
                       + re.escape(f"use steps >= {fewest}") + "$"):
        fokker_planck_1d(drift, nu, x, p0, span, steps=fewest - 1)
    used, odesolve = [], fp.odesolve
    monkeypatch.setattr(fp, "odesolve", lambda *a, **kw: used.append(kw["steps"]) or odesolve(*a, **kw))
    fokker_planck_1d(drift, nu, x, p0, span)
    assert used == [default]


def test_far_too_few_steps_are_refused():
    x, p0 = grid(4.0)  # the issue's grid: rho = 4999
    with pytest.raises(ValueError, match=r"steps=100 is too few .* use steps >= 180$"):  # ceil(0.1 * 4999 / 2.785)
        fokker_planck_1d(OU, 0.5, x, p0, 0.1, steps=100)
    assert math.ceil(0.1 * spectral_radius(operator(OU, 0.5, x)) / REACH) == 180


def test_default_count_is_stable_and_accurate(monkeypatch):
    x, p0, exact = issue_reference()
    used, odesolve = [], fp.odesolve
    monkeypatch.setattr(fp, "odesolve", lambda *a, **kw: used.append(kw["steps"]) or odesolve(*a, **kw))
    p = fokker_planck_1d(OU, 0.5, x, p0, 0.1)
    assert used == [math.ceil(0.1 * spectral_radius(operator(OU, 0.5, x)) / 2.5)] == [200]
    assert (p - exact).abs().max() < 1e-12 and p.min() >= 0


def test_stability_test_against_gershgorin_and_a_dense_eigensolver():
    """_stable(S + c I) flips exactly at c = rho (to 1e-9), on a drift whose Gershgorin bound is 9 % high."""
    x, _ = grid(4.0)
    drift = lambda t, z: -z + 20 * torch.tanh(50 * z)
    d, e = fp._symmetrised(drift(0.0, (x[1:] + x[:-1]) / 2), 0.125, 0.01)
    rho = spectral_radius(operator(drift, 0.5, x))
    gershgorin = max(-d[i] + (e[i - 1] if i else 0) + (e[i] if i < len(e) else 0) for i in range(len(d)))
    assert gershgorin > 1.08 * rho
    assert fp._stable(d, e, rho * (1 + 1e-9)) and not fp._stable(d, e, rho * (1 - 1e-9))


@pytest.mark.parametrize("t1", [0.0, math.inf])
def test_empty_or_infinite_interval_is_refused(t1):
    x, p0 = grid(1.0)
    with pytest.raises(ValueError, match="t0 and t1 must be finite and different"):
        fokker_planck_1d(OU, 0.5, x, p0, t1, steps=10)
