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

from ..solvers.engine import Problem, replay
from ..tree import State, detach, leaves, rebuild
from .fused import fused_applies, solve_fused
from .common import (PieceGrads, add_grads, check_no_forward_ad, check_params_found, check_same_module, counting,
                     module_tensors, output_grads, stack_outputs, vjp, with_t0_outputs)


class _Checkpoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem: Problem, like: State, *inputs: torch.Tensor):
        n = len(leaves(like))
        records: list = []
        with torch.no_grad():
            outs, _ = problem.march(rebuild(like, inputs[:n]), on_step=lambda *step: records.append(step))
        ctx.problem, ctx.like, ctx.module = problem, like, module_tensors(problem.term)
        # per step: the record, and the structures of its y and stepper state (their leaves are saved)
        ctx.meta = [(rec, detach(y), detach(state)) for rec, y, state in records]
        ctx.save_for_backward(*inputs[:n], *(x for _, y, state in records for x in leaves(y) + leaves(state)))
        return stack_outputs(outs)

    @staticmethod
    def backward(ctx, *grads):
        problem: Problem = ctx.problem
        term, stepper = problem.term, problem.stepper
        check_same_module(term, ctx.module, "checkpoint")
        saved = iter(ctx.saved_tensors)
        take = lambda like: [next(saved) for _ in leaves(like)]
        y0 = take(ctx.like)
        steps = [(rec, y_like, take(y_like), s_like, take(s_like)) for rec, y_like, s_like in ctx.meta]
        g = output_grads(grads, len(problem.out_times))
        a_y: list = [None] * len(y0)       # dL/dy at the start of the step after this one (None: zero)
        a_s: list = []                     # dL/d(stepper state) there
        with torch.enable_grad():  # the knot views the replays will use
            params = PieceGrads(problem.param_pieces())
        with counting(term, problem.stats.backward):
            for rec, y_like, y, s_like, s in reversed(steps):
                with torch.enable_grad():
                    y_in = [x.detach().requires_grad_() for x in y]
                    s_in = [x.detach().requires_grad_() for x in s]
                    y1, s1, outs = replay(term, stepper, rec, rebuild(y_like, y_in), rebuild(s_like, s_in))
                problem.stats.backward.accepted_steps += 1
                s1 = leaves(s1)
                if rec is steps[-1][0]:
                    check_params_found(term, leaves(y1) + s1, y_in + s_in + problem.params())
                grads_in = vjp(leaves(y1) + s1 + [x for o in outs for x in leaves(o)], y_in + s_in,
                               a_y + (a_s or [None] * len(s1)) + [x for i, _ in rec.outs for x in g[i]],
                               sparse=params.inputs)
                a_y, a_s = grads_in[:len(y_in)], grads_in[len(y_in):len(y_in) + len(s_in)]
                params.add(grads_in[len(y_in) + len(s_in):])
            with torch.enable_grad():  # the stepper's initial state depends on y0 (FSAL: f(t0, y0))
                y_in = [x.detach().requires_grad_() for x in y0]
                s0 = leaves(stepper.init(term, problem.t0, rebuild(ctx.like, y_in), 1 if problem.t1 > problem.t0 else -1))
            grads_in = vjp(s0, y_in, a_s or [None] * len(s0), sparse=params.inputs)
        a_y = add_grads(a_y, grads_in[:len(y_in)])
        a_y = with_t0_outputs(problem, a_y, g)
        params.add(grads_in[len(y_in):])
        return (None, None, *a_y, *params.result())


def solve_checkpoint(problem: Problem, y0: State) -> tuple[torch.Tensor, ...]:
    """Per leaf of the state, its values at ``problem.out_times`` stacked; differentiable by recomputation
    (of each step's graph, or, where :func:`~contdepth.gradients.fused.fused_applies`, of its stages
    for the hand-written discrete adjoint)."""
    if fused_applies(problem, y0):
        return solve_fused(problem, y0, keep_stages=False)
    check_no_forward_ad(y0, problem.term, "checkpoint")
    return _Checkpoint.apply(problem, detach(y0), *leaves(y0), *problem.params())
