"""Argument checks and the fixed-step set-up shared by the physics tools."""

from __future__ import annotations

import torch

from ..errors import check_choice, check_positive_int
from ..fields.base import ControlledField
from ..solvers import FIXED_STEP, FixedGrid, RungeKutta


def check_field(field: object) -> ControlledField:
    """Return ``field`` if it is a :class:`ControlledField`, else raise ``TypeError``."""
    if not isinstance(field, ControlledField):
        raise TypeError(f"field must be a contdepth ControlledField, got {type(field).__name__}")
    return field


def check_state(field: ControlledField, x: object, name: str = "x") -> torch.Tensor:
    """Return the batched state ``x`` after the field's own shape check."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    field.check_state(x)
    return x


def state_grid(field: ControlledField, method: str, steps: int) -> tuple[FixedGrid, RungeKutta]:
    """The uniform fixed-step grid over the field's [t0, t1] and the method's stepper."""
    check_choice("method", method, FIXED_STEP)
    check_positive_int("steps", steps)
    return FixedGrid.uniform(field.grid.t0, field.grid.t1, steps), RungeKutta(FIXED_STEP[method])


def grid_times(grid: FixedGrid, like: torch.Tensor) -> torch.Tensor:
    """The state-grid times as a 1-D tensor (dtype/device of ``like``)."""
    return torch.tensor(grid.times, dtype=like.dtype, device=like.device)
