"""The one march loop of contdepth, and where its steps end (fixed grids, adaptive control).

``march`` walks a stepper (:class:`~contdepth.solvers.base.Stepper`) from t0 to t1, either
direction, under a controller (:mod:`contdepth.solvers.controllers`) that proposes each step
and judges its error estimate. Every solve goes through it: the three gradient
methods (backprop marches under autograd; checkpoint records each accepted step and replays
it with :func:`replay`; the adjoint marches an augmented term backward), the physics tools,
and later steppers (multistep, stochastic, symplectic) that keep the stepper protocol.

Times are Python floats: a step costs at most one host sync (the adaptive error norm).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import SolverError
from ..solution import SolverStats, StepCounts
from ..terms import Term, check_returned
from ..tree import State, all_finite, detach, leaves, rebuild
from .base import Controller, Stepper, StepRecord
from ..timetol import close, slack
from .controllers import Adaptive, FixedGrid


def _emit(stepper: Stepper, rec: StepRecord, y: State, y1: State, dense, end: State) -> list[State]:
    """The requested states inside the step: ``end`` (y1, projected if ``rec.project``) at its end,
    elsewhere the dense output of the unprojected step y -> y1, projected if ``rec.project``."""
    outs = []
    for _, s in rec.outs:
        value = end if s is None else stepper.interpolate(y, y1, dense, rec.h, s)
        outs.append(rec.project(value) if s is not None and rec.project is not None else value)
    return outs


def _slope(stepper: Stepper, rec: StepRecord, y: State, y1: State, dense, s: float) -> State:
    """d/dtau of the dense output :func:`_emit` gives at tau = t + s h inside the step ``rec``:
    (d/ds ``stepper.interpolate(y, y1, dense, h, s)``) / h by forward-mode differentiation in s
    (detached); for linear outputs (y1 - y) / h."""
    first = leaves(y)[0]
    y, y1 = detach(y), detach(y1)
    _, tangents = torch.func.jvp(lambda u: tuple(leaves(stepper.interpolate(y, y1, dense, rec.h, u))),
                                 (torch.tensor(s, dtype=first.dtype, device=first.device),),
                                 (torch.ones((), dtype=first.dtype, device=first.device),))
    return rebuild(y, [d.detach() / rec.h for d in tangents])


def _state_at(stepper: Stepper, rec: StepRecord, y: State, y1: State, dense, end: State, tau: float) -> State:
    """The state at time ``tau`` in the step ``rec`` (as :func:`_emit` gives an output there)."""
    if close(tau, rec.t_next):
        return end
    value = stepper.interpolate(y, y1, dense, rec.h, (tau - rec.t) / rec.h)
    return value if rec.project is None else rec.project(value)


def replay(term: Term, stepper: Stepper, rec: StepRecord, y: State, state: tuple) -> tuple[State, tuple, list[State]]:
    """Recompute an accepted step exactly as :func:`march` took it (projection included):
    (y1, state1, outputs)."""
    y1, state1, _, dense = stepper.step(term, rec.t, rec.h, y, state)
    end = y1 if rec.project is None else rec.project(y1)
    outs = _emit(stepper, rec, y, y1, dense, end)
    if rec.refresh:
        state1 = stepper.init(term, rec.t_next, end, 1 if rec.h > 0 else -1)
    return end, state1, outs


def march(term: Term, stepper: Stepper, controller: Controller, y0: State, t0: float, t1: float, out_times: Sequence[float],
          counts: StepCounts, *, on_step: Callable[[StepRecord, State, tuple], None] | None = None,
          inject: Callable[[float, State], State] | None = None,
          check_finite: bool = False,
          project: Callable[[State], State] | None = None,
          stop_when: Callable[[float, float, Callable[[float], State]], bool] | None = None,
          slopes: dict[int, State] | None = None,
          ) -> tuple[list[State], State]:
    """Integrate from (t0, y0) to t1: (the states at ``out_times`` (monotone, in [t0, t1]), y(t1)).

    ``on_step(record, y, state)``: called for every accepted step with its start (checkpointing
    keeps all three, the reversible gradient only the record).
    ``inject(t, y)``: called with every accepted step's end state, returns the state to go on
    from (the adjoint adds output gradients there; its controller makes those times stops, so
    the stepper's state is restarted after them).
    ``check_finite``: raise :class:`SolverError` at the first step whose state is non-finite.
    ``project(y)``: applied to every accepted step's end, the state the march goes on from (a
    projected, or splitting, scheme: seed 000 eq. 26's block ReLU(psi + D psi) is Euler with
    ``project=torch.relu``). Outputs at step ends are projected states; inside a step, the
    projected dense output of the unprojected step; y0 itself is not projected. An adaptive step
    is judged by the error estimate of the unprojected step. Its result is checked once (first
    step): the same structure, shapes, dtypes and devices, else a ValueError.
    ``stop_when(t, t_next, at)``: called after every accepted step from t to t_next, with ``at(tau)``
    the state at any tau in [t, t_next] (the step's dense output, as outputs inside a step); True
    ends the march there: it returns the outputs up to t_next and the step's end (a terminal
    event: :mod:`contdepth.solvers.events` finds the event time inside that step with ``at``).
    ``slopes``: filled with ``{i: dy_i/dt_i}`` for every output i strictly inside a step, the time
    derivative of the step's dense output there (detached; the steps held fixed; forward-mode in
    s through ``stepper.interpolate``, which must then be written in torch operations of s). Not
    with ``project`` (a ValueError).
    """
    if slopes is not None and project is not None:
        raise ValueError("slopes= with project=: the time derivative of a projected output is not recorded")
    d = 1 if t1 > t0 else -1
    outs: list[State | None] = [None] * len(out_times)
    k = 0
    while k < len(out_times) and close(out_times[k], t0):
        outs[k], k = y0, k + 1
    state = stepper.init(term, t0, y0, d)
    controller.start(term, stepper, t0, y0, state)
    t, y, j = t0, y0, 0
    uniform, last_h = getattr(stepper, "uniform_steps", False), None
    while d * (t1 - t) > 0:
        h, t_next = controller.propose(t)
        if uniform and last_h is not None and not close(t - last_h, t - h):
            state = stepper.init(term, t, y, d)  # its history assumes steps of last_h
        y1, state1, error, dense = stepper.step(term, t, h, y, state)
        if not controller.judge(error, y, y1):
            counts.rejected_steps += 1
            continue
        counts.accepted_steps += 1
        j, begin, last_h = j + 1, k, h
        while k < len(out_times) and d * (out_times[k] - t_next) <= slack(t_next):
            k += 1
        end = y1 if project is None else project(y1)
        if project is not None and j == 1:
            check_returned(end, y1, "project")
        rec = StepRecord(t, h, t_next, tuple((i, None if close(out_times[i], t_next) else (out_times[i] - t) / h)
                                             for i in range(begin, k)),
                         t_next in controller.stops or (project is not None and stepper.fsal), project)
        if on_step is not None:
            on_step(rec, y, state)
        for (i, s), value in zip(rec.outs, _emit(stepper, rec, y, y1, dense, end)):
            outs[i] = value
            if slopes is not None and s is not None:
                slopes[i] = _slope(stepper, rec, y, y1, dense, s)
        if stop_when is not None and stop_when(t, t_next, lambda tau: _state_at(stepper, rec, y, y1, dense, end, tau)):
            return outs[:k], end
        if inject is not None:
            end = inject(t_next, end)
        if rec.refresh:
            state1 = stepper.init(term, t_next, end, d)
        t, y, state = t_next, end, state1
        if check_finite and not all_finite(y):
            raise SolverError(f"the solve became non-finite in step {j} (t = {rec.t} -> {t_next}, h = {h}, "
                              f"method {getattr(stepper, 'name', type(stepper).__name__)}): the field blows up; "
                              "use smaller steps, a more stable method, or a smaller initial state")
    if k < len(out_times):
        raise ValueError(f"output times {list(out_times[k:])} lie outside [{t0}, {t1}]")
    return outs, y


@dataclass
class Problem:
    """One solve: the term, the stepper, where steps end (``grid``: a :class:`FixedGrid` or
    :class:`Adaptive`), the interval, the requested output times, and the counters it fills.
    ``adjoint`` configures the backward solve of ``gradient="adjoint"``; ``project`` is applied
    after every accepted step of the forward solve (see :func:`march`; the records carry it to
    :func:`replay`, so checkpointing recomputes the same projected steps). ``slopes``: when a dict,
    :meth:`march` fills it with the time derivative of every output strictly inside a step (see
    :func:`march`)."""

    term: Term
    stepper: Stepper
    grid: FixedGrid | Adaptive
    t0: float
    t1: float
    out_times: tuple[float, ...]
    stats: SolverStats
    adjoint: "AdjointConfig | None" = None
    project: Callable[[State], State] | None = None
    slopes: dict[int, State] | None = None

    def params(self) -> list[torch.Tensor]:
        """What checkpoint differentiates: the term's parameters, then the stepper's trainable ones
        (a stepper that is an ``nn.Module``, e.g. the k of :class:`~contdepth.solvers.multistep.LinearTwoStep`)."""
        return self.term.params() + self._stepper_params()

    def param_pieces(self) -> list[tuple[tuple[torch.Tensor, ...], bool]]:
        """:meth:`params` as the pieces a backward step differentiates (the term's knot views)."""
        return self.term.param_pieces() + [((p,), False) for p in self._stepper_params()]

    def _stepper_params(self) -> list[torch.Tensor]:
        own = self.stepper.parameters() if isinstance(self.stepper, torch.nn.Module) else []
        return [p for p in own if p.requires_grad]

    def controller(self, t0: float, t1: float, *, stepper: Stepper | None = None,
                   grid: FixedGrid | Adaptive | None = None, stops: Sequence[float] = (),
                   norm_leaves: int | None = None) -> Controller:
        """Where the steps of a march from t0 to t1 end (default: this problem's stepper and grid;
        adaptive control also stops at the term's jumps and ``stops``)."""
        grid = self.grid if grid is None else grid
        if isinstance(grid, FixedGrid):
            return grid.controller(t0, t1)
        order = (self.stepper if stepper is None else stepper).order
        return grid.controller(t0, t1, order=order, stops=tuple(self.term.jumps()) + tuple(stops),
                               norm_leaves=norm_leaves)

    def march(self, y0: State, **kwargs) -> tuple[list[State], State]:
        """The forward solve; a non-finite result is re-run step by step to name the first bad step."""
        run = lambda **extra: march(self.term, self.stepper, self.controller(self.t0, self.t1), y0, self.t0,
                                    self.t1, self.out_times, self.stats.forward, project=self.project,
                                    slopes=self.slopes, **kwargs,
                                    **extra)
        outs, y1 = run()
        if not all_finite(y1):
            with torch.no_grad():
                run(check_finite=True)
            raise SolverError("the solve's result is non-finite")  # only if the re-run came out finite
        return outs, y1


@dataclass(frozen=True)
class AdjointConfig:
    """The adjoint's backward solve: its stepper, where its steps end, the seminorm choice, and
    jumps of f declared for the backward solve only (the term's own jumps always count)."""

    stepper: Stepper
    grid: FixedGrid | Adaptive
    seminorm: bool = False
    jumps: tuple[float, ...] = ()
