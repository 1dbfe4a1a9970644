"""The linear two-step architecture of seed 002 eq. 111 (LM-ResNet, Lu et al. 2018) as a stepper.

    x_{l+1} = (1 - k_l) x_l + k_l x_{l-1} + h F(t_l, x_l, theta_l),   x_{-1} = x_0,

with a trainable coefficient k(t) on a control grid of its own (k_l its value on step l's cell).
Step 0 is Euler; with k = 0 every step is Euler bit for bit. A Taylor expansion of the
recurrence gives the continuous equation it approximates,

    (1 + k) dx/dt + (1 - k) (h/2) d2x/dt2 = F,

so for h -> 0 it solves dx/dt = F / (1 + k). Its characteristic polynomial
z^2 - (1 - k) z - k = (z - 1)(z + k) has roots 1 and -k: the recurrence is zero-stable for
-1 < k <= 1, and with |k| > 1 the mode (-k)^l grows whatever h is.

The previous state lives in the stepper's state, so ``gradient="checkpoint"`` stores and
differentiates it, and k receives gradients from backprop and checkpoint alike.
"""
from __future__ import annotations

import torch
from torch import nn

from ..grid import ControlGrid
from ..terms import Term
from ..tree import State, axpy, leaves, lerp, tree_map


class LinearTwoStep(nn.Module):
    """Stepper of seed 002 eq. 111 with k(t) on ``grid`` (piecewise constant, ``grid.n`` values).

    ``k`` is an ``nn.Parameter`` of shape ``(grid.n,)``, initialised to ``k_init``. Use it as
    ``method=`` of :func:`contdepth.solve` with fixed steps; train it with the field.
    """

    name = "linear_two_step"
    order = 1
    adaptive = False
    fsal = False

    def __init__(self, grid: ControlGrid, k_init: float = 0.0) -> None:
        super().__init__()
        if not isinstance(grid, ControlGrid):
            raise TypeError(f"grid must be a contdepth.ControlGrid, got {type(grid).__name__}")
        if grid.interp != "constant":
            raise ValueError(f"LinearTwoStep holds k_l per step: grid.interp must be 'constant', got {grid.interp!r}")
        self.grid = grid
        self.k = nn.Parameter(torch.full((grid.n,), float(k_init)))

    def init(self, term: Term, t0: float, y0: State, direction: int) -> tuple:
        """x_{-1} = x_0."""
        return (y0,)

    def step(self, term: Term, t: float, h: float, y: State, state: tuple):
        """x_{l+1} = x_l + h F(t_l, x_l) + k_l (x_{l-1} - x_l): (x_{l+1}, (x_l,), None, None)."""
        direction = 1 if h > 0 else -1
        f = term(t, y, direction)
        k = self.k[self.grid.cell(t, direction)].to(leaves(f)[0].dtype)
        euler = axpy(y, h, f)
        return tree_map(lambda e, x, xp: e + k * (xp - x), euler, y, state[0]), (y,), None, None

    def interpolate(self, y0: State, y1: State, dense, h: float, s: float) -> State:
        return lerp(y0, y1, s)

    def extra_repr(self) -> str:
        return f"n={self.grid.n}"
