"""The hand-written gradient methods' contracts, each checked where a planted fault would slip
through the larger tests: the missing-parameter check on a one-step solve, the backward pass's
step statistics, and errors that name the stepper. Float64."""
import pytest
import torch

import contdepth as cd
from contdepth.solvers import Leapfrog

DT = torch.float64


def _k_after_half():
    """f = -y for t <= 0.5, -k y after: the probe f(t0, y0) cannot see k."""
    k = torch.tensor(0.5, dtype=DT, requires_grad=True)
    return k, (lambda t, y: -y * (k if t > 0.5 else 1.0))


@pytest.mark.parametrize("gradient", ["checkpoint", "adjoint"])
def test_a_one_step_solve_still_checks_for_missed_parameters(gradient):
    """One RK4 step from 0 to 1 evaluates f at t = 1, where k is used: the first (and only)
    backward step must find it and name adjoint_params."""
    k, func = _k_after_half()
    y1 = cd.solve(func, torch.ones(3, dtype=DT, requires_grad=True), t0=0.0, t1=1.0, method="rk4", steps=1,
                  gradient=gradient).y1
    with pytest.raises(RuntimeError, match="adjoint_params"):
        y1.sum().backward()


def test_a_one_step_reversible_solve_still_checks_for_missed_parameters():
    k = torch.tensor(0.5, dtype=DT, requires_grad=True)
    func = lambda t, s: (s[1], -s[0] * (k if t > 0.5 else 1.0))
    q0 = torch.ones(3, dtype=DT, requires_grad=True)
    q1, _ = cd.solve(func, (q0, torch.zeros(3, dtype=DT)), t0=0.0, t1=1.0, method="leapfrog", steps=1,
                     gradient="reversible").y1
    with pytest.raises(RuntimeError, match="adjoint_params"):
        q1.sum().backward()


@pytest.mark.parametrize("gradient", ["checkpoint", "reversible"])
def test_the_backward_pass_counts_one_step_per_forward_step(gradient):
    w = torch.tensor(0.9, dtype=DT, requires_grad=True)
    func = lambda t, s: (s[1], -w * s[0])
    q0 = torch.ones(2, dtype=DT, requires_grad=True)
    sol = cd.solve(func, (q0, torch.zeros(2, dtype=DT)), t0=0.0, t1=1.0, method="leapfrog", steps=7,
                   gradient=gradient)
    sol.y1[0].sum().backward()
    assert sol.stats.forward.accepted_steps == 7
    assert sol.stats.backward.accepted_steps == 7


def test_reversible_refuses_a_stepper_object_naming_its_type():
    class Plain:  # a stepper object with no name and no inverse
        order, adaptive, fsal = 1, False, False

        def init(self, term, t0, y0, direction):
            return ()

        def step(self, term, t, h, y, state):
            return y, (), None, None

        def interpolate(self, y0, y1, dense, h, s):
            return y1

    with pytest.raises(ValueError, match=r"^gradient='reversible' needs a reversible method \(leapfrog, "
                                         r"symplectic_euler\), got method='Plain'$"):
        cd.solve(lambda t, y: -y, torch.ones(2, dtype=DT, requires_grad=True), t0=0.0, t1=1.0, method=Plain(),
                 steps=2, gradient="reversible")


def test_reversible_runs_with_a_leapfrog_object():
    """The refusal above is about reversibility, not about stepper objects: Leapfrog() passes."""
    q0 = torch.ones(2, dtype=DT, requires_grad=True)
    q1, _ = cd.solve(lambda t, s: (s[1], -s[0]), (q0, torch.zeros(2, dtype=DT)), t0=0.0, t1=1.0,
                     method=Leapfrog(), steps=4, gradient="reversible").y1
    (g,) = torch.autograd.grad(q1.sum(), q0)
    assert torch.isfinite(g).all()
