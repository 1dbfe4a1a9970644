"""The event search's contract (contdepth/solvers/events.py), checked against hand computations.

Euler on y' = -y by steps of 1/4 is exact in float64 and its dense output is linear, so the event
time where y crosses a level is known in closed form (the root of the line through the two step
ends); time-only event functions give the event time exactly. Steps counted, errors matched in full.
"""
from __future__ import annotations

import re

import pytest
import torch

from contdepth.errors import SolverError
from contdepth.solution import StepCounts
from contdepth.solvers import DOPRI5, EULER, Adaptive, FixedGrid, RungeKutta
from contdepth.solvers.events import _Ray, combined, event_signs, locate_event
from contdepth.terms import Term
from contdepth.timetol import close

F64 = torch.float64


class Decay(Term):
    """f(t, y) = -y."""

    def __init__(self, jumps=()):
        self._jumps = jumps

    def __call__(self, t, y, side):
        return -y

    def jumps(self):
        return self._jumps


def _t(x):
    return torch.tensor(x, dtype=F64)


def _locate(event_fn, steps=0.25, *, y0=1.0, t0=0.0, direction=1, t1=None, method=EULER, term=None, **kw):
    counts = StepCounts()
    t_event, g = locate_event(Decay() if term is None else term, RungeKutta(method), steps,
                              torch.tensor([y0], dtype=F64), t0, direction, event_fn, counts, t1=t1, **kw)
    return t_event, g, counts


def test_signs_make_every_entry_positive_at_the_start():
    c = lambda t, y: torch.stack([y[0] - 2 * t, -y[1]]).reshape(2, 1)
    y = _t([3.0, 5.0])
    signs = event_signs(c, _t(1.0), y)
    assert signs.tolist() == [1.0, -1.0]
    assert float(combined(c, signs, _t(1.0), y)) == 1.0  # min(1, 5); without the signs min(1, -5)
    assert float(combined(c, signs, _t(1.0), _t([0.0, -7.0]))) == -7.0


def test_signs_record_no_graph():
    y = _t([3.0]).requires_grad_()
    assert not event_signs(lambda t, y: 2 * y, _t(0.0), y).requires_grad


@pytest.mark.parametrize("event_fn, error, message", [
    (lambda t, y: 1, TypeError, "event_fn(t, y) must return a floating tensor, got int"),
    (lambda t, y: torch.ones(2, dtype=torch.int64), TypeError, "event_fn(t, y) must return a floating tensor, "
                                                                "got torch.int64"),
    (lambda t, y: y[:0], ValueError, "event_fn(t, y) returned an empty tensor: there is no event to look for"),
    (lambda t, y: torch.stack([y[0], y[0] / 0.0]), ValueError, "event_fn(t0, y0) must be finite, got [1.0, inf]"),
    (lambda t, y: torch.stack([y[0], y[0] - 1, y[0] - 1]), ValueError,
     "event_fn is zero at t0 = 0.5 (entries [1, 2]): the start is not before the event; start elsewhere or shift "
     "event_fn"),
])
def test_signs_refuse_what_has_no_event_after_t0(event_fn, error, message):
    with pytest.raises(error, match=re.escape(message) + "$"):
        event_signs(event_fn, _t(0.5), _t([1.0]))


def test_the_ray_takes_steps_of_h_each_rounded_once_from_t0():
    ray = _Ray(0.0, 0.1, 20)
    t = 0.0
    for _ in range(10):
        h, t_next = ray.propose(t)
        assert t + h == t_next
        assert ray.judge(None, None, None)
        t = t_next
    assert t == 1.0  # ten additions of 0.1 give 0.9999999999999999
    assert ray.stops == frozenset()
    back = _Ray(2.0, -0.5, 8)
    assert back.propose(2.0) == (-0.5, 1.5)


def test_the_ray_ends_after_max_steps():
    ray = _Ray(1.0, -0.5, 3)
    t = 1.0
    for _ in range(3):
        t = ray.propose(t)[1]
        ray.judge(None, None, None)
    with pytest.raises(SolverError, match=re.escape(
            "no event within 3 steps of step_size 0.5 from t0 = 1.0 (t = -0.5): the event function never changed "
            "sign") + "$"):
        ray.propose(t)


def test_an_event_on_eulers_line_between_two_steps():
    # y = 1, 3/4, 9/16, 27/64: y = 1/2 on the line from 9/16 (t = 1/2) to 27/64 (t = 3/4) at t = 1/2 + 1/4 * 4/9
    t_event, g, counts = _locate(lambda t, y: y - 0.5)
    assert t_event == pytest.approx(0.5 + 1 / 9, abs=1e-12)
    assert counts.accepted_steps == 3
    assert float(g(_t(0.0), _t([1.0]))) == 0.5 and float(g(_t(0.0), _t([0.25]))) == -0.25


def test_a_backward_search_steps_back_from_t0():
    # y' = -y backward by 1/4: y = 1, 5/4, 25/16; y = 3/2 at t = -1/4 - 1/4 * (1/4) / (5/16) = -0.45
    t_event, _, counts = _locate(lambda t, y: y - 1.5, direction=-1)
    assert t_event == pytest.approx(-0.45, abs=1e-12) and counts.accepted_steps == 2


def test_an_event_exactly_at_a_step_end_stops_the_search_there():
    # g = 5/8 - t vanishes at 0.5 + 1/8 inside the third step; g = 1/2 - t at the second step's end
    for level, steps in ((0.625, 3), (0.5, 2)):
        t_event, _, counts = _locate(lambda t, y: level - t)
        assert close(t_event, level) and counts.accepted_steps == steps


def test_a_fixed_grid_search_ends_at_t1_without_an_event():
    grid = FixedGrid((0.0, 0.25, 0.5, 0.75, 1.0))
    t_event, _, counts = _locate(lambda t, y: y - 0.1, steps=grid, t1=1.0)
    assert t_event is None and counts.accepted_steps == 4
    t_event, _, _ = _locate(lambda t, y: y - 0.5, steps=grid, t1=1.0)
    assert t_event == pytest.approx(0.5 + 1 / 9, abs=1e-12)


class Kick(Term):
    """f = 0 before t = 0.3, -1 from 0.3 on (a declared jump): y = 1 - (t - 0.3) after it."""

    def __call__(self, t, y, side):
        return -torch.ones_like(y) if t > 0.3 or (t == 0.3 and side > 0) else torch.zeros_like(y)

    def jumps(self):
        return (0.3,)


def test_an_adaptive_search_stops_at_the_terms_jumps():
    # dopri5 is exact on each piece once a step ends on the jump: y = 1/2 at t = 0.8 after 2 steps
    # (a first step of 1.0 across the jump is accepted with y = 1/2 near 0.59)
    t_event, _, counts = _locate(lambda t, y: y - 0.5, steps=Adaptive(1e-3, 1e-6, first_step=1.0), method=DOPRI5,
                                 term=Kick(), t1=2.0)
    assert t_event == pytest.approx(0.8, abs=1e-12) and (counts.accepted_steps, counts.rejected_steps) == (2, 0)
    spec = Adaptive(1e-8, 1e-10, first_step=1.0)
    t_event, _, _ = _locate(lambda t, y: y - 0.5, steps=spec, method=DOPRI5, t1=2.0)
    assert t_event == pytest.approx(0.6931471805599453, rel=1e-7)
    t_event, _, _ = _locate(lambda t, y: y - 0.5, steps=spec, method=DOPRI5, t1=0.5)
    assert t_event is None


def test_fixed_steps_without_a_step_size_are_an_error_naming_the_option():
    with pytest.raises(ValueError, match=re.escape(
            "event_fn with the fixed-step method 'euler' needs options={'step_size': h}: the event is looked for "
            "by steps of h from t0") + "$"):
        _locate(lambda t, y: y - 0.5, steps=None)


def test_a_stepper_without_a_name_is_named_by_its_repr():
    class Nameless:
        def __repr__(self):
            return "Nameless()"

    with pytest.raises(ValueError, match=re.escape("event_fn with the fixed-step method Nameless() needs options=")):
        locate_event(Decay(), Nameless(), None, torch.ones(1, dtype=F64), 0.0, 1, lambda t, y: y - 0.5, StepCounts())


def test_the_event_is_the_first_time_g_reaches_zero():
    # g = max(0.6 - t, 0) is zero on all of [0.6, 0.75]: the event is 0.6, its first zero (the bisection moves
    # its upper end onto every zero it meets)
    t_event, _, _ = _locate(lambda t, y: (0.6 - t).clamp(min=0.0) * torch.ones_like(y))
    assert close(t_event, 0.6)


def test_the_step_is_bisected():
    # halving [1/2, 3/4] down to the time tolerance 1e-12 takes 38 evaluations of g: with the signs and the
    # three step ends, 42 calls of event_fn
    calls = []

    def event_fn(t, y):
        calls.append(float(t))
        return y - 0.5

    _locate(event_fn)
    assert len(calls) == 1 + 3 + 38


def test_the_search_by_step_size_ends_after_max_steps():
    with pytest.raises(SolverError, match="no event within 5 steps of step_size 0.25 from t0 = 0.0"):
        _locate(lambda t, y: y + 1.0, max_steps=5)


def test_an_event_at_t0_up_to_rounding_is_an_error():
    with pytest.raises(SolverError, match=re.escape(
            "the event is at t0 = 0.0 up to rounding: event_fn changes sign immediately") + "$"):
        _locate(lambda t, y: 1e-17 - t)


def test_the_search_records_no_graph():
    seen = []

    def event_fn(t, y):
        seen.append(y.requires_grad)
        return y - 0.5

    p = torch.tensor(1.0, dtype=F64, requires_grad=True)

    class Scaled(Term):
        def __call__(self, t, y, side):
            return -p * y

    t_event, _, _ = _locate(event_fn, term=Scaled())
    assert t_event == pytest.approx(0.5 + 1 / 9, abs=1e-12) and not any(seen)
