"""Where steps end: a fixed grid of step times, or adaptive error control of an embedded pair.

A controller is made per march (:meth:`FixedGrid.controller`, :meth:`Adaptive.controller`) and
follows :class:`~contdepth.solvers.base.Controller`: ``start`` once, then per step ``propose``
(the step size and its end) and ``judge`` (accept or reject by the error estimate, and choose
the next size). ``stops`` are times where every step must end (jumps of f, and the adjoint's
output times); the march restarts the stepper's state after them.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence

import torch
from torch.fx.experimental.symbolic_shapes import guard_int

from ..errors import SolverError, warn_user
from ..terms import Term
from ..timetol import close
from ..tree import State, leaves, rebuild
from .base import Stepper

STIFF = "method='kvaerno5'"  # the implicit method a stiff-looking failure suggests


@dataclass(frozen=True)
class StepCallbacks:
    """torchdiffeq's step callbacks, each ``callback(t0, y0, dt)`` or None: ``step`` for every
    attempted step, then ``accept`` or ``reject`` for it. t0 (the step's start) and dt (its
    length |h|) are float64 0-dim tensors on y0's device, y0 the state at t0 (for the adjoint's
    backward solve, its augmented state). A controller calls them once the step is taken, when
    it judges it (torchdiffeq calls ``step`` before taking it); a fixed step is always accepted."""

    step: Callable | None = None
    accept: Callable | None = None
    reject: Callable | None = None

    NAMES = ("callback_step", "callback_accept_step", "callback_reject_step")

    @classmethod
    def of(cls, func: object, suffix: str = "") -> "StepCallbacks | None":
        """The callbacks ``func`` has as attributes (``callback_step`` + ``suffix``, ...), or None."""
        found = [getattr(func, name + suffix, None) for name in cls.NAMES]
        for name, value in zip(cls.NAMES, found):
            if value is not None and not callable(value):
                raise TypeError(f"func.{name}{suffix} must be callable as (t0, y0, dt), got {type(value).__name__}")
        return cls(*found) if any(v is not None for v in found) else None

    def __call__(self, t: float, y: State, h: float, accepted: bool) -> None:
        """Report one judged step from (t, y) of length |h|."""
        device = leaves(y)[0].device
        t0 = torch.tensor(t, dtype=torch.float64, device=device)
        dt = torch.tensor(abs(h), dtype=torch.float64, device=device)
        for callback in (self.step, self.accept if accepted else self.reject):
            if callback is not None:
                callback(t0, y, dt)


class FixedGrid:
    """Step ends ``times`` (monotone, either direction); ``h`` the uniform step, if uniform;
    ``callbacks``: reported every step (:class:`StepCallbacks`).

    A uniform grid keeps h = (t1 - t0)/N for every step (t_j are rounded once from their exact
    value), so steps == n on a control grid is bit for bit the hand-written ResNet loop.
    """

    def __init__(self, times: Sequence[float], h: float | None = None,
                 callbacks: StepCallbacks | None = None) -> None:
        self.times = tuple(float(t) for t in times)
        self.h = h
        self.callbacks = callbacks

    def with_callbacks(self, callbacks: StepCallbacks | None) -> "FixedGrid":
        """This grid, reporting its steps to ``callbacks`` (each step is accepted: a reject-step
        callback would never be called, so giving one is warned about, as torchdiffeq does)."""
        if callbacks is not None and callbacks.reject is not None:
            warn_user("a callback_reject_step is never called on a fixed grid: every fixed step is accepted "
                      "(callback_step and callback_accept_step are called for each)")
        return FixedGrid(self.times, self.h, callbacks)

    @classmethod
    def uniform(cls, t0: float, t1: float, steps: int) -> "FixedGrid":
        # under torch.compile a step count that changed between calls arrives as a SymInt, which
        # Fraction refuses. guard_int specialises it (one graph per step count, as for a constant);
        # _uniform_times then runs at trace time (assume_constant_result), its lru_cache untraced.
        # tests/test_compile.py checks both step-count paths.
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
            return _FixedController(self.times, self.h, self.callbacks)
        if t0 == self.times[-1] and t1 == self.times[0]:
            return _FixedController(self.times[::-1], None if self.h is None else -self.h, self.callbacks)
        raise ValueError(f"the fixed grid runs from {self.times[0]} to {self.times[-1]}, not {t0} to {t1}")


@functools.lru_cache(maxsize=256)
def _exact_uniform_times(t0: float, t1: float, steps: int) -> tuple[float, ...]:
    span = Fraction(t1) - Fraction(t0)
    return tuple(float(Fraction(t0) + span * j / steps) for j in range(steps + 1))


@torch.compiler.assume_constant_result
def _uniform_times(t0: float, t1: float, steps: int) -> tuple[float, ...]:
    """t0 + (t1 - t0) j / steps, j = 0..steps, each rounded once from exact rationals; torch.compile
    runs it at trace time and keeps the tuple as a constant (it does not trace the lru_cache)."""
    return _exact_uniform_times(t0, t1, steps)


class _FixedController:
    """Walks the grid's times; every step is accepted."""

    def __init__(self, times: tuple[float, ...], h: float | None, callbacks: StepCallbacks | None = None) -> None:
        self.times, self.h, self.j, self.callbacks = times, h, 0, callbacks
        self.stops: frozenset[float] = frozenset()

    def start(self, term: Term, stepper: Stepper, t0: float, y0: State, state: tuple) -> None:
        """Nothing to choose: the grid is given."""

    def propose(self, t: float) -> tuple[float, float]:
        t_next = self.times[self.j + 1]
        return (t_next - t if self.h is None else self.h), t_next

    def judge(self, error: State | None, y0: State, y1: State) -> bool:
        if self.callbacks is not None:
            t = self.times[self.j]
            self.callbacks(t, y0, self.times[self.j + 1] - t, True)
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
    so many tensors of the state (the adjoint's seminorm, Kidger et al. 2021). ``norm``: instead
    of that RMS rule, r = norm(e / (atol + rtol max(|y0|, |y1|))) (the scaled error with the
    state's structure; a scalar), also in Hairer's first-step rule (torchdiffeq's ``norm``).
    A step that would pass a stop (a jump of f, t1) is cut to end on it; the next proposal grows
    from the cut step, as in torchdiffeq.

    ``min_step``/``max_step`` (torchdiffeq's): every proposal is clamped to
    min_step <= |h| <= max_step, and a step of |h| <= min_step is accepted whatever its error.
    ``callbacks``: reported every attempted step (:class:`StepCallbacks`).

    A solve that cannot go on is a :class:`~contdepth.errors.SolverError`, never a hang: a
    rejection that asks for a step below the minimum step at t (10 float spacings of t, the rule
    of Hairer's DOPRI5 and scipy's RK45), or more rejections in a row than the shrink by
    max(safety, dfactor) per rejection needs to get from |t1 - t0| down to it. When the error
    estimate was finite, the message suggests an implicit method (a stiff field).
    """

    rtol: float
    atol: float
    first_step: float | None = None
    max_num_steps: int = 2 ** 31 - 1
    safety: float = 0.9
    ifactor: float = 10.0
    dfactor: float = 0.2
    beta: float = 0.0
    min_step: float = 0.0
    max_step: float = math.inf
    norm: Callable[[State], torch.Tensor | float] | None = None
    callbacks: StepCallbacks | None = None

    def __post_init__(self) -> None:
        for name in ("min_step", "max_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise ValueError(f"{name} must be a float >= 0, got {value!r}")
        if not math.isfinite(self.min_step):
            raise ValueError(f"min_step must be finite, got {self.min_step!r}")
        if not self.max_step > 0 or self.min_step > self.max_step:
            raise ValueError(f"need 0 <= min_step <= max_step and max_step > 0, got min_step={self.min_step!r}, "
                             f"max_step={self.max_step!r}")
        if self.norm is not None and not callable(self.norm):
            raise TypeError(f"norm must be callable as norm(scaled_error) -> scalar, got {type(self.norm).__name__}")
        for name in ("safety", "dfactor"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in (0, 1) so that a rejected step is retried shorter, "
                                 f"got {getattr(self, name)}")
        if not self.ifactor >= 1:
            raise ValueError(f"ifactor must be >= 1 (an accepted step never shortens the next), got {self.ifactor}")
        if isinstance(self.beta, bool) or not isinstance(self.beta, (int, float)) or not self.beta >= 0:
            raise ValueError(f"beta must be a float >= 0 (0: the integral controller), got {self.beta!r}")

    def check_order(self, order: int) -> None:
        """Raise ``ValueError`` unless beta < 4 / (3 p) for the pair's order p: at or above it the
        exponent -1/p + 3 beta/4 of r is >= 0, so a smaller error would no longer let the step grow."""
        if not self.beta < 4 / (3 * order):
            raise ValueError(f"beta must be < 4 / (3 p) = {4 / (3 * order):.4g} for a pair of order p = {order} "
                             f"(else a smaller error shortens the next step), got beta={self.beta}; Hairer's PI "
                             "controller uses about 0.04")

    def controller(self, t0: float, t1: float, *, order: int, stops: Sequence[float] = (),
                   norm_leaves: int | None = None) -> "_AdaptiveController":
        self.check_order(order)
        return _AdaptiveController(self, t0, t1, order, stops, norm_leaves)

    def with_callbacks(self, callbacks: StepCallbacks | None) -> "Adaptive":
        """This control, reporting its steps to ``callbacks``."""
        return dataclasses.replace(self, callbacks=callbacks)


def _max_abs(y: State) -> float:
    """max |y| over every tensor of a state (a host sync: only for error messages)."""
    with torch.no_grad():
        return max(float(x.abs().max()) for x in leaves(y))


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
        self.finite = True  # was the last error estimate finite
        self.y_first: State | None = None  # y(t0) and the start of the last judged step (for _failure)
        self.y_last: State | None = None

    def _user_norm(self, scaled: State) -> float:
        """``spec.norm`` of a scaled state, checked to be one real number."""
        value = self.spec.norm(scaled)
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
            return abs(float(value))
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return abs(float(value))
        raise TypeError(f"norm must return a real scalar (a float or a one-element tensor), got "
                        f"{type(value).__name__}{tuple(value.shape) if isinstance(value, torch.Tensor) else ''}")

    def _ratio(self, error: State, y0: State, y1: State) -> float:
        sp = self.spec
        if sp.norm is not None:
            scaled = [e / (sp.atol + sp.rtol * torch.maximum(a.abs(), b.abs()))
                      for e, a, b in zip(leaves(error), leaves(y0), leaves(y1))]
            return self._user_norm(rebuild(error, scaled))
        triples = list(zip(leaves(error), leaves(y0), leaves(y1)))[:self.norm_leaves]
        norms = [(e / (sp.atol + sp.rtol * torch.maximum(a.abs(), b.abs()))).pow(2).mean().sqrt()
                 for e, a, b in triples]
        return float(torch.stack(norms).max())  # the one host sync of the step

    def _clamp(self, h: float) -> float:
        """h with its size clamped to [min_step, max_step]."""
        return math.copysign(min(max(abs(h), self.spec.min_step), self.spec.max_step), h)

    def start(self, term: Term, stepper: Stepper, t0: float, y0: State, state: tuple) -> None:
        span = abs(self.t1 - t0)
        self.y_first = y0
        if self.spec.first_step is not None:
            self.h = self.direction * min(abs(self.spec.first_step), span)
            return
        with torch.no_grad():  # a step size is data, not differentiated
            self.h = self._first_step(term, stepper, t0, y0, state, span)

    def _first_step(self, term: Term, stepper: Stepper, t0: float, y0: State, state: tuple, span: float) -> float:
        """Hairer, Norsett & Wanner II.4 (torchdiffeq's _select_initial_step), never past t1."""
        f0 = state[0] if stepper.fsal else term(t0, y0, self.direction)
        scaled = lambda v: [x / (self.spec.atol + self.spec.rtol * y.abs()) for x, y in zip(leaves(v), leaves(y0))]
        rms = (lambda v: self._user_norm(rebuild(y0, v))) if self.spec.norm is not None else (
            lambda v: max(float(x.pow(2).mean().sqrt()) for x in v[:self.norm_leaves]))  # the seminorm too
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
        if not math.isfinite(self.h) and self.spec.min_step > 0:
            self.h = self.direction * self.spec.min_step  # torchdiffeq's rule for a non-finite proposal
        if math.isfinite(self.h):
            self.h = self._clamp(self.h)
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
        """The error of a march that cannot go on from t, naming t, h, rtol and atol. If it looks
        stiff -- the last error estimate finite and the state bounded (max |y| at the failing step
        at most 1000 max(max |y0|, atol)), so not a blow-up -- it names an implicit method."""
        message = (f"{what} at t={t} (h={self.h}, rtol={self.spec.rtol}, atol={self.spec.atol}): the error estimate "
                   "stayed non-finite or too large (a state or field that blows up, or tolerances too tight for the "
                   "dtype)")
        if self.finite and self.y_last is not None and self.y_first is not None:
            bound = 1000 * max(_max_abs(self.y_first), self.spec.atol)
            if _max_abs(self.y_last) <= bound:
                message += ("; the state stayed bounded, so if rtol/atol suit the dtype the field may be stiff (fast "
                            f"decaying modes hold an explicit method to tiny steps): use an implicit method, {STIFF}")
        return SolverError(message)

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
            ratio = self._ratio(error, y0, y1)
        self.finite, self.y_last = math.isfinite(ratio), y0
        accepted = ratio <= 1 or abs(self.h_used) <= sp.min_step
        if sp.callbacks is not None:
            sp.callbacks(self.t, y0, self.h_used, accepted)
        if ratio > 1 and accepted:  # forced by min_step: the next proposal is clamped up to min_step
            self.h, self.rejects = self.h_used, 0
            return True
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
