"""Terminal events: the first time t* after t0 where an event function g(t, y(t)) changes sign.

torchdiffeq's semantics: ``event_fn(t, y)`` returns a tensor of any shape; each of its entries
is made positive at t0 by its sign there, and the event is the first time the smallest of
them reaches zero, g(t, y) = min_k sign(c_k(t0, y0)) c_k(t, y). The march
(:func:`~contdepth.solvers.engine.march`) stops after the first accepted step whose end has
g <= 0, and t* is found inside that step by bisection on the step's dense output
(``stepper.interpolate``: linear for fixed-step methods, 4th order for dopri5/tsit5) down to the
time tolerance of :mod:`contdepth.timetol`. The search of ``odeint`` runs without a bound in time: fixed-step
methods step by ``step_size`` from t0 (at most ``max_steps`` steps), adaptive ones until their
``max_num_steps``; that of ``solve`` ends at t1, on the solve's own steps.
"""
from __future__ import annotations

import sys
from typing import Callable

import torch

from ..errors import SolverError
from ..solution import StepCounts
from ..terms import Term, time_tensor
from ..timetol import close
from ..tree import State, leaves
from .base import Stepper
from .controllers import Adaptive, FixedGrid
from .engine import march

EventFn = Callable[[torch.Tensor, State], torch.Tensor]


def event_signs(event_fn: EventFn, t0: torch.Tensor, y0: State) -> torch.Tensor:
    """sign(c(t0, y0)) of every entry of the event function at the start; a zero is a ValueError
    (an event at t0 itself is no terminal event after it)."""
    with torch.no_grad():
        c0 = event_fn(t0, y0)
    if not isinstance(c0, torch.Tensor) or not c0.is_floating_point():
        raise TypeError(f"event_fn(t, y) must return a floating tensor, got "
                        f"{type(c0).__name__ if not isinstance(c0, torch.Tensor) else c0.dtype}")
    if c0.numel() == 0:
        raise ValueError("event_fn(t, y) returned an empty tensor: there is no event to look for")
    if not bool(torch.isfinite(c0).all()):
        raise ValueError(f"event_fn(t0, y0) must be finite, got {c0.tolist()}")
    signs = torch.sign(c0.detach()).flatten()
    if not bool((signs != 0).all()):
        zeros = torch.nonzero(signs == 0).flatten().tolist()
        raise ValueError(f"event_fn is zero at t0 = {float(t0)} (entries {zeros}): "
                         "the start is not before the event; start elsewhere or shift event_fn")
    return signs


def combined(event_fn: EventFn, signs: torch.Tensor, t: torch.Tensor, y: State) -> torch.Tensor:
    """g(t, y) = min_k sign_k c_k(t, y): positive before the event, zero at it."""
    return (event_fn(t, y).flatten() * signs).min()


class _Ray:
    """Fixed steps of size ``h`` from t0, without end: t_j = t0 + j h (each rounded once)."""

    def __init__(self, t0: float, h: float, max_steps: int) -> None:
        self.t0, self.h, self.max_steps, self.j = t0, h, max_steps, 0
        self.stops: frozenset[float] = frozenset()

    def start(self, term: Term, stepper: Stepper, t0: float, y0: State, state: tuple) -> None:
        """Nothing to choose: the step is given."""

    def propose(self, t: float) -> tuple[float, float]:
        if self.j >= self.max_steps:
            raise SolverError(f"no event within {self.max_steps} steps of step_size {abs(self.h)} from t0 = {self.t0} "
                              f"(t = {t}): the event function never changed sign")
        t_next = self.t0 + (self.j + 1) * self.h
        return t_next - t, t_next

    def judge(self, error: State | None, y0: State, y1: State) -> bool:
        self.j += 1
        return True


def locate_event(term: Term, stepper: Stepper, steps: Adaptive | FixedGrid | float | None, y0: State, t0: float,
                 direction: int, event_fn: EventFn, counts: StepCounts, *, t1: float | None = None,
                 max_steps: int = 2 ** 20) -> tuple[float | None, Callable[[torch.Tensor, State], torch.Tensor]]:
    """(t*, g): the event time (a float past t0 in ``direction``) and the scalar event function g.
    March from (t0, y0), adaptive under ``steps`` (an :class:`Adaptive`), on ``steps`` (a
    :class:`FixedGrid` from t0 to t1) or by fixed steps of size ``steps`` (a float; None is a
    ValueError naming ``options['step_size']``), until g changes sign; then bisect g(tau, y(tau))
    on the dense output of that step. ``t1``: look in (t0, t1] only, t* None if g keeps its sign
    there (None: no end). No autograd graph is recorded."""
    first = leaves(y0)[0]
    at_time = lambda t: time_tensor(t, first.dtype, first.device)
    signs = event_signs(event_fn, at_time(t0), y0)
    event = lambda t, y: combined(event_fn, signs, t, y)
    g = lambda t, y: float(event(at_time(t), y))
    found: list[float] = []

    def stop_when(t: float, t_next: float, at: Callable[[float], State]) -> bool:
        if g(t_next, at(t_next)) > 0:
            return False
        lo, hi = t, t_next  # g > 0 at lo, g <= 0 at hi
        while not close(lo, hi):
            mid = lo + (hi - lo) / 2
            if mid in (lo, hi):
                break
            lo, hi = (mid, hi) if g(mid, at(mid)) > 0 else (lo, mid)
        found.append(lo + (hi - lo) / 2)
        return True

    horizon = direction * sys.float_info.max if t1 is None else t1
    if isinstance(steps, Adaptive):
        controller = steps.controller(t0, horizon, order=stepper.order, stops=term.jumps())
    elif isinstance(steps, FixedGrid):
        controller = steps.controller(t0, horizon)
    elif steps is None:
        raise ValueError(f"event_fn with the fixed-step method {getattr(stepper, 'name', stepper)!r} needs "
                         "options={'step_size': h}: the event is looked for by steps of h from t0")
    else:
        controller = _Ray(t0, direction * steps, max_steps)
    with torch.no_grad():
        march(term, stepper, controller, y0, t0, horizon, (t0,), counts, stop_when=stop_when)
    if not found:
        return None, event
    if close(found[0], t0):
        raise SolverError(f"the event is at t0 = {t0} up to rounding: event_fn changes sign immediately")
    return found[0], event
