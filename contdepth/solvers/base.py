"""The protocols of the engine: what a stepper and a controller provide to the march loop.

A new kind of solver (multistep, stochastic, symplectic, ...) is a new :class:`Stepper`; a new
way of choosing steps is a new :class:`Controller`. Neither needs to know about fields or
gradient methods: :func:`~contdepth.solvers.engine.march` and the gradient methods work with
any pair that keeps these contracts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..terms import Term
from ..tree import State


class Stepper(Protocol):
    """One step of a one-step (or history-carrying) method.

    ``state`` is what the stepper carries between steps as a tuple of tensors (an FSAL
    derivative, a multistep history, noise): the checkpoint gradient stores and differentiates
    it, and the march re-``init``s it after a jump of f. Under a projection (``project=``) the
    march re-``init``s an ``fsal`` stepper's state at every projected step end (its derivative
    was taken at the unprojected end); any other state is carried as is. ``adaptive`` steppers
    return an error estimate with the state's structure, fixed-step ones ``None``. A stepper that
    solves for its stages (stable on stiff fields) declares ``implicit = True`` (absent: False);
    the adjoint then takes y(t) from the forward solve instead of solving for it backward. A
    stepper whose state assumes equal steps (a multistep history) declares ``uniform_steps =
    True`` (absent: False): the march re-``init``s its state before a step of another length
    than the step before (a shortened last step, a grid of unequal steps, an event). A fixed-step
    explicit Runge-Kutta stepper without FSAL state declares ``quadrature_weights`` (its b;
    absent: None): the adjoint then integrates (y, a) backward with it and takes dL/dtheta as the
    quadrature over the stages it evaluates, instead of integrating (y, a, dL/dtheta) together.
    """

    name: str
    order: int
    adaptive: bool
    fsal: bool

    def init(self, term: Term, t0: float, y0: State, direction: int) -> tuple: ...

    def step(self, term: Term, t: float, h: float, y: State,
             state: tuple) -> tuple[State, tuple, State | None, Any]:
        """(y1, state1, error estimate or None, dense-output data for :meth:`interpolate`)."""

    def interpolate(self, y0: State, y1: State, dense: Any, h: float, s: float) -> State:
        """The state at t + s h, 0 < s < 1, inside the step just taken."""


class Controller(Protocol):
    """Where the steps of one march end (made fresh for every march)."""

    stops: frozenset[float]

    def start(self, term: Term, stepper: Stepper, t0: float, y0: State, state: tuple) -> None: ...

    def propose(self, t: float) -> tuple[float, float]:
        """(h, t_next) of the next step from t."""

    def judge(self, error: State | None, y0: State, y1: State) -> bool:
        """Accept the step just taken (and choose the next proposal)."""


@dataclass(frozen=True)
class StepRecord:
    """One accepted step: from ``t`` by ``h`` to ``t_next``; ``outs`` lists (output index, s) of the
    requested times inside it (s = None: the step's end itself); ``refresh``: restart the
    stepper's state at ``t_next`` (a jump of f, a change of the state made by the caller, or a
    projection under an FSAL stepper); ``project``: the map applied to the step's end (None:
    none), kept here so that :func:`~contdepth.solvers.engine.replay` applies it as the march did."""

    t: float
    h: float
    t_next: float
    outs: tuple[tuple[int, float | None], ...]
    refresh: bool
    project: Callable[[State], State] | None = None
