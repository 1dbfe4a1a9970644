"""Where steps end: a fixed grid of step times, or adaptive error control of an embedded pair.

A controller is made per march (:meth:`FixedGrid.controller`, :meth:`Adaptive.controller`) and
follows :class:`~contdepth.solvers.base.Controller`: ``start`` once, then per step ``propose``
(the step size and its end) and ``judge`` (accept or reject by the error estimate, and choose
the next size). ``stops`` are times where every step must end (jumps of f, and the adjoint's
output times); the march restarts the stepper's state after them.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import torch
from torch.fx.experimental.symbolic_shapes import guard_int

from ..errors import SolverError
from ..terms import Term
from ..timetol import close
from ..tree import State, leaves, rebuild
from .base import Stepper


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
        # under torch.compile a step count that changed between calls arrives as a SymInt, which
        # Fraction refuses. guard_int specialises it (one graph per step count, as for a constant);
        # measured: this holds with the call through _uniform_times' lru_cache wrapper, while calling
        # the unwrapped function still saw a SymInt. tests/test_compile.py checks both step-count paths.
        steps = guard_int(steps)
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

    def controller(self, t0: float, t1: float) -> "_FixedController":
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
    """Walks the grid's times; every step is accepted."""

    def __init__(self, times: tuple[float, ...], h: float | None) -> None:
        self.times, self.h, self.j = times, h, 0
        self.stops: frozenset[float] = frozenset()

    def start(self, term: Term, stepper: Stepper, t0: float, y0: State, state: tuple) -> None:
        """Nothing to choose: the grid is given."""

    def propose(self, t: float) -> tuple[float, float]:
        t_next = self.times[self.j + 1]
        return (t_next - t if self.h is None else self.h), t_next

    def judge(self, error: State | None, y0: State, y1: State) -> bool:
        self.j += 1
        return True

    def step_sizes(self) -> dict[float, float]:
        """The step h this controller proposes from each of its times."""
        return {t: (s - t if self.h is None else self.h) for t, s in zip(self.times, self.times[1:])}


@dataclass(frozen=True)
class Adaptive:
    """Error control for an embedded pair: a step is accepted when its error estimate, in units
    of atol + rtol max(|y0|, |y1|), has RMS norm r <= 1 (the max over the state's tensors, as
    torchdiffeq). The next step is h * clamp(safety r^(-1/p + 3 beta/4) r_prev^beta), clamped
    to [1, ifactor] after an accepted step and to [dfactor, 1] after a rejected one (p the
    pair's order): with ``beta = 0`` (the default) the integral controller of torchdiffeq (the
    same steps on its test problems), with ``beta = 0.04`` Hairer's PI controller (Hairer,
    Norsett & Wanner II.4; fewer rejected steps, but about 1 % more evaluations on torchdiffeq's
    problems and up to 18 % more on piecewise-constant fields: benchmarks/adaptive.py).

    ``first_step`` None: Hairer's rule (two evaluations). ``norm_leaves``: count only the first
    so many tensors of the state (the adjoint's seminorm, Kidger et al. 2021). A step that
    would pass a stop (a jump of f, t1) is cut to end on it; the next proposal grows from the
    cut step, as in torchdiffeq.

    A solve that cannot go on is a :class:`~contdepth.errors.SolverError`, never a hang: a
    rejection that asks for a step below the minimum step at t (10 float spacings of t, the rule
    of Hairer's DOPRI5 and scipy's RK45), or more rejections in a row than the shrink by
    max(safety, dfactor) per rejection needs to get from |t1 - t0| down to it.
    """

    rtol: float
    atol: float
    first_step: float | None = None
    max_num_steps: int = 2 ** 31 - 1
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    beta: float = 0.0

    def __post_init__(self) -> None:
        for name in ("safety", "dfactor"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in (0, 1) so that a rejected step is retried shorter, "
                                 f"got {getattr(self, name)}")
        if not self.ifactor >= 1:
            raise ValueError(f"ifactor must be >= 1 (an accepted step never shortens the next), got {self.ifactor}")

    def controller(self, t0: float, t1: float, *, order: int, stops: Sequence[float] = (),
                   norm_leaves: int | None = None) -> "_AdaptiveController":
        return _AdaptiveController(self, t0, t1, order, stops, norm_leaves)


def min_step(t: float, direction: int) -> float:
    """The shortest step a rejection may ask for at t: 10 float spacings of t toward ``direction``
    (Hairer's DOPRI5, scipy's RK45); shorter steps no longer resolve their stage times t + c h."""
    return 10 * abs(math.nextafter(t, direction * math.inf) - t)


class _AdaptiveController:
    """One adaptive march: the current proposal ``h``, the previous error ratio (PI), the stops,
    and the rejections in a row at the current time ``t``."""

    def __init__(self, spec: Adaptive, t0: float, t1: float, order: int, stops: Sequence[float],
                 norm_leaves: int | None) -> None:
        self.spec, self.t1, self.order, self.norm_leaves = spec, t1, order, norm_leaves
        self.direction = 1 if t1 > t0 else -1
        d = self.direction
        inside = sorted({s for s in stops if d * (s - t0) > 0 and d * (t1 - s) > 0}, key=lambda s: d * s)
        self.stops, self._next_stops = frozenset(inside), inside + [t1]
        self.span = abs(t1 - t0)
        self.attempts, self.prev_ratio, self.h, self.h_used, self.t, self.rejects = 0, 1e-4, 0.0, 0.0, t0, 0

    def _ratio(self, error: State, y0: State, y1: State) -> torch.Tensor:
        sp = self.spec
        triples = list(zip(leaves(error), leaves(y0), leaves(y1)))[:self.norm_leaves]
        norms = [(e / (sp.atol + sp.rtol * torch.maximum(a.abs(), b.abs()))).pow(2).mean().sqrt()
                 for e, a, b in triples]
        return torch.stack(norms).max()

    def start(self, term: Term, stepper: Stepper, t0: float, y0: State, state: tuple) -> None:
        span = abs(self.t1 - t0)
        if self.spec.first_step is not None:
            self.h = self.direction * min(abs(self.spec.first_step), span)
            return
        with torch.no_grad():  # a step size is data, not differentiated
            self.h = self._first_step(term, stepper, t0, y0, state, span)

    def _first_step(self, term: Term, stepper: Stepper, t0: float, y0: State, state: tuple, span: float) -> float:
        """Hairer, Norsett & Wanner II.4 (torchdiffeq's _select_initial_step), never past t1."""
        f0 = state[0] if stepper.fsal else term(t0, y0, self.direction)
        scaled = lambda v: [x / (self.spec.atol + self.spec.rtol * y.abs()) for x, y in zip(leaves(v), leaves(y0))]
        rms = lambda v: max(float(x.pow(2).mean().sqrt()) for x in v[:self.norm_leaves])  # the seminorm too
        d0, d1 = rms(scaled(y0)), rms(scaled(f0))
        if not math.isfinite(d0 + d1):
            raise SolverError(f"the {'state' if not math.isfinite(d0) else 'derivative f(t0, y0)'} at the start "
                              f"(t0 = {t0}) is not finite: no step size can be chosen")
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
            raise self._failure("step size underflow", t)
        self.t, d = t, self.direction
        while d * (self._next_stops[0] - t) <= 0:
            self._next_stops.pop(0)
        stop, end = self._next_stops[0], t + self.h
        if d * (end - stop) >= 0 or close(end, stop):  # end exactly on the stop
            self.h_used = stop - t
            return self.h_used, stop
        self.h_used = self.h
        return self.h, end

    def _failure(self, what: str, t: float) -> SolverError:
        """The error of a march that cannot go on from t, naming t, h, rtol and atol."""
        return SolverError(f"{what} at t={t} (h={self.h}, rtol={self.spec.rtol}, atol={self.spec.atol}): "
                           "the error estimate stayed non-finite or too large (a state or field that blows up, "
                           "or tolerances too tight for the dtype)")

    def _rejected(self) -> None:
        """Fail if the retry after this rejection would be shorter than :func:`min_step`, or if the
        run of rejections at t is longer than any that shrinks h by max(safety, dfactor) or more
        each time (as the rule in :meth:`judge` does) before min_step stops it: h has stalled."""
        self.rejects += 1
        floor = min_step(self.t, self.direction)
        if abs(self.h) < floor:
            raise self._failure(f"step size underflow (below the minimum step {floor:.3g})", self.t)
        shrink = max(self.spec.safety, self.spec.dfactor)
        if self.rejects > 1 + math.log(self.span / floor) / math.log(1 / shrink):
            raise self._failure(f"step size stalled ({self.rejects} rejections in a row)", self.t)

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
            self.h = self.h_used * min(sp.ifactor, max(1.0, factor))
            self.rejects = 0
            return True
        factor = sp.safety * ratio ** (-1.0 / self.order) if math.isfinite(ratio) else sp.dfactor
        self.h = self.h_used * max(sp.dfactor, min(1.0, factor))
        self._rejected()
        return False
