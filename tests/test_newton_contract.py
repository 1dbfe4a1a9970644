"""newton.py's contract, case by case: NewtonOptions' checks in full, the iteration's verdicts
(converged, stalled, non-finite, out of iterations) with their iteration count and contraction
rate, its tolerance floors, the Jacobian, JVP and VJP of a linear map exactly, GMRES against a
direct solve (restarts, its flag, b = 0), and KrylovSolve's gradient A^-T g."""
import math

import pytest
import torch

from contdepth.solvers.newton import (NEWTON_KINDS, KrylovSolve, NewtonOptions, NewtonResult, dense_jacobian, gmres,
                                      jvp, newton, vjp)

DT = torch.float64


def test_the_default_options():
    o = NewtonOptions()
    assert (o.kind, o.rtol, o.atol, o.max_iter, o.dense_max, o.refresh_rate, o.krylov_dim, o.krylov_restarts,
            o.krylov_rtol) == ("auto", 1e-9, 1e-12, 10, 256, 0.2, 20, 10, 1e-10)
    assert NEWTON_KINDS == ("auto", "dense", "jfnk")


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(kind="newtonish"), ValueError, "newton must be one of ['auto', 'dense', 'jfnk'], got 'newtonish'"),
    (dict(rtol=0.0), ValueError, "newton_rtol must be a positive float, got 0.0"),
    (dict(atol=-1e-3), ValueError, "newton_atol must be a positive float, got -0.001"),
    (dict(krylov_rtol=True), ValueError, "newton_krylov_rtol must be a positive float, got True"),
    (dict(rtol="1e-3"), ValueError, "newton_rtol must be a positive float, got '1e-3'"),
    (dict(atol=math.nan), ValueError, "newton_atol must be a positive float, got nan"),
    (dict(refresh_rate=0.0), ValueError, "refresh_rate must lie in (0, 1), got 0.0"),
    (dict(refresh_rate=1), ValueError, "refresh_rate must lie in (0, 1), got 1"),
    (dict(refresh_rate="0.5"), ValueError, "refresh_rate must lie in (0, 1), got '0.5'"),
    (dict(max_iter=0), ValueError, "max_iter must be >= 1, got 0"),
    (dict(dense_max=0), ValueError, "dense_max must be >= 1, got 0"),
    (dict(krylov_dim=2.0), TypeError, "krylov_dim must be an int >= 1, got float 2.0"),
    (dict(krylov_restarts=0), ValueError, "krylov_restarts must be >= 1, got 0"),
])
def test_bad_options_are_named_in_full(kwargs, error, message):
    with pytest.raises(error) as info:
        NewtonOptions(**kwargs)
    assert str(info.value) == message


def test_options_at_their_bounds_are_accepted():
    o = NewtonOptions(rtol=1, atol=1e-300, krylov_rtol=2.0, refresh_rate=0.999, max_iter=1, dense_max=1, krylov_dim=1,
                      krylov_restarts=1)
    assert o.rtol == 1 and o.refresh_rate == 0.999


def _solve_exact(a: torch.Tensor):
    return lambda rhs, x: torch.linalg.solve(a, rhs)


A = torch.tensor([[3.0, 1.0, 0.0], [1.0, 4.0, -1.0], [0.5, 0.0, 2.0]], dtype=DT)
B = torch.tensor([1.0, -2.0, 0.5], dtype=DT)


def test_an_exact_linear_solve_converges_on_the_second_iteration():
    """Iteration 1 lands on the root (its increment is large); iteration 2's increment is 0: converged, rate 0."""
    opts = NewtonOptions(rtol=1e-9, atol=1e-12)
    result = newton(lambda x: A @ x - B, _solve_exact(A), torch.zeros(3, dtype=DT), opts)
    assert isinstance(result, NewtonResult)
    assert (result.converged, result.iterations) == (True, 2) and 0 <= result.rate < 1e-12
    torch.testing.assert_close(result.x, torch.linalg.solve(A, B), rtol=1e-15, atol=1e-15)


def _stepper(steps):
    """A 'solve' returning the given increments in turn (whatever the residual)."""
    it = iter(steps)
    return lambda rhs, x: next(it)


def _opts(**kwargs):
    return NewtonOptions(**dict(dict(rtol=0.5, atol=0.25), **kwargs))


def test_the_scaled_increment_test_and_the_contraction_rate():
    """The norm is rms(dx / (atol + rtol |x|)) at the new x (rtol = 1/2, atol = 1/4): one that grows ends the
    iteration, its ratio the rate; a norm of exactly 1 converges, one a hair above runs out of iterations."""
    z = torch.zeros(1, dtype=DT)
    steps = [torch.tensor([1.0], dtype=DT), torch.tensor([-1.0], dtype=DT), torch.tensor([0.5], dtype=DT),
             torch.tensor([-0.5], dtype=DT)]
    # x: 1, then 0: norms 1 / (0.25 + 0.5) = 4/3, then 1 / 0.25 = 4 (grew: stalled, rate 3)
    r = newton(lambda x: x, _stepper(steps), z, _opts())
    assert (r.converged, r.iterations) == (False, 2) and r.rate == pytest.approx(3.0, rel=1e-15)
    # dx = 0.5 from 0: 0.5 / (0.25 + 0.25) = 1
    r = newton(lambda x: x, _stepper([torch.tensor([0.5], dtype=DT)]), z, _opts())
    assert (r.converged, r.iterations, r.rate) == (True, 1, 0.0)
    r = newton(lambda x: x, _stepper([torch.tensor([0.5 + 1e-9], dtype=DT), torch.tensor([0.0], dtype=DT)]), z,
               _opts(max_iter=1))
    assert (r.converged, r.iterations, r.rate) == (False, 1, 0.0)


def test_out_of_iterations_reports_the_worst_rate():
    """Increments 8, 4, 2 from 0 with rtol = 1e-3, atol = 1/4: norms 8/0.258, 4/0.262, 2/0.264, all above 1 and
    shrinking: after max_iter = 3 not converged, rate the larger of the two ratios."""
    steps = [torch.tensor([8.0], dtype=DT), torch.tensor([4.0], dtype=DT), torch.tensor([2.0], dtype=DT)]
    r = newton(lambda x: x, _stepper(steps), torch.zeros(1, dtype=DT), NewtonOptions(rtol=1e-3, atol=0.25, max_iter=3))
    norms = [8 / (0.25 + 1e-3 * 8), 4 / (0.25 + 1e-3 * 12), 2 / (0.25 + 1e-3 * 14)]
    assert (r.converged, r.iterations) == (False, 3)
    assert r.rate == pytest.approx(max(norms[1] / norms[0], norms[2] / norms[1]), rel=1e-14)
    assert torch.equal(r.x, torch.tensor([14.0], dtype=DT))


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_increment_fails_at_once(bad):
    r = newton(lambda x: x, _stepper([torch.tensor([bad], dtype=DT)]), torch.zeros(1, dtype=DT), _opts())
    assert (r.converged, r.iterations, r.rate) == (False, 1, math.inf)


def test_the_tolerances_are_floored_at_ten_epsilons():
    """rtol below 10 eps is raised to it, and atol to 10 eps max|x| (float64: eps = 2^-52): an increment c 10 eps
    at x = 1 has the norm c / 2, converged for c = 1.9, not for c = 2.1."""
    eps = 10 * 2.0 ** -52
    tiny = NewtonOptions(rtol=1e-30, atol=1e-300, max_iter=1)
    for c, converged in ((1.9, True), (2.1, False)):
        r = newton(lambda x: x, _stepper([torch.tensor([c * eps], dtype=DT)]), torch.ones(1, dtype=DT), tiny)
        assert r.converged == converged, c
    # a zero entry next to 1000: its atol is 10 eps * 1000; rms over the two entries
    x0 = torch.tensor([1000.0, 0.0], dtype=DT)
    for c, converged in ((1.2, True), (1.6, False)):  # rms c / sqrt(2)
        r = newton(lambda x: x, _stepper([torch.tensor([0.0, c * eps * 1000], dtype=DT)]), x0, tiny)
        assert r.converged == converged, c
    # above the floors the options rule: atol = 1 at x = 0
    r = newton(lambda x: x, _stepper([torch.tensor([0.9], dtype=DT)]), torch.zeros(1, dtype=DT),
               NewtonOptions(rtol=1e-30, atol=1.0, max_iter=1))
    assert r.converged


def test_jacobian_jvp_and_vjp_of_a_linear_map_are_exact():
    fn = lambda x: A @ x + torch.sin(torch.zeros_like(x))  # noqa: E731
    x = torch.tensor([0.3, -1.0, 2.0], dtype=DT, requires_grad=True)
    jac = dense_jacobian(fn, x)
    assert torch.equal(jac, A) and not jac.requires_grad
    v = torch.tensor([1.0, 2.0, -0.5], dtype=DT)
    assert torch.allclose(jvp(fn, x, v), A @ v, rtol=0, atol=1e-15)
    assert torch.allclose(vjp(fn, x, v), v @ A, rtol=0, atol=1e-15)
    # nonlinear: J of x^3 is diag(3 x^2)
    cube = lambda x: x ** 3  # noqa: E731
    xd = x.detach()
    assert torch.allclose(dense_jacobian(cube, xd), torch.diag(3 * xd ** 2), rtol=1e-15, atol=0)
    assert torch.allclose(jvp(cube, xd, v), 3 * xd ** 2 * v, rtol=1e-15, atol=0)
    with torch.no_grad():  # both work inside no_grad (the stage solver's mode)
        assert torch.allclose(jvp(cube, xd, v), 3 * xd ** 2 * v, rtol=1e-15, atol=0)
        assert torch.allclose(vjp(cube, xd, v), 3 * xd ** 2 * v, rtol=1e-15, atol=0)


def _system(n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(n, n, generator=g, dtype=DT)
    a = m @ m.T / n + torch.eye(n, dtype=DT)  # symmetric positive definite, well conditioned
    a = a + 0.3 * torch.triu(torch.randn(n, n, generator=g, dtype=DT), 1)  # and not symmetric
    return a, torch.randn(n, generator=g, dtype=DT)


def test_gmres_with_a_full_krylov_space_is_a_direct_solve():
    a, b = _system()
    x, ok = gmres(lambda v: a @ v, b, restart=8, max_restarts=1, rtol=1e-12)
    assert ok
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-10, atol=1e-12)


def test_gmres_restarts_until_the_residual_is_small_and_says_when_it_is_not():
    a, b = _system()
    x, ok = gmres(lambda v: a @ v, b, restart=3, max_restarts=60, rtol=1e-10)
    assert ok and float((b - a @ x).norm()) <= 1e-10 * float(b.norm()) * 10
    x1, ok1 = gmres(lambda v: a @ v, b, restart=2, max_restarts=1, rtol=1e-10)
    assert not ok1 and float((b - a @ x1).norm()) < float(b.norm())  # one cycle reduced the residual
    # the residual after the cycles is what the flag reports: 10 rtol ||b||
    res = float((b - a @ x1).norm()) / float(b.norm())
    _, ok_loose = gmres(lambda v: a @ v, b, restart=2, max_restarts=1, rtol=res / 10 * 1.01)
    assert ok_loose


def test_gmres_of_zero_is_zero_without_a_product():
    calls = []
    x, ok = gmres(lambda v: calls.append(v) or v, torch.zeros(4, dtype=DT), restart=3, max_restarts=2, rtol=1e-10)
    assert ok and torch.equal(x, torch.zeros(4, dtype=DT)) and calls == []


def test_gmres_stops_at_a_lucky_breakdown():
    """b an eigenvector of A: the Krylov space is one-dimensional and x = b / lambda at once."""
    a = torch.diag(torch.tensor([2.0, 3.0, 5.0], dtype=DT))
    b = torch.tensor([0.0, 6.0, 0.0], dtype=DT)
    x, ok = gmres(lambda v: a @ v, b, restart=3, max_restarts=1, rtol=1e-14)
    assert ok and torch.allclose(x, torch.tensor([0.0, 2.0, 0.0], dtype=DT), rtol=0, atol=1e-15)


def test_krylov_solve_is_differentiable_in_b_through_the_transpose():
    a, b = _system(6, seed=1)
    opts = NewtonOptions(krylov_dim=6, krylov_restarts=3, krylov_rtol=1e-13)
    b1 = b.clone().requires_grad_()
    x = KrylovSolve.apply(b1, lambda v: a @ v, lambda v: a.T @ v, opts)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-10, atol=1e-12)
    g = torch.tensor([1.0, 0.0, -1.0, 2.0, 0.5, 0.0], dtype=DT)
    (grad,) = torch.autograd.grad(x, b1, g)
    torch.testing.assert_close(grad, torch.linalg.solve(a.T, g), rtol=1e-10, atol=1e-12)


def test_newton_on_a_scalar_root_uses_the_current_iterate():
    """x^2 = 2 with the exact derivative at the iterate: Newton's quadratic convergence to sqrt(2)."""
    r = newton(lambda x: x * x - 2, lambda rhs, x: rhs / (2 * x), torch.ones(1, dtype=DT),
               NewtonOptions(rtol=1e-14, atol=1e-14))
    assert r.converged and 3 <= r.iterations <= 7 and r.rate < 1
    torch.testing.assert_close(r.x, torch.full((1,), math.sqrt(2), dtype=DT), rtol=1e-15, atol=0)


def test_a_failed_iteration_returns_its_last_iterate():
    z = torch.zeros(1, dtype=DT)
    r = newton(lambda x: x, _stepper([torch.tensor([math.nan], dtype=DT)]), z, _opts())
    assert r.x is not None and torch.isnan(r.x).all()
    r = newton(lambda x: x, _stepper([torch.tensor([1.0], dtype=DT), torch.tensor([-1.0], dtype=DT)]), z, _opts())
    assert not r.converged and torch.equal(r.x, z)


def test_a_norm_that_does_not_shrink_is_a_stall():
    """x: -1 -> 1 -> -1, increments 2 at |x| = 1: equal norms 2 / 0.75 > 1: stalled on the second iteration."""
    steps = [torch.tensor([2.0], dtype=DT), torch.tensor([-2.0], dtype=DT), torch.tensor([2.0], dtype=DT)]
    r = newton(lambda x: x, _stepper(steps), torch.full((1,), -1.0, dtype=DT), _opts(max_iter=3))
    assert (r.converged, r.iterations, r.rate) == (False, 2, 1.0)


def test_gmres_returns_the_zero_start_when_it_already_meets_rtol():
    """||b - A 0|| = ||b|| = 2 <= rtol ||b|| for rtol = 1: x = 0 (a b of norm 2 tells rtol ||b|| from rtol / ||b||)."""
    a, _ = _system()
    b = torch.zeros(8, dtype=DT)
    b[0] = 2.0
    x, ok = gmres(lambda v: a @ v, b, restart=4, max_restarts=2, rtol=1.0)
    assert ok and torch.equal(x, torch.zeros(8, dtype=DT))


def test_gmres_stops_a_cycle_once_the_residual_estimate_meets_rtol():
    """A = diag(1..6), b of norm 100: the Arnoldi loop ends at the first k whose residual estimate is at most
    rtol ||b||; the products: one for r, k + 1 in the loop, one for the final check."""
    a = torch.diag(torch.arange(1.0, 7.0, dtype=DT))
    b = torch.full((6,), 100 / math.sqrt(6), dtype=DT)
    counts = []
    for rtol in (1e-1, 1e-3, 1e-12):
        calls = []
        x, ok = gmres(lambda v: calls.append(1) or a @ v, b, restart=6, max_restarts=1, rtol=rtol)
        assert ok and float((b - a @ x).norm()) <= rtol * 100 * 10
        counts.append(len(calls))
    # the residual of the best k-dimensional Krylov fit, for comparing with rtol ||b||
    residuals = []
    for k in range(1, 7):
        kry = torch.stack([torch.linalg.matrix_power(a, j) @ b for j in range(k)], 1)
        coef = torch.linalg.lstsq(a @ kry, b[:, None]).solution
        residuals.append(float((b[:, None] - a @ kry @ coef).norm()))
    want = [1 + next(k for k in range(1, 7) if residuals[k - 1] <= rtol * 100 or k == 6) + 1
            for rtol in (1e-1, 1e-3, 1e-12)]
    assert counts == want and counts[0] < counts[-1]


def test_gmres_flags_success_up_to_ten_times_rtol_inclusive():
    """One cycle of GMRES(2) leaves a residual res: an rtol with 10 rtol ||b|| = res / 1.05 fails the flag (the
    same x); an exact solve (residual 0) passes even with rtol = 0."""
    a, b = _system()
    x1, _ = gmres(lambda v: a @ v, b, restart=2, max_restarts=1, rtol=1e-14)
    res, b_norm = float((b - a @ x1).norm()), float(b.norm())
    x2, ok = gmres(lambda v: a @ v, b, restart=2, max_restarts=1, rtol=res / (10.5 * b_norm))
    assert torch.equal(x2, x1) and not ok
    _, ok = gmres(lambda v: a @ v, b, restart=2, max_restarts=1, rtol=res / (9.5 * b_norm))
    assert ok
    e0 = torch.zeros(5, dtype=DT)
    e0[0] = 2.0
    x, ok = gmres(lambda v: 2 * v, e0, restart=3, max_restarts=1, rtol=0.0)
    assert ok and torch.equal(x, e0 / 2)


@pytest.mark.parametrize("scale", [1e-20, 1.0, 1e10, 1e16])
def test_gmres_is_linear_in_b(scale):
    """x(c b) = c x(b) with the same products, whatever c: the breakdown test is relative to ||A v||, not to
    ||b|| (a b of norm 1e16 once ended every cycle at its first direction)."""
    a = torch.diag(torch.arange(1.0, 7.0, dtype=DT))
    b = torch.tensor([1.0, -2.0, 0.5, 3.0, 1.0, -1.0], dtype=DT)
    calls = []
    x, ok = gmres(lambda v: calls.append(1) or a @ v, scale * b, restart=6, max_restarts=3, rtol=1e-12)
    assert ok and len(calls) == 1 + 6 + 1
    torch.testing.assert_close(x / scale, torch.linalg.solve(a, b), rtol=1e-13, atol=0)


@pytest.mark.parametrize("scale", [1.0, 1e8])
def test_gmres_ends_a_cycle_at_a_breakdown_relative_to_the_operator(scale):
    """b in the span of two eigenvectors: the Krylov space has dimension 2, the third direction is rounding
    noise (<= 1e-14 ||A v||), so the cycle ends after two products although rtol = 1e-30 is out of reach."""
    a = scale * torch.diag(torch.arange(1.0, 7.0, dtype=DT))
    b = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=DT)
    calls = []
    x, ok = gmres(lambda v: calls.append(1) or a @ v, b, restart=6, max_restarts=1, rtol=1e-30)
    assert len(calls) == 1 + 2 + 1 and not ok
    torch.testing.assert_close(x * scale, torch.tensor([1.0, 0.5, 0.0, 0.0, 0.0, 0.0], dtype=DT), rtol=1e-14,
                               atol=1e-15)
