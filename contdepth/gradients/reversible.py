"""Reversible gradients: exact (equal to backprop's up to rounding) with memory independent of depth.

For a reversible stepper (leapfrog, symplectic Euler: ``stepper.inverse``), the forward solve
keeps only the final state and the list of its steps (times, no tensors). The backward pass
walks the steps in reverse: it rebuilds each step's start from its end with the inverse step
(Chang et al. 2018) instead of reading a stored state, recomputes that one step under
autograd, and backpropagates through it, as checkpointing does. Memory: one state and one
step's graph, whatever the number of steps; the price is the inverse step (one more step of
work per step) and the rounding of the reconstruction.
"""
from __future__ import annotations

import torch

from ..solvers.engine import Problem, replay
from ..tree import State, detach, leaves, rebuild
from .common import (add_grads, check_no_forward_ad, check_params_found, check_same_module, counting, module_tensors,
                     output_grads, stack_outputs, vjp, with_t0_outputs)


class _Reversible(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem: Problem, like: State, *inputs: torch.Tensor):
        records: list = []
        with torch.no_grad():
            outs, y1 = problem.march(rebuild(like, inputs[:len(leaves(like))]),
                                     on_step=lambda rec, y, state: records.append(rec))
        ctx.problem, ctx.like, ctx.records = problem, like, records
        ctx.module = module_tensors(problem.term)
        ctx.save_for_backward(*leaves(y1))
        return stack_outputs(outs)

    @staticmethod
    def backward(ctx, *grads):
        problem: Problem = ctx.problem
        term, stepper, params = problem.term, problem.stepper, problem.params()
        check_same_module(term, ctx.module, "reversible")
        y = rebuild(ctx.like, ctx.saved_tensors)
        g = output_grads(grads, len(problem.out_times))
        a_y: list = [None] * len(leaves(y))
        p_grads = [torch.zeros_like(p) for p in params]
        with counting(term, problem.stats.backward):
            for rec in reversed(ctx.records):
                with torch.no_grad():
                    y = stepper.inverse(term, rec.t, rec.h, y)
                with torch.enable_grad():
                    y_in = detach(y, True)
                    y1, _, outs = replay(term, stepper, rec, y_in, ())
                problem.stats.backward.accepted_steps += 1
                if rec is ctx.records[-1]:
                    check_params_found(term, leaves(y1), leaves(y_in) + params)
                grads_in = vjp(leaves(y1) + [x for o in outs for x in leaves(o)], leaves(y_in) + params,
                               a_y + [x for i, _ in rec.outs for x in g[i]])
                a_y, p_grads = grads_in[:len(a_y)], add_grads(p_grads, grads_in[len(a_y):])
        a_y = with_t0_outputs(problem, a_y, g)
        return (None, None, *a_y, *p_grads)


def solve_reversible(problem: Problem, y0: State) -> tuple[torch.Tensor, ...]:
    """Per leaf of the state, its values at ``problem.out_times`` stacked; gradients by rebuilding
    each step's start with the stepper's inverse."""
    if not getattr(problem.stepper, "reversible", False):
        raise ValueError(f"gradient='reversible' needs a reversible method (leapfrog, symplectic_euler), got "
                         f"method={getattr(problem.stepper, 'name', type(problem.stepper).__name__)!r}")
    check_no_forward_ad(y0, problem.term, "reversible")
    return _Reversible.apply(problem, detach(y0), *leaves(y0), *problem.params())
