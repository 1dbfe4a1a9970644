"""Explicit Runge-Kutta methods as data: a Butcher tableau (c, A, b) per method."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as Fr


@dataclass(frozen=True)
class ButcherTableau:
    """Stage i evaluates F at t + c_i h on y + h sum_j a_ij k_j; the step is y + h sum_i b_i k_i."""

    name: str
    order: int
    c: tuple[Fr, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]

    @property
    def stages(self) -> int:
        return len(self.c)


EULER = ButcherTableau("euler", 1, c=(Fr(0),), a=((),), b=(1.0,))
MIDPOINT = ButcherTableau("midpoint", 2, c=(Fr(0), Fr(1, 2)), a=((), (0.5,)), b=(0.0, 1.0))
# Classical RK4, seed 004 eq. 2.17-2.21.
RK4 = ButcherTableau("rk4", 4, c=(Fr(0), Fr(1, 2), Fr(1, 2), Fr(1)),
                     a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
                     b=(1 / 6, 1 / 3, 1 / 3, 1 / 6))
