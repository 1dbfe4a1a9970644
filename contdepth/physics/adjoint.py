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
from ..gradients.adjoint import AdjointTerm
from ..solution import StepCounts
from ..solvers import march
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
    grid, stepper = state_grid(field, method, steps)
    t0, t1 = grid.times[0], grid.times[-1]
    term = field.make_term(params=[])
    with torch.no_grad():
        xs, _ = march(term, stepper, grid.controller(t0, t1), x0.detach(), t0, t1, grid.times, StepCounts())

    with torch.enable_grad():
        x_final = xs[-1].detach().requires_grad_()
        loss = loss_fn(x_final)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError("loss_fn must return a scalar (0-d) tensor")
        (a,) = torch.autograd.grad(loss, x_final, materialize_grads=True)

    # Hamilton's equations (eq. 22-23) for (x, a), restarting x from the stored forward state
    # at every grid time; the parameter part of the augmented term is empty (params=[]).
    index = {t: j for j, t in enumerate(grid.times)}
    restart = lambda t, state: (xs[index[t]], state[1], state[2])
    with torch.no_grad():
        states, _ = march(AdjointTerm(term), stepper, grid.controller(t1, t0), (xs[-1], a, ()), t1,
                          t0, grid.times[::-1], StepCounts(), inject=restart)
    return AdjointTrajectory(
        ts=grid_times(grid, x0),
        xs=torch.stack(xs),
        adjoints=torch.stack([state[1] for state in states[::-1]]).detach(),
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
    grid, stepper = state_grid(field, method, steps * refine)
    t0, t1 = grid.times[0], grid.times[-1]
    term = field.make_term(params=[])
    with torch.enable_grad():
        kept, x = march(term, stepper, grid.controller(t0, t1), x0.detach().requires_grad_(), t0, t1,
                        grid.times[::refine], StepCounts())
        loss = loss_fn(x)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError("loss_fn must return a scalar (0-d) tensor")
        grads = torch.autograd.grad(loss, kept, materialize_grads=True)
    return torch.stack(grads).detach()
