"""``solve`` / ``odesolve``: integrate a field over [t0, t1] with a chosen method and gradient method."""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .errors import check_choice, check_positive_int
from .fields.base import ControlledField
from .gradients import FIXED_STEP_GRADIENTS, GRADIENTS
from .solution import Solution, SolverStats
from .solvers import FIXED_STEP, METHODS
from .solvers.dopri5 import solve_dopri5
from .solvers.fixed import StateGrid
from .solvers.run import FixedRun


def _check_tolerance(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite float, got {value!r}")
    return float(value)


def _interval(field: ControlledField, t0: float | None, t1: float | None) -> tuple[float, float]:
    grid = field.grid
    t0 = grid.t0 if t0 is None else float(t0)
    t1 = grid.t1 if t1 is None else float(t1)
    if not t1 > t0:
        raise ValueError(f"t1 must be greater than t0, got t0={t0}, t1={t1}")
    if t0 < grid.t0 or t1 > grid.t1:
        raise ValueError(f"[t0, t1] = [{t0}, {t1}] must lie inside the control grid [{grid.t0}, {grid.t1}]")
    return t0, t1


def _eval_times(t_eval, t0: float, t1: float) -> list[float]:
    values = [float(t) for t in (t_eval.tolist() if isinstance(t_eval, torch.Tensor) else t_eval)]
    if not values or any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"t_eval must be a non-empty, strictly increasing sequence, got {values}")
    if values[0] < t0 or values[-1] > t1:
        raise ValueError(f"t_eval must lie in [t0, t1] = [{t0}, {t1}], got {values[0]} .. {values[-1]}")
    return values


def _step_indices(grid: StateGrid, times: list[float]) -> list[int]:
    indices = []
    for t in times:
        j = round((t - grid.t0) / grid.h)
        if abs(grid.time(j) - t) > 1e-9 * max(1.0, abs(t)):
            raise ValueError(f"t_eval={t} is not a step boundary of the fixed-step grid "
                             f"(t0={grid.t0}, h={grid.h}); fixed-step methods return states at step boundaries")
        indices.append(j)
    return indices


def solve(field: ControlledField, y0: torch.Tensor, *, method: str = "rk4", steps: int | None = None,
          t0: float | None = None, t1: float | None = None, gradient: str = "backprop",
          rtol: float = 1e-6, atol: float = 1e-8, t_eval: Sequence[float] | torch.Tensor | None = None,
          declare_jumps: bool = True) -> Solution:
    """Solve dpsi/dt = F(psi, theta(t)), psi(t0) = y0, and return a :class:`Solution`.

    method: ``"euler"``, ``"midpoint"``, ``"rk4"`` (classical, seed 004 eq. 2.17-2.21) with
        ``steps`` equal steps (default: one per control interval), or adaptive ``"dopri5"``
        with ``rtol``/``atol``.
    gradient: ``"backprop"`` (through the solver), ``"checkpoint"`` (exact, stores only the
        step-boundary states; fixed-step methods) or ``"adjoint"`` (continuous adjoint,
        seed 002 eq. 10-15).
    t0, t1: default to the control grid's interval; must lie inside it.
    t_eval: times at which to return states (fixed-step methods: step boundaries). Without it
        ``Solution.ys`` holds the single state at t1.
    declare_jumps: tell dopri5 where piecewise-constant theta jumps (leave on; off only to
        measure what it saves).
    """
    if not isinstance(field, ControlledField):
        raise TypeError(f"field must be a contdepth ControlledField, got {type(field).__name__}")
    check_choice("method", method, METHODS)
    check_choice("gradient", gradient, GRADIENTS)
    if not isinstance(y0, torch.Tensor):
        raise TypeError(f"y0 must be a torch.Tensor, got {type(y0).__name__}")
    if not y0.is_floating_point():
        raise TypeError(f"y0 must have a floating dtype, got {y0.dtype}")
    field.check_state(y0)
    if not bool(torch.isfinite(y0).all()):
        raise ValueError("y0 must be finite; it contains NaN or inf")
    t0, t1 = _interval(field, t0, t1)
    times = [t1] if t_eval is None else _eval_times(t_eval, t0, t1)
    stats = SolverStats(method=method, gradient=gradient)
    ts = torch.tensor(times, dtype=torch.float64, device=y0.device)

    if method in FIXED_STEP:
        steps = field.grid.intervals if steps is None else check_positive_int("steps", steps)
        grid = StateGrid(t0, t1, steps)
        run = FixedRun(field, FIXED_STEP[method], grid, _step_indices(grid, times), stats)
        return Solution(ts, FIXED_STEP_GRADIENTS[gradient](run, y0), stats)

    if steps is not None:
        raise ValueError(f"steps is for fixed-step methods; method='{method}' chooses its own steps (got steps={steps})")
    if gradient == "checkpoint":
        raise ValueError("gradient='checkpoint' needs a fixed-step method (euler, midpoint, rk4); "
                         "use gradient='adjoint' or 'backprop' with dopri5")
    rtol, atol = _check_tolerance("rtol", rtol), _check_tolerance("atol", atol)
    with_start = ts if times[0] == t0 else torch.cat([ts.new_tensor([t0]), ts])
    ys = solve_dopri5(field, y0, with_start, rtol=rtol, atol=atol, adjoint=gradient == "adjoint",
                      declare_jumps=declare_jumps, stats=stats)
    return Solution(ts, ys[len(with_start) - len(ts):], stats)


def odesolve(field: ControlledField, y0: torch.Tensor, **kwargs) -> torch.Tensor:
    """The state at t1 (or the stacked states at ``t_eval``); arguments as :func:`solve`."""
    sol = solve(field, y0, **kwargs)
    return sol.ys if kwargs.get("t_eval") is not None else sol.y1
