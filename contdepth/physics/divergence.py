"""Divergence tr(dF/dx), the log-density change along trajectories (seed 002 eq. 28) and the
entropy rate of a batch (eq. 32).

Every contdepth field acts on each sample of a batch independently, so the per-sample Jacobian
blocks are obtained from derivatives of the batch sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..errors import check_choice, check_positive_int
from ..fields.base import ControlledField
from ..solvers.fixed import rk_step
from ._common import check_field, check_state, grid_times, state_grid

__all__ = [
    "divergence_exact",
    "divergence_hutchinson",
    "entropy_rate",
    "DensityTrajectory",
    "log_density_trajectory",
]

NOISES = ("rademacher", "gaussian")


def _theta(field: ControlledField, t: float, cell: int | None) -> dict[str, Tensor]:
    if isinstance(t, Tensor):
        t = t.item()
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError(f"t must be a float, got {type(t).__name__}")
    return field.theta_at(float(t), cell)


def _exact(field: ControlledField, x: Tensor, theta: dict[str, Tensor], create_graph: bool) -> tuple[Tensor, Tensor]:
    """(F, tr dF/dx) per sample."""
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_()
        f = field.vector_field(xg, theta).flatten(1)
        dim = f.shape[1]
        basis = torch.eye(dim, dtype=f.dtype, device=f.device)[:, None, :].expand(dim, *f.shape)
        (rows,) = torch.autograd.grad(f, xg, basis, is_grads_batched=True, create_graph=create_graph,
                                      materialize_grads=True)
    # rows[i, b] = d F_{b,i} / d x_b ; the trace takes entry i of row i.
    return f.reshape_as(x), torch.diagonal(rows.flatten(2), dim1=0, dim2=2).sum(-1)


def _noise(x: Tensor, samples: int, noise: str, generator: torch.Generator | None) -> Tensor:
    shape = (samples, *x.shape)
    if noise == "gaussian":
        return torch.randn(shape, dtype=x.dtype, device=x.device, generator=generator)
    bits = torch.randint(0, 2, shape, device=x.device, generator=generator)
    return (2 * bits - 1).to(x.dtype)


def _hutchinson(field: ControlledField, x: Tensor, theta: dict[str, Tensor], eps: Tensor,
                create_graph: bool) -> tuple[Tensor, Tensor]:
    """(F, mean over probes of eps^T dF/dx eps) per sample."""
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_()
        f = field.vector_field(xg, theta)
        (vjp,) = torch.autograd.grad(f, xg, eps, is_grads_batched=True, create_graph=create_graph,
                                     materialize_grads=True)
    return f, (vjp * eps).flatten(2).sum(-1).mean(0)


def divergence_exact(field: ControlledField, x: Tensor, t: float, *, cell: int | None = None,
                     create_graph: bool = False) -> Tensor:
    """tr(dF/dx) at (x, theta(t)) per sample, shape ``(B,)``, by autograd (one batched backward
    pass over the D state entries; for small states).  Seed 002 eq. 28 is d log P/dt = -this.
    """
    check_field(field)
    check_state(field, x)
    return _exact(field, x, _theta(field, t, cell), create_graph)[1]


def divergence_hutchinson(field: ControlledField, x: Tensor, t: float, *, samples: int = 1,
                          noise: str = "rademacher", generator: torch.Generator | None = None,
                          cell: int | None = None, create_graph: bool = False) -> Tensor:
    """Hutchinson's unbiased estimate E[eps^T (dF/dx) eps] of tr(dF/dx), shape ``(B,)``.

    ``samples`` probe vectors per sample, Rademacher (exact when dF/dx is diagonal) or Gaussian;
    one vector-Jacobian product each, so it scales to image states.
    """
    check_field(field)
    check_state(field, x)
    check_positive_int("samples", samples)
    check_choice("noise", noise, NOISES)
    return _hutchinson(field, x, _theta(field, t, cell), _noise(x, samples, noise, generator), create_graph)[1]


def entropy_rate(field: ControlledField, x: Tensor, t: float, *, cell: int | None = None) -> Tensor:
    """dH/dt = E_P[tr(dF/dx)] (seed 002 eq. 32), estimated by the batch mean over ``x`` ~ P(., t).

    Returns a scalar tensor; exact (not an estimate of the trace) via :func:`divergence_exact`.
    """
    return divergence_exact(field, x, t, cell=cell).mean()


@dataclass(frozen=True)
class DensityTrajectory:
    """``xs[j]`` = x(t_j) and ``delta_logp[j]`` = log P(x(t_j), t_j) - log P(x(0), 0), per sample.

    ``xs``: ``(steps + 1, *x0.shape)``; ``delta_logp``: ``(steps + 1, B)``.
    """

    ts: Tensor
    xs: Tensor
    delta_logp: Tensor

    @property
    def entropy_change(self) -> Tensor:
        """H(t_j) - H(0) = -E[delta log P] (batch mean), shape ``(steps + 1,)``; integral of eq. 32."""
        return -self.delta_logp.mean(-1)


def log_density_trajectory(field: ControlledField, x0: Tensor, *, steps: int, method: str = "rk4",
                           divergence: str = "exact", samples: int = 1, noise: str = "rademacher",
                           generator: torch.Generator | None = None) -> DensityTrajectory:
    """Integrate dx/dt = F and d log P/dt = -tr(dF/dx) (seed 002 eq. 28) together.

    Fixed-step ``method`` on ``steps`` equal steps, same knot choice as :func:`contdepth.odesolve`.
    ``divergence="hutchinson"`` draws ``samples`` probe vectors once and keeps them along the
    trajectory (an unbiased estimate of the same integral).  Results are detached.
    """
    check_field(field)
    check_state(field, x0, "x0")
    check_choice("divergence", divergence, ("exact", "hutchinson"))
    grid, tableau = state_grid(field, method, steps)
    if divergence == "hutchinson":
        check_positive_int("samples", samples)
        check_choice("noise", noise, NOISES)
        eps = _noise(x0, samples, noise, generator)

    def augmented(state: tuple[Tensor, Tensor], theta: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        if divergence == "exact":
            f, div = _exact(field, state[0], theta, False)
        else:
            f, div = _hutchinson(field, state[0], theta, eps, False)
        return f.detach(), -div.detach()

    with torch.no_grad():
        knots = [{k: v.detach() for k, v in theta.items()} for theta in field.knot_thetas()]
        thetas = grid.stage_thetas(field, tableau, knots)
        state = (x0.detach(), torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device))
        xs, logps = [state[0]], [state[1]]
        for j in range(steps):
            state = rk_step(augmented, tableau, state, grid.h, thetas[j])
            xs.append(state[0])
            logps.append(state[1])
    return DensityTrajectory(ts=grid_times(grid, x0), xs=torch.stack(xs), delta_logp=torch.stack(logps).detach())
