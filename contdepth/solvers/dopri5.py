"""Adaptive Dormand-Prince 5(4) via torchdiffeq, told where theta(t) jumps.

With piecewise-constant theta, F is discontinuous at the control knots. The knots are passed to
torchdiffeq as ``jump_t`` (forward and adjoint solves): steps end exactly on a knot, the stage at
the step's end sees theta from the left and the next step restarts from the right, instead of
the error controller rejecting steps until they shrink around each jump.
"""
from __future__ import annotations

import torch
from torch import nn
from torchdiffeq import odeint, odeint_adjoint

from ..errors import SolverError
from ..fields.base import ControlledField
from ..gradients.leaves import trainable
from ..solution import SolverStats, StepCounts


class _Monitored(nn.Module):
    """The field, counting evaluations and steps through torchdiffeq's callbacks."""

    def __init__(self, field: ControlledField, stats: SolverStats) -> None:
        super().__init__()
        self.field = field
        self.stats = stats
        self.counts: StepCounts = stats.forward

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.counts.nfe += 1
        return self.field(t, y)

    def callback_accept_step(self, t0, y0, dt) -> None:
        self.stats.forward.accepted_steps += 1

    def callback_reject_step(self, t0, y0, dt) -> None:
        self.stats.forward.rejected_steps += 1

    def callback_accept_step_adjoint(self, t0, y0, dt) -> None:
        self.stats.backward.accepted_steps += 1

    def callback_reject_step_adjoint(self, t0, y0, dt) -> None:
        self.stats.backward.rejected_steps += 1


def solve_dopri5(field: ControlledField, y0: torch.Tensor, ts: torch.Tensor, *, rtol: float, atol: float,
                 adjoint: bool, declare_jumps: bool, stats: SolverStats) -> torch.Tensor:
    """States at the times ``ts`` (ts[0] is the initial time)."""
    func = _Monitored(field, stats)
    t0, t1 = ts[0].item(), ts[-1].item()
    jumps = [t for t in field.grid.jumps() if t0 < t < t1] if declare_jumps else []
    options = {"jump_t": torch.tensor(jumps, dtype=ts.dtype, device=ts.device)} if jumps else {}
    try:
        if adjoint:
            ys = odeint_adjoint(func, y0, ts, rtol=rtol, atol=atol, method="dopri5", options=options,
                                adjoint_options=dict(options), adjoint_params=tuple(trainable(field)))
        else:
            ys = odeint(func, y0, ts, rtol=rtol, atol=atol, method="dopri5", options=options)
    except AssertionError as err:
        raise SolverError(f"dopri5 failed with rtol={rtol}, atol={atol}: {err} "
                          "(step size underflow or a non-finite state: the field may blow up, "
                          "or the tolerances are too tight for the dtype)") from err
    func.counts = stats.backward
    return ys
