"""The hand-written gradient methods' contracts, each checked where a planted fault would slip
through the larger tests: the backward pass's step statistics, errors that name the stepper, and
torch.func.functional_call / forward-mode AD (right answers or clear errors). Float64."""
import pytest
import torch

import contdepth as cd
from contdepth.solvers import Leapfrog

DT = torch.float64


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


# ---- torch.func.functional_call and forward-mode AD: right answers or clear errors, never silence

def _dense():
    torch.manual_seed(0)
    return cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 1.5, n=3)).to(DT)


X = torch.linspace(-1, 1, 12, dtype=DT).reshape(4, 3)


def _hand_loop(field, x):
    """Euler on the field's three cells, written out (the reference for every gradient)."""
    y = x
    for k in range(3):
        y = y + 0.5 * field(0.5 * k + 0.25, y)
    return y


def _functional(field, params, gradient):
    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.field = field

        def forward(self, x):
            return cd.odesolve(self.field, x, method="euler", steps=3, gradient=gradient)
    return torch.func.functional_call(Wrap(), {"field." + k: v for k, v in params.items()}, (X,))


def _params(field):
    return {k: v.detach().clone().requires_grad_() for k, v in field.named_parameters()}


def test_functional_call_backprop_gradients_after_the_call_returns():
    """The hand-written (fused) backward pass read the field's tensors when it ran: after
    functional_call returned they were the module's own again, and the gradient came back zero."""
    field = _dense()
    params = _params(field)
    (g,) = torch.autograd.grad(_functional(field, params, "backprop").sum(), params["weight"])
    expected = _params(field)
    (e,) = torch.autograd.grad(_hand_loop_functional(field, expected).sum(), expected["weight"])
    torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)
    assert g.abs().sum() > 0


def _hand_loop_functional(field, params):
    class Hand(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.field = field

        def forward(self, x):
            return _hand_loop(self.field, x)
    return torch.func.functional_call(Hand(), {"field." + k: v for k, v in params.items()}, (X,))


@pytest.mark.parametrize("gradient", ["checkpoint", "adjoint"])
def test_functional_call_recomputing_gradients_refuse_after_the_call_returns(gradient):
    field = _dense()
    y = _functional(field, _params(field), gradient)
    with pytest.raises(RuntimeError, match=f"not those of the forward pass .*gradient='{gradient}' recomputes f"):
        y.sum().backward()


def test_functional_call_checkpoint_backward_inside_the_call_is_right():
    field = _dense()
    params = _params(field)

    class Inside(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.field = field

        def forward(self, x):
            y = cd.odesolve(self.field, x, method="euler", steps=3, gradient="checkpoint")
            return torch.autograd.grad(y.sum(), self.field.weight)[0]
    g = torch.func.functional_call(Inside(), {"field." + k: v for k, v in params.items()}, (X,))
    expected = _params(field)
    (e,) = torch.autograd.grad(_hand_loop_functional(field, expected).sum(), expected["weight"])
    torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-14)


def test_a_replaced_parameter_is_refused_by_recomputing_backward_passes():
    field = _dense()
    y = cd.odesolve(field, X, method="euler", steps=3, gradient="checkpoint")
    field.weight = torch.nn.Parameter(field.weight.detach().clone())
    with pytest.raises(RuntimeError, match="not those of the forward pass"):
        y.sum().backward()


def test_forward_mode_ad_through_backprop_equals_the_hand_loop():
    from torch.autograd import forward_ad as fw
    field = _dense()
    v = torch.randn(3, 3, 3, dtype=DT, generator=torch.Generator().manual_seed(1))
    tangents = []
    for solve in (True, False):
        class Call(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.field = field

            def forward(self, x):
                return cd.odesolve(self.field, x, method="euler", steps=3) if solve else _hand_loop(self.field, x)
        with fw.dual_level():
            y = torch.func.functional_call(Call(), {"field.weight": fw.make_dual(field.weight.detach(), v)}, (X,))
            tangents.append(fw.unpack_dual(y).tangent)
    assert tangents[0] is not None
    torch.testing.assert_close(tangents[0], tangents[1], rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("gradient", ["checkpoint", "adjoint"])
def test_forward_mode_ad_through_a_recomputing_gradient_is_an_error(gradient):
    from torch.autograd import forward_ad as fw
    field = _dense()
    with fw.dual_level():
        x = fw.make_dual(X, torch.ones_like(X))
        with pytest.raises(NotImplementedError, match=f"forward-mode AD .* gradient='{gradient}'"):
            cd.odesolve(field, x, method="euler", steps=3, gradient=gradient)


# ---- gradients/common.py: the plumbing's edge cases

def test_missed_parameters_message_names_count_and_first_four_shapes():
    ks = [torch.full(shape, 0.5, dtype=DT, requires_grad=True) for shape in ((), (1,), (2,), (1, 1), (3,))]
    func = lambda t, y: -y * (sum(k.sum() for k in ks) if t > 0.5 else 1.0)
    y1 = cd.solve(func, torch.ones(3, dtype=DT, requires_grad=True), t0=0.0, t1=1.0, method="rk4", steps=2,
                  gradient="checkpoint").y1
    message = ("the field uses 5 trainable tensor(s) (shapes (3,), (1, 1), (2,), (1,)) that were not found as its "
               "parameters (they are not parameters of func, and no evaluation at t0 used them); their gradients "
               "would be missing: pass adjoint_params=[...] naming every tensor to differentiate")
    with pytest.raises(RuntimeError) as err:
        y1.sum().backward()
    assert str(err.value) == message


@pytest.mark.parametrize("gradient", ["checkpoint", "adjoint"])
def test_knots_outside_the_solve_get_zero_gradients(gradient):
    """A solve over [0, 0.5] of a field whose grid is [0, 1] with 2 knots never touches knot 1:
    its gradient is exactly zero (a tensor, not None), knot 0's equals backprop's. Adaptive, so
    that checkpoint replays per step (the per-knot accumulation) rather than the fused pass."""
    field = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 1.0, n=2)).to(DT)
    grads = {}
    for mode in ("backprop", gradient):
        y1 = cd.odesolve(field, X, method="dopri5", rtol=1e-10, atol=1e-12, t0=0.0, t1=0.5, gradient=mode)
        grads[mode] = torch.autograd.grad(y1.sum(), field.weight)[0]
    assert torch.equal(grads[gradient][1], torch.zeros_like(grads[gradient][1]))
    torch.testing.assert_close(grads[gradient][0], grads["backprop"][0], rtol=1e-3 if gradient == "adjoint" else 1e-12,
                               atol=1e-6 if gradient == "adjoint" else 1e-14)


@pytest.mark.parametrize("gradient", ["checkpoint", "adjoint", "reversible"])
def test_a_state_component_outside_the_loss_gets_no_gradient_but_the_rest_is_right(gradient):
    """Loss on q alone of a (q, p) state: p's output gradient is None for the Function; the others
    must come out as backprop's (zeros stand in for the missing one, of the right shape and dtype)."""
    w = torch.tensor(0.9, dtype=DT, requires_grad=True)
    func = lambda t, s: (s[1], -w * s[0])
    method = "leapfrog" if gradient == "reversible" else "rk4"
    grads = {}
    for mode in ("backprop", gradient):
        q0 = torch.ones(2, dtype=DT, requires_grad=True)
        p0 = torch.full((2,), 0.5, dtype=DT, requires_grad=True)
        q, p = cd.solve(func, (q0, p0), t0=0.0, t1=1.0, method=method, steps=8, gradient=mode,
                        t_eval=[0.0, 0.5, 1.0], adjoint_params=[w]).ys
        grads[mode] = torch.autograd.grad(q.sum(), [q0, p0, w])
    tol = dict(rtol=1e-4, atol=1e-6) if gradient == "adjoint" else dict(rtol=1e-12, atol=1e-14)
    for a, b in zip(grads[gradient], grads["backprop"]):
        assert a.dtype == DT
        torch.testing.assert_close(a, b, **tol)
