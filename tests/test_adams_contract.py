"""Adams' contract, case by case: the weights in closed form, the option checks and messages in
full, order and repr, one step by hand (the 3/8-rule start, Adams-Bashforth, the corrector and its
convergence test at the boundary), the history kept, capped, dropped on non-convergence and
restarted when the state changed, and linear dense output."""
import math
import warnings
from fractions import Fraction

import pytest
import torch

import contdepth as cd
from contdepth.solvers import adams
from contdepth.solvers.adams import Adams, bashforth, moulton
from contdepth.solvers.rk import RungeKutta
from contdepth.solvers.tableau import RK38
from conftest import RecordingTerm as Recording

DT = torch.float64




def f(t, y):
    return t - y * y


def test_integrated_lagrange_weights_in_closed_form():
    F = Fraction
    assert adams._integrated_lagrange((0,)) == (F(1),)
    assert adams._integrated_lagrange((0, -1)) == (F(3, 2), F(-1, 2))
    assert adams._integrated_lagrange((1, 0)) == (F(1, 2), F(1, 2))
    assert adams._integrated_lagrange((0, -1, -2)) == (F(23, 12), F(-16, 12), F(5, 12))
    assert adams._integrated_lagrange((1, 0, -1)) == (F(5, 12), F(8, 12), F(-1, 12))
    assert bashforth(4) == tuple(x / 24 for x in (55, -59, 37, -9))
    assert moulton(4) == tuple(x / 24 for x in (9, 19, -5, 1))
    assert bashforth(1) == moulton(1) == (1.0,)
    for k in range(1, 13):
        assert len(bashforth(k)) == len(moulton(k)) == k
        assert abs(sum(bashforth(k)) - 1) < 1e-12 and abs(sum(moulton(k)) - 1) < 1e-12


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_order=3), "options['max_order'] must be an int in [4, 12], got 3"),
    (dict(max_order=13), "options['max_order'] must be an int in [4, 12], got 13"),
    (dict(max_order=True), "options['max_order'] must be an int in [4, 12], got True"),
    (dict(max_order=5.0), "options['max_order'] must be an int in [4, 12], got 5.0"),
    (dict(max_iters=0), "options['max_iters'] must be an int >= 1, got 0"),
    (dict(max_iters=False), "options['max_iters'] must be an int >= 1, got False"),
    (dict(rtol=0.0), "rtol (the corrector's tolerance) must be a positive finite float, got 0.0"),
    (dict(rtol=-1e-3), "rtol (the corrector's tolerance) must be a positive finite float, got -0.001"),
    (dict(atol=float("inf")), "atol (the corrector's tolerance) must be a positive finite float, got inf"),
    (dict(atol=float("nan")), "atol (the corrector's tolerance) must be a positive finite float, got nan"),
    (dict(atol=True), "atol (the corrector's tolerance) must be a positive finite float, got True"),
    (dict(rtol="1e-3"), "rtol (the corrector's tolerance) must be a positive finite float, got '1e-3'"),
])
def test_bad_arguments_say_so_in_full(kwargs, message):
    with pytest.raises(ValueError) as info:
        Adams(True, **kwargs)
    assert str(info.value) == message


def test_the_bounds_themselves_are_accepted():
    for mo in (4, 12):
        assert Adams(False, max_order=mo).max_order == mo
    a = Adams(True, max_iters=1, rtol=1, atol=2)
    assert a.max_iters == 1 and a.rtol == 1.0 and a.atol == 2.0 and type(a.rtol) is float and type(a.atol) is float


def test_defaults_names_options_and_orders():
    exp, imp = Adams(False), Adams(1, name="fixed_adams")
    assert (exp.name, exp.implicit, exp.max_order, exp.max_iters, exp.rtol, exp.atol) == (
        "explicit_adams", False, 5, 4, 1e-7, 1e-9)
    assert (imp.name, imp.implicit) == ("fixed_adams", True) and Adams(True).name == "implicit_adams"
    assert exp.options == ("max_order",) and imp.options == ("max_order", "max_iters")
    assert exp.tolerances is False and imp.tolerances is True
    assert (exp.adaptive, exp.fsal) == (False, False)
    assert [Adams(False, max_order=m).order for m in (4, 5, 6, 12)] == [3, 4, 4, 4]
    assert [Adams(True, max_order=m).order for m in (4, 5, 6, 12)] == [4, 5, 5, 5]
    assert repr(exp) == "Adams('explicit_adams', max_order=5)" and imp.max_order == 12
    assert repr(Adams(True, max_order=6, max_iters=3, rtol=1e-5, atol=1e-6)) == (
        "Adams('implicit_adams', max_order=6, max_iters=3, rtol=1e-05, atol=1e-06)")


def test_with_options_keeps_what_it_is_not_told():
    imp = Adams(True, name="fixed_adams", max_order=7, max_iters=3, rtol=1e-5, atol=1e-6)
    same = imp.with_options()
    assert repr(same) == repr(imp) and same is not imp
    assert repr(imp.with_options(rtol=1e-3)) == "Adams('fixed_adams', max_order=7, max_iters=3, rtol=0.001, atol=1e-06)"
    assert repr(imp.with_options(atol=1e-2, max_iters=9)) == (
        "Adams('fixed_adams', max_order=7, max_iters=9, rtol=1e-05, atol=0.01)")
    exp = Adams(False, max_order=6).with_options(max_order=5)
    assert repr(exp) == "Adams('explicit_adams', max_order=5)" and not exp.implicit
    with pytest.raises(ValueError) as info:
        Adams(False).with_options(max_iters=3, zeta=1)
    assert str(info.value) == ("unknown option(s) ['max_iters', 'zeta'] for method 'explicit_adams'; "
                               "allowed: ['max_order']")
    for kwargs in (dict(rtol=1e-3), dict(atol=1e-3)):
        with pytest.raises(ValueError) as info:
            Adams(False).with_options(**kwargs)
        assert str(info.value) == ("rtol/atol are the corrector's tolerances; method 'explicit_adams' "
                                   "has no corrector")


Y = torch.tensor([0.3, -0.6], dtype=DT)


def _march(stepper, h, n, y=Y, t=0.0):
    term = Recording()
    state = stepper.init(term, t, y, 1 if h > 0 else -1)
    assert state == ()
    out = []
    for _ in range(n):
        y1, state, error, dense = stepper.step(term, t, h, y, state)
        assert error is None and dense is None and state[0] is y1
        out.append((y1, state))
        y, t = y1, t + h
    return out, term


@pytest.mark.parametrize("h", [0.1, -0.1])
def test_explicit_adams_by_hand(h):
    d = 1 if h > 0 else -1
    steps, term = _march(Adams(False, max_order=5), h, 6)
    rk = RungeKutta(RK38)
    ys, fs, t = [Y], [], 0.0
    for n in range(6):
        fs.insert(0, f(t, ys[-1]))
        hist = fs[:4]  # max_order - 1
        if len(hist) < 3:
            y1 = rk.step_from(Recording(), t, h, ys[-1], hist[0])
        else:
            y1 = ys[-1] + h * sum(w * fj for w, fj in zip(bashforth(len(hist)), hist))
        ys.append(y1)
        t += h
        got, state = steps[n]
        torch.testing.assert_close(got, y1, rtol=1e-15, atol=1e-15)
        assert len(state) == 1 + len(hist)
        for a, b in zip(state[1:], hist):
            torch.testing.assert_close(a, b, rtol=1e-15, atol=1e-15)
    # the start evaluates 4 times per step (f_n and the 3/8 rule's three), then once per step
    assert len(term.calls) == 4 + 4 + 4
    times = [0.0]
    for _ in range(5):
        times.append(times[-1] + h)
    assert term.calls[8:] == [(tn, d) for tn in times[2:]]
    assert term.calls[0] == (0.0, d) and term.calls[4] == (times[1], d)


@pytest.mark.parametrize("h", [0.1, -0.1])
def test_implicit_adams_by_hand(h):
    d = 1 if h > 0 else -1
    stepper = Adams(True, max_order=4, max_iters=50, rtol=1e-12, atol=1e-14)
    steps, term = _march(stepper, h, 4)
    y2, state2 = steps[1]
    hist = state2[1:]
    assert len(hist) == 2
    t2 = 2 * h
    f2 = f(t2, y2)
    # step 3: history (f_2, f_1, f_0), capped at max_order - 1 = 3; the corrector's fixed point
    # y3 = y2 + h (m_0 f(t3, y3) + m_1 f_2 + m_2 f_1 + m_3 f_0)
    y3, state3 = steps[2]
    m = moulton(4)
    rhs = y2 + h * (m[0] * f(t2 + h, y3) + m[1] * f2 + m[2] * hist[0] + m[3] * hist[1])
    torch.testing.assert_close(y3, rhs, rtol=1e-12, atol=1e-13)
    assert len(state3) == 4 and torch.equal(state3[1], f2)
    y4, state4 = steps[3]
    assert len(state4) == 4  # still capped at 3 entries
    corrector = [c for c in term.calls if c[1] == -d]
    assert corrector and all(abs(tc - round(tc / h) * h) < 1e-12 for tc, _ in corrector)


def test_the_corrector_warns_and_drops_the_oldest_entry_when_it_does_not_converge():
    stepper = Adams(True, max_order=4, max_iters=1)
    steps, _ = _march(stepper, 0.1, 2)
    y, state = steps[-1]
    term = Recording()
    with pytest.warns(RuntimeWarning) as record:
        y1, state1, _, _ = stepper.step(term, 0.2, 0.1, y, state)
    assert str(record[0].message) == (
        "implicit_adams: the corrector did not converge in max_iters=1 iterations at t=0.2 (h=0.1); the solution "
        "may be inaccurate (raise max_iters or take smaller steps)")
    assert len(state1) == 1 + 2  # three entries, the oldest dropped
    assert len(term.calls) == 2  # f_n and one corrector iteration
    # with enough iterations no warning, and the full history kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, state2, _, _ = Adams(True, max_order=4, max_iters=50).step(Recording(), 0.2, 0.1, y, state)
    assert len(state2) == 1 + 3


def test_the_convergence_test_is_a_strict_bound_on_the_scaled_increment():
    a = Adams(True, rtol=0.5, atol=0.25)
    z = torch.zeros(2, dtype=DT)
    # |d0 - d1| / (atol + rtol max(|d0|, |d1|)): 0.5 / (0.25 + 0.5 * 0.5) = 1 is not converged
    assert not a._converged(torch.tensor([0.0, 0.0], dtype=DT), torch.tensor([0.5, 0.0], dtype=DT))
    assert a._converged(z, torch.tensor([0.4, -0.4], dtype=DT))
    assert not a._converged(z, torch.tensor([0.4, 0.6], dtype=DT))
    # the larger magnitude scales it: 1.0 / (0.25 + 0.5 * 2) < 1
    assert a._converged(torch.tensor([2.0], dtype=DT), torch.tensor([1.0], dtype=DT))
    assert a._converged(torch.tensor([1.0], dtype=DT), torch.tensor([2.0], dtype=DT))
    # every tensor of a tuple state counts
    assert not a._converged((z, z), (z, torch.tensor([0.0, 0.6], dtype=DT)))
    assert a._converged((z, z), (torch.tensor([0.1, 0.1], dtype=DT), z))


def test_a_changed_state_restarts_the_history():
    stepper = Adams(False, max_order=6)
    steps, _ = _march(stepper, 0.1, 4)
    y, state = steps[-1]
    # the same values (a checkpoint's copy) continue the history
    _, kept, _, _ = stepper.step(Recording(), 0.4, 0.1, y.clone(), state)
    assert len(kept) == 1 + 5
    # a changed state starts again: one entry, the 3/8 rule
    term = Recording()
    y1, fresh, _, _ = stepper.step(term, 0.4, 0.1, y + 1e-3, state)
    assert len(fresh) == 2 and len(term.calls) == 4
    torch.testing.assert_close(y1, RungeKutta(RK38).step_from(Recording(), 0.4, 0.1, y + 1e-3, f(0.4, y + 1e-3)),
                               rtol=0, atol=0)
    # a tuple state is compared tensor by tensor
    assert adams._same((Y, Y), (Y, Y.clone())) and not adams._same((Y, Y), (Y, Y + 1))


def test_dense_output_is_the_chord():
    y0, y1 = torch.tensor([1.0, 2.0], dtype=DT), torch.tensor([3.0, -2.0], dtype=DT)
    assert torch.equal(Adams(True).interpolate(y0, y1, None, 0.5, 0.25), torch.tensor([1.5, 1.0], dtype=DT))


@pytest.mark.parametrize("h", [0.1, -0.1])
def test_the_corrector_sees_the_step_end_from_behind_and_warns_at_the_caller(h):
    d = 1 if h > 0 else -1
    stepper = Adams(True, max_order=4, max_iters=3, rtol=1e-30, atol=1e-300)  # never converges
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        steps, _ = _march(stepper, h, 2)
    y, state = steps[-1]
    t = 2 * h
    term = Recording()
    with pytest.warns(RuntimeWarning) as record:
        stepper.step(term, t, h, y, state)
    assert term.calls == [(t, d)] + [(t + h, -d)] * 3
    assert len(record) == 1
    assert record[0].filename == __file__  # the first frame outside contdepth: the caller of step


def test_explicit_default_is_stable_where_ab11_is_not():
    """y' = -y on [0, 1] in 80 steps (h = 1/80, h lambda = -0.0125): the default AB4 ends within 1e-9 of e^-1;
    max_order=12 (AB11, torchdiffeq's default, stable only for h lambda in (-0.0034, 0)) ends 0.46 off."""
    t = torch.linspace(0, 1, 81, dtype=torch.float64)
    errors = [abs(float(cd.odeint(lambda t, y: -y, torch.ones(1, dtype=torch.float64), t, method="explicit_adams",
                                  options=options)[-1]) - math.exp(-1)) for options in ({}, dict(max_order=12))]
    assert errors[0] < 1e-9 and errors[1] > 0.4
