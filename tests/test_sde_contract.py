"""The SDE steppers step by step: which control knot the drift reads in either time direction, the
Heun corrector's times, dense output inside a step, Milstein under the adjoint, the increments
each pass reads, and their errors."""
import pytest
import torch

import contdepth as cd
from contdepth.solvers.stochastic import EulerMaruyama, Milstein, StochasticHeun

DT = torch.float64


def _field():
    torch.manual_seed(3)
    field = cd.fields.DenseResidual(2, cd.ControlGrid(0.0, 1.0, n=4)).to(DT)
    with torch.no_grad():
        field.weight.mul_(3.0)  # knots far apart, so reading the wrong one shows
    return field


@pytest.mark.parametrize("t0,t1", [(0.0, 1.0), (1.0, 0.0)])
def test_euler_maruyama_is_the_hand_loop_on_the_control_knots(t0, t1):
    """steps == n: step k reads knot k going forward, knot n - 1 - k going backward (the cell it lies in)."""
    field, x = _field(), torch.tensor([[0.3, -0.7]], dtype=DT)
    bm = cd.BrownianPath(0.0, 1.0, (1, 2), seed=7, dtype=DT)
    got = cd.sdesolve(field, x, noise=0.2, method="euler_maruyama", steps=4, t0=t0, t1=t1, bm=bm).y1
    h, y = (t1 - t0) / 4, x
    for k in range(4):
        t = t0 + k * h
        knot = k if h > 0 else 3 - k
        y = y + h * torch.tanh(y @ field.weight[knot].T + field.bias[knot]) + 0.2 * bm(t, t + h)
    assert torch.allclose(got, y, rtol=0, atol=1e-14)


@pytest.mark.parametrize("t0,t1", [(0.0, 1.0), (1.0, 0.0)])
def test_milstein_with_noise_independent_of_y_equals_euler_maruyama_on_a_controlled_field(t0, t1):
    field, x = _field(), torch.tensor([[0.3, -0.7]], dtype=DT)
    kw = dict(noise=lambda t, y: (1 + t) * torch.ones_like(y), steps=4, t0=t0, t1=t1, seed=5)
    assert torch.equal(cd.sdesolve(field, x, method="milstein", **kw).y1,
                       cd.sdesolve(field, x, method="euler_maruyama", **kw).y1)


def test_heun_one_step_by_hand():
    """X1 = X + h/2 (f(t, X) + f(t + h, X~)) + 1/2 (g(t, X) + g(t + h, X~)) dW, X~ = X + h f + g dW."""
    f = lambda t, y: torch.sin(y) * (1 + t)
    g = lambda t, y: 0.3 * (1 + 2 * t) * torch.cos(y)
    x = torch.tensor([0.4, -1.1], dtype=DT)
    bm = cd.BrownianPath(0.25, 0.75, (2,), seed=2, dtype=DT)
    got = cd.sdesolve(f, x, noise=g, method="heun", steps=1, t0=0.25, t1=0.75, bm=bm).y1
    t, h, dw = torch.tensor(0.25, dtype=DT), 0.5, bm(0.25, 0.75)
    pred = x + h * f(t, x) + g(t, x) * dw
    want = x + h / 2 * (f(t, x) + f(t + h, pred)) + 0.5 * (g(t, x) + g(t + h, pred)) * dw
    assert torch.allclose(got, want, rtol=0, atol=1e-15)


@pytest.mark.parametrize("method", ["euler_maruyama", "milstein", "heun"])
def test_outputs_inside_a_step_are_linear(method):
    f, x = (lambda t, y: -y), torch.tensor([1.0, 2.0], dtype=DT)
    kw = dict(noise=lambda t, y: 0.3 * y, method=method, t0=0.0, t1=1.0, seed=4)
    ends = cd.sdesolve(f, x, steps=2, t_eval=[0.0, 0.5, 1.0], **kw).ys
    inside = cd.sdesolve(f, x, steps=2, t_eval=[0.125, 0.5, 0.875], **kw).ys
    assert torch.allclose(inside[0], 0.75 * ends[0] + 0.25 * ends[1], rtol=0, atol=1e-15)
    assert torch.equal(inside[1], ends[1])
    assert torch.allclose(inside[2], 0.25 * ends[1] + 0.75 * ends[2], rtol=0, atol=1e-15)


def test_milstein_adjoint_equals_euler_maruyama_adjoint_for_additive_noise():
    field, x = _field(), torch.tensor([[0.3, -0.7]], dtype=DT)
    grads = []
    for method in ("milstein", "euler_maruyama"):
        field.zero_grad()
        cd.sdesolve(field, x, noise=0.2, method=method, steps=8, seed=9, gradient="adjoint").y1.sum().backward()
        grads.append([p.grad.clone() for p in field.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_an_sde_method_on_an_ode_is_an_error_naming_the_term():
    with pytest.raises(TypeError, match=r"^method 'milstein' integrates an SDE: solve it with cd.sdesolve \(the term "
                                        r"FuncTerm has no diffusion\)"):
        cd.solve(lambda t, y: -y, torch.ones(2), t0=0.0, t1=1.0, method=Milstein(), steps=2)


def test_reprs():
    assert [repr(m()) for m in (EulerMaruyama, Milstein, StochasticHeun)] == [
        "EulerMaruyama()", "Milstein()", "StochasticHeun()"]


class _Recording(EulerMaruyama):
    """Euler-Maruyama that records every (t, h, dW) its steps read."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, float, torch.Tensor]] = []

    def step(self, term, t, h, y, state):
        dw = term.increment(t, h)
        self.seen.append((t, h, (dw[0] if isinstance(dw, tuple) else dw).clone()))  # the adjoint's: (dW, -, -)
        return super().step(term, t, h, y, state)


@pytest.mark.parametrize("gradient", ["checkpoint", "adjoint"])
def test_backward_passes_read_the_forward_increments(gradient):
    """The increments are drawn once per solve: a checkpoint replay reads each step's dW bit for bit,
    the adjoint's backward solve reads -dW of the same step, and both are the path's increments."""
    torch.manual_seed(0)
    field = _field()
    x = torch.randn(3, 2, dtype=DT)
    bm = cd.BrownianPath(0.0, 1.0, x.shape, seed=4, dtype=DT)
    stepper = _Recording()
    cd.sdesolve(field, x, noise=0.3, method=stepper, steps=7, bm=bm, gradient=gradient).y1.sum().backward()
    forward = {round(t * 7): dw for t, h, dw in stepper.seen[:7] if h > 0}
    assert len(forward) == 7
    for j, dw in forward.items():
        assert torch.equal(dw, bm(j / 7, (j + 1) / 7)), j
    later = stepper.seen[7:]
    assert len(later) >= 7
    for t, h, dw in later:
        j = round(min(t, t + h) * 7)
        assert torch.equal(dw, forward[j] if h > 0 else -forward[j]), (t, h)
