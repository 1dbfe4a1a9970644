"""The continuous adjoint method (seed 002 eq. 10-15): memory independent of the number of steps.

Backward in time from t1 to t0, with a(t1) = dL/dy(t1), solve (eq. 11-12)

    dy/dt = F(y, theta),   da/dt = -a^T dF/dy,   dL/dtheta = int a^T dF/dtheta dt,

with the same method and state grid as the forward solve; states returned at intermediate times
add their gradients to a on the way. Fixed-step methods use this hand-written backward solve
(same exact knot selection as the forward pass, mirrored); dopri5 uses torchdiffeq's
``odeint_adjoint`` (see :mod:`contdepth.solvers.dopri5`). The gradient is that of the continuous
problem, so it differs from backprop by the discretisation error.
"""
from __future__ import annotations

import torch

from ..errors import SolverError
from ..solvers.fixed import rk_step
from ..solvers.run import FixedRun
from .leaves import KnotLeaves, finish_backward, trainable


class _FixedAdjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, run: FixedRun, y0: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            out, _ = run.integrate(y0, run.field.knot_thetas())
        ctx.run = run
        ctx.save_for_backward(out[-1])
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        run: FixedRun = ctx.run
        (y,) = ctx.saved_tensors
        leaves = KnotLeaves(run.field)
        thetas = run.grid.stage_thetas(run.field, run.tableau, leaves.knots, reverse=True)
        stage_used: list[list[int]] = []  # per stage of the step being integrated, set in the loop
        stage_grads: list = []

        def augmented(state, theta):
            y, a = state
            indices = stage_used[len(stage_grads)]
            with torch.enable_grad():
                y = y.detach().requires_grad_()
                f = run.field.vector_field(y, theta)
                grads = torch.autograd.grad(f, [y] + [leaves.inputs[i] for i in indices], a, allow_unused=True)
            stage_grads.append(grads[1:])
            return f.detach(), -grads[0]

        a = torch.zeros_like(y)
        h = run.grid.h
        for j in reversed(range(run.grid.steps)):
            a = run.add_output_grad(a, grad_out, j + 1)
            stage_grads.clear()
            with torch.enable_grad():
                step_thetas = thetas[j]
            stage_used = [leaves.used_by([theta]) for theta in step_thetas]
            y, a = rk_step(augmented, run.tableau, (y, a), -h, step_thetas)
            for b, grads, indices in zip(run.tableau.b, stage_grads, stage_used):
                if b:
                    leaves.accumulate(grads, h * b, indices)
        if not (bool(torch.isfinite(y).all()) and bool(torch.isfinite(a).all())):
            raise SolverError(
                f"the adjoint backward solve ({run.tableau.name}, {run.grid.steps} steps) became non-finite: "
                "reconstructing y backward in time is unstable for this field (e.g. strong friction, which "
                "contracts forward and expands backward); use gradient='checkpoint' or more steps")
        return finish_backward(run, leaves, run.add_output_grad(a, grad_out, 0))


def solve_adjoint(run: FixedRun, y0: torch.Tensor) -> torch.Tensor:
    """States at ``run.out_steps``; gradients by the continuous adjoint, storing only y(t1)."""
    return _FixedAdjoint.apply(run, y0, *trainable(run.field))
