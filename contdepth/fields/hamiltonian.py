"""The Hamiltonian network of Chang et al. 2018 (after Haber & Ruthotto 2017, seed 003's
structure-preserving view): a pair state (y, z) with

    dy/dt =  K1(t)^T act(K1(t) z + b1(t)),    dz/dt = -K2(t)^T act(K2(t) y + b2(t)).

dy/dt depends on z only and dz/dt on y only, so leapfrog and symplectic Euler apply and can
evaluate one half at a time (:meth:`Hamiltonian.vector_field_half`). With tanh the system is
Hamiltonian, H = sum log cosh(K1 z + b1) + sum log cosh(K2 y + b2), and with one knot (theta
constant in t) H is conserved along solutions.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import check_positive_int
from ..grid import ControlGrid
from .base import ControlledField, activation_fn, check_dims


class Hamiltonian(ControlledField):
    """Chang et al.'s Hamiltonian field on states (y, z), each (B, dim).

    Controls ``K1``, ``K2`` (n, width, dim) and ``b1``, ``b2`` (n, width), each knot initialised
    like ``torch.nn.Linear(dim, width)``.
    """

    def __init__(self, dim: int, grid: ControlGrid, *, width: int = 16, activation: str = "tanh") -> None:
        super().__init__(grid)
        self.dim = check_positive_int("dim", dim)
        self.width = check_positive_int("width", width)
        self.activation = activation
        self._act = activation_fn(activation)
        bound = dim ** -0.5
        for k, b in (("K1", "b1"), ("K2", "b2")):
            self.add_control(k, torch.empty(grid.n, width, dim).uniform_(-bound, bound))
            self.add_control(b, torch.empty(grid.n, width).uniform_(-bound, bound))

    def vector_field(self, t, psi, theta):
        """(dy/dt, dz/dt) = (K1^T act(K1 z + b1), -K2^T act(K2 y + b2)) for the pair psi = (y, z), each (B, dim)."""
        return self.vector_field_half(t, psi, theta, 0), self.vector_field_half(t, psi, theta, 1)

    def vector_field_half(self, t, psi, theta, i: int) -> torch.Tensor:
        """dy/dt (``i = 0``, from z) or dz/dt (``i = 1``, from y) alone."""
        y, z = psi
        if i == 0:
            return self._act(F.linear(z, theta["K1"], theta["b1"])) @ theta["K1"]
        return -(self._act(F.linear(y, theta["K2"], theta["b2"])) @ theta["K2"])

    def energy(self, psi, t: float) -> torch.Tensor:
        """H(y, z) = sum log cosh(K1 z + b1) + sum log cosh(K2 y + b2) per sample, shape (B,), with
        theta at ``t`` (the cell containing t); the field's Hamiltonian for ``activation="tanh"``."""
        if self.activation != "tanh":
            raise ValueError(f"energy() is the Hamiltonian of the tanh field, got activation={self.activation!r}")
        self.check_state(psi)
        y, z = psi
        theta = self.theta_at(float(t))

        def log_cosh(x: torch.Tensor) -> torch.Tensor:  # stable: |x| + log(1 + e^{-2|x|}) - log 2
            return x.abs() + F.softplus(-2 * x.abs()) - math.log(2.0)

        return (log_cosh(F.linear(z, theta["K1"], theta["b1"])).sum(-1)
                + log_cosh(F.linear(y, theta["K2"], theta["b2"])).sum(-1))

    def check_state(self, psi) -> None:
        """Raise ``ValueError`` unless ``psi`` is a pair (y, z) of (B, dim) tensors."""
        if not isinstance(psi, tuple) or len(psi) != 2:
            raise ValueError(f"Hamiltonian expects a pair state (y, z), got {type(psi).__name__}")
        for name, x in zip("yz", psi):
            check_dims(f"Hamiltonian {name}", x, 2, 1, self.dim, "(B, dim)")
