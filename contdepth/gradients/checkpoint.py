"""Checkpointing: exact gradients (equal to backprop's) storing only each accepted step's start.

The forward solve runs without autograd and records, per accepted step, its start state y, the
stepper's state (FSAL derivative, history, ...) and where the step went (t, h, outputs). The
backward pass replays each step under autograd from its record and backpropagates through
that step alone, in reverse order. Adaptive solves replay only the accepted steps: the step
sizes are data, as they are for backprop (no gradient flows through the error controller).
Memory: O(accepted steps x (|y| + |stepper state|)) plus one step's graph.
"""
from __future__ import annotations

import torch

from ..solvers.engine import Problem, close, replay
from ..tree import State, detach, leaves, rebuild
from ..tree import add
from .common import output_grads, stack_outputs, vjp


class _Checkpoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem: Problem, like: State, *inputs: torch.Tensor):
        n = len(leaves(like))
        y0 = rebuild(like, inputs[:n])
        records: list = []
        with torch.no_grad():
            outs, _ = problem.march(y0, record=records)
        ctx.problem, ctx.like, ctx.n = problem, like, n
        ctx.meta = [(rec, len(leaves(y)), y, state) for rec, y, state in records]
        flat = [x for _, y, state in records for x in leaves(y) + leaves(state)]
        ctx.save_for_backward(*inputs[:n], *flat)
        return stack_outputs(outs)

    @staticmethod
    def backward(ctx, *grads):
        problem: Problem = ctx.problem
        term, stepper = problem.term, problem.stepper
        params = term.params()
        saved = ctx.saved_tensors
        y0, flat = rebuild(ctx.like, saved[:ctx.n]), iter(saved[ctx.n:])
        g = output_grads(ctx.like, grads, len(problem.out_times))
        counts, term.counts = term.counts, problem.stats.backward
        a_y, a_state = None, None
        p_grads = [torch.zeros_like(p) for p in params]
        try:
            steps = []
            for rec, n_y, y_like, state_like in ctx.meta:
                y = rebuild(y_like, [next(flat) for _ in range(n_y)])
                state = rebuild(state_like, [next(flat) for _ in leaves(state_like)])
                steps.append((rec, y, state))
            for rec, y, state in reversed(steps):
                with torch.enable_grad():
                    y_in, s_in = detach(y, True), detach(state, True)
                    y1, s1, outs = replay(term, stepper, rec, y_in, s_in)
                problem.stats.backward.accepted_steps += 1
                outputs = leaves(y1) + leaves(s1) + [x for o in outs for x in leaves(o)]
                upstream = (leaves(a_y) if a_y is not None else [None] * len(leaves(y1))) \
                    + (leaves(a_state) if a_state is not None else [None] * len(leaves(s1))) \
                    + [x for i, _ in rec.outs for x in leaves(g[i])]
                grads_in = vjp(outputs, leaves(y_in) + leaves(s_in) + params, upstream)
                n_y, n_s = len(leaves(y_in)), len(leaves(s_in))
                a_y = rebuild(y_in, grads_in[:n_y])
                a_state = rebuild(s_in, grads_in[n_y:n_y + n_s])
                p_grads = [p + q for p, q in zip(p_grads, grads_in[n_y + n_s:])]
            with torch.enable_grad():  # the stepper's initial state depends on y0 (FSAL: f(t0, y0))
                y_in = detach(y0, True)
                s0 = stepper.init(term, problem.t0, y_in, 1 if problem.t1 > problem.t0 else -1)
            grads_in = vjp(leaves(s0), leaves(y_in) + params,
                           leaves(a_state) if a_state is not None else [None] * len(leaves(s0)))
        finally:
            term.counts = counts
        a0 = rebuild(y_in, grads_in[:len(leaves(y_in))])
        a_y = a0 if a_y is None else add(a_y, a0)
        for i, t in enumerate(problem.out_times):
            if close(t, problem.t0):
                a_y = add(a_y, g[i])
        p_grads = [p + q for p, q in zip(p_grads, grads_in[len(leaves(y_in)):])]
        return (None, None, *leaves(a_y), *p_grads)


def solve_checkpoint(problem: Problem, y0: State) -> tuple[torch.Tensor, ...]:
    """Per leaf of the state, its values at ``problem.out_times`` stacked; differentiable by recomputation."""
    return _Checkpoint.apply(problem, detach(y0), *leaves(y0), *problem.term.params())
