"""Trajectories of inputs through depth: the states at every layer of a discretised field."""
from __future__ import annotations

import torch

from ..errors import check_positive_int
from ..fields.base import ControlledField
from ..solve import odesolve
from ..solvers import FIXED_STEP, FixedGrid


def state_times(t0: float, t1: float, steps: int) -> list[float]:
    """The ``steps + 1`` state-grid times t0 + j (t1 - t0) / steps, each rounded once from its exact value."""
    return list(FixedGrid.uniform(t0, t1, check_positive_int("steps", steps)).times)


def trajectory(field: ControlledField, y0: torch.Tensor, *, method: str = "euler", steps: int | None = None,
               t0: float | None = None, t1: float | None = None, n_points: int | None = None,
               **solver_options) -> tuple[torch.Tensor, torch.Tensor]:
    """States of ``y0`` at every layer: ``(ts, ys)`` with ``ys`` of shape (len(ts), *y0.shape).

    Fixed-step methods return every state-grid point (``steps + 1`` times, layer 0 = input);
    ``n_points`` instead samples that many equally spaced times (required for ``"dopri5"``, where
    it defaults to 101). [t0, t1] defaults to the field's control interval. Extra keyword
    arguments go to :func:`contdepth.odesolve`.

    Raises ``TypeError`` if ``field`` is not a ControlledField, ``ValueError`` for a fixed-step
    ``method`` without ``steps`` or a bad ``n_points``.

    Example: ``ts, ys = trajectory(field, x, method="euler", steps=20)``; ``ys[-1]`` is the output.
    """
    if not isinstance(field, ControlledField):
        raise TypeError(f"field must be a ControlledField, got {type(field).__name__}")
    t0 = field.grid.t0 if t0 is None else t0
    t1 = field.grid.t1 if t1 is None else t1
    if n_points is None:
        if method in FIXED_STEP:
            if steps is None:
                raise ValueError(f"steps is required for the fixed-step method {method!r}")
            ts = state_times(t0, t1, steps)
        else:
            ts = state_times(t0, t1, 100)
    else:
        ts = state_times(t0, t1, check_positive_int("n_points", n_points) - 1)
    ys = odesolve(field, y0, method=method, steps=steps, t0=t0, t1=t1, t_eval=ts, **solver_options)
    return torch.tensor(ts, dtype=torch.float64), ys
