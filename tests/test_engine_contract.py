"""The march loop's contract (contdepth/solvers/engine.py), checked against hand computations.

Euler on y' = -y with steps of a power of two is exact in float64, so outputs at step ends,
outputs inside a step (the linear dense output), projected ends, injected states and the restarts
of a stepper's state are compared bit for bit with the numbers worked out by hand; the error
messages are matched in full.
"""
from __future__ import annotations

import re

import pytest
import torch

from contdepth.errors import SolverError
from contdepth.grid import ControlGrid
from contdepth.solution import SolverStats, StepCounts
from contdepth.solvers import DOPRI5, EULER, Adaptive, FixedGrid, LinearTwoStep, Problem, RungeKutta, march, replay
from contdepth.terms import Term
from contdepth.tree import lerp

F64 = torch.float64


class Decay(Term):
    """f(t, y) = -rate y on every tensor of y; records the calls' (t, side)."""

    def __init__(self, rate: float = 1.0, jumps: tuple[float, ...] = (), params: list | None = None) -> None:
        self.rate, self._jumps, self._params, self.calls = rate, jumps, params or [], []

    def __call__(self, t, y, side):
        self.calls.append((t, side))
        return tuple(-self.rate * x for x in y) if isinstance(y, tuple) else -self.rate * y

    def jumps(self):
        return self._jumps

    def params(self):
        return list(self._params)


class Euler:
    """Euler with a linear dense output, recording every init as (t0, y0, direction) and carrying a
    state (t0 of its init) so that restarts are visible; ``fsal`` and ``uniform_steps`` as given."""

    name, order, adaptive = "toy_euler", 1, False

    def __init__(self, fsal: bool = False, uniform_steps: bool | None = None) -> None:
        self.fsal, self.inits, self.steps, self.terms = fsal, [], [], []
        if uniform_steps is not None:
            self.uniform_steps = uniform_steps

    def init(self, term, t0, y0, direction):
        self.inits.append((t0, y0, direction))
        self.terms.append(term)
        return (t0,)

    def step(self, term, t, h, y, state):
        self.steps.append((t, h, state))
        return y + h * term(t, y, 1 if h > 0 else -1), state, None, None

    def interpolate(self, y0, y1, dense, h, s):
        return lerp(y0, y1, s)


class Grid:
    """Steps through ``times``; ``stops``: the controller's stops (where the march restarts the state)."""

    def __init__(self, times, stops=()):
        self.times, self.j, self.stops = times, 0, frozenset(stops)

    def start(self, term, stepper, t0, y0, state):
        pass

    def propose(self, t):
        self.j += 1
        return self.times[self.j] - t, self.times[self.j]

    def judge(self, error, y0, y1):
        return True


def _exactly(message: str) -> str:
    return f"^{re.escape(message)}$"


def _one(x=1.0):
    return torch.tensor([x], dtype=F64)


def _march(times, out_times, *, stepper=None, term=None, y0=None, stops=(), **kw):
    stepper = Euler() if stepper is None else stepper
    term = Decay() if term is None else term
    counts = StepCounts()
    outs, y1 = march(term, stepper, Grid(times, stops), _one() if y0 is None else y0, times[0], times[-1],
                     out_times, counts, **kw)
    return outs, y1, counts


def _values(outs):
    return [float(o) for o in outs]


def test_outputs_are_the_step_ends_and_the_linear_dense_output_inside_steps():
    # y' = -y, h = 1/2: y = 1, 1/2, 1/4; at s = 1/2 of each step the mean of its ends
    y0 = _one()
    outs, y1, counts = _march((0.0, 0.5, 1.0), (0.0, 0.25, 0.5, 0.75, 1.0), y0=y0)
    assert outs[0] is y0
    assert _values(outs) == [1.0, 0.75, 0.5, 0.375, 0.25]
    assert float(y1) == 0.25
    assert (counts.accepted_steps, counts.rejected_steps) == (2, 0)


def test_a_backward_march_takes_negative_steps_and_starts_its_state_with_direction_minus_one():
    stepper, term = Euler(), Decay()
    outs, y1, _ = _march((1.0, 0.5, 0.0), (1.0, 0.25, 0.0), stepper=stepper, term=term)
    assert _values(outs) == [1.0, 1.875, 2.25]  # y grows by 3/2 per step back; 0.25 is mid-step
    assert [(t, d) for t, _, d in stepper.inits] == [(1.0, -1)]
    assert [h for _, h, _ in stepper.steps] == [-0.5, -0.5]
    assert [side for _, side in term.calls] == [-1, -1]


def test_output_times_outside_the_interval_are_an_error_naming_them():
    with pytest.raises(ValueError, match=_exactly("output times [1.5, 2.0] lie outside [0.0, 1.0]")):
        _march((0.0, 0.5, 1.0), (0.0, 1.5, 2.0))


def test_slopes_with_project_is_an_error():
    with pytest.raises(ValueError, match=_exactly(
            "slopes= with project=: the time derivative of a projected output is not recorded")):
        _march((0.0, 1.0), (1.0,), project=torch.abs, slopes={})


def test_a_wrong_shape_from_project_is_an_error_on_the_first_step():
    with pytest.raises(ValueError, match=_exactly("project returned shape (2,), but the state has shape (1,)")):
        _march((0.0, 1.0), (1.0,), project=lambda y: y.expand(2))


def test_project_maps_every_step_end_and_the_dense_output_of_the_unprojected_step():
    # y' = -3 y, h = 1/2: the unprojected end of the first step is 1 - 3/2 = -1/2, projected 1/2;
    # at s = 0.9 the dense output of the unprojected step is 1 - 0.9 * 3/2 = -0.35, projected 0.35
    # (the projected ends would give 0.55)
    stepper = Euler()
    y0 = _one()
    outs, y1, _ = _march((0.0, 0.5, 1.0), (0.0, 0.45, 0.5, 1.0), stepper=stepper, term=Decay(3.0), y0=y0,
                         project=torch.abs)
    assert outs[0] is y0  # y0 itself is not projected
    assert _values(outs) == pytest.approx([1.0, 0.35, 0.5, 0.25], abs=1e-15)
    assert float(y1) == 0.25
    assert len(stepper.inits) == 1  # not FSAL: the state is carried as is


def test_project_restarts_an_fsal_steppers_state_at_every_projected_end():
    stepper = Euler(fsal=True)
    _, y1, _ = _march((0.0, 0.5, 1.0), (1.0,), stepper=stepper, term=Decay(3.0), project=torch.abs)
    assert [(t, float(y), d) for t, y, d in stepper.inits] == [(0.0, 1.0, 1), (0.5, 0.5, 1), (1.0, 0.25, 1)]
    assert [s for _, _, s in stepper.steps] == [(0.0,), (0.5,)]


def test_without_project_an_fsal_steppers_state_is_carried():
    stepper = Euler(fsal=True)
    _march((0.0, 0.5, 1.0), (1.0,), stepper=stepper)
    assert len(stepper.inits) == 1 and [s for _, _, s in stepper.steps] == [(0.0,), (0.0,)]


def test_a_stop_of_the_controller_restarts_the_state_there_with_the_marchs_direction():
    stepper = Euler()
    _march((1.0, 0.75, 0.5, 0.0), (0.0,), stepper=stepper, stops=(0.5,))
    assert [(t, float(y), d) for t, y, d in stepper.inits] == [(1.0, 1.0, -1), (0.5, 1.5625, -1)]
    assert [s for _, _, s in stepper.steps] == [(1.0,), (1.0,), (0.5,)]


def test_a_uniform_steps_stepper_restarts_when_the_step_length_changes():
    # y' = -y by 1/4, 1/4, 1/2, 1/2: y = 1, 3/4, 9/16, then restarted at t = 1/2 from 9/16 going forward
    stepper, term = Euler(uniform_steps=True), Decay()
    _march((0.0, 0.25, 0.5, 1.0, 1.5), (1.5,), stepper=stepper, term=term)
    assert [(t, float(y), d) for t, y, d in stepper.inits] == [(0.0, 1.0, 1), (0.5, 0.5625, 1)]
    assert all(x is term for x in stepper.terms)
    assert [s for _, _, s in stepper.steps] == [(0.0,), (0.0,), (0.5,), (0.5,)]
    back = Euler(uniform_steps=True)
    _march((1.5, 1.0, 0.5, 0.25, 0.0), (0.0,), stepper=back)
    assert [(t, float(y), d) for t, y, d in back.inits] == [(1.5, 1.0, -1), (0.5, 2.25, -1)]
    for plain in (Euler(uniform_steps=False), Euler()):
        _march((0.0, 0.25, 0.5, 1.0, 1.5), (1.5,), stepper=plain)
        assert [t for t, _, _ in plain.inits] == [0.0]


def test_an_output_within_the_time_tolerance_of_a_step_end_is_that_end():
    # 1e-12 is the tolerance near 0 (timetol.slack): an output 1e-12 past t1 names t1
    for times, out in (((-1.0, -0.5, 0.0), 1e-12), ((1.0, 0.5, 0.0), -1e-12)):
        outs, y1, _ = _march(times, (times[1], out))
        assert outs[1] is y1
    with pytest.raises(ValueError, match="lie outside"):
        _march((-1.0, -0.5, 0.0), (-0.5, 2e-12))


def test_inject_changes_the_state_the_march_goes_on_from_but_not_the_outputs():
    seen = []

    def inject(t, y):
        seen.append((t, float(y)))
        return y + 1 if t == 0.5 else y

    outs, y1, _ = _march((0.0, 0.5, 1.0), (0.5, 1.0), inject=inject)
    assert seen == [(0.5, 0.5), (1.0, 0.75)]
    assert _values(outs) == [0.5, 0.75] and float(y1) == 0.75


def test_on_step_sees_each_accepted_step_with_its_start_and_state():
    records = []
    stepper = Euler(fsal=True)
    _march((0.0, 0.5, 1.0), (0.0, 0.25, 0.5, 1.0), stepper=stepper, stops=(0.5,),
           on_step=lambda rec, y, state: records.append((rec, float(y), state)))
    (r1, y1, s1), (r2, y2, s2) = records
    assert (r1.t, r1.h, r1.t_next, r1.outs, r1.refresh, y1, s1) == (0.0, 0.5, 0.5, ((1, 0.5), (2, None)), True, 1.0,
                                                                   (0.0,))
    assert (r2.t, r2.h, r2.t_next, r2.outs, r2.refresh, y2, s2) == (0.5, 0.5, 1.0, ((3, None),), False, 0.5, (0.5,))


def test_stop_when_ends_the_march_after_the_step_it_returns_true_on():
    calls = []

    def stop_when(t, t_next, at):
        calls.append((t, t_next, float(at(t + 0.45)), float(at(t_next))))
        return t_next == 1.0

    outs, end, counts = _march((0.0, 0.5, 1.0, 1.5, 2.0), (0.25, 0.5, 1.0, 1.5, 2.0), term=Decay(3.0),
                               project=torch.abs, stop_when=stop_when)
    # steps of 1/2 on y' = -3 y: unprojected ends -1/2 y, projected 1/2 y; at s = 0.9 the unprojected
    # dense output is (1 - 0.9 * 3/2) y = -0.35 y, projected 0.35 y
    assert [x for call in calls for x in call] == pytest.approx([0.0, 0.5, 0.35, 0.5, 0.5, 1.0, 0.175, 0.25], abs=1e-15)
    assert _values(outs) == [0.25, 0.5, 0.25] and float(end) == 0.25
    assert counts.accepted_steps == 2


def test_the_state_at_a_step_end_is_the_steps_end_itself():
    # a dense output that is not exact at s = 1 (it is the step's start): at(t_next) must still be the end
    class Frozen(Euler):
        def interpolate(self, y0, y1, dense, h, s):
            return y0

    ends = []
    _march((0.0, 0.5), (0.5,), stepper=Frozen(), stop_when=lambda t, t_next, at: ends.append(float(at(t_next))))
    assert ends == [0.5]


def test_check_finite_names_the_first_non_finite_step():
    # y' = y^2 from 1e100: 1e100 + 0.25e200 is finite, the next step overflows
    class Square(Term):
        def __call__(self, t, y, side):
            return y * y

    message = ("the solve became non-finite in step 2 (t = 0.25 -> 0.5, h = 0.25, method toy_euler): the field "
               "blows up; use smaller steps, a more stable method, or a smaller initial state")
    with pytest.raises(SolverError, match=_exactly(message)):
        _march((0.0, 0.25, 0.5, 0.75), (0.75,), term=Square(), y0=_one(1e100), check_finite=True)
    _march((0.0, 0.25, 0.5, 0.75), (0.75,), term=Square(), y0=_one(1e100))  # off: no check

    class Nameless(Euler):
        name = property(lambda self: (_ for _ in ()).throw(AttributeError))

    with pytest.raises(SolverError, match=re.escape("h = 0.25, method Nameless): the field")):
        _march((0.0, 0.25, 0.5, 0.75), (0.75,), stepper=Nameless(), term=Square(), y0=_one(1e100), check_finite=True)

    problem = Problem(Square(), RungeKutta(EULER), FixedGrid((0.0, 0.25, 0.5, 0.75)), 0.0, 0.75, (0.75,),
                      SolverStats(method="euler", gradient="backprop"))
    with pytest.raises(SolverError, match=_exactly(message.replace("toy_euler", "euler"))):
        problem.march(_one(1e100))


def test_a_non_finite_result_that_a_re_run_does_not_reproduce_is_still_an_error():
    class OnceNan(Term):
        def __init__(self):
            self.calls = 0

        def __call__(self, t, y, side):
            self.calls += 1
            return y * float("nan") if self.calls == 1 else -y

    term = OnceNan()
    problem = Problem(term, RungeKutta(EULER), FixedGrid((0.0, 0.5, 1.0)), 0.0, 1.0, (1.0,),
                      SolverStats(method="euler", gradient="backprop"))
    with pytest.raises(SolverError, match=_exactly("the solve's result is non-finite")):
        problem.march(_one())
    assert term.calls == 4  # the march, then the re-run step by step


def test_replay_recomputes_each_step_as_the_march_took_it():
    # dopri5 (FSAL) under a projection, outputs inside steps, a backward march: every replayed step gives the
    # march's next start, its restarted FSAL state and its outputs bit for bit
    term = Decay(2.0)
    stepper = RungeKutta(DOPRI5)
    y0 = torch.tensor([1.0, -2.0], dtype=F64)
    project = lambda y: y.clamp(min=-1.5)
    records = []
    out_times = (1.0, 0.9, 0.55, 0.5, 0.2, 0.0)
    outs, y1 = march(term, stepper, Adaptive(1e-3, 1e-6).controller(1.0, 0.0, order=5), y0, 1.0, 0.0, out_times,
                     StepCounts(), project=project, on_step=lambda rec, y, state: records.append((rec, y, state)))
    assert len(records) >= 3 and all(rec.refresh for rec, _, _ in records)
    replayed = {}
    for j, (rec, y, state) in enumerate(records):
        end, state1, step_outs = replay(term, stepper, rec, y, state)
        following = records[j + 1][1:] if j + 1 < len(records) else (y1, stepper.init(term, 0.0, y1, -1))
        assert torch.equal(end, following[0])
        assert len(state1) == 1 and torch.equal(state1[0], following[1][0])
        assert torch.equal(state1[0], -2.0 * end)  # f at the projected end
        replayed.update((i, v) for (i, _), v in zip(rec.outs, step_outs))
    assert sorted(replayed) == list(range(1, len(out_times)))
    for i, v in replayed.items():
        assert torch.equal(v, outs[i])


def test_replay_restarts_the_state_as_the_march_did_in_either_direction():
    for times in ((1.0, 0.5, 0.0), (0.0, 0.5, 1.0)):
        stepper = Euler()
        records = []
        _march(times, (times[-1],), stepper=stepper, stops=(0.5,),
               on_step=lambda rec, y, state: records.append((rec, y, state)))
        marched = stepper.inits[-1]  # the restart at the stop 0.5
        rec, y, state = records[0]
        end, state1, outs = replay(Decay(), stepper, rec, y, state)
        assert torch.equal(end, marched[1]) and state1 == (0.5,) and outs == []
        assert stepper.inits[-1][0::2] == marched[0::2] == (0.5, -1 if times[0] else 1)


def test_slopes_are_the_time_derivative_of_the_dense_output():
    # Euler's linear output: (y1 - y) / h = -y exactly; dopri5: a central difference of the dense output
    slopes = {}
    y0 = _one().requires_grad_()
    _march((0.0, 0.5, 1.0), (0.0, 0.25, 0.5, 0.75), stepper=RungeKutta(EULER), y0=y0, slopes=slopes)
    assert sorted(slopes) == [1, 3]
    assert float(slopes[1]) == -1.0 and float(slopes[3]) == -0.5
    assert not slopes[1].requires_grad and slopes[1].dtype == F64

    term, stepper = Decay(2.0), RungeKutta(DOPRI5)
    slopes, records = {}, []
    y = (torch.tensor([1.0, 3.0], dtype=F64), torch.tensor(-1.0, dtype=F64))
    march(term, stepper, Adaptive(1e-3, 1e-6).controller(0.0, 2.0, order=5), y, 0.0, 2.0, (0.3, 2.0),
          StepCounts(), slopes=slopes, on_step=lambda rec, y, state: records.append((rec, y)))
    assert sorted(slopes) == [0]
    rec, start = next((rec, y) for rec, y in records if rec.outs and rec.outs[0][0] == 0)
    _, _, _, dense = stepper.step(term, rec.t, rec.h, start, stepper.init(term, rec.t, start, 1))
    y1 = stepper.step(term, rec.t, rec.h, start, stepper.init(term, rec.t, start, 1))[0]
    s, eps = rec.outs[0][1], 1e-6
    at = lambda u: stepper.interpolate(start, y1, dense, rec.h, u)
    for got, plus, minus in zip(slopes[0], at(s + eps), at(s - eps)):
        assert torch.allclose(got, (plus - minus) / (2 * eps * rec.h), rtol=1e-7, atol=1e-9)
    assert torch.allclose(slopes[0][0], -2.0 * at(s)[0], rtol=1e-3)  # close to f at the output


def test_problem_params_are_the_terms_then_the_steppers_trainable_ones():
    p = torch.ones(2, requires_grad=True)
    two_step = LinearTwoStep(ControlGrid(0.0, 1.0, 4, interp="constant"))
    problem = Problem(Decay(params=[p]), two_step, FixedGrid((0.0, 1.0)), 0.0, 1.0, (1.0,), SolverStats("x", "y"))
    assert problem.params() == [p, two_step.k]
    assert [pieces for pieces, _ in problem.param_pieces()] == [(p,), (two_step.k,)]
    two_step.k.requires_grad_(False)
    assert problem.params() == [p] and [pieces for pieces, _ in problem.param_pieces()] == [(p,)]
    problem.stepper = RungeKutta(EULER)
    assert problem.params() == [p]


def test_problem_controller_stops_at_the_terms_jumps_and_the_given_stops():
    problem = Problem(Decay(jumps=(0.25,)), RungeKutta(DOPRI5), Adaptive(1e-3, 1e-6, first_step=1.0), 0.0, 1.0,
                      (1.0,), SolverStats("dopri5", "backprop"))
    controller = problem.controller(0.0, 1.0, stops=(0.5,))
    assert controller.stops == frozenset({0.25, 0.5})
    assert controller.order == 5 and controller.norm_leaves is None
    assert problem.controller(1.0, 0.0, norm_leaves=1).norm_leaves == 1
    assert problem.controller(0.0, 1.0, stepper=RungeKutta(EULER)).order == 1
    fixed = FixedGrid((0.0, 0.5, 1.0))
    assert problem.controller(1.0, 0.0, grid=fixed).times == (1.0, 0.5, 0.0)
    problem.grid = fixed
    assert problem.controller(0.0, 1.0).times == (0.0, 0.5, 1.0)
