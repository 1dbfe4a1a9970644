"""A fixed-step solve: field, method, state grid and the step indices whose states are returned."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..fields.base import ControlledField
from ..solution import SolverStats
from .fixed import StateGrid, Theta, rk_step
from .tableau import ButcherTableau


@dataclass
class FixedRun:
    field: ControlledField
    tableau: ButcherTableau
    grid: StateGrid
    out_steps: list[int]
    stats: SolverStats

    def add_output_grad(self, a: torch.Tensor, grad_out: torch.Tensor, step: int) -> torch.Tensor:
        """a plus the gradient of the returned state at boundary ``step``, if that state is returned."""
        if step in self.out_steps:
            return a + grad_out[self.out_steps.index(step)]
        return a

    def integrate(self, y0: torch.Tensor, knots: list[Theta], *, keep_all: bool = False):
        """March y0 over the state grid; return (states at ``out_steps``, all boundary states or None)."""
        thetas = self.grid.stage_thetas(self.field, self.tableau, knots)
        h, fn = self.grid.h, self.field.vector_field
        wanted = set(self.out_steps)
        outs = [y0] if 0 in wanted else []
        every = [y0] if keep_all else None
        y = y0
        for j in range(self.grid.steps):
            y = rk_step(fn, self.tableau, y, h, thetas[j])
            if j + 1 in wanted:
                outs.append(y)
            if keep_all:
                every.append(y)
        self.stats.forward.nfe += self.grid.steps * self.tableau.stages
        self.stats.forward.accepted_steps += self.grid.steps
        return torch.stack(outs), every
