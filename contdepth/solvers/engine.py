"""The one march loop of contdepth, and where its steps end (fixed grids, adaptive control).

``march`` walks a stepper from t0 to t1 (either direction) under a controller that proposes
each step and judges its error estimate. Every solve goes through it: the three gradient
methods (backprop marches under autograd; checkpoint records each accepted step and replays
it with :func:`replay`; the adjoint marches an augmented term backward), the physics tools,
and later steppers (multistep, stochastic, symplectic) that keep the stepper protocol of
:mod:`contdepth.solvers.rk`.

Times are Python floats: a step costs at most one host sync (the adaptive error norm).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import torch

from ..errors import SolverError
from ..solution import StepCounts
from ..terms import Term
from ..tree import State, all_finite, leaves, rebuild


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-12 * max(1.0, abs(a), abs(b))


@dataclass(frozen=True)
class StepRecord:
    """One accepted step: from ``t`` by ``h`` to ``t_next``; ``outs`` lists (output index, s) of the
    requested times inside it (s = None: the step's end itself); ``refresh``: restart the
    stepper's state at ``t_next`` (a jump of f, or a change of the state made by the caller)."""

    t: float
    h: float
    t_next: float
    outs: tuple[tuple[int, float | None], ...]
    refresh: bool


# ---------------------------------------------------------------------------------------------
# Where steps end
# ---------------------------------------------------------------------------------------------

class FixedGrid:
    """Step ends ``times`` (monotone, either direction); ``h`` the uniform step, if uniform.

    A uniform grid keeps h = (t1 - t0)/N for every step (t_j are rounded once from their exact
    value), so steps == n on a control grid is bit for bit the hand-written ResNet loop.
    """

    def __init__(self, times: Sequence[float], h: float | None = None) -> None:
        self.times = tuple(float(t) for t in times)
        self.h = h

    @classmethod
    def uniform(cls, t0: float, t1: float, steps: int) -> "FixedGrid":
        return cls(_uniform_times(t0, t1, steps), (t1 - t0) / steps)

    @classmethod
    def from_step_size(cls, t0: float, t1: float, step_size: float) -> "FixedGrid":
        """Steps of ``step_size`` from t0, the last one shortened to end on t1 (torchdiffeq's grid)."""
        n = math.ceil((t1 - t0) / (math.copysign(step_size, t1 - t0)) + 1)
        times = [t0 + j * math.copysign(step_size, t1 - t0) for j in range(n)]
        times[-1] = t1
        if len(times) > 2 and close(times[-2], t1):
            times.pop(-2)
        return cls(times)

    @property
    def steps(self) -> int:
        return len(self.times) - 1

    def controller(self, t0: float, t1: float, **_: object) -> "_FixedController":
        """Steps over this grid from t0 to t1: the grid itself, or reversed (the adjoint)."""
        if t0 == self.times[0] and t1 == self.times[-1]:
            return _FixedController(self.times, self.h)
        if t0 == self.times[-1] and t1 == self.times[0]:
            return _FixedController(self.times[::-1], None if self.h is None else -self.h)
        raise ValueError(f"the fixed grid runs from {self.times[0]} to {self.times[-1]}, not {t0} to {t1}")


@functools.lru_cache(maxsize=256)
def _uniform_times(t0: float, t1: float, steps: int) -> tuple[float, ...]:
    span = Fraction(t1) - Fraction(t0)
    return tuple(float(Fraction(t0) + span * j / steps) for j in range(steps + 1))


class _FixedController:
    def __init__(self, times: tuple[float, ...], h: float | None) -> None:
        self.times, self.h, self.j = times, h, 0
        self.stops: frozenset[float] = frozenset()

    def start(self, term, stepper, t0, y0, state) -> None:
        pass

    def propose(self, t: float) -> tuple[float, float]:
        t_next = self.times[self.j + 1]
        return (t_next - t if self.h is None else self.h), t_next

    def judge(self, error, y0, y1) -> bool:
        self.j += 1
        return True


@dataclass(frozen=True)
class Adaptive:
    """Error control for an embedded pair: accept a step when the error estimate, in units of
    atol + rtol max(|y0|, |y1|), has RMS norm <= 1 (the max over the state's tensors, as
    torchdiffeq); then a PI controller (Hairer, Norsett & Wanner II.4, beta = 0.04) sets h.

    ``first_step`` None: Hairer's rule (two evaluations). ``norm_leaves``: count only the first
    so many tensors of the state (the adjoint's seminorm, Kidger et al. 2021).
    """

    rtol: float
    atol: float
    first_step: float | None = None
    max_num_steps: int = 2 ** 31 - 1
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    beta: float = 0.0

    def controller(self, t0: float, t1: float, *, order: int, stops: Sequence[float] = (),
                   norm_leaves: int | None = None) -> "_AdaptiveController":
        return _AdaptiveController(self, t0, t1, order, stops, norm_leaves)


class _AdaptiveController:
    def __init__(self, spec: Adaptive, t0: float, t1: float, order: int, stops: Sequence[float],
                 norm_leaves: int | None) -> None:
        self.spec, self.t1, self.order, self.norm_leaves = spec, t1, order, norm_leaves
        self.direction = 1 if t1 > t0 else -1
        d = self.direction
        inside = sorted({s for s in stops if d * (s - t0) > 0 and d * (t1 - s) > 0}, key=lambda s: d * s)
        self.stops, self._next_stops = frozenset(inside), inside + [t1]
        self.attempts, self.prev_ratio, self.h = 0, 1e-4, 0.0

    def _ratio(self, error: State, y0: State, y1: State) -> torch.Tensor:
        sp = self.spec
        triples = list(zip(leaves(error), leaves(y0), leaves(y1)))[:self.norm_leaves]
        norms = [(e / (sp.atol + sp.rtol * torch.maximum(a.abs(), b.abs()))).pow(2).mean().sqrt()
                 for e, a, b in triples]
        return torch.stack(norms).max()

    def start(self, term: Term, stepper, t0: float, y0: State, state: tuple) -> None:
        span = abs(self.t1 - t0)
        if self.spec.first_step is not None:
            self.h = self.direction * min(abs(self.spec.first_step), span)
            return
        with torch.no_grad():  # a step size is data, not differentiated
            self.h = self._first_step(term, stepper, t0, y0, state, span)

    def _first_step(self, term: Term, stepper, t0: float, y0: State, state: tuple, span: float) -> float:
        """Hairer, Norsett & Wanner II.4 (torchdiffeq's _select_initial_step), never past t1."""
        f0 = state[0] if stepper.fsal else term(t0, y0, self.direction)
        scaled = lambda v: [x / (self.spec.atol + self.spec.rtol * y.abs()) for x, y in zip(leaves(v), leaves(y0))]
        rms = lambda v: max(float(x.pow(2).mean().sqrt()) for x in v)
        d0, d1 = rms(scaled(y0)), rms(scaled(f0))
        h0 = min(1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1, span)
        y_probe = [y + self.direction * h0 * f for y, f in zip(leaves(y0), leaves(f0))]
        f1 = term(t0 + self.direction * h0, rebuild(y0, y_probe), self.direction)
        d2 = rms(scaled(rebuild(y0, [a - b for a, b in zip(leaves(f1), leaves(f0))]))) / h0
        h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1.0 / self.order)
        return self.direction * min(100 * h0, h1, span)

    def propose(self, t: float) -> tuple[float, float]:
        self.attempts += 1
        if self.attempts > self.spec.max_num_steps:
            raise SolverError(f"max_num_steps={self.spec.max_num_steps} exceeded at t={t} (h={self.h}); "
                              "raise options['max_num_steps'], loosen rtol/atol, or check the field for stiffness")
        if t + self.h == t or not math.isfinite(self.h):
            raise SolverError(f"step size underflow at t={t} (h={self.h}, rtol={self.spec.rtol}, atol={self.spec.atol}): "
                              "the error estimate stayed non-finite or too large (a state or field that blows up, "
                              "or tolerances too tight for the dtype)")
        d = self.direction
        while d * (self._next_stops[0] - t) <= 0:
            self._next_stops.pop(0)
        stop = self._next_stops[0]
        self.clipped = d * (t + self.h - stop) >= -1e-12 * max(1.0, abs(stop))
        self.h_used = stop - t if self.clipped else self.h
        return self.h_used, t + self.h_used if not self.clipped else stop

    def judge(self, error: State, y0: State, y1: State) -> bool:
        sp = self.spec
        with torch.no_grad():
            ratio = float(self._ratio(error, y0, y1))  # the one host sync of the step
        if ratio <= 1:
            if ratio == 0:
                factor = sp.ifactor
            else:
                alpha = 1.0 / self.order - 0.75 * sp.beta
                factor = sp.safety * ratio ** -alpha * self.prev_ratio ** sp.beta
            self.prev_ratio = max(ratio, 1e-4)
            h = self.h_used * min(sp.ifactor, max(1.0, factor))
            # A step cut short to end on a stop says nothing against the size it was cut from.
            self.h = self.h if self.clipped and abs(self.h) > abs(h) else h
            return True
        factor = sp.safety * ratio ** (-1.0 / self.order) if math.isfinite(ratio) else sp.dfactor
        self.h = self.h_used * max(sp.dfactor, min(1.0, factor))
        return False


def _emit(stepper, rec: StepRecord, y: State, y1: State, dense) -> list[State]:
    """The requested states inside the step: y1 at its end, dense output elsewhere."""
    return [y1 if s is None else stepper.interpolate(y, y1, dense, rec.h, s) for _, s in rec.outs]


def replay(term: Term, stepper, rec: StepRecord, y: State, state: tuple) -> tuple[State, tuple, list[State]]:
    """Recompute an accepted step exactly as :func:`march` took it: (y1, state1, outputs)."""
    y1, state1, _, dense = stepper.step(term, rec.t, rec.h, y, state)
    outs = _emit(stepper, rec, y, y1, dense)
    if rec.refresh:
        state1 = stepper.init(term, rec.t_next, y1, 1 if rec.h > 0 else -1)
    return y1, state1, outs


def march(term: Term, stepper, controller, y0: State, t0: float, t1: float, out_times: Sequence[float],
          counts: StepCounts, *, record: list | None = None, inject: Callable[[float, State], State] | None = None,
          check_finite: bool = False) -> tuple[list[State], State]:
    """Integrate from (t0, y0) to t1: (the states at ``out_times`` (monotone, in [t0, t1]), y(t1)).

    ``record``: append (StepRecord, y, state) for every accepted step (checkpointing).
    ``inject(t, y)``: called with every accepted step's end state, returns the state to go on
    from (the adjoint adds output gradients there; its controller makes those times stops, so
    the stepper's state is restarted after them).
    ``check_finite``: raise :class:`SolverError` at the first step whose state is non-finite.
    """
    d = 1 if t1 > t0 else -1
    outs: list[State | None] = [None] * len(out_times)
    k = 0
    while k < len(out_times) and close(out_times[k], t0):
        outs[k], k = y0, k + 1
    state = stepper.init(term, t0, y0, d)
    controller.start(term, stepper, t0, y0, state)
    t, y, j = t0, y0, 0
    while d * (t1 - t) > 0:
        h, t_next = controller.propose(t)
        y1, state1, error, dense = stepper.step(term, t, h, y, state)
        if not controller.judge(error, y, y1):
            counts.rejected_steps += 1
            continue
        counts.accepted_steps += 1
        j, begin = j + 1, k
        while k < len(out_times) and d * (out_times[k] - t_next) <= 1e-12 * max(1.0, abs(t_next)):
            k += 1
        rec = StepRecord(t, h, t_next, tuple((i, None if close(out_times[i], t_next) else (out_times[i] - t) / h)
                                             for i in range(begin, k)), t_next in controller.stops)
        if record is not None:
            record.append((rec, y, state))
        for (i, _), value in zip(rec.outs, _emit(stepper, rec, y, y1, dense)):
            outs[i] = value
        if inject is not None:
            y1 = inject(t_next, y1)
        if rec.refresh:
            state1 = stepper.init(term, t_next, y1, d)
        t, y, state = t_next, y1, state1
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
    ``adjoint`` configures the backward solve of ``gradient="adjoint"``."""

    term: Term
    stepper: object
    grid: FixedGrid | Adaptive
    t0: float
    t1: float
    out_times: tuple[float, ...]
    stats: object
    adjoint: "AdjointConfig | None" = None

    def controller(self, t0: float, t1: float, *, stepper=None, grid=None, stops: Sequence[float] = (),
                   norm_leaves: int | None = None):
        grid = self.grid if grid is None else grid
        if isinstance(grid, FixedGrid):
            return grid.controller(t0, t1)
        order = (self.stepper if stepper is None else stepper).order
        return grid.controller(t0, t1, order=order, stops=tuple(self.term.jumps()) + tuple(stops),
                               norm_leaves=norm_leaves)

    def march(self, y0: State, **kwargs) -> tuple[list[State], State]:
        """The forward solve; a non-finite result is re-run step by step to name the first bad step."""
        run = lambda **extra: march(self.term, self.stepper, self.controller(self.t0, self.t1), y0, self.t0,
                                    self.t1, self.out_times, self.stats.forward, **kwargs, **extra)
        outs, y1 = run()
        if not all_finite(y1):
            with torch.no_grad():
                run(check_finite=True)
        return outs, y1


@dataclass(frozen=True)
class AdjointConfig:
    """The adjoint's backward solve: its stepper, where its steps end, and the seminorm choice."""

    stepper: object
    grid: FixedGrid | Adaptive
    seminorm: bool = False
