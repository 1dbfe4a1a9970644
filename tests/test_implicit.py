"""Implicit Runge-Kutta methods: tableaux, convergence orders, stiff problems against scipy's Radau,
Newton's iteration (failure, Jacobian reuse, JFNK), and exact gradients in all three modes."""
import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import contdepth as cd
from contdepth.errors import SolverError
from contdepth.solvers import IMPLICIT_STEPPERS, IMPLICIT_TABLEAUX, ImplicitRungeKutta, ImplicitTableau, Kvaerno5
from contdepth.terms import FuncTerm

DT = torch.float64


class Robertson(torch.nn.Module):
    """Robertson's chemical kinetics: y1' = -k1 y1 + k2 y2 y3, y3' = k3 y2^2, y1 + y2 + y3 = 1."""

    def __init__(self, k=(0.04, 1e4, 3e7)):
        super().__init__()
        self.k = torch.nn.Parameter(torch.tensor(k, dtype=DT))

    def forward(self, t, y):
        k1, k2, k3 = self.k
        a, b, c = y[..., 0], y[..., 1], y[..., 2]
        return torch.stack([-k1 * a + k2 * b * c, k1 * a - k2 * b * c - k3 * b * b, k3 * b * b], -1)


def _robertson_scipy(t1, k=(0.04, 1e4, 3e7)):
    k1, k2, k3 = k
    f = lambda t, y: [-k1 * y[0] + k2 * y[1] * y[2], k1 * y[0] - k2 * y[1] * y[2] - k3 * y[1] ** 2, k3 * y[1] ** 2]
    return solve_ivp(f, (0, t1), [1.0, 0.0, 0.0], method="Radau", rtol=1e-11, atol=1e-14).y[:, -1]


Y0 = torch.tensor([1.0, 0.0, 0.0], dtype=DT)


# -- tableaux -------------------------------------------------------------------------------------

def test_every_method_is_registered_with_its_tableau():
    assert set(IMPLICIT_STEPPERS) == set(IMPLICIT_TABLEAUX) == {
        "implicit_euler", "implicit_midpoint", "trapezoid", "radauIIA3", "radauIIA5", "gl4", "gl6", "sdirk2",
        "trbdf2", "kvaerno3", "kvaerno5"}
    for name in IMPLICIT_STEPPERS:
        stepper = cd.solvers.get_stepper(name)
        assert stepper.name == name and stepper.tableau is IMPLICIT_TABLEAUX[name]
        assert stepper.adaptive == (name in ("kvaerno3", "kvaerno5"))


def test_tableau_structure_claims_match_the_coefficients():
    dirk = {"implicit_euler", "implicit_midpoint", "trapezoid", "sdirk2", "trbdf2", "kvaerno3", "kvaerno5"}
    accurate = {"implicit_euler", "trapezoid", "radauIIA3", "radauIIA5", "sdirk2", "trbdf2", "kvaerno3", "kvaerno5"}
    for name, tab in IMPLICIT_TABLEAUX.items():
        assert tab.diagonally_implicit == (name in dirk)
        assert tab.stiffly_accurate == (name in accurate)
        a = np.array(tab.a)
        np.testing.assert_allclose(a.sum(1), tab.c, atol=1e-12)


@pytest.mark.parametrize("change,message", [
    (dict(c=(0.9,)), "row 0 of A sums"),
    (dict(b=(0.9,), a=((0.9,),), c=(0.9,)), "b must sum to 1"),
    (dict(stiffly_accurate=False), "claims stiffly_accurate=False"),
    (dict(diagonally_implicit=False), "claims diagonally_implicit=False"),
    (dict(order=2), "order 2 needs"),
])
def test_a_wrong_tableau_fails_on_construction(change, message):
    spec = dict(name="bad", order=1, c=(1.0,), a=((1.0,),), b=(1.0,), diagonally_implicit=True, stiffly_accurate=True)
    spec.update(change)
    with pytest.raises(ValueError, match=message):
        ImplicitTableau(**spec)


def test_kvaerno_error_weights_are_the_difference_of_the_last_two_rows():
    for name in ("kvaerno3", "kvaerno5"):
        tab = IMPLICIT_TABLEAUX[name]
        np.testing.assert_allclose(tab.b_error, np.array(tab.a[-1]) - np.array(tab.a[-2]), atol=1e-15)


# -- convergence orders ---------------------------------------------------------------------------

def _march(stepper, n, t1=2.0):
    """Integrate y' = cos(t) y (y(0) = 1; y = exp(sin t)) in n equal steps by hand: |error at t1|."""
    y = torch.tensor([1.0], dtype=DT)
    term = FuncTerm(lambda t, y: torch.cos(t) * y, y)
    state = stepper.init(term, 0.0, y, 1)
    h = t1 / n
    for j in range(n):
        y, state, _, _ = stepper.step(term, j * h, h, y, state)
    return abs(float(y) - math.exp(math.sin(t1)))


@pytest.mark.parametrize("name", sorted(IMPLICIT_STEPPERS))
def test_fitted_convergence_order_matches_the_declared_order(name):
    stepper = IMPLICIT_STEPPERS[name](newton_rtol=1e-15, newton_atol=1e-15, newton_max_iter=30)
    ns = [4, 8, 16] if stepper.order >= 5 else [8, 16, 32]
    errors = [_march(stepper, n) for n in ns]
    slope = -np.polyfit(np.log(ns), np.log(errors), 1)[0]
    assert abs(slope - stepper.order) < 0.35, (name, slope, errors)


# -- stiff problems -------------------------------------------------------------------------------

def test_robertson_kvaerno5_matches_scipy_radau_with_few_steps_and_reused_jacobians():
    with torch.no_grad():
        sol = cd.solve(Robertson(), Y0, t0=0.0, t1=40.0, method="kvaerno5", rtol=1e-7, atol=1e-10)
    ref = _robertson_scipy(40.0)
    np.testing.assert_allclose(sol.y1.numpy(), ref, rtol=1e-4)
    counts = sol.stats.forward
    assert counts.accepted_steps < 2000
    # Jacobian reuse: fewer Jacobians than steps, many Newton solves per Jacobian
    assert 1 <= counts.jacobians < counts.accepted_steps
    assert counts.linear_solves > 20 * counts.jacobians


def test_jacobians_are_reused_across_steps_until_newton_slows_down():
    a = torch.tensor([[-1.0, 0.0], [1.0, -1000.0]], dtype=DT)
    y0 = torch.tensor([1.0, 0.0], dtype=DT)
    # a nonlinear, slowly varying Jacobian: reused for many steps, refreshed a few times
    f = lambda t, y: a @ y + torch.stack([0.0 * y[0], 50 * y[0] ** 2])
    sol = cd.solve(f, y0, t0=0.0, t1=5.0, method="sdirk2", steps=200)
    assert 1 < sol.stats.forward.jacobians < 20
    # refresh_rate close to 1 keeps the first Jacobian for the whole solve
    sol = cd.solve(f, y0, t0=0.0, t1=5.0, method=IMPLICIT_STEPPERS["sdirk2"](refresh_rate=0.99), steps=200)
    assert sol.stats.forward.jacobians == 1


def test_van_der_pol_mu_1000_kvaerno5_matches_scipy_radau():
    mu = 1000.0
    ref = solve_ivp(lambda t, y: [y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]], (0, 1500), [2.0, 0.0], method="Radau",
                    rtol=1e-10, atol=1e-12).y[:, -1]
    with torch.no_grad():
        sol = cd.solve(lambda t, y: torch.stack([y[1], mu * (1 - y[0] ** 2) * y[1] - y[0]]),
                       torch.tensor([2.0, 0.0], dtype=DT), t0=0.0, t1=1500.0, method="kvaerno5", rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(sol.y1.numpy(), ref, atol=1e-3, rtol=0)
    assert sol.stats.forward.accepted_steps < 5000


def test_an_explicit_method_counts_no_jacobians_or_linear_solves():
    sol = cd.solve(lambda t, y: -y, Y0, t0=0.0, t1=1.0, method="rk4", steps=4)
    assert sol.stats.forward.jacobians == 0 and sol.stats.forward.linear_solves == 0


def test_a_linear_problem_needs_one_jacobian():
    a = torch.tensor([[-1.0, 0.0], [1.0, -1000.0]], dtype=DT)
    y0 = torch.tensor([1.0, 0.0], dtype=DT)
    sol = cd.solve(lambda t, y: a @ y, y0, t0=0.0, t1=1.0, method="radauIIA5", steps=10)
    assert sol.stats.forward.jacobians == 1
    exact = torch.linalg.matrix_exp(a) @ y0
    torch.testing.assert_close(sol.y1, exact, rtol=1e-5, atol=0)


def test_a_batched_state_solves_each_row_as_alone():
    y0 = torch.tensor([[1.0, 0.0, 0.0], [0.5, 0.0, 0.5]], dtype=DT)
    with torch.no_grad():
        both = cd.odesolve(Robertson(), y0, t0=0.0, t1=1.0, method="sdirk2", steps=40)
        rows = [cd.odesolve(Robertson(), y0[i], t0=0.0, t1=1.0, method="sdirk2", steps=40) for i in range(2)]
    torch.testing.assert_close(both, torch.stack(rows), rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("name", ["kvaerno5", "radauIIA5"])
def test_jfnk_agrees_with_dense_newton(name):
    kw = dict(rtol=1e-6, atol=1e-10) if name == "kvaerno5" else dict(steps=25)
    out = {}
    for kind in ("dense", "jfnk"):
        stepper = IMPLICIT_STEPPERS[name](newton=kind)
        with torch.no_grad():
            sol = cd.solve(Robertson(), Y0, t0=0.0, t1=0.5, method=stepper, **kw)
        out[kind] = sol
    assert out["jfnk"].stats.forward.jacobians == 0 and out["dense"].stats.forward.jacobians >= 1
    torch.testing.assert_close(out["jfnk"].y1, out["dense"].y1, rtol=1e-6, atol=1e-12)


# -- Newton's failure -----------------------------------------------------------------------------

def test_a_fixed_step_without_a_stage_solution_is_a_solver_error():
    # y1 = 1 + h y1^2 has no real root for h = 1
    with pytest.raises(SolverError, match=r"Newton's iteration .*implicit_euler.* t=0.0 with h=1.0.*more steps"):
        cd.solve(lambda t, y: y * y, torch.ones(1, dtype=DT), t0=0.0, t1=1.0, method="implicit_euler", steps=1)


def test_an_adaptive_solve_shrinks_h_after_a_newton_failure_then_gives_up_clearly():
    # f is NaN after t = 0: every implicit stage fails, and after max_failures rejections the solve stops
    f = lambda t, y: torch.where(t > 0, torch.full_like(y, math.nan), -y)
    with pytest.raises(SolverError, match=r"Newton's iteration .*kvaerno3.* t=0\.0 with h=.*smaller first_step"):
        cd.solve(f, torch.ones(1, dtype=DT), t0=0.0, t1=1.0, method=IMPLICIT_STEPPERS["kvaerno3"](max_failures=4), rtol=1e-6, atol=1e-9)
    # a step that fails is retried shorter (rejected), not an error at once
    sol = cd.solve(lambda t, y: -y * y, torch.full((1,), 50.0, dtype=DT), t0=0.0, t1=1.0,
                   method=IMPLICIT_STEPPERS["kvaerno3"](newton_max_iter=2), rtol=1e-6, atol=1e-9,
                   options={"first_step": 0.5})
    assert sol.stats.forward.rejected_steps >= 1
    torch.testing.assert_close(sol.y1, torch.tensor([50 / 51], dtype=DT), rtol=1e-5, atol=0)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(newton="newtonish"), ValueError, "newton must be one of"),
    (dict(newton_rtol=0.0), ValueError, "newton_rtol must be a positive float"),
    (dict(newton_max_iter=0), ValueError, "max_iter must be >= 1"),
    (dict(refresh_rate=1.5), ValueError, "refresh_rate must lie in"),
    (dict(max_failures=2.5), TypeError, "max_failures must be an int"),
])
def test_bad_newton_options_are_early_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        Kvaerno5(**kwargs)


def test_an_explicit_tableau_is_refused():
    with pytest.raises(TypeError, match="tableau must be an ImplicitTableau"):
        ImplicitRungeKutta(cd.solvers.RK4)


# -- gradients ------------------------------------------------------------------------------------

def _y3(k1, method, **kw):
    with torch.no_grad():
        return float(cd.solve(Robertson((k1, 1e4, 3e7)), Y0, t0=0.0, t1=10.0, method=method, **kw).y1[2])


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
def test_robertson_gradient_matches_central_differences(gradient):
    kw = dict(rtol=1e-8, atol=1e-12)
    eps = 1e-6
    fd = (_y3(0.04 + eps, "kvaerno5", **kw) - _y3(0.04 - eps, "kvaerno5", **kw)) / (2 * eps)
    model = Robertson()
    cd.solve(model, Y0, t0=0.0, t1=10.0, method="kvaerno5", gradient=gradient, **kw).y1[2].backward()
    assert abs(float(model.k.grad[0]) / fd - 1) < 1e-4


def test_checkpoint_replays_the_forward_steps_exactly():
    grads = {}
    for gradient in ("backprop", "checkpoint"):
        model = Robertson()
        y0 = Y0.clone().requires_grad_()
        sol = cd.solve(model, y0, t0=0.0, t1=1.0, method=IMPLICIT_STEPPERS["radauIIA5"](newton_max_iter=40), steps=30,
                       gradient=gradient)
        sol.y1.sum().backward()
        grads[gradient] = (sol.y1.detach(), model.k.grad.clone(), y0.grad.clone())
    for a, b in zip(grads["backprop"], grads["checkpoint"]):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name,newton", [("trbdf2", "dense"), ("gl4", "dense"), ("sdirk2", "jfnk"),
                                         ("radauIIA3", "jfnk")])
def test_backprop_through_the_implicit_function_theorem_is_exact(name, newton):
    """The discrete gradient (of the solver's own output) equals its central difference."""
    theta0 = torch.tensor([0.7, -1.3], dtype=DT)
    y0 = torch.tensor([1.0, 0.5], dtype=DT)

    def run(theta):
        f = lambda t, y: torch.stack([theta[0] * y[1] - 20 * y[0] ** 3, theta[1] * torch.sin(y[0]) - 5 * y[1] * t])
        stepper = IMPLICIT_STEPPERS[name](newton=newton, newton_rtol=1e-13, newton_atol=1e-15, newton_max_iter=50)
        return cd.solve(f, y0, t0=0.0, t1=1.0, method=stepper, steps=6).y1

    theta = theta0.clone().requires_grad_()
    run(theta).sum().backward()
    eps = 1e-6
    for i in range(2):
        d = torch.zeros(2, dtype=DT)
        d[i] = eps
        with torch.no_grad():
            fd = float((run(theta0 + d).sum() - run(theta0 - d).sum()) / (2 * eps))
        assert abs(float(theta.grad[i]) - fd) < 1e-6 * max(1.0, abs(fd)), (i, float(theta.grad[i]), fd)


@pytest.mark.parametrize("name", ["kvaerno5", "radauIIA5"])
def test_adjoint_with_an_implicit_method_matches_central_differences(name):
    """The continuous adjoint marches (y, a, g) backward with the implicit method (Newton on the
    coupled (y, a) by torch.func through -a^T df/dy)."""
    kw = dict(rtol=1e-10, atol=1e-12) if name == "kvaerno5" else dict(steps=200)

    class Field(torch.nn.Module):
        def __init__(self, k):
            super().__init__()
            self.k = torch.nn.Parameter(torch.tensor(k, dtype=DT))

        def forward(self, t, y):
            return torch.stack([-self.k * y[0] * y[1], y[0] - y[1] ** 3])

    y0 = torch.tensor([1.0, 0.2], dtype=DT)

    def value(k):
        with torch.no_grad():
            return float(cd.solve(Field(k), y0, t0=0.0, t1=2.0, method=name, **kw).y1[0])

    eps = 1e-6
    fd = (value(1.5 + eps) - value(1.5 - eps)) / (2 * eps)
    model = Field(1.5)
    y0g = y0.clone().requires_grad_()
    sol = cd.solve(model, y0g, t0=0.0, t1=2.0, method=name, gradient="adjoint", **kw)
    sol.y1[0].backward()
    assert abs(float(model.k.grad) / fd - 1) < 1e-4
    assert sol.stats.backward.jacobians >= 1 and sol.stats.backward.linear_solves >= 1


# -- the linear algebra ---------------------------------------------------------------------------

def test_restarted_gmres_solves_a_nonsymmetric_system():
    from contdepth.solvers.newton import gmres
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(30, 30, generator=gen, dtype=DT) + 8 * torch.eye(30, dtype=DT)
    b = torch.randn(30, generator=gen, dtype=DT)
    x, ok = gmres(lambda v: a @ v, b, restart=5, max_restarts=60, rtol=1e-12)  # restarts needed
    assert ok
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-9, atol=1e-11)
    _, ok = gmres(lambda v: a @ v, b, restart=2, max_restarts=1, rtol=1e-12)  # too few iterations
    assert not ok


def test_krylov_solve_is_differentiable_in_its_right_hand_side():
    from contdepth.solvers.newton import KrylovSolve, NewtonOptions
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(6, 6, generator=gen, dtype=DT) + 4 * torch.eye(6, dtype=DT)
    b = torch.randn(6, generator=gen, dtype=DT, requires_grad=True)
    opts = NewtonOptions(krylov_rtol=1e-13)
    assert torch.autograd.gradcheck(lambda r: KrylovSolve.apply(r, lambda v: a @ v, lambda w: a.T @ w, opts), (b,))



def test_float32_adjoint_of_implicit_euler_converges_to_rounding():
    """torchdiffeq's TestCallbacks.test_steps case (a float32 tanh net, implicit Euler, h = 0.1,
    adjoint): Newton's increments on the adjoint state stop at the rounding of its largest entry,
    which a test on atol + rtol |x| alone never accepted for an entry near zero (a SolverError)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 10), torch.nn.Tanh(), torch.nn.Linear(10, 2), torch.nn.Tanh())

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, t, x):
            return self.net(x)

    x0 = torch.tensor([1.0, 2.0], requires_grad=True)
    cd.odeint_adjoint(Field(), x0, torch.tensor([0.0, 1.0]), method="implicit_euler",
                      options=dict(step_size=0.1)).sum().backward()
    x0_ref = x0.detach().clone().requires_grad_()
    cd.odeint(Field(), x0_ref, torch.tensor([0.0, 1.0]), method="implicit_euler",
              options=dict(step_size=0.1)).sum().backward()
    torch.testing.assert_close(x0.grad, x0_ref.grad, rtol=0.05, atol=1e-3)
