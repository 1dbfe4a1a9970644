"""Energies of the cubic-friction network of seed 002 eq. 56-57, F(x) = w x + b - gamma sign(x) |x|^mu.

* A Lyapunov function (eq. 33-36, 83). When w is symmetric, F = -dE/dx for
  E(x) = -1/2 x^T w x - b^T x + gamma/(mu + 1) sum_i |x_i|^(mu + 1) (eq. 83 for mu = 3), so
  dE/dt = -|dx/dt|^2 <= 0 along every solution: the network descends an energy.
* The energy balance (eq. 103-108). The "kinetic energy" K = |x|^2 / 2 changes at
  dK/dt = P_w + P_b - P_gamma with P_w = x^T w_sym x (linear gain or friction), P_b = b^T x (the
  "electric field") and P_gamma = gamma sum_i |x_i|^(mu + 1) (friction losses); the antisymmetric
  part of w (the "magnetic field") does no work.
* The stationary state (eq. 91-94). With w = 0 and constant b, x_i tends to
  x_inf = sign(b_i) (|b_i| / gamma)^(1/mu), and there the adjoint decays backward in depth as
  a(t) = a(T) exp(-r (T - t)) with r = mu gamma |x_inf|^(mu - 1) (3 gamma^(1/3) b^(2/3) for mu = 3).
* The parameter gradients as their own flow (eq. 69-70). dw_ij = a_i x_j and db_i = a_i obey
  d(dw)/dt = dw w^T - w^T dw + db b^T + gamma (mu |x_i|^(mu-1) - |x_j|^(mu-1)) dw_ij and
  d(db)/dt = -w^T db + mu gamma |x|^(mu-1) db, per sample.

theta(t) is the field's value at t (``cell`` picks a control cell, as in
:func:`~contdepth.physics.hamiltonian`). Every function works per sample: x has shape (B, dim).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..fields.dense import CubicFriction
from ._common import check_state

__all__ = ["EnergyBalance", "lyapunov_energy", "energy_balance", "stationary_state", "gradient_flow_rate"]


def _parts(field: object, x: Tensor, t: float, cell: int | None) -> tuple[Tensor, Tensor, Tensor, float]:
    """(w, b, gamma, mu) of ``field`` at t, after checking the field and the state."""
    if not isinstance(field, CubicFriction):
        raise TypeError(f"field must be a contdepth.fields.CubicFriction (seed 002 eq. 56-57), "
                        f"got {type(field).__name__}")
    check_state(field, x, "x")
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise TypeError(f"t must be a float, got {type(t).__name__}")
    if not field.grid.t0 <= t <= field.grid.t1:
        raise ValueError(f"t must lie in [{field.grid.t0}, {field.grid.t1}], got {t}")
    theta = field.theta_at(float(t), cell)
    return theta["weight"], theta["bias"], field.bounded_gamma(), field.mu


def lyapunov_energy(field: CubicFriction, x: Tensor, t: float, *, cell: int | None = None) -> Tensor:
    """E(x) = -1/2 x^T w_sym x - b^T x + gamma/(mu + 1) sum_i |x_i|^(mu + 1) per sample, shape (B,)
    (seed 002 eq. 83). For symmetric w, F = -dE/dx (eq. 33-35) and E decreases along solutions
    at the rate -|F|^2 (eq. 36); for any other w it is the energy of w's symmetric part only."""
    w, b, gamma, mu = _parts(field, x, t, cell)
    w_sym = (w + w.T) / 2
    return (-0.5 * ((x @ w_sym) * x).sum(1) - x @ b
            + gamma / (mu + 1) * x.abs().pow(mu + 1).sum(1))


@dataclass(frozen=True)
class EnergyBalance:
    """Seed 002 eq. 103-108 per sample: ``kinetic`` = |x|^2 / 2 and the powers whose sum
    ``rate`` = P_w + P_b - P_gamma is d(kinetic)/dt = x . F."""

    kinetic: Tensor
    p_w: Tensor
    p_b: Tensor
    p_gamma: Tensor

    @property
    def rate(self) -> Tensor:
        return self.p_w + self.p_b - self.p_gamma


def energy_balance(field: CubicFriction, x: Tensor, t: float, *, cell: int | None = None) -> EnergyBalance:
    """The kinetic energy |x|^2 / 2 and the powers P_w = x^T w_sym x, P_b = b^T x,
    P_gamma = gamma sum_i |x_i|^(mu + 1) (seed 002 eq. 103-108), each of shape (B,)."""
    w, b, gamma, mu = _parts(field, x, t, cell)
    return EnergyBalance(kinetic=0.5 * (x * x).sum(1), p_w=((x @ w) * x).sum(1), p_b=x @ b,
                         p_gamma=gamma * x.abs().pow(mu + 1).sum(1))


def stationary_state(b: Tensor, gamma: float | Tensor, mu: float = 3.0) -> tuple[Tensor, Tensor]:
    """(x_inf, r) for w = 0 and constant b (seed 002 eq. 91-94): the fixed point
    x_inf = sign(b) (|b| / gamma)^(1/mu) of dx/dt = b - gamma sign(x) |x|^mu, and the rate
    r = mu gamma |x_inf|^(mu - 1) at which the adjoint decays there, a(t) = a(T) exp(-r (T - t))."""
    if not isinstance(b, Tensor) or not b.is_floating_point():
        raise TypeError(f"b must be a floating-point tensor, got {type(b).__name__}")
    gamma = torch.as_tensor(gamma, dtype=b.dtype, device=b.device)
    if not bool((gamma > 0).all()):
        raise ValueError(f"gamma must be > 0 (friction), got {gamma}")
    if isinstance(mu, bool) or not isinstance(mu, (int, float)) or mu <= 1:
        raise ValueError(f"mu must be a number > 1 (seed 002 eq. 53), got {mu!r}")
    x_inf = torch.sign(b) * (b.abs() / gamma).pow(1 / mu)
    return x_inf, mu * gamma * x_inf.abs().pow(mu - 1)


def gradient_flow_rate(field: CubicFriction, x: Tensor, dw: Tensor, db: Tensor, t: float, *,
                       cell: int | None = None) -> tuple[Tensor, Tensor]:
    """(d(dw)/dt, d(db)/dt) of seed 002 eq. 69-70 (generalised to the exponent mu of eq. 57) for the
    per-sample parameter gradients dw = a x^T, shape (B, dim, dim), and db = a, shape (B, dim)."""
    w, b, gamma, mu = _parts(field, x, t, cell)
    if dw.shape != (*x.shape, x.shape[-1]) or db.shape != x.shape:
        raise ValueError(f"dw must have shape {(*x.shape, x.shape[-1])} and db shape {tuple(x.shape)}, "
                         f"got {tuple(dw.shape)} and {tuple(db.shape)}")
    s = gamma * x.abs().pow(mu - 1)
    dw_rate = dw @ w.T - w.T @ dw + db[:, :, None] * b[None, None, :] + (mu * s[:, :, None] - s[:, None, :]) * dw
    return dw_rate, -db @ w + mu * s * db
