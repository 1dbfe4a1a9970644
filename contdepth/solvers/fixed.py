"""The fixed-step engine: one explicit RK step, and the exact choice of control knot per stage."""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Sequence, Union

import torch

from ..fields.base import ControlledField
from ..grid import ControlGrid
from .tableau import ButcherTableau

State = Union[torch.Tensor, tuple[torch.Tensor, ...]]
Theta = dict[str, torch.Tensor]


@dataclass(frozen=True)
class StateGrid:
    """``steps`` equal steps over [t0, t1]: the solver's grid, independent of the control grid."""

    t0: float
    t1: float
    steps: int

    @property
    def h(self) -> float:
        return (self.t1 - self.t0) / self.steps

    def time(self, j: int | Fraction) -> float:
        """t0 + j h, rounded once from the exact rational value."""
        return float(self._exact(j))

    def _exact(self, j: int | Fraction) -> Fraction:
        return Fraction(self.t0) + (Fraction(self.t1) - Fraction(self.t0)) * Fraction(j) / self.steps

    def stage_cell(self, field: ControlledField, j: int, c: Fraction, *, reverse: bool) -> int:
        """Control cell of the stage at fraction ``c`` of step ``j`` (exact rational arithmetic).

        The step runs from t_j to t_{j+1} (``reverse``: from t_{j+1} to t_j). A stage with c < 1
        uses the cell just ahead of it in the direction of travel; the stage at the step's end
        (c = 1) uses the cell the step ends in, reached from behind. So a step inside one cell sees
        only that cell's theta.
        """
        return self._cell(field.grid, j, c, reverse)

    def _cell(self, control: ControlGrid, j: int, c: Fraction, reverse: bool) -> int:
        start, end = (j + 1, j) if reverse else (j, j + 1)
        p = control.position(self._exact(start + c * (end - start)))
        ahead_is_right = (c < 1) != reverse
        cell = math.floor(p) if ahead_is_right else math.ceil(p) - 1
        return min(max(cell, 0), control.intervals - 1)

    def stage_thetas(self, field: ControlledField, tableau: ButcherTableau, knots: list[Theta], *,
                     reverse: bool = False) -> Sequence[list[Theta]]:
        """theta for every stage of every step, ``[step][stage]``, built from ``knots``.

        The exact rational knot choice depends only on the two grids and the tableau, so it is
        computed once per configuration (:func:`_stage_cells`, cached) rather than per solve.
        Interpolated (linear) theta is built when a step is indexed, under the caller's grad
        mode, so a backward pass holds one step's interpolants at a time, not all of them.
        """
        if field.grid.interp == "constant":
            cells = _stage_cells(self, field.grid, tableau.c, reverse)
            return [[knots[cell] for cell in row] for row in cells]
        return _Interpolated(field, knots, _stage_times(self, tableau.c, reverse))


class _Interpolated(Sequence):
    """Linearly interpolated theta per step, computed on access."""

    def __init__(self, field: ControlledField, knots: list[Theta], times: tuple[tuple[float, ...], ...]) -> None:
        self.field, self.knots, self.times = field, knots, times

    def __len__(self) -> int:
        return len(self.times)

    def __getitem__(self, j: int) -> list[Theta]:
        return [self.field.theta_at(t, knots=self.knots) for t in self.times[j]]


@functools.lru_cache(maxsize=256)
def _stage_cells(grid: StateGrid, control: ControlGrid, cs: tuple[Fraction, ...],
                 reverse: bool) -> tuple[tuple[int, ...], ...]:
    """``grid.stage_cell`` for every stage of every step (piecewise-constant theta)."""
    return tuple(tuple(grid._cell(control, j, c, reverse) for c in cs) for j in range(grid.steps))


@functools.lru_cache(maxsize=256)
def _stage_times(grid: StateGrid, cs: tuple[Fraction, ...], reverse: bool) -> tuple[tuple[float, ...], ...]:
    """The time of every stage of every step, each rounded once from its exact value."""
    return tuple(tuple(grid.time(j + 1 - c if reverse else j + c) for c in cs) for j in range(grid.steps))


def _axpy(y: State, s: float, k: State) -> State:
    """y + s k for a tensor or a tuple of tensors."""
    if isinstance(y, torch.Tensor):
        return y + s * k
    return tuple(yi + s * ki for yi, ki in zip(y, k))


def _scale(s: float, k: State) -> State:
    return s * k if isinstance(k, torch.Tensor) else tuple(s * ki for ki in k)


def _add(y: State, dy: State) -> State:
    return y + dy if isinstance(y, torch.Tensor) else tuple(yi + di for yi, di in zip(y, dy))


def rk_step(fn: Callable[[State, Theta], State], tableau: ButcherTableau, y: State, h: float,
            thetas: list[Theta]) -> State:
    """One explicit RK step y + h sum_i b_i k_i, k_i = fn(y + h sum_j a_ij k_j, theta_i).

    ``y`` is a tensor or a tuple of tensors. For Euler this is exactly ``y + h * fn(y, theta)``.
    """
    ks: list[State] = []
    for a_row, theta in zip(tableau.a, thetas):
        yi = y
        for a, k in zip(a_row, ks):
            if a:
                yi = _axpy(yi, h * a, k)
        ks.append(fn(yi, theta))
    dy = None
    for b, k in zip(tableau.b, ks):
        if b:
            dy = _scale(h * b, k) if dy is None else _axpy(dy, h * b, k)
    return _add(y, dy)
