"""Backpropagation through the solver: autograd records every stage (memory O(steps * stages))."""
from __future__ import annotations

import torch

from ..solvers.run import FixedRun


def solve_backprop(run: FixedRun, y0: torch.Tensor) -> torch.Tensor:
    """States at ``run.out_steps`` with the full autograd graph."""
    return run.integrate(y0, run.field.knot_thetas())[0]
