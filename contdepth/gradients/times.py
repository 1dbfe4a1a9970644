"""Gradients with respect to the times of a solve, around whichever gradient method ran.

The engine keeps times as Python floats; the tensors the user passed are attached here. For
outputs y_i = y(t_i) of dy/dt = f(t, y), y(t_0) = y0, and a loss L with dL/dy_i = ybar_i,

    dL/dt_i = <ybar_i, f(t_i, y_i)>                 (the output moves along the flow),
    dL/dt_0 = -<a(t_0) - ybar_0, f(t_0, y0)>        (moving the start shifts the whole solution),

with a(t_0) = dL/dy0 (torchdiffeq's adjoint gives the same). Two identities carry them:
:func:`start` passes y0 through and gives t_0 the gradient ``-<g, f(t_0, y0)>`` of what the solve's
gradient method returns for y0 (g = a(t_0) - ybar_0, since an output at t_0 is y0 itself, not a
result of the solve), and :func:`outputs` passes the stacked outputs through and gives each t_i
``<ybar_i, f(t_i, y_i)>`` (for i = 0 that is the ybar_0 term above). The gradient method only ever
sees float times, so this works the same for backprop, checkpoint, adjoint and reversible.

These are the gradients of the exact flow evaluated at the computed states. On a fixed grid
(steps set by t_0, t_1 and the step size or count, not by the other output times) an output
t_i strictly inside a step [a, b] is the step's dense output p(t_i) (linear: y_a + (t_i - a)
(y_b - y_a)/(b - a); ``interp="cubic"``: the cubic Hermite interpolant), so there

    dL/dt_i = <ybar_i, p'(t_i)>                     (the exact derivative of the computed output),

with p'(t_i) recorded by the march (:func:`~contdepth.solvers.engine.march`'s ``slopes``). At
t_0, at outputs on a step end, and for adaptive methods the flow formula stays: there a
fixed-step method differs from the derivative of its discrete solution by its discretisation
error (converging to the exact dL/dt at the method's order).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import SolverError
from ..solution import StepCounts
from ..solvers.engine import Problem
from ..terms import Term
from ..timetol import close
from ..tree import State, detach, leaves, rebuild
from .common import counting


def _inner(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """sum over leaves of ``<a, b>`` (in the first leaf's dtype)."""
    return sum((x * y).sum() for x, y in zip(a, b))


class _Start(torch.autograd.Function):
    @staticmethod
    def forward(ctx, term: Term, counts: StepCounts, like: State, t0: float, direction: int, t0_tensor: torch.Tensor,
                *y0: torch.Tensor):
        ctx.term, ctx.counts, ctx.like, ctx.t0, ctx.direction = term, counts, like, t0, direction
        ctx.save_for_backward(t0_tensor, *y0)
        return tuple(x.view_as(x) for x in y0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        t0_tensor, *y0 = ctx.saved_tensors
        with counting(ctx.term, ctx.counts):
            f = leaves(ctx.term(ctx.t0, rebuild(ctx.like, y0), ctx.direction))
        g = [torch.zeros_like(x) if gi is None else gi for gi, x in zip(grads, y0)]
        grad_t0 = (-_inner(g, f)).to(t0_tensor.dtype).reshape(t0_tensor.shape)
        return (None, None, None, None, None, grad_t0, *grads)


class _Outputs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, term: Term, counts: StepCounts, like: State, out_times: tuple[float, ...], sides: tuple[int, ...],
                inside: tuple[int, ...], t_out: torch.Tensor, *tensors: torch.Tensor):
        ctx.term, ctx.counts, ctx.like, ctx.out_times = term, counts, like, out_times
        ctx.sides, ctx.inside = sides, {i: k for k, i in enumerate(inside)}  # output index -> its slope
        ctx.save_for_backward(t_out, *tensors)
        n = len(leaves(like))
        return tuple(x.view_as(x) for x in tensors[:n])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads):
        t_out, *tensors = ctx.saved_tensors
        n = len(grads)
        stacked, slopes = tensors[:n], tensors[n:]
        grad_t = torch.zeros(len(ctx.out_times), dtype=stacked[0].dtype, device=stacked[0].device)
        with counting(ctx.term, ctx.counts):
            for i, (t, side) in enumerate(zip(ctx.out_times, ctx.sides)):
                g = [None if gi is None else gi[i] for gi in grads]
                if all(gi is None for gi in g):
                    continue
                if i in ctx.inside:
                    k = ctx.inside[i]
                    f = slopes[k * n:(k + 1) * n]
                else:
                    f = leaves(ctx.term(t, rebuild(ctx.like, [x[i] for x in stacked]), side))
                grad_t[i] = _inner([gi for gi in g if gi is not None], [fi for gi, fi in zip(g, f) if gi is not None])
        return (None, None, None, None, None, None, grad_t.to(t_out.dtype).reshape(t_out.shape), *grads,
                *([None] * len(slopes)))


def start(term: Term, counts: StepCounts, y0: State, t0: float, direction: int, t0_tensor: torch.Tensor) -> State:
    """y0 itself, with ``dL/dt_0 = -<g, f(t_0, y0)>`` for the gradient g that reaches y0 through the solve
    (f seen from the side of travel, ``direction``; evaluations counted in ``counts``)."""
    ys = _Start.apply(term, counts, y0, t0, direction, t0_tensor, *leaves(y0))
    return rebuild(y0, ys)


def outputs(term: Term, counts: StepCounts, like: State, stacked: tuple[torch.Tensor, ...],
            out_times: tuple[float, ...], t_out: torch.Tensor, t0: float, direction: int,
            slopes: dict[int, State] | None = None) -> tuple[torch.Tensor, ...]:
    """The stacked outputs themselves, with ``dL/dt_i = <ybar_i, f(t_i, y_i)>`` for ``t_out`` (a tensor of
    ``len(out_times)`` times; f at t_i seen from where the solve came: behind t_i, ahead at t_0), or
    ``<ybar_i, slopes[i]>`` for the outputs i in ``slopes`` (dy_i/dt_i of the computed output)."""
    sides = tuple(direction if close(t, t0) else -direction for t in out_times)
    inside = tuple(sorted(slopes or {}))
    kept = [x for i in inside for x in leaves(slopes[i])]
    return _Outputs.apply(term, counts, like, out_times, sides, inside, t_out, *stacked, *kept)


def at_event(term: Term, event: Callable[[torch.Tensor, State], torch.Tensor], t_event: float, y_event: State,
             direction: int) -> tuple[torch.Tensor, State]:
    """(t*, y(t*)) of a terminal event g(t*, y(t*)) = 0 (``event``: g, a scalar), differentiable:
    ``y_event`` is the solve's state at the fixed float ``t_event``, and by the implicit function theorem

        dt*/dtheta = -(dg/dtheta + dg/dy dy/dtheta) / (dg/dt + dg/dy . f(t*, y)),
        d y(t*)/dtheta = dy/dtheta + f(t*, y) dt*/dtheta

    for any theta the solve or g depends on (y0, t0, the field's and g's parameters); the values
    are t_event (in y's dtype) and y_event themselves. First derivatives only: the denominator
    is taken as a constant. A tangential crossing (zero denominator) is a
    SolverError."""
    first = leaves(y_event)[0]
    t_y = torch.tensor(t_event, dtype=first.dtype, device=first.device)
    if not torch.is_grad_enabled():
        return t_y, y_event
    with torch.no_grad():
        f = leaves(term(t_event, detach(y_event), -direction))
    with torch.enable_grad():
        t_in, y_in = t_y.clone().requires_grad_(True), detach(y_event, True)
        c = event(t_in, y_in)
        wrt = [t_in, *leaves(y_in)]
        grads = torch.autograd.grad(c, wrt, allow_unused=True) if c.requires_grad else [None] * len(wrt)
    slope = sum(((0.0 if g is None else g) * x).sum() for g, x in zip(grads, [torch.ones_like(t_y), *f]))
    if float(slope) == 0.0:
        raise SolverError(f"event_fn touches zero without crossing at t = {t_event} (dg/dt + dg/dy . f = 0): "
                          "the event time is not differentiable there")
    g = event(t_y, y_event)
    delta = -(g - g.detach()) / slope
    return t_y + delta, rebuild(y_event, [y + fi * delta for y, fi in zip(leaves(y_event), f)])


@dataclass(frozen=True)
class TimeTensors:
    """The user's times to differentiate: ``t0`` (0-dim) and ``outs`` (1-D, one time per output of
    the solve), each None when it does not require grad."""

    t0: torch.Tensor | None = None
    outs: torch.Tensor | None = None


def with_time_grads(run: Callable[[Problem, State], tuple[torch.Tensor, ...]], problem: Problem, y0: State,
                    times: TimeTensors) -> tuple[torch.Tensor, ...]:
    """``run(problem, y0)`` (a gradient method: stacked outputs), with the gradients of ``times``
    attached around it by :func:`start` and :func:`outputs` (f evaluated in the backward pass,
    counted in ``problem.stats.backward``; on a fixed grid, the slopes of outputs inside a step
    recorded by the forward march instead)."""
    d = 1 if problem.t1 > problem.t0 else -1
    counts = problem.stats.backward
    if times.outs is not None and not problem.stepper.adaptive:  # a fixed grid, set by t0, t1 alone
        problem = dataclasses.replace(problem, slopes={})
    if times.t0 is not None:
        y0 = start(problem.term, counts, y0, problem.t0, d, times.t0)
    stacked = run(problem, y0)
    if times.outs is not None:
        stacked = outputs(problem.term, counts, y0, stacked, problem.out_times, times.outs, problem.t0, d,
                          problem.slopes)
    return stacked
