"""contdepth.control: the discrete maximum principle (costates, Hamiltonians, symplecticity) and E-MSA.

Oracles are independent of the code under test: autograd through ``cd.odesolve`` one step at a
time (each step a separate solve, its start state kept with ``retain_grad``), and Jacobians by
:func:`torch.func.jacrev`. float64 throughout except the E-MSA training test. The first
:mod:`torch.func` call (and the first ``torch.optim`` optimizer) imports ``torch._dynamo``, 3-6 s
once per process on the shared 2-core machine: imported at collection, so that no test's timing
carries it.
"""
import math

import pytest
import torch
import torch._dynamo  # noqa: F401 (see the module docstring)
import torch.nn.functional as F

import contdepth as cd
from contdepth.control.pontryagin import discretise
from contdepth.solvers import FIXED_STEP

METHODS = ["euler", "midpoint", "rk4"]
T = 1.5


def _problem(kind: str):
    """(field, x, loss_fn): a 3-knot field on [0, T] in float64 with a nonlinear loss."""
    if kind == "dense":
        field = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, T, n=3)).double()
        x = torch.randn(5, 3, dtype=torch.float64)
    else:
        field = cd.fields.ConvResidual(2, cd.ControlGrid(0.0, T, n=3), activation="tanh").double()
        x = torch.randn(2, 2, 4, 4, dtype=torch.float64)
    target = torch.randn_like(x)
    return field, x, lambda psi: (psi - target).pow(2).sum() + psi.sin().sum()


def _autograd_oracle(field, x, loss_fn, method, steps):
    """States psi_k, dL/dpsi_k and dL/dtheta by backward through one cd.odesolve per step."""
    times = discretise(field, method, steps).times
    states = [x.clone().requires_grad_()]
    for k in range(steps):
        states[-1].retain_grad()
        states.append(cd.odesolve(field, states[-1], t0=times[k], t1=times[k + 1], method=method, steps=1))
    states[-1].retain_grad()
    field.zero_grad()
    loss_fn(states[-1]).backward()
    return states, [s.grad for s in states], {name: getattr(field, name).grad for name in field.control_names}


def _max_diff(a, b) -> float:
    return max((u - v).abs().max().item() for u, v in zip(a, b))


@pytest.mark.parametrize("kind", ["dense", "conv"])
@pytest.mark.parametrize("method", METHODS)
def test_costates_are_autograds_state_gradients_and_theta_grads_its_parameter_gradient(method, kind):
    field, x, loss_fn = _problem(kind)
    result = cd.control.costates(field, x, loss_fn, method=method, steps=6)
    states, grads, theta_grads = _autograd_oracle(field, x, loss_fn, method, 6)
    assert len(result.states) == len(result.costates) == 7 and result.hamiltonians.shape == (6,)
    assert _max_diff(result.states, states) < 1e-12  # the discretisation of cd.solve
    assert _max_diff(result.costates, grads) < 1e-10
    for name in field.control_names:
        assert result.theta_grads[name].shape == getattr(field, name).shape
        assert (result.theta_grads[name] - theta_grads[name]).abs().max() < 1e-10
    assert result.loss.item() == pytest.approx(loss_fn(states[-1]).item(), rel=1e-14)


def test_states_are_those_of_solve_bit_for_bit():
    field, x, loss_fn = _problem("dense")
    for method in METHODS:
        result = cd.control.costates(field, x, loss_fn, method=method, steps=6)
        sol = cd.solve(field, x, method=method, steps=6, t_eval=result.ts)
        assert all(torch.equal(a, b) for a, b in zip(result.states, sol.ys))


@pytest.mark.parametrize("method", METHODS)
def test_maximum_principle_layer_map_hamiltonian(method):
    """Independent of the stage costates: with the returned psi_k and p_{k+1}, the layer-map
    Hamiltonian p_{k+1}.Phi_k(psi_k, theta) of one solver step (Li et al. 2018) has theta-gradient
    dL/dtheta_l (summed over the cell's steps), and for Euler H_k = p_{k+1}.F(psi_k, theta_k, t_k)."""
    field, x, loss_fn = _problem("dense")
    steps = 6
    result = cd.control.costates(field, x, loss_fn, method=method, steps=steps)
    _, _, theta_grads = _autograd_oracle(field, x, loss_fn, method, steps)
    field.zero_grad()
    times = result.ts.tolist()
    pairing = sum((result.costates[k + 1].detach() * cd.odesolve(field, result.states[k].detach(), t0=times[k],
                                                                   t1=times[k + 1], method=method, steps=1)).sum()
                  for k in range(steps))
    pairing.backward()
    for name in field.control_names:
        assert (getattr(field, name).grad - theta_grads[name]).abs().max() < 1e-10
    if method == "euler":
        knots = field.knot_thetas()
        direct = torch.stack([(result.costates[k + 1] * field.vector_field(result.ts[k], result.states[k],
                                                                           knots[k // 2])).sum()
                              for k in range(steps)])
        assert (direct - result.hamiltonians).abs().max() < 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_discrete_hamiltonian_converges_to_p_dot_F_at_the_methods_order(method):
    """H_k = (1/h) sum_i pbar_i.F_i is a quadrature of the continuous H = p.F (seed 002 eq. 21),
    which is constant on a control cell: H_k - p_k.F(psi_k, theta_k) = O(h^order)."""
    field = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 2.0, n=2)).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    target = torch.randn_like(x)
    loss_fn = lambda psi: 0.5 * (psi - target).pow(2).sum()
    knots = field.knot_thetas()
    errors = []
    for steps in (16, 32):
        r = cd.control.costates(field, x, loss_fn, method=method, steps=steps)
        exact = torch.stack([(r.costates[k] * field.vector_field(r.ts[k], r.states[k], knots[2 * k // steps])).sum()
                             for k in range(steps)])
        errors.append(((r.hamiltonians - exact).abs().max() / exact.abs().max()).item())
    order = FIXED_STEP[method].order
    assert math.log2(errors[0] / errors[1]) > order - 0.15
    assert errors[1] < {1: 0.03, 2: 1e-3, 4: 3e-8}[order]


def _symplectic_defect(costate_map, psi0: torch.Tensor, c: torch.Tensor) -> float:
    """max |J^T Omega J - Omega| of (psi_0, p_0) -> (psi_n, p_n), from the map (psi_0, p_n) -> (psi_n, p_0).

    With A = dpsi_n/dpsi_0, B = dp_0/dpsi_0, C = dp_0/dp_n (dpsi_n/dp_n = 0): p_n = C^-1 (p_0 - ...),
    so J = [[A, 0], [-C^-1 B, C^-1]]."""
    (a, a_c), (b, c_) = torch.func.jacrev(costate_map, argnums=(0, 1))(psi0, c)
    n = psi0.numel()
    a, a_c, b, c_ = (m.reshape(n, n) for m in (a, a_c, b, c_))
    assert a_c.abs().max() == 0
    c_inv = torch.linalg.inv(c_)
    zero, eye = torch.zeros(n, n, dtype=a.dtype), torch.eye(n, dtype=a.dtype)
    jac = torch.cat([torch.cat([a, zero], 1), torch.cat([-c_inv @ b, c_inv], 1)])
    omega = torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)])
    return (jac.T @ omega @ jac - omega).abs().max().item()


@pytest.mark.parametrize("method", METHODS)
def test_state_costate_flow_is_symplectic(method):
    """The partner scheme preserves dpsi ^ dp: J^T Omega J = Omega for one step and for all of them."""
    field = cd.fields.DenseResidual(2, cd.ControlGrid(0.0, 1.0, n=2)).double()
    psi0, c = torch.randn(2, 2, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    for steps in (2, 6):
        def costate_map(psi, p_n):
            r = cd.control.costates(field, psi, lambda y: (p_n * y).sum(), method=method, steps=steps)
            return r.states[-1], r.costates[0]

        with torch.no_grad():
            assert _symplectic_defect(costate_map, psi0, c) < 1e-10


def test_symplectic_check_fails_for_a_costate_that_is_not_the_partner():
    """Must fail: Euler for the state with the costate stepped by the adjoint equation's Jacobian at
    psi_{k+1}, the continuous adjoint integrated backward from the end state (what
    ``cd.physics.adjoint_trajectory(method="euler")`` computes, checked here), is not symplectic."""
    field = cd.fields.DenseResidual(2, cd.ControlGrid(0.0, 1.0, n=2)).double()
    psi0, c = torch.randn(2, 2, dtype=torch.float64), torch.randn(2, 2, dtype=torch.float64)
    h, knots = 0.5, field.knot_thetas()

    def costate_map(psi, p_n):
        states = [psi]
        for k in range(2):
            states.append(states[-1] + h * field.vector_field(torch.tensor(k * h), states[-1], knots[k]))
        p = p_n
        for k in reversed(range(2)):
            _, pullback = torch.func.vjp(lambda y: field.vector_field(torch.tensor(k * h), y, knots[k]), states[k + 1])
            p = p + h * pullback(p)[0]
        return states[-1], p

    with torch.no_grad():
        continuous = cd.physics.adjoint_trajectory(field, psi0, lambda y: (c * y).sum(), steps=2, method="euler")
        assert (costate_map(psi0, c)[1] - continuous.adjoints[0]).abs().max() < 1e-14
        assert _symplectic_defect(costate_map, psi0, c) > 1e-3


def test_costates_refuses_what_it_does_not_discretise():
    field, x, loss_fn = _problem("dense")
    with pytest.raises(ValueError, match=r"^steps must be a multiple of the control intervals field.grid.n = 3"):
        cd.control.costates(field, x, loss_fn, method="euler", steps=4)
    with pytest.raises(ValueError, match=r"^method must be one of"):
        cd.control.costates(field, x, loss_fn, method="dopri5", steps=3)
    with pytest.raises(ValueError, match=r"^field must have piecewise-constant theta"):
        cd.control.costates(cd.fields.DenseResidual(3, cd.ControlGrid(0.0, T, n=3, interp="linear")).double(), x,
                            loss_fn, method="euler")
    with pytest.raises(ValueError, match=r"^loss_fn must return a scalar"):
        cd.control.costates(field, x, lambda psi: psi, method="euler")
    with pytest.raises(ValueError, match=r"^x is torch.float32 .* field's parameters are torch.float64"):
        cd.control.costates(field, x.float(), loss_fn, method="euler")
    with pytest.raises(TypeError, match=r"^field must be a contdepth ControlledField"):
        cd.control.costates(torch.nn.Linear(3, 3), x, loss_fn, method="euler")
    with pytest.raises(TypeError, match=r"^steps must be an int"):
        cd.control.costates(field, x, loss_fn, method="euler", steps=3.0)


@pytest.mark.parametrize("method", ["euler", "rk4"])
def test_emsa_with_one_sgd_inner_step_is_gradient_descent(method):
    """The penalties vanish to first order at the current theta, so one inner SGD step of size lr
    is theta - lr dL/dtheta: the discrete maximum principle's gradient."""
    field, x, loss_fn = _problem("dense")
    _, _, theta_grads = _autograd_oracle(field, x, loss_fn, method, 6)
    before = {name: getattr(field, name).detach().clone() for name in field.control_names}
    opt = cd.control.EMSA(field, lr=0.3, rho=5.0, inner_steps=1, inner="sgd", method=method, steps=6)
    opt.step(x, loss_fn)
    for name in field.control_names:
        assert (getattr(field, name) - (before[name] - 0.3 * theta_grads[name])).abs().max() < 1e-12


def test_emsa_trains_lifted_circles():
    """Two circles (seed 002 sec. 5.1) lifted to R^3 by zeros, P(inner) = sigmoid(psi_3(T)):
    20 E-MSA iterations (Adam inner steps) reach >= 0.9 test accuracy (0.965 measured)."""
    X, y = cd.data.circles(200, seed=0)
    X_test, y_test = cd.data.circles(400, seed=100)
    lift = cd.lift.ZeroAugment(3)
    field = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 5.0, n=8))
    target = (y == 0).float()
    loss_fn = lambda psi: F.binary_cross_entropy_with_logits(psi[:, 2], target)
    opt = cd.control.EMSA(field, lr=0.05, rho=1.0, inner_steps=2)
    losses = [opt.step(lift(X), loss_fn).item() for _ in range(20)]
    with torch.no_grad():
        out = cd.odesolve(field, lift(X_test), method="euler")
    accuracy = ((out[:, 2] > 0) == (y_test == 0)).float().mean().item()
    assert accuracy >= 0.9
    assert losses[-1] < 0.5 * losses[0]


def test_emsa_refuses_fields_it_would_train_only_in_part():
    learned_gamma = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, 1.0, n=2))
    with pytest.raises(ValueError, match=r"other trainable parameters \['gamma'\]"):
        cd.control.EMSA(learned_gamma)
    fixed_gamma = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, 1.0, n=2), learn_gamma=False)
    with pytest.raises(ValueError, match=r"^inner must be one of"):
        cd.control.EMSA(fixed_gamma, inner="lbfgs")
    with pytest.raises(ValueError, match=r"^rho must be a positive finite number"):
        cd.control.EMSA(fixed_gamma, rho=0.0)
