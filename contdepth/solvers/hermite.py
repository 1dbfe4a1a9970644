"""Cubic Hermite outputs for a fixed-step method (torchdiffeq's ``options={"interp": "cubic"}``).

A fixed-step method's own dense output is linear between its step ends. :class:`CubicOutputs`
takes the steps of the method it wraps unchanged and gives the state at t + s h inside a step as
the cubic Hermite interpolant (:func:`~contdepth.tree.hermite`) through (y0, f(t, y0)) and
(y1, f(t + h, y1)): error O(h^4) instead of O(h^2), at the cost of two evaluations of f in each
step that holds an output (or an event's bisection), made when the first one is asked for.
"""
from __future__ import annotations

from typing import Any

from ..terms import Term
from ..tree import State, hermite
from .base import Stepper


class _Step:
    """What a step hands to :meth:`CubicOutputs.interpolate`: the wrapped method's dense data and
    the slopes at both ends, evaluated on first use."""

    def __init__(self, term: Term, t: float, h: float, y0: State, y1: State) -> None:
        self.term, self.t, self.h, self.y0, self.y1 = term, t, h, y0, y1
        self._slopes: tuple[State, State] | None = None

    def slopes(self) -> tuple[State, State]:
        if self._slopes is None:
            d = 1 if self.h > 0 else -1  # each end seen from inside the step (a jump there is on the step's side)
            self._slopes = (self.term(self.t, self.y0, d), self.term(self.t + self.h, self.y1, -d))
        return self._slopes


class CubicOutputs:
    """``stepper``'s steps, with cubic Hermite outputs inside a step (see the module docstring)."""

    adaptive = False

    def __init__(self, stepper: Stepper) -> None:
        if stepper.adaptive:
            raise ValueError(f"interp='cubic' is for fixed-step methods (an adaptive method has its own dense "
                             f"output), got {stepper.name!r}")
        self.stepper = stepper
        self.name, self.order, self.fsal = stepper.name, stepper.order, stepper.fsal
        self.implicit = getattr(stepper, "implicit", False)
        self.uniform_steps = getattr(stepper, "uniform_steps", False)

    def __repr__(self) -> str:
        return f"CubicOutputs({self.stepper!r})"

    def init(self, term: Term, t0: float, y0: State, direction: int) -> tuple:
        return self.stepper.init(term, t0, y0, direction)

    def step(self, term: Term, t: float, h: float, y: State, state: tuple) -> tuple[State, tuple, None, Any]:
        y1, state1, error, _ = self.stepper.step(term, t, h, y, state)
        return y1, state1, error, _Step(term, t, h, y, y1)

    def interpolate(self, y0: State, y1: State, dense: _Step, h: float, s: float) -> State:
        """The cubic Hermite interpolant at t + s h through (y0, f(t, y0)) and (y1, f(t + h, y1))."""
        return hermite(y0, y1, *dense.slopes(), h, s)
