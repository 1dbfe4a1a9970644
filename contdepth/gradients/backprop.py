"""Backpropagation through the solver: autograd records every stage (memory O(steps * stages))."""
from __future__ import annotations

import torch

from ..solvers.engine import Problem
from ..tree import State
from .common import stack_outputs


def solve_backprop(problem: Problem, y0: State) -> tuple[torch.Tensor, ...]:
    """Per leaf of the state, its values at ``problem.out_times`` stacked, with the full autograd graph."""
    return stack_outputs(problem.march(y0)[0])
