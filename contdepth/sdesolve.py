"""``sdesolve``: stochastic continuous-depth models dX = f(t, X) dt + g(t, X) dW (seed 003's
stochastic ResNet, dX = f(X, theta(t), t) dt + nu dW), on the same engine and gradient methods
as :func:`~contdepth.solve.solve`."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .brownian import BrownianPath, levels_for
from .errors import check_choice, check_positive_int
from .gradients import GRADIENTS
from .solution import Solution, SolverStats
from .solve import check_y0, check_interval_args, output_times
from .solvers import AdjointConfig, FixedGrid, Problem
from .solvers.stochastic import SDE_STEPPERS
from .terms import SDETerm, as_term
from .timetol import close

SDE_GRADIENTS = ("backprop", "checkpoint", "adjoint")


class _GridNoise:
    """The increments of a path ``bm`` over one grid ``times`` (monotone), drawn in one vectorised
    call (:meth:`BrownianPath.increments`) and read by interval like the path: (s, t) a step
    (t_j, t_j+1) of the grid, up to the time tolerance, gives dW_j; the step walked backward
    (t_j+1, t_j) gives -dW_j (exactly: W(t_j) - W(t_j+1)); any other interval is asked of ``bm``.
    Every pass over the grid (forward, a checkpoint replay, the adjoint's backward solve) reads
    the same tensors."""

    def __init__(self, bm: BrownianPath, times: Sequence[float]) -> None:
        self.bm, self.times = bm, tuple(float(t) for t in times)
        self.dw = bm.increments(self.times)
        self._span = self.times[-1] - self.times[0]

    def _index(self, s: float) -> int | None:
        """j with t_j = s up to the time tolerance, or None (the grid has two or more distinct times)."""
        n = len(self.times) - 1
        j = min(max(round((s - self.times[0]) / self._span * n), 0), n)
        return j if close(s, self.times[j]) else None

    def __call__(self, s: float, t: float) -> torch.Tensor:
        """W(t) - W(s)."""
        j = self._index(s)
        if j is not None:
            if j + 1 < len(self.times) and close(t, self.times[j + 1]):
                return self.dw[j].clone()
            if j > 0 and close(t, self.times[j - 1]):
                return -self.dw[j - 1]
        return self.bm(s, t)


def check_noise(noise: object) -> float | Callable:
    """``noise`` if it is a callable g(t, y) or a finite float >= 0, else a TypeError/ValueError naming it."""
    if callable(noise):
        return noise
    if isinstance(noise, bool) or not isinstance(noise, (int, float)):
        raise TypeError(f"noise must be a float nu >= 0 (additive noise nu dW) or a callable g(t, y) returning "
                        f"the diagonal diffusion, got {type(noise).__name__}")
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise must be a finite float >= 0, got {noise!r}")
    return float(noise)


def get_sde_stepper(method: object):
    """The SDE stepper called ``method`` (a name in ``SDE_STEPPERS``), or ``method`` itself if it is a stepper object."""
    if isinstance(method, str):
        check_choice("method", method, SDE_STEPPERS)
        return SDE_STEPPERS[method]()
    if all(hasattr(method, name) for name in ("init", "step", "interpolate")):
        return method
    raise TypeError(f"method must be one of {sorted(SDE_STEPPERS)} or an SDE stepper object, "
                    f"got {type(method).__name__}")


def check_sde_solver(noise: object, method: object, gradient: str, steps: object) -> tuple[float | Callable, object]:
    """(noise, stepper) after the checks shared by :func:`sdesolve` and ``SDEBlock``: the noise,
    the method, the gradient method (the adjoint needs additive noise) and ``steps`` (int >= 1 or None)."""
    noise = check_noise(noise)
    stepper = get_sde_stepper(method)
    check_choice("gradient", gradient, SDE_GRADIENTS)
    if gradient == "adjoint" and callable(noise):
        raise ValueError("gradient='adjoint' supports additive noise (a float noise) only: with g(t, y) the adjoint "
                         "SDE needs dg/dy terms; use gradient='checkpoint' (exact, same memory class)")
    if steps is not None:
        check_positive_int("steps", steps)
    return noise, stepper


def sdesolve(field: Callable, y0: torch.Tensor, *, noise: float | Callable, method: str = "euler_maruyama",
             steps: int | None = None, t0: float | None = None, t1: float | None = None,
             t_eval: Sequence[float] | torch.Tensor | None = None, bm: BrownianPath | None = None,
             seed: int | None = None, gradient: str = "backprop",
             adjoint_params: Sequence[torch.Tensor] | None = None) -> Solution:
    """Solve dX = f(t, X) dt + g(t, X) dW, X(t0) = y0, on ``steps`` equal steps; return a :class:`Solution`.

    field: the drift f, a :class:`~contdepth.fields.ControlledField` or any callable f(t, y).
    noise: a float nu >= 0 (additive noise, g = nu) or a callable g(t, y) returning the diagonal
        diffusion (y's shape; for ``milstein`` g_i may depend on y_i only).
    method: ``"euler_maruyama"`` (Ito, strong order 1/2), ``"milstein"`` (Ito, strong order 1),
        ``"heun"`` (Stratonovich, strong order 1 for additive noise).
    steps: equal steps from t0 to t1 (default for a ControlledField: one per control interval).
    t0, t1: default to a ControlledField's control grid; t1 < t0 integrates backward.
    bm: the :class:`~contdepth.brownian.BrownianPath` W (its interval must cover [t0, t1], its
        shape, dtype and device those of y0); else one is made from ``seed`` (None: drawn from
        torch's global generator). The same path whatever ``steps``: refinement converges pathwise.
        All ``steps`` increments are drawn in one vectorised call before the first step.
    gradient: ``"backprop"``; ``"checkpoint"`` (exact, equal to backprop: each replayed step
        reads the same increment); ``"adjoint"`` (the backward solve of (y, a, dL/dtheta) on the
        same path, additive noise only: it approaches backprop's gradient as steps grow).
    t_eval: times at which to return states (linear inside a step); default y(t1) only.
    adjoint_params: what checkpoint/adjoint differentiate (default: the trainable parameters of
        the field and of a callable ``noise``, as :func:`~contdepth.solve.solve` finds them: a
        module's or a module method's parameters, else the tensors one evaluation depends on).
    """
    y0 = check_y0(y0)
    if not isinstance(y0, torch.Tensor):
        raise TypeError("sdesolve takes a tensor state y0 (tuple states are for cd.solve)")
    noise, stepper = check_sde_solver(noise, method, gradient, steps)
    t0, t1, control = check_interval_args(field, t0, t1)
    if steps is None:
        if control is None:
            raise ValueError("steps is required for a plain func(t, y) drift")
        steps = control.intervals
    if bm is None:
        bm = BrownianPath(min(t0, t1), max(t0, t1), y0.shape, seed=seed, dtype=y0.dtype, device=y0.device,
                          levels=levels_for(steps))
    elif seed is not None:
        raise ValueError(f"give bm or seed, not both (got seed={seed})")
    elif not isinstance(bm, BrownianPath):
        raise TypeError(f"bm must be a cd.BrownianPath, got {type(bm).__name__}")
    else:
        bm.check_fits(t0, t1, y0.shape, y0.dtype, y0.device)
    params = None if adjoint_params is None else list(adjoint_params)
    probe_t = None if gradient == "backprop" else t0
    drift = as_term(field, y0, params=params, probe_t=probe_t)
    grid = FixedGrid.uniform(t0, t1, steps)
    noisy = callable(noise) or noise > 0
    term = SDETerm(drift, noise, _GridNoise(bm, grid.times) if noisy else bm, y0, params=params, probe_t=probe_t)
    term.check_state(y0)
    term.check_interval(t0, t1)
    stats = SolverStats(method=getattr(stepper, "name", type(stepper).__name__), gradient=gradient)
    term.counts = stats.forward
    out_times = output_times(t_eval, t0, t1)
    problem = Problem(term, stepper, grid, t0, t1, out_times, stats, AdjointConfig(stepper, grid))
    ys = GRADIENTS[gradient](problem, y0)[0]
    ts = torch.tensor(out_times, dtype=torch.float64, device=y0.device)
    return Solution(ts, ys, stats)
