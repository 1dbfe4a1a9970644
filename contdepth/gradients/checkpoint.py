"""Checkpointing: exact gradients (equal to backprop) storing only the states at step boundaries.

The backward pass recomputes each step from its stored start state and backpropagates through
that one step, so memory is O(steps * |state|) plus one step's graph.
"""
from __future__ import annotations

import torch

from ..solvers.fixed import rk_step
from ..solvers.run import FixedRun
from .leaves import KnotLeaves, finish_backward, trainable


class _Checkpoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run: FixedRun, y0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out, states = run.integrate(y0, run.field.knot_thetas(), keep_all=True)
        ctx.run = run
        ctx.save_for_backward(*states)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        run: FixedRun = ctx.run
        states = ctx.saved_tensors
        leaves = KnotLeaves(run.field)
        thetas = run.grid.stage_thetas(run.field, run.tableau, leaves.knots)
        a = torch.zeros_like(states[0])
        for j in reversed(range(run.grid.steps)):
            a = run.add_output_grad(a, grad_out, j + 1)
            with torch.enable_grad():
                step_thetas = thetas[j]
                indices = leaves.used_by(step_thetas)
                y = states[j].detach().requires_grad_()
                y1 = rk_step(run.field.vector_field, run.tableau, y, run.grid.h, step_thetas)
                grads = torch.autograd.grad(y1, [y] + [leaves.inputs[i] for i in indices], a, allow_unused=True)
            a = grads[0]
            leaves.accumulate(grads[1:], indices=indices)
        return finish_backward(run, leaves, run.add_output_grad(a, grad_out, 0))


def solve_checkpoint(run: FixedRun, y0: torch.Tensor) -> torch.Tensor:
    """States at ``run.out_steps``, differentiable by recomputation."""
    return _Checkpoint.apply(run, y0, *trainable(run.field))
