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
    """x stays near 0 and |dx| halves: norms rms(dx / (atol + rtol |x|)) with atol = 1/4 against |x| ~ 0."""
    z = torch.zeros(1, dtype=DT)
    steps = [torch.tensor([1.0], dtype=DT), torch.tensor([-1.0], dtype=DT), torch.tensor([0.5], dtype=DT),
             torch.tensor([-0.5], dtype=DT)]
    # x: 1, 0, 0.5, 0: norms 1/(0.25 + 0.5) = 4/3, 1/0.25 = 4 (grew: stalled)
    r = newton(lambda x: x, _stepper(steps), z, _opts())
    assert (r.converged, r.iterations) == (False, 2) and r.rate == pytest.approx(3.0, rel=1e-15)
    # a norm exactly 1 converges: dx = 0.25 at x = 0 -> 0.25: 0.25 / (0.25 + 0.125) < 1; dx = 0.5 at x = 0 -> 0.5:
    # 0.5 / (0.25 + 0.25) = 1
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
