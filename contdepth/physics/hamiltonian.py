"""The Hamiltonian H = a.F(x, theta(t)) of seed 002 eq. 21 and how it changes with t.

Along a solution of eq. 22-23, dH/dt = dH/dt|_(x, a) (the explicit time dependence through
theta(t)).  So H is conserved when theta does not depend on t (eq. 24-25); with
piecewise-constant theta it is constant inside each control cell and jumps at the knots by
a.(F(x, theta_l) - F(x, theta_{l-1})); with linear theta it drifts at the rate a.(dF/dtheta)(dtheta/dt).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..fields.base import ControlledField
from ._common import check_field, check_state
from .adjoint import AdjointTrajectory

__all__ = ["hamiltonian", "hamiltonian_along", "hamiltonian_jump", "hamiltonian_rate"]


def _check_pair(field: ControlledField, x: Tensor, a: Tensor) -> None:
    check_field(field)
    check_state(field, x, "x")
    if not isinstance(a, Tensor) or a.shape != x.shape:
        raise ValueError(f"a must be a tensor of the same shape as x {tuple(x.shape)}, got {getattr(a, 'shape', a)}")


def _energy(field: ControlledField, x: Tensor, a: Tensor, t: float, theta: dict[str, Tensor]) -> Tensor:
    tt = torch.tensor(float(t), dtype=x.dtype, device=x.device)
    return (a * field.vector_field(tt, x, theta)).flatten(1).sum(1)


def _time(t: float, field: ControlledField) -> float:
    if isinstance(t, Tensor):
        t = t.item()
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError(f"t must be a float, got {type(t).__name__}")
    if not field.grid.t0 <= t <= field.grid.t1:
        raise ValueError(f"t must lie in [{field.grid.t0}, {field.grid.t1}], got {t}")
    return float(t)


def hamiltonian(field: ControlledField, x: Tensor, a: Tensor, t: float, *, cell: int | None = None) -> Tensor:
    """H(x, a, t) = a.F(x, theta(t)) per sample, shape ``(B,)`` (seed 002 eq. 21).

    ``cell`` selects the control cell for piecewise-constant theta (default: the cell
    containing ``t``, right-continuous).
    """
    _check_pair(field, x, a)
    t = _time(t, field)
    return _energy(field, x, a, t, field.theta_at(t, cell))


def hamiltonian_along(field: ControlledField, trajectory: AdjointTrajectory) -> Tensor:
    """H(t_j) at every time of an :class:`AdjointTrajectory`, shape ``(steps + 1, B)``.

    At a knot time the right-hand cell's theta is used (H just after the jump).
    """
    if not isinstance(trajectory, AdjointTrajectory):
        raise TypeError(f"trajectory must be an AdjointTrajectory, got {type(trajectory).__name__}")
    with torch.no_grad():
        return torch.stack([
            hamiltonian(field, x, a, t) for t, x, a in zip(trajectory.ts.tolist(), trajectory.xs, trajectory.adjoints)
        ])


def hamiltonian_jump(field: ControlledField, x: Tensor, a: Tensor, t: float) -> Tensor:
    """H(t+) - H(t-) = a.(F(x, theta_l) - F(x, theta_{l-1})) at a knot ``t`` of piecewise-constant theta.

    x and a are continuous across the knot, theta jumps (consequence of seed 002 eq. 21-23).
    ``t`` must be one of ``field.grid.jumps()``.
    """
    _check_pair(field, x, a)
    t = _time(t, field)
    if t not in field.grid.jumps():
        raise ValueError(f"t must be one of field.grid.jumps() (a knot of piecewise-constant theta), got {t}")
    right = field.grid.cell(t)
    return _energy(field, x, a, t, field.theta_at(t, right)) - _energy(field, x, a, t, field.theta_at(t, right - 1))


def hamiltonian_rate(field: ControlledField, x: Tensor, a: Tensor, t: float) -> Tensor:
    """dH/dt along a solution = explicit dH/dt at fixed (x, a) = a.(dF/dtheta)(dtheta/dt), shape ``(B,)``.

    For piecewise-constant theta this is 0 inside a cell (the jumps are :func:`hamiltonian_jump`);
    for linear theta, dtheta/dt = (theta_{l+1} - theta_l) / D on the interval containing ``t``.
    Computed as a Jacobian-vector product along dtheta/dt (two reverse-mode passes).
    """
    _check_pair(field, x, a)
    t = _time(t, field)
    grid = field.grid
    if grid.interp == "constant":
        return torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
    left = grid.cell(t)
    knots = field.knot_thetas()
    names = field.control_names
    rates = [(knots[left + 1][k] - knots[left][k]).detach() / grid.dt for k in names]
    with torch.enable_grad():
        theta = {k: v.detach().requires_grad_() for k, v in field.theta_at(t).items()}
        energy = _energy(field, x.detach(), a.detach(), t, theta)
        u = torch.zeros_like(energy, requires_grad=True)
        vjp = torch.autograd.grad(energy, [theta[k] for k in names], u, create_graph=True, materialize_grads=True)
        (jvp,) = torch.autograd.grad(vjp, u, rates, materialize_grads=True)
    return jvp
