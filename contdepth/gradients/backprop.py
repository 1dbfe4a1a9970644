"""Backpropagation through the solver: autograd records every stage (memory O(steps * stages)),
or, where :func:`~contdepth.gradients.fused.fused_applies`, the same gradient by the hand-written
discrete adjoint of the fixed steps."""
from __future__ import annotations

import torch

from ..solvers.engine import Problem
from ..tree import State
from .common import stack_outputs
from .fused import fused_applies, solve_fused


def solve_backprop(problem: Problem, y0: State) -> tuple[torch.Tensor, ...]:
    """Per leaf of the state, its values at ``problem.out_times`` stacked, differentiable."""
    if fused_applies(problem, y0):
        return solve_fused(problem, y0, keep_stages=True)
    return stack_outputs(problem.march(y0)[0])
