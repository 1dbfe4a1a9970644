"""Steppers for stochastic differential equations dX = f(t, X) dt + g(t, X) dW (seed 003:
stochastic ResNets), on the engine's stepper protocol.

They integrate an :class:`~contdepth.terms.SDETerm`: the term is the drift f, and it gives the
diagonal diffusion g (``term.diffusion``) and the Brownian increment of the step
(``term.increment(t, h)``, W(t + h) - W(t); ``sdesolve`` draws all increments of its grid in
one vectorised call and the steps read them). Because the increment is a function of the step
alone, replaying a step (checkpoint) or walking the grid backward (adjoint) meets the forward
pass's noise, bit for bit. Strong orders below are for the error
E|X_N - X(T)| on the same path; the drift sees the knot rule of the Runge-Kutta stepper (a
stage inside a step: the cell ahead; the step's end: the cell behind).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..terms import Term
from ..tree import State, axpy, lerp, tree_map


def _plus(y: State, g, dw, s: float = 1.0) -> State:
    """y + s g dW leaf by leaf; a None g or dW (no noise on that part) leaves y as it is."""
    if g is None or dw is None:
        return y
    if isinstance(y, torch.Tensor):
        return y + (s * g) * dw
    return tuple(_plus(a, b, c, s) for a, b, c in zip(y, g, dw))


def _map(fn: Callable[[torch.Tensor], torch.Tensor], dw):
    """``fn`` applied to the increments that exist."""
    if dw is None:
        return None
    return fn(dw) if isinstance(dw, torch.Tensor) else tuple(_map(fn, part) for part in dw)


class _FixedStepSDE:
    """Shared by the SDE steppers: no state between steps, linear dense output; ``order`` is the
    weak order, ``strong_order`` the pathwise one."""

    adaptive = False
    fsal = False

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def init(self, term: Term, t0: float, y0: State, direction: int) -> tuple:
        for name in ("diffusion", "increment"):
            if not hasattr(term, name):
                raise TypeError(f"method {self.name!r} integrates an SDE: solve it with cd.sdesolve (the term "
                                f"{type(term).__name__} has no {name})")
        return ()

    def interpolate(self, y0: State, y1: State, dense, h: float, s: float) -> State:
        """Linear between the step's ends (the path inside a step is not resolved)."""
        return lerp(y0, y1, s)


class EulerMaruyama(_FixedStepSDE):
    """X1 = X + h f(t, X) + g(t, X) dW (Ito). Strong order 1/2; 1 for additive noise."""

    name = "euler_maruyama"
    order = 1
    strong_order = 0.5

    def step(self, term: Term, t: float, h: float, y: State, state: tuple):
        f = term(t, y, 1 if h > 0 else -1)
        return _plus(axpy(y, h, f), term.diffusion(t, y), term.increment(t, h)), (), None, None


class Milstein(_FixedStepSDE):
    """X1 = X + h f + g dW + 1/2 g (dg/dX) (dW^2 - |h|) (Ito, diagonal noise: g_i depends on X_i
    alone; dg/dX by autograd). E[dW^2] = |h| also for h < 0 (reverse time). Strong order 1."""

    name = "milstein"
    order = 1
    strong_order = 1.0

    def step(self, term: Term, t: float, h: float, y: State, state: tuple):
        f = term(t, y, 1 if h > 0 else -1)
        g, gdg = term.diffusion_derivative(t, y)
        dw = term.increment(t, h)
        y1 = _plus(axpy(y, h, f), g, dw)
        return _plus(y1, gdg, _map(lambda w: w * w - abs(h), dw), 0.5), (), None, None


class StochasticHeun(_FixedStepSDE):
    """Heun's method for the Stratonovich SDE dX = f dt + g o dW: the predictor
    X~ = X + h f(t, X) + g(t, X) dW, then X1 = X + h/2 (f(t, X) + f(t + h, X~)) +
    1/2 (g(t, X) + g(t + h, X~)) dW. Strong order 1/2; 1 for additive or commuting noise."""

    name = "heun"
    order = 1
    strong_order = 0.5

    def step(self, term: Term, t: float, h: float, y: State, state: tuple):
        d = 1 if h > 0 else -1
        f0, g0, dw = term(t, y, d), term.diffusion(t, y), term.increment(t, h)
        predicted = _plus(axpy(y, h, f0), g0, dw)
        f1, g1 = term(t + h, predicted, -d), term.diffusion(t + h, predicted)
        y1 = axpy(y, h, tree_map(lambda a, b: 0.5 * (a + b), f0, f1))
        return _plus(_plus(y1, g0, dw, 0.5), g1, dw, 0.5), (), None, None


SDE_STEPPERS = {"euler_maruyama": EulerMaruyama, "milstein": Milstein, "heun": StochasticHeun}
