"""Divergence tr(dF/dx), the log-density change along trajectories (seed 002 eq. 28) and the
entropy rate of a batch (eq. 32).

Every contdepth field acts on each sample of a batch independently, so the per-sample Jacobian
blocks are obtained from derivatives of the batch sum.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import check_choice, check_positive_int
from ..fields.base import ControlledField
from ..solution import StepCounts
from ..solvers import march
from ..terms import Term
from ._common import check_field, check_state, grid_times, state_grid

__all__ = [
    "divergence_exact",
    "divergence_hutchinson",
    "entropy_rate",
    "DensityTrajectory",
    "log_density_trajectory",
]

NOISES = ("rademacher", "gaussian")
"""The probe distributions of the Hutchinson trace estimator: Rademacher (+-1) or standard Gaussian."""


def _at(field: ControlledField, x: Tensor, t: float, cell: int | None) -> Callable[[Tensor], Tensor]:
    """x -> F(t, x, theta(t)) (theta of ``cell`` if given)."""
    if isinstance(t, Tensor):
        t = t.item()
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError(f"t must be a float, got {type(t).__name__}")
    theta = field.theta_at(float(t), cell)
    tt = torch.tensor(float(t), dtype=x.dtype, device=x.device)
    return lambda z: field.vector_field(tt, z, theta)


def _exact(fn: Callable[[Tensor], Tensor], x: Tensor, create_graph: bool) -> tuple[Tensor, Tensor]:
    """(F, tr dF/dx) per sample."""
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_()
        f = fn(xg).flatten(1)
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


def _hutchinson(fn: Callable[[Tensor], Tensor], x: Tensor, eps: Tensor,
                create_graph: bool) -> tuple[Tensor, Tensor]:
    """(F, mean over probes of eps^T dF/dx eps) per sample."""
    with torch.enable_grad():
        xg = x if x.requires_grad else x.detach().requires_grad_()
        f = fn(xg)
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
    return _exact(_at(field, x, t, cell), x, create_graph)[1]


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
    return _hutchinson(_at(field, x, t, cell), x, _noise(x, samples, noise, generator), create_graph)[1]


def entropy_rate(field: ControlledField, x: Tensor, t: float, *, cell: int | None = None) -> Tensor:
    """dH/dt = E_P[tr(dF/dx)] (seed 002 eq. 32), estimated by the batch mean over ``x`` ~ P(., t).

    Returns a scalar tensor; exact (not an estimate of the trace) via :func:`divergence_exact`.
    """
    return divergence_exact(field, x, t, cell=cell).mean()


class _LogDensityTerm(Term):
    """(dx/dt, d log P/dt) = (F, -tr dF/dx) (eq. 28), the trace exact or by fixed Hutchinson probes."""

    def __init__(self, term: Term, eps: Tensor | None) -> None:
        self.term, self.eps, self.counts = term, eps, StepCounts()

    def __call__(self, t: float, state: tuple[Tensor, Tensor], side: int) -> tuple[Tensor, Tensor]:
        fn = lambda x: self.term(t, x, side)
        if self.eps is None:
            f, div = _exact(fn, state[0], False)
        else:
            f, div = _hutchinson(fn, state[0], self.eps, False)
        return f.detach(), -div.detach()


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
    grid, stepper = state_grid(field, method, steps)
    if divergence == "hutchinson":
        check_positive_int("samples", samples)
        check_choice("noise", noise, NOISES)
        eps = _noise(x0, samples, noise, generator)

    term = _LogDensityTerm(field.make_term(params=[]), eps if divergence == "hutchinson" else None)
    t0, t1 = grid.times[0], grid.times[-1]
    state0 = (x0.detach(), torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device))
    with torch.no_grad():
        states, _ = march(term, stepper, grid.controller(t0, t1), state0, t0, t1, grid.times,
                          StepCounts())
    return DensityTrajectory(ts=grid_times(grid, x0), xs=torch.stack([s[0] for s in states]),
                             delta_logp=torch.stack([s[1] for s in states]))
