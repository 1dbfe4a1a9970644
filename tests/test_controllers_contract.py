"""The step controllers' contract where the wider tests leave it open: the callbacks' verdict at an
error ratio of exactly 1, a fixed grid keeping its uniform h when given callbacks, a callable norm
giving the RMS rule's steps when it is the RMS, its result checked in full, the non-finite start
named as the state or the derivative, and the stiffness hint at its bound."""
import inspect
import math

import pytest
import torch

import contdepth as cd
from contdepth.errors import SolverError
from contdepth.solvers.controllers import Adaptive, FixedGrid, StepCallbacks
from contdepth.terms import Term

F64 = torch.float64


def _v(*xs) -> torch.Tensor:
    return torch.tensor(xs, dtype=F64)


def test_a_ratio_of_exactly_one_is_reported_accepted():
    seen = []
    callbacks = StepCallbacks(accept=lambda t0, y0, dt: seen.append(("accept", float(t0), float(dt))),
                              reject=lambda t0, y0, dt: seen.append(("reject", float(t0), float(dt))))
    spec = Adaptive(0.5, 0.5, first_step=0.25, callbacks=callbacks)
    c = spec.controller(0.0, 10.0, order=5)
    c.start(None, None, 0.0, None, ())
    h, _ = c.propose(0.0)
    # tolerance 0.5 + 0.5 * 3 = 2 per component, error 2: RMS ratio exactly 1
    assert c.judge(_v(2.0, 2.0), _v(3.0, -3.0), _v(1.0, 1.0))
    h2, _ = c.propose(0.25)
    assert c.judge(_v(2.0, 2.0 + 1e-9), _v(3.0, -3.0), _v(1.0, 1.0)) is False
    assert seen == [("accept", 0.0, 0.25), ("reject", 0.25, h2)]


def test_a_uniform_grid_keeps_its_step_size_with_callbacks():
    grid = FixedGrid.uniform(0.0, 1.0, 3)
    with_cb = grid.with_callbacks(StepCallbacks(step=lambda t0, y0, dt: None))
    assert with_cb.h == grid.h == 1.0 / 3 and with_cb.times == grid.times and with_cb.callbacks is not None
    assert with_cb.controller(0.0, 1.0).step_sizes() == grid.controller(0.0, 1.0).step_sizes()
    assert set(with_cb.controller(0.0, 1.0).step_sizes().values()) == {1.0 / 3}


def test_a_reject_callback_on_a_fixed_grid_is_warned_about_in_full():
    """The warning names the user's line, however deep in contdepth it is raised (here: cd.solve's caller)."""
    class Decay:
        def __call__(self, t, y):
            return -y

        def callback_reject_step(self, t0, y0, dt):
            pass

    f = Decay()
    with pytest.warns(UserWarning) as record:
        line = inspect.currentframe().f_lineno + 1
        cd.solve(f, torch.ones(2, dtype=torch.float64), method="euler", steps=2, t0=0.0, t1=1.0)
    with pytest.warns(UserWarning) as direct:
        direct_line = inspect.currentframe().f_lineno + 1
        FixedGrid.uniform(0.0, 1.0, 2).with_callbacks(StepCallbacks(reject=lambda t0, y0, dt: None))
    assert [(w.filename, w.lineno) for w in [*record, *direct]] == [(__file__, line), (__file__, direct_line)]
    assert [str(w.message) for w in record] == [
        "a callback_reject_step is never called on a fixed grid: every fixed step is accepted "
        "(callback_step and callback_accept_step are called for each)"]


def _decay(t, y):
    return torch.stack([-y[0] + torch.sin(3 * t) * y[1], -2 * y[1] + y[0] ** 2])


@pytest.mark.parametrize("method", ["dopri5", "bosh3"])
def test_an_rms_norm_given_as_a_callable_takes_the_default_steps(method):
    """norm(scaled) = RMS of the scaled error is the default rule: the same steps, the same solution, bit for bit
    up to the order of the sum (the first step uses the same norm)."""
    y0 = _v(1.0, -0.5)
    kwargs = dict(t0=0.0, t1=3.0, method=method, rtol=1e-5, atol=1e-7)
    default = cd.solve(_decay, y0, **kwargs)
    rms = cd.solve(_decay, y0, options=dict(norm=lambda s: s.pow(2).mean().sqrt()), **kwargs)
    assert rms.stats.forward.accepted_steps == default.stats.forward.accepted_steps
    assert rms.stats.forward.rejected_steps == default.stats.forward.rejected_steps
    torch.testing.assert_close(rms.y1, default.y1, rtol=1e-13, atol=1e-15)
    # a norm twice the RMS: a stricter test, more steps
    strict = cd.solve(_decay, y0, options=dict(norm=lambda s: 2 * s.pow(2).mean().sqrt()), **kwargs)
    assert strict.stats.forward.accepted_steps > default.stats.forward.accepted_steps


@pytest.mark.parametrize("value,name", [([0.1], "list"), (torch.ones(2, dtype=F64), "Tensor(2,)"),
                                        (torch.ones((), dtype=torch.complex128), "Tensor()"), (True, "bool")])
def test_a_norm_that_is_not_a_real_scalar_is_named_in_full(value, name):
    with pytest.raises(TypeError) as info:
        cd.solve(_decay, _v(1.0, -0.5), t0=0.0, t1=1.0, method="dopri5", options=dict(norm=lambda s: value))
    assert str(info.value) == f"norm must return a real scalar (a float or a one-element tensor), got {name}"


class _Const(Term):
    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, t, y, side):
        return torch.full_like(y, self.value)


def _first_step_error(spec: Adaptive, f: float) -> str:
    c = spec.controller(0.0, 1.0, order=5)
    with pytest.raises(SolverError) as info:
        c.start(_Const(f), cd.solvers.RungeKutta(cd.solvers.TABLEAUX["adaptive_heun"]), 0.0, _v(1.0, 2.0), ())
    return str(info.value)


def test_a_start_that_is_not_finite_names_the_state_or_the_derivative():
    spec = Adaptive(1e-6, 1e-9)
    assert _first_step_error(spec, math.inf) == (
        "the derivative f(t0, y0) at the start (t0 = 0.0) is not finite: no step size can be chosen")
    # a state whose norm is not finite (here a norm that says so)
    infinite = Adaptive(1e-6, 1e-9, norm=lambda s: math.inf if bool((s == s).all()) else 0.0)
    assert _first_step_error(infinite, 1.0) == (
        "the state at the start (t0 = 0.0) is not finite: no step size can be chosen")


def _failure_message(y_first, y_last, atol=1e-9) -> str:
    c = Adaptive(1e-6, atol).controller(0.0, 1.0, order=5)
    c.y_first, c.y_last, c.finite, c.h = y_first, y_last, True, 0.125
    return str(c._failure("step size underflow", 0.5))


def test_the_stiffness_hint_needs_a_state_within_1000_times_the_start():
    base = ("step size underflow at t=0.5 (h=0.125, rtol=1e-06, atol=1e-09): the error estimate stayed non-finite "
            "or too large (a state or field that blows up, or tolerances too tight for the dtype)")
    hint = ("; the state stayed bounded, so if rtol/atol suit the dtype the field may be stiff (fast decaying modes "
            "hold an explicit method to tiny steps): use an implicit method, method='kvaerno5'")
    y_first = _v(0.5, -2.0)  # bound 1000 * 2
    assert _failure_message(y_first, _v(1.0, -2000.0)) == base + hint
    assert _failure_message(y_first, _v(2000.5, 0.0)) == base
    # atol above the start's size sets the bound
    assert _failure_message(_v(0.0), _v(3000.0), atol=3.0) == base.replace("atol=1e-09", "atol=3.0") + hint
    assert _failure_message(_v(0.0), _v(3001.0), atol=3.0) == base.replace("atol=1e-09", "atol=3.0")


class _Callbacks:
    pass


def test_callbacks_are_found_by_name_and_checked_to_be_callable():
    assert StepCallbacks.of(_Callbacks()) is None
    f = _Callbacks()
    accept = lambda t0, y0, dt: None  # noqa: E731
    f.callback_accept_step = accept
    assert StepCallbacks.of(f) == StepCallbacks(None, accept, None) and StepCallbacks.of(f, "_adjoint") is None
    f.callback_step_adjoint = 3
    with pytest.raises(TypeError) as info:
        StepCallbacks.of(f, "_adjoint")
    assert str(info.value) == "func.callback_step_adjoint must be callable as (t0, y0, dt), got int"


@pytest.mark.parametrize("kwargs,message", [
    (dict(min_step=True), "min_step must be a float >= 0, got True"),
    (dict(max_step="1"), "max_step must be a float >= 0, got '1'"),
    (dict(min_step=-1.0), "min_step must be a float >= 0, got -1.0"),
    (dict(max_step=math.nan), "max_step must be a float >= 0, got nan"),
    (dict(min_step=math.inf), "min_step must be finite, got inf"),
    (dict(min_step=0.5, max_step=0.25), "need 0 <= min_step <= max_step and max_step > 0, got min_step=0.5, "
                                        "max_step=0.25"),
    (dict(max_step=0.0), "need 0 <= min_step <= max_step and max_step > 0, got min_step=0.0, max_step=0.0"),
])
def test_bad_step_bounds_are_named_in_full(kwargs, message):
    with pytest.raises(ValueError) as info:
        Adaptive(1e-6, 1e-9, **kwargs)
    assert str(info.value) == message


def test_equal_step_bounds_are_a_fixed_step_and_a_norm_must_be_callable():
    spec = Adaptive(1e-6, 1e-9, first_step=0.1, min_step=0.25, max_step=0.25)
    c = spec.controller(0.0, 1.0, order=5)
    c.start(None, None, 0.0, None, ())
    assert c.propose(0.0) == (0.25, 0.25)
    with pytest.raises(TypeError) as info:
        Adaptive(1e-6, 1e-9, norm=3)
    assert str(info.value) == "norm must be callable as norm(scaled_error) -> scalar, got int"


def _controller(**kwargs):
    c = Adaptive(0.5, 0.5, first_step=0.25, **kwargs).controller(0.0, 10.0, order=5)
    c.start(None, None, 0.0, None, ())
    return c


def test_a_non_finite_proposal_becomes_min_step_or_fails_naming_it():
    c = _controller(min_step=0.5)
    c.h = math.nan
    assert c.propose(0.0) == (0.5, 0.5)
    c = _controller()
    c.h = math.inf
    with pytest.raises(SolverError) as info:
        c.propose(0.0)
    assert str(info.value).startswith("step size underflow at t=0.0 (h=inf, rtol=0.5, atol=0.5)")


def test_a_finite_proposal_is_not_replaced_by_min_step():
    """min_step only bounds the steps: a smooth decay takes its own (larger) steps, the same as without it."""
    kwargs = dict(t0=0.0, t1=1.0, method="dopri5", rtol=1e-6, atol=1e-9)
    y0 = _v(1.0, 2.0)
    free = cd.solve(_decay, y0, **kwargs)
    bounded = cd.solve(_decay, y0, options=dict(min_step=1e-3, max_num_steps=200), **kwargs)
    assert bounded.stats.forward.accepted_steps == free.stats.forward.accepted_steps < 200
    assert torch.equal(bounded.y1, free.y1)


@pytest.mark.parametrize("ratio", [1.5, 3.0])
def test_a_step_at_min_step_is_accepted_whatever_its_error_and_keeps_its_size(ratio):
    c = _controller(min_step=0.25)
    h, _ = c.propose(0.0)
    assert h == 0.25
    # tolerance 0.5 + 0.5 * 1 = 1 per component: RMS ratio = the error
    assert c.judge(_v(ratio, ratio), _v(1.0, 1.0), _v(1.0, 1.0)) is True
    assert c.propose(0.25) == (0.25, 0.5)


def test_a_ratio_of_one_is_remembered_by_the_pi_controller():
    """beta = 0.04: after r = 1 (accepted), r_prev = 1 sets the factor of the next accepted step."""
    c = _controller(beta=0.04)
    tol_errors = [0.625, 1.0, 2.0 ** -10]  # tolerance 1 per component: RMS ratio = the error
    t, r_prev, h = 0.0, 1e-4, 0.25
    for r in tol_errors:
        h_used, t_next = c.propose(t)
        assert h_used == h
        assert c.judge(_v(r, r), _v(1.0, 1.0), _v(1.0, 1.0))
        factor = 0.9 * r ** -(1 / 5 - 0.75 * 0.04) * r_prev ** 0.04
        h = h_used * min(10.0, max(1.0, factor))
        r_prev, t = r, t_next
    assert c.propose(t)[0] == h
