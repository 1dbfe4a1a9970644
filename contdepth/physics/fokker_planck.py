"""The density of a 1-D stochastic ResNet's hidden state: the Fokker-Planck equation (seed 003)

    dp/dt = -d(F p)/dx + nu^2/2 d^2p/dx^2

of dX = F(t, X) dt + nu dW, by finite volumes on uniform cells (method of lines, the time
integration by the engine). The flux through the face between cells i and i + 1 is
J = F(t, x_face) (p_i + p_{i+1}) / 2 - nu^2/2 (p_{i+1} - p_i) / dx, zero through the two outer
faces, so the mass sum_i p_i dx is conserved exactly (up to rounding) and p is second-order
accurate in dx while the cell Peclet number |F| dx / (nu^2/2) stays below 2.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from ..errors import check_positive_int
from ..solve import odesolve

# The RK4 stability region reaches -2.78 on the real axis and +-2.83i on the imaginary one.
_RK4_REACH = 2.5


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


def fokker_planck_1d(drift: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], nu: float, x: torch.Tensor,
                     p0: torch.Tensor, t1: float, steps: int | None = None, *, t0: float = 0.0,
                     t_eval: Sequence[float] | None = None) -> torch.Tensor:
    """The density p(x, t1) (or stacked at ``t_eval``) from p(x, t0) = p0 on the cell centres x.

    drift: F(t, x) -> tensor like x (t a 0-dim tensor), the drift of dX = F dt + nu dW.
    nu: the noise strength, > 0. steps: RK4 steps from t0 to t1 (default: the fewest the explicit
    scheme is stable with, dt <~ dx^2 / nu^2 for the diffusion); fewer is an error naming that minimum.
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
    rate = 4 * diff / dx ** 2 + 2 * f_max / dx
    needed = math.ceil(abs(t1 - t0) * rate / _RK4_REACH)
    steps = needed if steps is None else steps
    if steps < needed:
        raise ValueError(f"steps={steps} is too few for the explicit RK4 scheme's stability on this grid "
                         f"(dx = {dx:.3g}, nu = {nu}): use steps >= {needed}")
    zero = torch.zeros(1, dtype=x.dtype, device=x.device)

    def rhs(t: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        flux = drift(t, faces) * (p[1:] + p[:-1]) / 2 - diff * (p[1:] - p[:-1]) / dx
        flux = torch.cat([zero, flux, zero])
        return -(flux[1:] - flux[:-1]) / dx

    return odesolve(rhs, p0, t0=float(t0), t1=float(t1), method="rk4", steps=steps, t_eval=t_eval)
