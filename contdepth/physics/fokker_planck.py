"""The density of a 1-D stochastic ResNet's hidden state: the Fokker-Planck equation (seed 003)

    dp/dt = -d(F p)/dx + nu^2/2 d^2p/dx^2

of dX = F(t, X) dt + nu dW, by finite volumes on uniform cells (method of lines, the time
integration by the engine). The flux through the face between cells i and i + 1 is
J = F(t, x_face) (p_i + p_{i+1}) / 2 - nu^2/2 (p_{i+1} - p_i) / dx, zero through the two outer
faces, so the mass sum_i p_i dx is conserved exactly (up to rounding) and p is second-order
accurate in dx while the cell Peclet number |F| dx / (nu^2/2) stays below 2.

Explicit RK4 is stable when h lambda lies in its stability region for every eigenvalue lambda of
the operator dp/dt = A p. With the drift frozen at t0 and the Peclet number at most 2, A is
tridiagonal with A_i,i+1 A_i+1,i >= 0, so S = P A P^-1 (P diagonal) is symmetric,

    S_ii = A_ii,   S_i,i+1 = sqrt(A_i,i+1 A_i+1,i) = sqrt((nu^2/2 / dx)^2 - F_i+1/2^2 / 4) / dx,

and the eigenvalues are real and <= 0 (A is Metzler with zero column sums). The stability test
is then exact: h rho(A) <= 2.785..., RK4's reach on the negative real axis, holds iff
S + (2.785.../h) I is positive semidefinite, which the signs of its LDL^T pivots decide
(Sylvester's law of inertia) in one pass over the cells.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..errors import check_positive_int
from ..solve import odesolve

# RK4's stability polynomial R(z) = 1 + z + z^2/2 + z^3/6 + z^4/24 is positive on the negative
# real axis up to its root of |R| = 1 there: the real root of z^3 + 4 z^2 + 12 z + 24 = 0.
_RK4_REACH = 2.785293563405282
# The default step count keeps h rho <= 2.5, where the stiffest mode decays by |R(-2.5)| = 0.65 per step.
_DEFAULT_REACH = 2.5


def _check_grid(x: object, p0: object) -> float:
    if not isinstance(x, torch.Tensor) or x.dim() != 1 or len(x) < 3 or not x.is_floating_point():
        raise ValueError(f"x must be a 1-D floating tensor of at least 3 uniform cell centres, got "
                         f"{type(x).__name__}{'' if not isinstance(x, torch.Tensor) else f' of shape {tuple(x.shape)}'}")
    dx = (x[1:] - x[:-1]).double()
    h = dx.mean().item()
    if not h > 0 or (dx - h).abs().max().item() > 1e-3 * h:
        raise ValueError("x must be increasing with a uniform spacing")
    if not isinstance(p0, torch.Tensor) or p0.shape != x.shape or p0.dtype != x.dtype or p0.device != x.device:
        raise ValueError(f"p0 must be a tensor like x (shape {tuple(x.shape)}, {x.dtype}, {x.device}), got "
                         f"{type(p0).__name__}" + ("" if not isinstance(p0, torch.Tensor)
                                                   else f" of shape {tuple(p0.shape)}, {p0.dtype}, {p0.device}"))
    if not torch.isfinite(p0).all() or (p0 < 0).any():
        raise ValueError("p0 must be a finite, non-negative density")
    return h


def _symmetrised(f: torch.Tensor, diff: float, dx: float) -> tuple[list[float], list[float]]:
    """The diagonal and off-diagonal of S (module docstring) for the drift values f at the inner faces."""
    f = f.detach().double().cpu()
    d = torch.zeros(len(f) + 1, dtype=torch.float64)
    d[:-1] -= (f / 2 + diff / dx) / dx
    d[1:] += (f / 2 - diff / dx) / dx
    e = ((diff / dx) ** 2 - f ** 2 / 4).clamp(min=0).sqrt() / dx
    return d.tolist(), e.tolist()


def _stable(d: list[float], e: list[float], c: float) -> bool:
    """Whether S + c I is positive semidefinite: no negative LDL^T pivot, and no zero pivot that
    couples to the next cell."""
    q = d[0] + c
    for i in range(1, len(d)):
        if q < 0 or (q == 0 and e[i - 1] != 0):
            return False
        q = d[i] + c - (e[i - 1] ** 2 / q if e[i - 1] else 0.0)
    return q >= 0


def _fewest_steps(d: list[float], e: list[float], span: float, reach: float) -> int:
    """The fewest steps n over ``span`` with (span / n) rho(S) <= reach: bisection below the count
    that Gershgorin's rho(S) <= max_i (-S_ii + sum_{j != i} S_ij) makes stable."""
    radius = max(-d[i] + (e[i - 1] if i > 0 else 0.0) + (e[i] if i < len(e) else 0.0) for i in range(len(d)))
    lo, hi = 0, max(1, math.ceil(span * radius / reach))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _stable(d, e, reach * mid / span) else (mid, hi)
    return hi


def fokker_planck_1d(drift: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], nu: float, x: torch.Tensor,
                     p0: torch.Tensor, t1: float, steps: int | None = None, *, t0: float = 0.0,
                     t_eval: Sequence[float] | None = None) -> torch.Tensor:
    """The density p(x, t1) (or stacked at ``t_eval``) from p(x, t0) = p0 on the cell centres x.

    drift: F(t, x) -> tensor like x (t a 0-dim tensor), the drift of dX = F dt + nu dW.
    nu: the noise strength, > 0. steps: RK4 steps from t0 to t1, h = (t1 - t0) / steps. Stability
    needs h rho(A) <= 2.785 for the operator A with the drift frozen at t0 (module docstring;
    rho ~ 2 nu^2 / dx^2 from the diffusion); fewer steps are an error naming the fewest stable
    count. The default is the fewest with h rho(A) <= 2.5. A drift that changes with t can make A
    stiffer after t0, which this test, made at t0 only, does not see.
    """
    dx = _check_grid(x, p0)
    if isinstance(nu, bool) or not isinstance(nu, (int, float)) or not (math.isfinite(nu) and nu > 0):
        raise ValueError(f"nu must be a positive finite float, got {nu!r}")
    if steps is not None:
        check_positive_int("steps", steps)
    if not callable(drift):
        raise TypeError(f"drift must be callable as drift(t, x), got {type(drift).__name__}")
    diff = nu * nu / 2
    faces = (x[1:] + x[:-1]) / 2
    f0 = drift(torch.tensor(float(t0), dtype=x.dtype, device=x.device), faces)
    if not isinstance(f0, torch.Tensor) or f0.shape != faces.shape:
        raise ValueError(f"drift(t, x) must return a tensor of x's shape, got "
                         f"{getattr(f0, 'shape', type(f0).__name__)} for x of shape {tuple(faces.shape)}")
    f_max = f0.abs().max().item()
    if f_max * dx / diff > 2:
        raise ValueError(f"the cell Peclet number |F| dx / (nu^2/2) = {f_max * dx / diff:.3g} exceeds 2, where the "
                         "centred flux loses positivity: use a finer x or a larger nu")
    span = abs(t1 - t0)
    if not (math.isfinite(span) and span > 0):
        raise ValueError(f"t0 and t1 must be finite and different, got t0={t0}, t1={t1}")
    d, e = _symmetrised(f0, diff, dx)
    if steps is None:
        steps = _fewest_steps(d, e, span, _DEFAULT_REACH)
    elif not _stable(d, e, _RK4_REACH * steps / span):
        raise ValueError(f"steps={steps} is too few for the explicit RK4 scheme's stability on this grid "
                         f"(dx = {dx:.3g}, nu = {nu}, the drift at t0): h rho exceeds RK4's reach "
                         f"{_RK4_REACH:.4f} on the negative real axis; use steps >= "
                         f"{_fewest_steps(d, e, span, _RK4_REACH)}")
    zero = torch.zeros(1, dtype=x.dtype, device=x.device)

    def rhs(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        flux = drift(t, faces) * (p[1:] + p[:-1]) / 2 - diff * (p[1:] - p[:-1]) / dx
        flux = torch.cat([zero, flux, zero])
        return -(flux[1:] - flux[:-1]) / dx

    return odesolve(rhs, p0, t0=float(t0), t1=float(t1), method="rk4", steps=steps, t_eval=t_eval)
