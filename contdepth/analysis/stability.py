"""Stability of a discretised field: eigenvalues of h J per layer against a method's stability region.

Seed 004 eq. 2.14-2.16: the ODE is stable when max Re lambda(J(t)) <= 0, J = dF/dpsi (eq. 2.15
for F = act(W x + b): J = diag(act'(W x + b)) W). Eq. 3.1: forward Euler is stable when every
z = h lambda(J_i) lies in the disc |1 + z| <= 1. In general a one-step method applied to
y' = lambda y multiplies y by its stability function R(z) and is stable where |R(z)| <= 1.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import check_choice, check_positive_int
from ..fields.base import ControlledField
from .trajectory import trajectory

STABILITY_FUNCTIONS = {
    "euler": (1.0, 1.0),
    "midpoint": (1.0, 1.0, 1 / 2),
    "rk4": (1.0, 1.0, 1 / 2, 1 / 6, 1 / 24),
}
"""Coefficients of R(z) = sum_k c_k z^k, the stability polynomial of each explicit method: Euler 1 + z, midpoint 1 + z + z^2/2, RK4 the degree-4 Taylor polynomial of e^z."""


def stability_function(z: torch.Tensor, method: str = "euler") -> torch.Tensor:
    """R(z) of an explicit RK method: 1 + z (Euler), 1 + z + z^2/2 (midpoint), sum_{k<=4} z^k/k! (RK4)."""
    check_choice("method", method, STABILITY_FUNCTIONS)
    z = torch.as_tensor(z)
    out = torch.zeros_like(z)
    for coeff in reversed(STABILITY_FUNCTIONS[method]):
        out = out * z + coeff
    return out


def in_stability_region(z: torch.Tensor, method: str = "euler", *, tol: float = 1e-6) -> torch.Tensor:
    """Boolean mask |R(z)| <= 1 + tol (eq. 3.1 for Euler: |1 + z| <= 1)."""
    return stability_function(z, method).abs() <= 1 + tol


def field_jacobian(field: ControlledField, t: float, psi: torch.Tensor) -> torch.Tensor:
    """J = dF/dpsi at time ``t`` for each sample of ``psi``: shape (B, D, D), D = psi[0].numel().

    Row i of J[b] is d F_i(psi_b) / d psi_b. The field must act on every sample independently
    (true for all contdepth fields); parameters are not differentiated.
    """
    if not isinstance(field, ControlledField):
        raise TypeError(f"field must be a ControlledField, got {type(field).__name__}")
    if not isinstance(psi, torch.Tensor) or psi.dim() < 2:
        raise ValueError(f"psi must be a batched state tensor (B, ...), got {getattr(psi, 'shape', psi)!r}")
    theta = {name: value.detach() for name, value in field.theta_at(float(t)).items()}
    with torch.enable_grad():
        x = psi.detach().clone().requires_grad_(True)
        out = field.vector_field(torch.tensor(float(t), dtype=x.dtype, device=x.device), x, theta).reshape(len(x), -1)
        dim = out.shape[1]
        rows = [torch.autograd.grad(out[:, i].sum(), x, retain_graph=i < dim - 1)[0].reshape(len(x), -1)
                for i in range(dim)]
    return torch.stack(rows, dim=1)


@dataclass
class Spectrum:
    """Eigenvalues z = h lambda(J(t_j, x_j)) at the start of every step j of a fixed-step solve."""

    times: torch.Tensor        # (L,) t_j
    h: float                   # step size
    eigenvalues: torch.Tensor  # (L, B, D) complex

    def inside_fraction(self, method: str = "euler") -> torch.Tensor:
        """Per layer, the fraction of eigenvalues z with |R(z)| <= 1 for ``method``: shape (L,)."""
        return in_stability_region(self.eigenvalues, method).flatten(1).float().mean(dim=1)

    def max_real(self) -> torch.Tensor:
        """Per layer, max Re lambda(J) (seed 004 eq. 2.14; the eigenvalues of J, not h J): shape (L,)."""
        return self.eigenvalues.real.flatten(1).max(dim=1).values / self.h


def layer_spectra(field: ControlledField, x0: torch.Tensor, *, steps: int, method: str = "euler",
                  t0: float | None = None, t1: float | None = None) -> Spectrum:
    """Eigenvalues of h J at each layer (seed 004 sec. 3.2, eq. 3.1) for inputs ``x0`` (B, ...).

    The inputs are propagated with ``method`` over ``steps`` equal steps of size h; at each step
    start (t_j, x_j), j = 0 .. steps - 1, J = dF/dpsi with theta(t_j) (the knot the Euler step uses).

    Raises ``TypeError``/``ValueError`` if ``steps`` is not an int >= 1.

    Example: ``spectra = layer_spectra(field, x[:64], steps=16)``.
    """
    steps = check_positive_int("steps", steps)
    with torch.no_grad():
        ts, ys = trajectory(field, x0, method=method, steps=steps, t0=t0, t1=t1)
    h = float(ts[1] - ts[0])
    eigs = [torch.linalg.eigvals(h * field_jacobian(field, float(t), y).double())
            for t, y in zip(ts[:-1], ys[:-1])]
    return Spectrum(times=ts[:-1], h=h, eigenvalues=torch.stack(eigs))
