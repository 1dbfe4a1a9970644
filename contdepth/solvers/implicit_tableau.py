"""Implicit Runge-Kutta methods as validated data: a full Butcher tableau (c, A, b) per method.

Stage i solves Y_i = y + h sum_j a_ij f(t + c_j h, Y_j); the step is y1 = y + h sum_i b_i k_i.
A tableau claims its structure (``diagonally_implicit``: a_ij = 0 for j > i, so stages are solved
one at a time; ``stiffly_accurate``: b is the last row of A and c_s = 1, so y1 = Y_s) and the
checks below run on import: row sums of A equal c, b sums to 1, the quadrature conditions
sum_i b_i c_i^(k-1) = 1/k for k <= order, an embedded error weight sums to 0, each predictor
row sums to 1, and the claimed structure holds (a structure that holds but is not claimed is
an error too, so the flags cannot go stale). Fixed-step tableaux follow torchdiffeq
(``fixed_grid_implicit.py``); Kvaerno's ESDIRK pairs (Kvaerno 2004) use diffrax's coefficients.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from .tableau import TableauShape

_TOL = 1e-12


@dataclass(frozen=True)
class ImplicitTableau(TableauShape):
    """c, A (s x s), b; ``b_error`` = b - b_hat of an embedded pair; ``predictor``: per stage i,
    weights alpha_ij (j < i, summing to 1) of the first guess of its derivative, k_i = sum_j alpha_ij k_j
    (diffrax's predictors; without them a stage starts from the previous stage's derivative)."""

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    diagonally_implicit: bool
    stiffly_accurate: bool
    b_error: tuple[float, ...] | None = None
    predictor: tuple[tuple[float, ...], ...] | None = None

    def __post_init__(self) -> None:
        s = len(self.c)
        if len(self.a) != s or any(len(row) != s for row in self.a) or len(self.b) != s:
            raise ValueError(f"{self.name}: A must be {s} x {s} and b have {s} weights")
        for i, (ci, row) in enumerate(zip(self.c, self.a)):
            if abs(sum(row) - ci) > _TOL * max(1.0, sum(abs(x) for x in row)):
                raise ValueError(f"{self.name}: row {i} of A sums to {sum(row)}, but c_{i} = {ci}")
        if abs(sum(self.b) - 1) > _TOL:
            raise ValueError(f"{self.name}: b must sum to 1, got {sum(self.b)}")
        for k in range(2, self.order + 1):
            quad = sum(bi * ci ** (k - 1) for bi, ci in zip(self.b, self.c))
            if abs(quad - 1 / k) > 1e-10:
                raise ValueError(f"{self.name}: order {self.order} needs sum b_i c_i^{k - 1} = 1/{k}, got {quad}")
        lower = all(self.a[i][j] == 0 for i in range(s) for j in range(i + 1, s))
        if lower != self.diagonally_implicit:
            raise ValueError(f"{self.name}: claims diagonally_implicit={self.diagonally_implicit}, but A is "
                             f"{'' if lower else 'not '}lower triangular")
        accurate = self.c[-1] == 1 and all(abs(x - y) <= _TOL for x, y in zip(self.a[-1], self.b))
        if accurate != self.stiffly_accurate:
            raise ValueError(f"{self.name}: claims stiffly_accurate={self.stiffly_accurate}, but b "
                             f"{'equals' if accurate else 'is not'} the last row of A with c_s = 1")
        if all(x == 0 for row in self.a for x in row):
            raise ValueError(f"{self.name}: A is zero; an explicit method belongs in tableau.py")
        if self.b_error is not None and (len(self.b_error) != s or abs(sum(self.b_error)) > _TOL):
            raise ValueError(f"{self.name}: b_error needs {s} weights summing to 0, got {self.b_error}")
        if self.predictor is not None:
            if len(self.predictor) != s or any(len(row) != i or (i and abs(sum(row) - 1) > _TOL)
                                               for i, row in enumerate(self.predictor)):
                raise ValueError(f"{self.name}: predictor row i needs i weights summing to 1")
            if not self.diagonally_implicit:
                raise ValueError(f"{self.name}: a predictor from earlier stages needs a diagonally implicit A")

    @property
    def explicit_first_stage(self) -> bool:
        """The first row of A is zero: k_1 = f(t, y) (an ESDIRK, or the trapezoidal rule)."""
        return all(x == 0 for x in self.a[0])


def _lower(rows: list[list[float]], s: int) -> tuple[tuple[float, ...], ...]:
    """Rows of a lower-triangular A given up to the diagonal, padded with zeros to s columns."""
    return tuple(tuple(row) + (0.0,) * (s - len(row)) for row in rows)


_S2, _S3, _S6, _S15 = math.sqrt(2), math.sqrt(3), math.sqrt(6), math.sqrt(15)

IMPLICIT_EULER = ImplicitTableau("implicit_euler", 1, c=(1.0,), a=((1.0,),), b=(1.0,),
                                 diagonally_implicit=True, stiffly_accurate=True)
IMPLICIT_MIDPOINT = ImplicitTableau("implicit_midpoint", 2, c=(0.5,), a=((0.5,),), b=(1.0,),
                                    diagonally_implicit=True, stiffly_accurate=False)
TRAPEZOID = ImplicitTableau("trapezoid", 2, c=(0.0, 1.0), a=((0.0, 0.0), (0.5, 0.5)), b=(0.5, 0.5),
                            diagonally_implicit=True, stiffly_accurate=True)
RADAU_IIA3 = ImplicitTableau("radauIIA3", 3, c=(1 / 3, 1.0), a=((5 / 12, -1 / 12), (3 / 4, 1 / 4)), b=(3 / 4, 1 / 4),
                             diagonally_implicit=False, stiffly_accurate=True)
RADAU_IIA5 = ImplicitTableau(
    "radauIIA5", 5, c=(2 / 5 - _S6 / 10, 2 / 5 + _S6 / 10, 1.0),
    a=((11 / 45 - 7 * _S6 / 360, 37 / 225 - 169 * _S6 / 1800, -2 / 225 + _S6 / 75),
       (37 / 225 + 169 * _S6 / 1800, 11 / 45 + 7 * _S6 / 360, -2 / 225 - _S6 / 75),
       (4 / 9 - _S6 / 36, 4 / 9 + _S6 / 36, 1 / 9)),
    b=(4 / 9 - _S6 / 36, 4 / 9 + _S6 / 36, 1 / 9), diagonally_implicit=False, stiffly_accurate=True)
GL4 = ImplicitTableau("gl4", 4, c=(1 / 2 - _S3 / 6, 1 / 2 + _S3 / 6),
                      a=((1 / 4, 1 / 4 - _S3 / 6), (1 / 4 + _S3 / 6, 1 / 4)), b=(1 / 2, 1 / 2),
                      diagonally_implicit=False, stiffly_accurate=False)
GL6 = ImplicitTableau(
    "gl6", 6, c=(1 / 2 - _S15 / 10, 1 / 2, 1 / 2 + _S15 / 10),
    a=((5 / 36, 2 / 9 - _S15 / 15, 5 / 36 - _S15 / 30),
       (5 / 36 + _S15 / 24, 2 / 9, 5 / 36 - _S15 / 24),
       (5 / 36 + _S15 / 30, 2 / 9 + _S15 / 15, 5 / 36)),
    b=(5 / 18, 4 / 9, 5 / 18), diagonally_implicit=False, stiffly_accurate=False)
_G2 = (2 - _S2) / 2  # sdirk2's gamma, L-stable
SDIRK2 = ImplicitTableau("sdirk2", 2, c=(_G2, 1.0), a=((_G2, 0.0), (1 - _G2, _G2)), b=(1 - _G2, _G2),
                         diagonally_implicit=True, stiffly_accurate=True)
_GT, _BT = 1 - _S2 / 2, _S2 / 4  # TR-BDF2 (Bank et al. 1985; Hosea & Shampine 1996)
TRBDF2 = ImplicitTableau("trbdf2", 2, c=(0.0, 2 * _GT, 1.0),
                         a=((0.0, 0.0, 0.0), (_GT, _GT, 0.0), (_BT, _BT, _GT)), b=(_BT, _BT, _GT),
                         diagonally_implicit=True, stiffly_accurate=True)

# Kvaerno 3(2): 4-stage ESDIRK, coefficients in terms of gamma (Kvaerno 2004; diffrax kvaerno3.py).
_K3 = 0.43586652150
_K3_A = [[0.0], [_K3, _K3],
         [(-4 * _K3 ** 2 + 6 * _K3 - 1) / (4 * _K3), (-2 * _K3 + 1) / (4 * _K3), _K3],
         [(6 * _K3 - 1) / (12 * _K3), -1 / ((24 * _K3 - 12) * _K3), (-6 * _K3 ** 2 + 6 * _K3 - 1) / (6 * _K3 - 3), _K3]]
KVAERNO3 = ImplicitTableau(
    "kvaerno3", 3, c=(0.0, 2 * _K3, 1.0, 1.0), a=_lower(_K3_A, 4), b=tuple(_K3_A[3]),
    b_error=tuple(x - y for x, y in zip(_K3_A[3], _K3_A[2] + [0.0])),
    predictor=((), (1.0,), (1 - 1 / (2 * _K3), 1 / (2 * _K3)), tuple(_K3_A[2])),
    diagonally_implicit=True, stiffly_accurate=True)

# Kvaerno 5(4): 7-stage ESDIRK (Kvaerno 2004; diffrax kvaerno5.py, its predictors from OrdinaryDiffEq.jl).
_K5 = 0.26
_K5_A = [[0.0], [_K5, _K5], [0.13, 0.84033320996790809, _K5],
         [0.22371961478320505, 0.47675532319799699, -0.06470895363112615, _K5],
         [0.16648564323248321, 0.10450018841591720, 0.03631482272098715, -0.13090704451073998, _K5],
         [0.13855640231268224, 0.0, -0.04245337201752043, 0.02446657898003141, 0.61943039072480676, _K5],
         [0.13659751177640291, 0.0, -0.05496908796538376, -0.04118626728321046, 0.62993304899016403,
          0.06962479448202728, _K5]]
KVAERNO5 = ImplicitTableau(
    "kvaerno5", 5, c=(0.0, 0.52, 1.230333209967908, 0.8957659843500759, 0.43639360985864756, 1.0, 1.0), a=_lower(_K5_A, 7), b=tuple(_K5_A[6]),
    b_error=tuple(x - y for x, y in zip(_K5_A[6], _K5_A[5] + [0.0])),
    predictor=((), (1.0,), (-1.366025403784441, 2.3660254037844357),
               (-0.19650552613122207, 0.8113579546496623, 0.38514757148155954),
               (0.10375304369958693, 0.937994698066431, -0.04174774176601781, 0.0),
               (-0.17281112873898072, 0.6235784481025847, 0.5492326806363959, 0.0, 0.0),
               tuple(_K5_A[5])),
    diagonally_implicit=True, stiffly_accurate=True)

IMPLICIT_TABLEAUX = {t.name: t for t in (IMPLICIT_EULER, IMPLICIT_MIDPOINT, TRAPEZOID, RADAU_IIA3, RADAU_IIA5,
                                         GL4, GL6, SDIRK2, TRBDF2, KVAERNO3, KVAERNO5)}
