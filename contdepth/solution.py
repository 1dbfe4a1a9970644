"""What a solve returns: the states at the requested times and solver statistics."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StepCounts:
    """Work done in one direction of a solve. ``jacobians`` and ``linear_solves`` count the
    Jacobians df/dy and the Newton linear solves of implicit methods (0 for explicit ones)."""

    nfe: int = 0
    accepted_steps: int = 0
    rejected_steps: int = 0
    jacobians: int = 0
    linear_solves: int = 0


@dataclass
class SolverStats:
    """Function evaluations and steps of the forward solve and (once it has run) the backward pass.

    ``backward`` counts the evaluations a gradient method adds: the recomputation of
    ``"checkpoint"`` and the backward solve of ``"adjoint"``; ``"backprop"`` adds none.
    """

    method: str
    gradient: str
    forward: StepCounts = field(default_factory=StepCounts)
    backward: StepCounts = field(default_factory=StepCounts)


@dataclass
class Solution:
    """``ys[i]`` is the state at ``ts[i]`` (for a tuple state, ``ys`` is a tuple of such stacks);
    ``stats`` fills its backward counts after ``backward()``. ``event_t``: the time of a terminal
    event (differentiable, in y's dtype; the last of ``ys`` is the state at it), else None."""

    ts: torch.Tensor
    ys: torch.Tensor | tuple
    stats: SolverStats
    event_t: torch.Tensor | None = None

    @property
    def y1(self) -> torch.Tensor | tuple:
        """The state at the last requested time."""
        return _last(self.ys)


def _last(ys):
    return ys[-1] if isinstance(ys, torch.Tensor) else tuple(_last(y) for y in ys)
