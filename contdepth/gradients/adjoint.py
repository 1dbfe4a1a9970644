"""The continuous adjoint method (seed 002 eq. 10-15): memory independent of the number of steps.

Backward in time from t1 to t0, with a(t1) = dL/dy(t1), the engine integrates the augmented
state (y, a, g) (eq. 11-12)

    dy/dt = f(t, y),   da/dt = -a^T df/dy,   dg/dt = -a^T df/dtheta,   g(t1) = 0,

so that dL/dy0 = a(t0) and dL/dtheta = g(t0) (the parameter integral of eq. 12). Requested
states at other times add their gradients to a on the way. Fixed-step methods walk the forward
grid in reverse (an output interpolated inside a step adds its gradient to both ends with the
interpolation weights); adaptive methods control the error of (y, a, g), or of (y, a) alone
with ``seminorm`` (Kidger, Chen & Lyons 2021: the g-integrals do not feed back into the
dynamics), and stop at every output time and jump of f. The gradient is that of the continuous
problem, so it differs from backprop's by the discretisation error.
"""
from __future__ import annotations

import bisect
from collections import defaultdict

import torch

from ..errors import SolverError
from ..solvers.controllers import FixedGrid, close
from ..solvers.engine import Problem, march
from ..terms import Term
from ..tree import State, add, all_finite, detach, leaves, rebuild, tree_map
from .common import counting, output_grads, stack_outputs, vjp


class AdjointTerm(Term):
    """The augmented right-hand side (f, -a df/dy, -a df/dtheta) of ``term`` (seed 002 eq. 11-12)."""

    def __init__(self, term: Term) -> None:
        self.term = term  # evaluations are counted by the wrapped term
        self._params = term.params()

    def __call__(self, t: float, state, side: int):
        y, a, _ = state
        with torch.enable_grad():
            y_in = detach(y, True)
            f = self.term(t, y_in, side)
            grads = vjp(leaves(f), leaves(y_in) + self._params, leaves(a))
        n = len(leaves(y_in))
        return (detach(f), rebuild(a, [-x for x in grads[:n]]), tuple(-x for x in grads[n:]))


def _injections(problem: Problem, g: list[State]) -> dict[float, list[tuple[State, float]]]:
    """Where the backward solve adds each output's gradient, with which weight."""
    at: dict[float, list] = defaultdict(list)
    if isinstance(problem.grid, FixedGrid):
        times = problem.grid.times
        d = 1 if times[-1] > times[0] else -1
        keys = [d * t for t in times]
        for i, t in enumerate(problem.out_times):
            j = bisect.bisect_left(keys, d * t - 1e-12 * max(1.0, abs(t)))
            if close(t, times[j]):
                at[times[j]].append((g[i], 1.0))
            else:  # inside step j - 1 -> j: the forward pass interpolated linearly
                s = (t - times[j - 1]) / (times[j] - times[j - 1])
                at[times[j - 1]].append((g[i], 1.0 - s))
                at[times[j]].append((g[i], s))
    else:
        for i, t in enumerate(problem.out_times):
            at[t].append((g[i], 1.0))
    return at


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem: Problem, like: State, *inputs: torch.Tensor):
        n = len(leaves(like))
        with torch.no_grad():
            outs, y1 = problem.march(rebuild(like, inputs[:n]))
        ctx.problem, ctx.like = problem, like
        ctx.save_for_backward(*leaves(y1))
        return stack_outputs(outs)

    @staticmethod
    def backward(ctx, *grads):
        problem: Problem = ctx.problem
        config = problem.adjoint
        y1 = rebuild(ctx.like, ctx.saved_tensors)
        g = [rebuild(ctx.like, x) for x in output_grads(ctx.like, grads, len(problem.out_times))]
        at = _injections(problem, g)

        def gathered(t: float, a: State) -> State:
            for grad, w in at.get(t, ()):
                a = add(a, grad if w == 1.0 else tree_map(lambda x: w * x, grad))
            return a

        def inject(t: float, state):
            y, a, p = state
            return (y, gathered(t, a), p) if t in at else state

        params = problem.term.params()
        aug0 = (y1, gathered(problem.t1, tree_map(torch.zeros_like, y1)), tuple(torch.zeros_like(p) for p in params))
        term = problem.term.adjoint_term(AdjointTerm(problem.term))
        n_y = len(leaves(y1))
        controller = problem.controller(problem.t1, problem.t0, stepper=config.stepper, grid=config.grid,
                                        stops=tuple(at) + config.jumps, norm_leaves=2 * n_y if config.seminorm else None)
        try:
            with counting(problem.term, problem.stats.backward):
                _, (y, a, p) = march(term, config.stepper, controller, aug0, problem.t1, problem.t0, (),
                                     problem.stats.backward, inject=inject)
        except SolverError as err:
            raise SolverError(f"the adjoint backward solve failed: {err}") from err
        if not all_finite((y, a)):
            raise SolverError(
                f"the adjoint backward solve ({getattr(config.stepper, 'name', config.stepper)}) became non-finite: "
                "reconstructing y backward in time is unstable for this field (e.g. strong friction, which "
                "contracts forward and expands backward), or the loss gradient is not finite; "
                "use gradient='checkpoint' or more steps")
        return (None, None, *leaves(a), *p)


def solve_adjoint(problem: Problem, y0: State) -> tuple[torch.Tensor, ...]:
    """Per leaf of the state, its values at ``problem.out_times`` stacked; gradients by the
    continuous adjoint, storing only y(t1)."""
    return _Adjoint.apply(problem, detach(y0), *leaves(y0), *problem.term.params())
