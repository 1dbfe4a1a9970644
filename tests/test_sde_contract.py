"""The SDE steppers step by step: which control knot the drift reads in either time direction, the
Heun corrector's times, dense output inside a step, Milstein under the adjoint, the increments
each pass reads, and their errors."""
import sys

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


# ---------------------------------------------------------------- the grid's increments (sdesolve._GridNoise)

class _CountingPath(cd.BrownianPath):
    """A BrownianPath that counts its vectorised draws and its interval queries."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.draws, self.queries = 0, 0

    def increments(self, times):
        self.draws += 1
        return super().increments(times)

    def __call__(self, s, t=None):
        self.queries += 1
        return super().__call__(s, t)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint", "adjoint"])
@pytest.mark.parametrize("steps", [1, 5])
@pytest.mark.parametrize("t0,t1", [(0.5, 2.5), (2.5, 0.5)])
def test_a_solve_draws_its_increments_once_and_never_queries_the_path(gradient, steps, t0, t1):
    """Every step (forward, checkpoint replay, the adjoint's steps walked backward, on grids of one
    and several steps, either direction, span 2) reads its dW from the one ``increments`` call;
    none falls back to ``bm(s, t)``; and the solve is Euler-Maruyama on the path's increments."""
    x = torch.tensor([0.3, -0.7], dtype=DT, requires_grad=True)
    bm = _CountingPath(0.5, 2.5, (2,), seed=3, dtype=DT, levels=6)
    y1 = cd.sdesolve(lambda t, y: -y, x, noise=0.4, steps=steps, t0=t0, t1=t1, bm=bm, gradient=gradient).y1
    y1.sum().backward()
    assert (bm.draws, bm.queries) == (1, 0)
    h, want = (t1 - t0) / steps, x.detach()
    for k in range(steps):
        want = want - h * want + 0.4 * bm(t0 + k * h, t0 + (k + 1) * h)
    assert torch.allclose(y1, want, rtol=0, atol=1e-13)  # grid times and sums rounded differently


def test_noise_zero_draws_no_increments():
    """nu = 0: the ODE solve, and the path is neither drawn nor queried."""
    bm = _CountingPath(0.0, 1.0, (2,), seed=3, dtype=DT)
    cd.sdesolve(lambda t, y: -y, torch.ones(2, dtype=DT), noise=0.0, steps=4, t0=0.0, t1=1.0, bm=bm)
    assert (bm.draws, bm.queries) == (0, 0)


@pytest.mark.parametrize("t0,t1", [(0.5, 2.5), (2.5, 0.5)])
def test_grid_noise_answers_every_interval_as_the_path_does(t0, t1):
    """_GridNoise(bm, grid)(s, t) = W(t) - W(s) for a step, a step walked backward, two steps, the
    whole span, and intervals with one or both ends off the grid (span 2, so a wrong scaling of s
    to the grid index shows)."""
    from contdepth.sdesolve import _GridNoise
    bm = cd.BrownianPath(0.5, 2.5, (3,), seed=8, dtype=DT, levels=6)
    times = [t0 + k * (t1 - t0) / 4 for k in range(5)]
    noise = _GridNoise(bm, times)
    a, b, c, e = times[1], times[2], times[3], times[4]
    off = 0.5 * (a + b) + 0.1
    for s, t in [(times[0], a), (a, b), (c, e), (a, times[0]), (b, a), (e, c), (a, c), (times[0], e), (e, times[0]),
                 (off, b), (off, c), (b, off), (a, off), (off, a), (c, off)]:
        assert torch.allclose(noise(s, t), bm(s, t), rtol=0, atol=1e-15), (s, t)


class _HalfStepper:
    """Has init and step but no interpolate: not an SDE stepper."""

    def init(self, term, t0, y0, direction):
        return ()

    def step(self, term, t, h, y, state):
        return y, (), None, None


_METHODS = "['euler_maruyama', 'heun', 'milstein']"
_NOISE_TYPE = ("noise must be a float nu >= 0 (additive noise nu dW) or a callable g(t, y) returning the diagonal "
               "diffusion, got ")


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(noise=-0.1), ValueError, "noise must be a finite float >= 0, got -0.1"),
    (dict(noise=float("inf")), ValueError, "noise must be a finite float >= 0, got inf"),
    (dict(noise=float("nan")), ValueError, "noise must be a finite float >= 0, got nan"),
    (dict(noise="0.1"), TypeError, _NOISE_TYPE + "str"),
    (dict(noise=True), TypeError, _NOISE_TYPE + "bool"),
    (dict(method="rk4"), ValueError, f"method must be one of {_METHODS}, got 'rk4'"),
    (dict(method=3), TypeError, f"method must be one of {_METHODS} or an SDE stepper object, got int"),
    (dict(method=_HalfStepper()), TypeError,
     f"method must be one of {_METHODS} or an SDE stepper object, got _HalfStepper"),
    (dict(gradient="reversible"), ValueError, "gradient must be one of ['adjoint', 'backprop', 'checkpoint'], "
                                              "got 'reversible'"),
    (dict(noise=lambda t, y: y, gradient="adjoint"), ValueError,
     "gradient='adjoint' supports additive noise (a float noise) only: with g(t, y) the adjoint SDE needs dg/dy "
     "terms; use gradient='checkpoint' (exact, same memory class)"),
    (dict(steps=0), ValueError, "steps must be >= 1, got 0"),
    (dict(steps=2.0), TypeError, "steps must be an int >= 1, got float 2.0"),
    (dict(steps=None), ValueError, "steps is required for a plain func(t, y) drift"),
    (dict(bm=cd.BrownianPath(0.0, 1.0, (4, 2), dtype=DT), seed=1), ValueError,
     "give bm or seed, not both (got seed=1)"),
    (dict(bm="path"), TypeError, "bm must be a cd.BrownianPath, got str"),
    (dict(bm=cd.BrownianPath(0.0, 1.0, (4,), dtype=DT)), ValueError,
     "bm has shape (4,), but the state y0 has shape (4, 2)"),
])
def test_sdesolve_errors_name_the_argument_in_full(kwargs, error, message):
    """Each check of sdesolve raises its own error type with this exact message."""
    y0 = torch.zeros(4, 2, dtype=DT)
    with pytest.raises(error) as info:
        cd.sdesolve(lambda t, y: -y, y0, **{"noise": 0.1, "steps": 4, "t0": 0.0, "t1": 1.0, **kwargs})
    assert str(info.value) == message


def test_sdesolve_refuses_a_tuple_state_in_full():
    """A tuple state is a TypeError pointing to cd.solve."""
    y0 = torch.zeros(2, dtype=DT)
    with pytest.raises(TypeError) as info:
        cd.sdesolve(lambda t, y: y, (y0, y0), noise=0.1, steps=4, t0=0.0, t1=1.0)
    assert str(info.value) == "sdesolve takes a tensor state y0 (tuple states are for cd.solve)"


@pytest.mark.parametrize("t0,t1", [(0.5, 2.5), (2.5, 0.5)])
def test_the_default_path_is_the_seeded_path_in_the_states_dtype_over_the_interval(t0, t1):
    """bm=None, seed=s: the solve reads BrownianPath(min(t0, t1), max(t0, t1), y0.shape, seed=s,
    dtype=y0.dtype, levels=levels_for(steps)), bit for bit (float64 here: a float32 path differs)."""
    from contdepth.brownian import levels_for
    x = torch.tensor([[0.3, -0.7]], dtype=DT)
    kw = dict(noise=0.4, steps=3, t0=t0, t1=t1)
    own = cd.sdesolve(lambda t, y: -y, x, seed=12, **kw).y1
    bm = cd.BrownianPath(0.5, 2.5, (1, 2), seed=12, dtype=DT, levels=levels_for(3))
    assert torch.equal(own, cd.sdesolve(lambda t, y: -y, x, bm=bm, **kw).y1)


def test_the_default_path_has_the_depth_levels_for_chooses(monkeypatch):
    """The own path's depth is ``levels_for(steps)`` (made 3 here, so that it differs from the default 20)."""
    sdesolve_module = sys.modules["contdepth.sdesolve"]
    monkeypatch.setattr(sdesolve_module, "levels_for", lambda steps: 3)
    x = torch.tensor([0.3, -0.7], dtype=DT)
    kw = dict(noise=0.4, steps=5, t0=0.0, t1=1.0)
    own = cd.sdesolve(lambda t, y: -y, x, seed=12, **kw).y1
    bm = cd.BrownianPath(0.0, 1.0, (2,), seed=12, dtype=DT, levels=3)
    assert torch.equal(own, cd.sdesolve(lambda t, y: -y, x, bm=bm, **kw).y1)


def test_a_controlled_field_defaults_to_one_step_per_control_interval():
    """steps=None on a ControlledField of n = 4 intervals is steps=4."""
    field, x = _field(), torch.tensor([[0.3, -0.7]], dtype=DT)
    assert torch.equal(cd.sdesolve(field, x, noise=0.2, seed=6).y1, cd.sdesolve(field, x, noise=0.2, seed=6, steps=4).y1)


@pytest.mark.parametrize("gradient", ["checkpoint", "adjoint"])
def test_named_adjoint_params_are_the_only_ones_differentiated(gradient):
    """adjoint_params=[a] on a drift closing over a and b: a gets its gradient (checkpoint: the
    backprop one), b none, although the closure would have found both."""
    a = torch.tensor(0.7, dtype=DT, requires_grad=True)
    b = torch.tensor(0.2, dtype=DT, requires_grad=True)
    x = torch.tensor([1.0, -0.5], dtype=DT)
    run = lambda g, **kw: cd.sdesolve(lambda t, y: -a * y + b, x, noise=0.3, steps=4, t0=0.0, t1=1.0, seed=1,
                                      gradient=g, **kw).y1.sum()
    da, = torch.autograd.grad(run("backprop"), [a])
    run(gradient, adjoint_params=[a]).backward()
    assert b.grad is None
    assert torch.allclose(a.grad, da, rtol=0, atol=1e-14) if gradient == "checkpoint" else abs(a.grad - da) < 0.05


def test_backprop_never_probes_the_drift_or_the_noise():
    """gradient='backprop' evaluates f and g once per Euler-Maruyama step, at the step's start, and
    nothing else (no evaluation at t0 to find parameters)."""
    calls = []

    def f(t, y):
        calls.append(("f", float(t)))
        return -y

    def g(t, y):
        calls.append(("g", float(t)))
        return 0.3 * torch.ones_like(y)

    cd.sdesolve(f, torch.tensor([1.0, -0.5], dtype=DT), noise=g, steps=4, t0=0.0, t1=1.0, seed=1)
    assert calls == [(name, k / 4) for k in range(4) for name in "fg"]


def test_a_closure_drift_and_noise_get_their_gradients_under_checkpoint():
    """With no adjoint_params, checkpoint finds the tensors a drift closure and a noise closure use
    (probing them at t0) and gives each the backprop gradient."""
    a = torch.tensor(0.7, dtype=DT, requires_grad=True)
    c = torch.tensor(0.3, dtype=DT, requires_grad=True)
    x = torch.tensor([1.0, -0.5], dtype=DT)
    run = lambda g: cd.sdesolve(lambda t, y: -a * y, x, noise=lambda t, y: c * torch.cos(y), steps=4, t0=0.0,
                                t1=1.0, seed=1, gradient=g).y1.sum()
    want = torch.autograd.grad(run("backprop"), [a, c])
    got = torch.autograd.grad(run("checkpoint"), [a, c])
    assert all(torch.allclose(u, v, rtol=0, atol=1e-14) for u, v in zip(got, want))


def test_named_adjoint_params_leave_out_the_noise_closures_tensor():
    """adjoint_params=[a] under checkpoint: the noise closure's c gets no gradient, a the backprop one."""
    a = torch.tensor(0.7, dtype=DT, requires_grad=True)
    c = torch.tensor(0.3, dtype=DT, requires_grad=True)
    x = torch.tensor([1.0, -0.5], dtype=DT)
    run = lambda g, **kw: cd.sdesolve(lambda t, y: -a * y, x, noise=lambda t, y: c * torch.cos(y), steps=4, t0=0.0,
                                      t1=1.0, seed=1, gradient=g, **kw).y1.sum()
    da, = torch.autograd.grad(run("backprop"), [a])
    run("checkpoint", adjoint_params=[a]).backward()
    assert c.grad is None and torch.allclose(a.grad, da, rtol=0, atol=1e-14)


class _NamelessStepper:
    """An SDE stepper object with no ``name``: Euler-Maruyama's steps."""

    adaptive, fsal, order = False, False, 1

    def __init__(self) -> None:
        self.em = EulerMaruyama()

    def init(self, term, t0, y0, direction):
        return self.em.init(term, t0, y0, direction)

    def step(self, term, t, h, y, state):
        return self.em.step(term, t, h, y, state)

    def interpolate(self, y0, y1, dense, h, s):
        return self.em.interpolate(y0, y1, dense, h, s)


@pytest.mark.parametrize("method,gradient,name", [("milstein", "checkpoint", "milstein"),
                                                  ("heun", "backprop", "heun"),
                                                  (_NamelessStepper(), "backprop", "_NamelessStepper")])
def test_the_solution_names_its_method_and_gradient_and_its_times(method, gradient, name):
    """Solution.stats carries the method's name (a stepper object's type name if it has none) and
    the gradient method; Solution.ts holds the output times in float64."""
    sol = cd.sdesolve(lambda t, y: -y, torch.ones(2, dtype=torch.float32), noise=0.1, method=method, steps=4,
                      t0=0.0, t1=1.0, t_eval=[0.0, 0.3, 1.0], seed=0, gradient=gradient)
    assert (sol.stats.method, sol.stats.gradient) == (name, gradient)
    assert sol.ts.dtype == torch.float64 and sol.ts.tolist() == [0.0, 0.3, 1.0]
