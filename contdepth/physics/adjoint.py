"""The adjoint a(t) = dL/dx(t) along a trajectory, by solving seed 002 eq. 11 backward in time.

Forward: dx/dt = F(x, theta(t)) (eq. 5).  Backward from a(T) = dL/dx(T) (eq. 10):

    -da/dt = a dF/dx   (eq. 11)   i.e.   dx/dt = dH/da,  da/dt = -dH/dx   (eq. 22-23)

with H = a.F (eq. 21).  Both are stepped with the same fixed-step method and the same exact
choice of control knot per stage as :func:`contdepth.odesolve` (the core's fixed-step engine).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import check_positive_int
from ..fields.base import ControlledField
from ..solvers.fixed import rk_step
from ._common import check_field, check_state, grid_times, state_grid

__all__ = ["AdjointTrajectory", "adjoint_trajectory", "autograd_adjoints"]


@dataclass(frozen=True)
class AdjointTrajectory:
    """``xs[j]`` = x(t_j) and ``adjoints[j]`` = a(t_j) = dL/dx(t_j) at ``ts[j]`` = t0 + j h.

    ``xs`` and ``adjoints`` have shape ``(steps + 1, *x0.shape)``; ``loss`` is L(x(T)).
    """

    ts: Tensor
    xs: Tensor
    adjoints: Tensor
    loss: Tensor


def adjoint_trajectory(
    field: ControlledField,
    x0: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    *,
    steps: int,
    method: str = "rk4",
) -> AdjointTrajectory:
    """x(t) forward and a(t) = dL/dx(t) backward (seed 002 eq. 10-11) on ``steps`` equal steps.

    ``loss_fn`` maps the final state x(T) (shape of ``x0``) to a scalar L; a(T) = dL/dx(T)
    (eq. 10).  Each backward step integrates Hamilton's equations (eq. 22-23) for (x, a) from
    the stored forward state x(t_{j+1}) to t_j with ``method`` ("euler", "midpoint" or "rk4"),
    so x carries no error accumulated backward.  Results are detached (no graph to the field's
    parameters).  The error against the exact a(t) is O(h^order) of the method when no step
    straddles a jump of piecewise-constant theta (``steps`` a multiple of ``field.grid.n``).
    """
    check_field(field)
    check_state(field, x0, "x0")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    grid, tableau = state_grid(field, method, steps)
    h = grid.h
    with torch.no_grad():
        knots = [{k: v.detach() for k, v in theta.items()} for theta in field.knot_thetas()]
        forward = grid.stage_thetas(field, tableau, knots)
        xs = [x0.detach()]
        for j in range(steps):
            xs.append(rk_step(field.vector_field, tableau, xs[-1], h, forward[j]))

    with torch.enable_grad():
        x_final = xs[-1].detach().requires_grad_()
        loss = loss_fn(x_final)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError("loss_fn must return a scalar (0-d) tensor")
        (a,) = torch.autograd.grad(loss, x_final, materialize_grads=True)

    def hamilton(state: tuple[Tensor, Tensor], theta: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        x, a = state
        with torch.enable_grad():
            x = x.detach().requires_grad_()
            f = field.vector_field(x, theta)
            (dh_dx,) = torch.autograd.grad(f, x, a, materialize_grads=True)
        return f.detach(), -dh_dx

    backward = grid.stage_thetas(field, tableau, knots, reverse=True)
    adjoints = [a]
    for j in reversed(range(steps)):
        _, a = rk_step(hamilton, tableau, (xs[j + 1], a), -h, backward[j])
        adjoints.append(a)
    adjoints.reverse()
    return AdjointTrajectory(
        ts=grid_times(grid, x0),
        xs=torch.stack(xs),
        adjoints=torch.stack(adjoints).detach(),
        loss=loss.detach(),
    )


def autograd_adjoints(
    field: ControlledField,
    x0: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    *,
    steps: int,
    refine: int = 8,
    method: str = "rk4",
) -> Tensor:
    """dL/dx(t_j) at t_j = t0 + j (t1 - t0)/steps by backprop through a ``refine`` times finer solve.

    The reference for :func:`adjoint_trajectory`: the discrete gradient of L(x(T)) with respect to
    the solver's intermediate states (same fixed-step engine and knot choice as
    :func:`contdepth.odesolve` on the whole [t0, t1]), shape ``(steps + 1, *x0.shape)``.
    """
    check_field(field)
    check_state(field, x0, "x0")
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable, got {type(loss_fn).__name__}")
    check_positive_int("refine", refine)
    check_positive_int("steps", steps)
    grid, tableau = state_grid(field, method, steps * refine)
    knots = [{k: v.detach() for k, v in theta.items()} for theta in field.knot_thetas()]
    thetas = grid.stage_thetas(field, tableau, knots)
    with torch.enable_grad():
        x = x0.detach().requires_grad_()
        kept = [x]
        for j in range(grid.steps):
            x = rk_step(field.vector_field, tableau, x, grid.h, thetas[j])
            if (j + 1) % refine == 0:
                kept.append(x)
        loss = loss_fn(x)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError("loss_fn must return a scalar (0-d) tensor")
        grads = torch.autograd.grad(loss, kept, materialize_grads=True)
    return torch.stack(grads).detach()
