"""Path-integral view of the 1-D stencil residual block (seed 000, ch. III, eq. 21-25, 33-38).

One residual step of the discretised PDE (seed 000 eq. 21)

    dpsi/dt = alpha^2/2 d2psi/dx2 + beta dpsi/dx + gamma psi

on a lattice of spacing ``dx`` with time step ``dt`` is (eq. 23-25)

    psi_{k+1}(x) = psi_k(x) + k_+ psi_k(x+dx) + k_0 psi_k(x) + k_- psi_k(x-dx),

with the stencil ``[k_+, k_0, k_-] = dt * [alpha^2/(2dx^2) + beta/(2dx),
gamma - alpha^2/dx^2, alpha^2/(2dx^2) - beta/(2dx)]``; for ``dt = dx = 1`` this is
exactly eq. 24's kernel ``[(alpha^2+beta)/2, gamma-alpha^2, (alpha^2-beta)/2]``.

Reading the step as "where did the value at x come from", a lattice path moving by
``d = x_k - x_{k-1}`` in one step carries the weight

    w(+1) = k_-,   w(0) = 1 + k_0,   w(-1) = k_+,

and N steps are exactly the sum over all lattice paths of the product of these weights
(eq. 33/38 on the lattice; for positive weights the product is ``exp(-S)`` with the
lattice action ``S = -sum_k log w(d_k)``).  Signs derived from the stencil: per unit time the
mean displacement is ``-beta`` (drift velocity ``-beta``: for ``beta > 0`` the packet moves
towards negative x), the variance grows by ``alpha^2`` and the total weight grows by
``exp(gamma)``.  The continuum limit (``dx -> 0``, ``dt = c dx^2/alpha^2``) of the N-step
propagator is therefore the Gaussian kernel of eq. 35 integrated over time,

    K(x, t) = exp(gamma t) / sqrt(2 pi alpha^2 t) * exp(-(x + beta t)^2 / (2 alpha^2 t)).

Seed eq. 35 writes the prefactor of one step as ``e^gamma / alpha``; the momentum integral
``int dp/(2 pi) exp(-alpha^2 p^2/2 + i p (d + beta))`` gives ``e^gamma / sqrt(2 pi alpha^2)``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "stencil_kernel",
    "step_weights",
    "residual_propagate",
    "transfer_matrix",
    "propagator",
    "path_sum",
    "gaussian_kernel",
    "lattice_kernel",
    "ContinuumError",
    "continuum_errors",
]

_MAX_PATH_ELEMENTS = 20_000_000


def _scalar(value: float | Tensor, name: str) -> Tensor | float:
    if isinstance(value, Tensor):
        if value.dim() != 0:
            raise ValueError(f"{name} must be a scalar (0-d tensor), got shape {tuple(value.shape)}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float or a 0-d tensor, got {type(value).__name__}")
    return float(value)


def _positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be positive and finite, got {value}")
    return float(value)


def stencil_kernel(
    alpha: float | Tensor,
    beta: float | Tensor,
    gamma: float | Tensor,
    *,
    dt: float = 1.0,
    dx: float = 1.0,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Residual-block kernel ``[k_+, k_0, k_-]`` acting on ``[psi(x+dx), psi(x), psi(x-dx)]``.

    Seed 000 eq. 23-24: ``dt * [alpha^2/(2dx^2) + beta/(2dx), gamma - alpha^2/dx^2,
    alpha^2/(2dx^2) - beta/(2dx)]``; with ``dt = dx = 1`` it is eq. 24's
    ``[(alpha^2+beta)/2, gamma-alpha^2, (alpha^2-beta)/2]``.  Differentiable in the
    parameters when they are tensors.
    """
    a = _scalar(alpha, "alpha")
    b = _scalar(beta, "beta")
    g = _scalar(gamma, "gamma")
    dt = _positive(dt, "dt")
    dx = _positive(dx, "dx")
    like = next((v for v in (a, b, g) if isinstance(v, Tensor)), None)
    if dtype is None:
        dtype = like.dtype if like is not None else torch.get_default_dtype()
    if device is None and like is not None:
        device = like.device
    parts = [
        dt * (a**2 / (2 * dx**2) + b / (2 * dx)),
        dt * (g - a**2 / dx**2),
        dt * (a**2 / (2 * dx**2) - b / (2 * dx)),
    ]
    return torch.stack([torch.as_tensor(p, dtype=dtype, device=device) for p in parts])


def _kernels(kernel: Tensor, steps: int) -> Tensor:
    if not isinstance(kernel, Tensor):
        raise TypeError(f"kernel must be a Tensor, got {type(kernel).__name__}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if kernel.shape == (3,):
        return kernel.expand(steps, 3)
    if kernel.dim() == 2 and kernel.shape == (steps, 3):
        return kernel
    raise ValueError(
        f"kernel must have shape (3,) or (steps, 3) = ({steps}, 3), got {tuple(kernel.shape)}"
    )


def step_weights(kernel: Tensor) -> Tensor:
    """Per-step path weights ``[w(-1), w(0), w(+1)]`` for displacements ``d = x_k - x_{k-1}``.

    From seed 000 eq. 25: ``w(-1) = k_+``, ``w(0) = 1 + k_0``, ``w(+1) = k_-``.  Accepts a
    kernel of shape ``(..., 3)`` and returns the same shape.
    """
    if not isinstance(kernel, Tensor) or kernel.shape[-1:] != (3,):
        raise ValueError("kernel must be a Tensor whose last dimension has size 3")
    return torch.stack([kernel[..., 0], 1 + kernel[..., 1], kernel[..., 2]], dim=-1)


def residual_propagate(psi0: Tensor, kernel: Tensor, steps: int) -> Tensor:
    """Apply ``steps`` residual blocks ``psi <- psi + f * psi`` (seed 000 eq. 25), zero padding.

    ``psi0`` has shape ``(..., M)`` (the lattice is the last axis); ``kernel`` is ``(3,)``
    (the same block every step) or ``(steps, 3)`` (one kernel per layer).  Returns
    ``(steps + 1, ..., M)``: the state after each block, starting with ``psi0``.
    """
    if not isinstance(psi0, Tensor) or psi0.dim() < 1:
        raise ValueError("psi0 must be a Tensor with at least one dimension (the lattice)")
    ks = _kernels(kernel, steps).to(psi0)
    zero = torch.zeros_like(psi0[..., :1])
    out = [psi0]
    psi = psi0
    for k in ks:
        up = torch.cat([psi[..., 1:], zero], dim=-1)  # psi(x + dx)
        down = torch.cat([zero, psi[..., :-1]], dim=-1)  # psi(x - dx)
        psi = psi + k[0] * up + k[1] * psi + k[2] * down
        out.append(psi)
    return torch.stack(out)


def transfer_matrix(kernel: Tensor, size: int) -> Tensor:
    """Matrix ``T`` with ``psi_{k+1} = T psi_k`` for one block on ``size`` sites (eq. 25).

    ``T[x, x] = 1 + k_0``, ``T[x, x+1] = k_+``, ``T[x, x-1] = k_-`` (zero padding: the
    lattice ends are absorbing).  ``T[x_k, x_{k-1}]`` is the path weight ``w(x_k - x_{k-1})``.
    """
    if not isinstance(kernel, Tensor) or kernel.shape != (3,):
        raise ValueError(f"kernel must be a Tensor of shape (3,), got {getattr(kernel, 'shape', kernel)}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    eye = torch.eye(size, dtype=kernel.dtype, device=kernel.device)
    upper = torch.diag_embed(torch.ones(size - 1, dtype=kernel.dtype, device=kernel.device), 1)
    return (1 + kernel[1]) * eye + kernel[0] * upper + kernel[2] * upper.T


def propagator(kernel: Tensor, size: int, steps: int) -> Tensor:
    """N-block propagator ``T_N ... T_1`` on ``size`` sites (product of transfer matrices).

    Entry ``[x_N, x_0]`` is the sum over lattice paths from ``x_0`` to ``x_N`` of the product
    of step weights (seed 000 eq. 33/38 on the lattice).
    """
    ks = _kernels(kernel, steps)
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive int, got {size!r}")
    result = torch.eye(size, dtype=kernel.dtype, device=kernel.device)
    for k in ks:
        result = transfer_matrix(k, size) @ result
    return result


def path_sum(psi0: Tensor, kernel: Tensor, steps: int) -> Tensor:
    """``psi_N(x_N) = sum over paths x_0..x_N of prod_k w_k(x_k - x_{k-1}) psi0(x_0)`` (eq. 33/38).

    Enumerates all ``3^steps`` displacement sequences from every start site explicitly and keeps
    the paths that stay on the lattice (zero padding).  ``psi0`` is ``(..., M)``; ``kernel`` is
    ``(3,)`` or ``(steps, 3)``.  Exponential cost: meant for small lattices (``3^steps * M``
    path sites at most 2e7); use :func:`propagator` beyond that.
    """
    if not isinstance(psi0, Tensor) or psi0.dim() < 1:
        raise ValueError("psi0 must be a Tensor with at least one dimension (the lattice)")
    ks = _kernels(kernel, steps).to(psi0)
    size = psi0.shape[-1]
    n_paths = 3**steps
    if n_paths * size * max(steps, 1) > _MAX_PATH_ELEMENTS:
        raise ValueError(
            f"path enumeration of 3^{steps} paths on {size} sites is too large; "
            "use propagator() (transfer matrices) instead"
        )
    device = psi0.device
    disp = torch.tensor(list(itertools.product((-1, 0, 1), repeat=steps)), dtype=torch.long, device=device)
    disp = disp.reshape(n_paths, steps)
    table = step_weights(ks)  # (steps, 3): weights for d = -1, 0, +1
    weight = table[torch.arange(steps, device=device), disp + 1].prod(dim=-1)  # (P,)
    starts = torch.arange(size, device=device)
    positions = starts[:, None, None] + disp.cumsum(dim=-1)[None]  # (M, P, steps)
    inside = ((positions >= 0) & (positions < size)).all(dim=-1)  # (M, P)
    end = positions[..., -1] if steps > 0 else starts[:, None].expand(size, n_paths)
    contrib = psi0[..., :, None] * (weight * inside.to(psi0.dtype))  # (..., M, P)
    index = end.clamp(0, size - 1).expand_as(contrib)
    flat = (*contrib.shape[:-2], size * n_paths)
    return torch.zeros_like(psi0).scatter_add(-1, index.reshape(flat), contrib.reshape(flat))


def gaussian_kernel(
    x: Tensor, *, t: float, alpha: float, beta: float, gamma: float
) -> Tensor:
    """Continuum propagator of eq. 21 from a unit point source at 0 (seed 000 eq. 35, t > 0).

    ``exp(gamma t) / sqrt(2 pi alpha^2 t) * exp(-(x + beta t)^2 / (2 alpha^2 t))``: drift
    velocity ``-beta``, variance ``alpha^2 t``, growth ``exp(gamma t)``.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a Tensor, got {type(x).__name__}")
    t = _positive(t, "t")
    alpha = _positive(alpha, "alpha")
    var = alpha**2 * t
    return math.exp(gamma * t) / math.sqrt(2 * math.pi * var) * torch.exp(-((x + beta * t) ** 2) / (2 * var))


def lattice_kernel(
    *,
    alpha: float,
    beta: float,
    gamma: float,
    t: float,
    dx: float,
    courant: float = 0.25,
    half_width: float | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor, int]:
    """N-block lattice propagator from a unit point source at 0, as a density ``psi_N / dx``.

    Steps: ``N = ceil(t alpha^2 / (courant dx^2))`` with ``dt = t / N`` (so
    ``dt alpha^2 / dx^2 <= courant <= 1/2``, the explicit scheme's stability bound).  The
    lattice covers ``[-half_width, half_width]`` (default ``|beta| t + 12 alpha sqrt(t)``,
    wide enough that the absorbing ends do not matter).  Returns ``(x, density, N)``; compare
    with :func:`gaussian_kernel` (seed 000 eq. 35).
    """
    alpha = _positive(alpha, "alpha")
    t = _positive(t, "t")
    dx = _positive(dx, "dx")
    courant = _positive(courant, "courant")
    if courant > 0.5:
        raise ValueError(f"courant must be <= 0.5 for a stable explicit step, got {courant}")
    if half_width is None:
        half_width = abs(beta) * t + 12 * alpha * math.sqrt(t)
    half_width = _positive(half_width, "half_width")
    steps = math.ceil(t * alpha**2 / (courant * dx**2))
    dt = t / steps
    sites = math.ceil(half_width / dx)
    x = torch.arange(-sites, sites + 1, dtype=dtype, device=device) * dx
    psi0 = torch.zeros_like(x)
    psi0[sites] = 1.0
    kernel = stencil_kernel(alpha, beta, gamma, dt=dt, dx=dx, dtype=dtype, device=device)
    psi = psi0
    zero = psi0[:1] * 0
    for _ in range(steps):
        up = torch.cat([psi[1:], zero])
        down = torch.cat([zero, psi[:-1]])
        psi = psi + kernel[0] * up + kernel[1] * psi + kernel[2] * down
    return x, psi / dx, steps


@dataclass(frozen=True)
class ContinuumError:
    """Lattice-vs-Gaussian comparison at one spacing: ``max |lattice - K| / max K`` and mass error."""

    dx: float
    steps: int
    max_rel_error: float
    mass_rel_error: float


def continuum_errors(
    *,
    alpha: float,
    beta: float,
    gamma: float,
    t: float,
    dxs: list[float],
    courant: float = 0.25,
) -> list[ContinuumError]:
    """Error of :func:`lattice_kernel` against :func:`gaussian_kernel` for each spacing in ``dxs``.

    ``max_rel_error = max_x |psi_N/dx - K| / max_x K``; ``mass_rel_error`` compares
    ``sum psi_N`` with the exact mass ``exp(gamma t)``.  Both shrink like ``dx^2``
    (first order in ``dt ~ dx^2``, second order in ``dx``).
    """
    if not dxs:
        raise ValueError("dxs must be a non-empty list of lattice spacings")
    out = []
    for dx in dxs:
        x, density, steps = lattice_kernel(alpha=alpha, beta=beta, gamma=gamma, t=t, dx=dx, courant=courant)
        exact = gaussian_kernel(x, t=t, alpha=alpha, beta=beta, gamma=gamma)
        max_rel = ((density - exact).abs().max() / exact.max()).item()
        mass = (density * dx).sum().item()
        out.append(ContinuumError(dx, steps, max_rel, abs(mass / math.exp(gamma * t) - 1)))
    return out
