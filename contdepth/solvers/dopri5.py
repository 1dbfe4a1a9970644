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


class _Adjoint(torch.autograd.Function):
    """torchdiffeq's ``odeint_adjoint`` on an inner graph of its own, so that a failed backward
    solve raises :class:`SolverError`.

    The backward solve runs inside ``loss.backward()``, and its failures are torchdiffeq's bare
    ``AssertionError`` ("underflow in dt nan"); only a node whose own backward starts the solve can
    catch them. The inner graph is odeint_adjoint's single node (it saves y at ``ts``), so memory
    stays constant in the number of steps.
    """

    @staticmethod
    def forward(ctx, func: _Monitored, ts: torch.Tensor, rtol: float, atol: float, options: dict,
                y0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        with torch.enable_grad():
            inner_y0 = y0.detach().requires_grad_(y0.requires_grad)
            ys = odeint_adjoint(func, inner_y0, ts, rtol=rtol, atol=atol, method="dopri5", options=options,
                                adjoint_options=dict(options), adjoint_params=params)
        ctx.rtol, ctx.atol = rtol, atol
        ctx.save_for_backward(ts, ys, inner_y0 if inner_y0.requires_grad else None, *params)
        return ys.detach()

    @staticmethod
    def backward(ctx, grad_ys: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        ts, ys, y0, *params = ctx.saved_tensors
        needed = ctx.needs_input_grad[5:]
        try:  # the inner graph lives as long as this node's saved tensors: retain_graph is the caller's
            grads = iter(torch.autograd.grad(ys, [x for x, n in zip([y0, *params], needed) if n], grad_ys,
                                             retain_graph=True, allow_unused=True))
        except AssertionError as err:
            raise SolverError(f"dopri5 adjoint backward solve failed with rtol={ctx.rtol}, atol={ctx.atol} on "
                              f"[t0, t1] = [{ts[0].item()}, {ts[-1].item()}]: {err} (the backward "
                              "ODE for y and a = dL/dy became non-finite: a non-finite loss gradient, a field "
                              "unstable backward in time, or tolerances too tight for the dtype)") from err
        return (None,) * 5 + tuple(next(grads) if n else None for n in needed)


def solve_dopri5(field: ControlledField, y0: torch.Tensor, ts: torch.Tensor, *, rtol: float, atol: float,
                 adjoint: bool, declare_jumps: bool, stats: SolverStats) -> torch.Tensor:
    """States at the times ``ts`` (ts[0] is the initial time)."""
    func = _Monitored(field, stats)
    t0, t1 = ts[0].item(), ts[-1].item()
    jumps = [t for t in field.grid.jumps() if t0 < t < t1] if declare_jumps else []
    options = {"jump_t": torch.tensor(jumps, dtype=ts.dtype, device=ts.device)} if jumps else {}
    try:
        if adjoint:
            ys = _Adjoint.apply(func, ts, rtol, atol, options, y0, *trainable(field))
        else:
            ys = odeint(func, y0, ts, rtol=rtol, atol=atol, method="dopri5", options=options)
    except AssertionError as err:
        raise SolverError(f"dopri5 failed with rtol={rtol}, atol={atol}: {err} "
                          "(step size underflow or a non-finite state: the field may blow up, "
                          "or the tolerances are too tight for the dtype)") from err
    func.counts = stats.backward
    return ys
