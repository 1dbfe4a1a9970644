"""``ODEBlock``: a continuous-depth layer x -> psi(t1) for use inside ordinary networks."""
from __future__ import annotations

import torch
from torch import nn

from .fields.base import ControlledField
from .solution import SolverStats
from .solve import solve


class ODEBlock(nn.Module):
    """Maps x to the solution at t1 of dpsi/dt = F(psi, theta(t)), psi(t0) = x.

    ``method``, ``steps``, ``gradient``, ``rtol`` and ``atol`` are plain attributes: change them
    after training to evaluate the same field with another integrator or depth.
    ``stats`` holds the :class:`SolverStats` of the last call.
    """

    def __init__(self, field: ControlledField, *, method: str = "rk4", steps: int | None = None,
                 gradient: str = "backprop", rtol: float = 1e-6, atol: float = 1e-8) -> None:
        super().__init__()
        if not isinstance(field, ControlledField):
            raise TypeError(f"field must be a contdepth ControlledField, got {type(field).__name__}")
        self.field = field
        self.method, self.steps, self.gradient, self.rtol, self.atol = method, steps, gradient, rtol, atol
        self.stats: SolverStats | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sol = solve(self.field, x, method=self.method, steps=self.steps, gradient=self.gradient,
                    rtol=self.rtol, atol=self.atol)
        self.stats = sol.stats
        return sol.y1

    def extra_repr(self) -> str:
        return f"method={self.method!r}, steps={self.steps}, gradient={self.gradient!r}"
