"""``ODEBlock``: a continuous-depth layer x -> y(t1) for use inside ordinary networks."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .errors import check_choice
from .solution import SolverStats
from .sdesolve import check_sde_solver, sdesolve
from .solve import ATOL, RTOL, check_solver, solve
from .solvers import get_stepper
from .tree import State


class ODEBlock(nn.Module):
    """Maps x to the solution at t1 of dy/dt = f(t, y), y(t0) = x, for any field f.

    ``method``, ``steps``, ``gradient``, ``rtol`` and ``atol`` are checked at construction as
    :func:`~contdepth.solve` checks them (``rtol``/``atol`` only for adaptive methods; default
    1e-6, 1e-8). They are plain attributes: change them after training to evaluate the same field
    with another integrator or depth (the tolerances are then used only by adaptive methods), or
    call :meth:`set_solver`, which checks the new configuration first.
    ``t0``/``t1`` default to a ControlledField's control grid and are required for any other
    field. ``stats`` holds the :class:`SolverStats` of the last call.

    ``project``: a map applied to the state after every step, as in :func:`~contdepth.solve`
    (checked at construction, a plain attribute like ``method``); seed 000's block
    ReLU(psi + h D psi) (eq. 26) is ``method="euler"``, ``project=torch.relu`` on the linear
    field D. Not with ``gradient="adjoint"`` or ``"reversible"``.

    ``learn_time=True`` (a field with a control grid [a, b] only) makes the depth a parameter:
    ``t1`` becomes an ``nn.Parameter`` T (initial value ``t1``, default b) and theta(t) is
    stretched over [a, T]: the block solves dy/ds = (T - a)/(b - a) F(y, theta(s)) for s in
    [a, b] (seed 002 eq. 16's time change), so the same ``steps`` cover the longer or shorter
    interval and dL/dT comes from the same gradient method as the field's parameters.
    """

    def __init__(self, field: Callable, *, t0: float | None = None, t1: float | None = None, method="rk4",
                 steps: int | None = None, gradient: str = "backprop", rtol: float | None = None,
                 atol: float | None = None, project: Callable[[State], State] | None = None,
                 learn_time: bool = False) -> None:
        super().__init__()
        if not callable(field):
            raise TypeError(f"field must be callable as field(t, y), got {type(field).__name__}")
        if not hasattr(field, "make_term") and (t0 is None or t1 is None):
            raise ValueError(f"t0 and t1 are required for a field without a control grid ({type(field).__name__})")
        check_solver(method, steps=steps, gradient=gradient, rtol=rtol, atol=atol, project=project)
        if not isinstance(learn_time, bool):
            raise TypeError(f"learn_time must be a bool, got {type(learn_time).__name__}")
        self.field = field
        self.t0, self.t1 = t0, t1
        self.learn_time = learn_time
        if learn_time:
            if not hasattr(field, "make_term"):
                raise ValueError(f"learn_time=True stretches theta(t) over [t0, T]: it needs a field with a control "
                                 f"grid, got {type(field).__name__}")
            grid = field.grid
            if t0 is not None and t0 != grid.t0:
                raise ValueError(f"with learn_time=True the block starts where the control grid does: t0 must be "
                                 f"None or {grid.t0}, got {t0}")
            depth = grid.t1 if t1 is None else float(t1)
            if not depth > grid.t0:
                raise ValueError(f"t1 must be > t0 = {grid.t0} (the initial depth T), got {t1}")
            self.t0, self.t1 = None, nn.Parameter(torch.tensor(depth, dtype=torch.get_default_dtype()))
        self.method, self.steps, self.gradient, self.project = method, steps, gradient, project
        self.rtol = RTOL if rtol is None else rtol
        self.atol = ATOL if atol is None else atol
        self.stats: SolverStats | None = None

    def set_solver(self, method, steps: int | None = None, *, rtol: float | None = None,
                   atol: float | None = None) -> None:
        """Solve the same field with another integrator: ``method`` with ``steps``, or adaptively.

        Checked as the constructor checks its arguments, before anything changes. An adaptive
        ``method`` clears ``steps`` (giving ``steps`` raises ``ValueError``) and takes ``rtol``/
        ``atol`` (default 1e-6, 1e-8); a fixed-step ``method`` takes ``steps``, which may be None
        only for a field with a control grid (then one step per control interval), and rejects
        ``rtol``/``atol``. ``gradient`` and ``project`` are kept.

        Example: ``block.set_solver("dopri5", rtol=1e-5, atol=1e-7)``, then
        ``block.set_solver("rk4", 32)``.
        """
        stepper = check_solver(method, steps=steps, gradient=self.gradient, rtol=rtol, atol=atol,
                               project=self.project)
        if not getattr(stepper, "adaptive", False) and steps is None and not hasattr(self.field, "make_term"):
            raise ValueError(f"steps is required for the fixed-step method={getattr(stepper, 'name', method)!r}: "
                             f"the field ({type(self.field).__name__}) has no control grid to take steps from")
        self.method, self.steps = method, steps
        self.rtol = RTOL if rtol is None else rtol
        self.atol = ATOL if atol is None else atol

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adaptive = getattr(get_stepper(self.method), "adaptive", False)
        tolerances = {"rtol": self.rtol, "atol": self.atol} if adaptive else {}
        if self.learn_time:
            sol = self._stretched(x, adaptive, tolerances)
        else:
            sol = solve(self.field, x, t0=self.t0, t1=self.t1, method=self.method, steps=self.steps,
                        gradient=self.gradient, project=self.project, **tolerances)
        self.stats = sol.stats
        return sol.y1

    def _stretched(self, x: torch.Tensor, adaptive: bool, tolerances: dict):
        """The solve of ``learn_time``: (T - a)/(b - a) F(y, theta(s)) over the control grid [a, b]."""
        grid = self.field.grid
        if not bool(self.t1 > grid.t0):
            raise ValueError(f"the learned depth T = {self.t1.item()} is not above t0 = {grid.t0}: the block's "
                             f"interval is empty or reversed (lower the learning rate of t1, or bound it)")
        field, depth, a, b = self.field, self.t1, grid.t0, grid.t1
        # theta read from the side of the step each stage belongs to, as the field's own term does:
        # adaptive steps end on the knots, fixed ones see their ends from inside (perturb)
        options = ({"jump_t": grid.jumps()} if grid.jumps() else None) if adaptive else {"perturb": True}
        params = [p for p in field.parameters() if p.requires_grad] + [self.t1]
        # the scale is recomputed at every evaluation: checkpoint and adjoint differentiate each one anew
        return solve(lambda t, y: (depth - a) / (b - a) * field(t, y), x, t0=grid.t0, t1=grid.t1, method=self.method,
                     steps=self.steps if self.steps is not None or adaptive else grid.intervals,
                     gradient=self.gradient, project=self.project, adjoint_params=params, options=options,
                     **tolerances)

    def extra_repr(self) -> str:
        project = "" if self.project is None else f", project={getattr(self.project, '__name__', self.project)}"
        learn = ", learn_time=True" if self.learn_time else ""
        return f"method={self.method!r}, steps={self.steps}, gradient={self.gradient!r}{project}{learn}"


class SDEBlock(nn.Module):
    """Maps x to X(t1) of the stochastic ResNet dX = f(t, X) dt + g(t, X) dW, X(t0) = x (seed 003),
    solved by :func:`~contdepth.sdesolve.sdesolve`.

    In training every call draws a fresh Brownian path (from torch's global generator, so
    ``torch.manual_seed`` reproduces a run). In evaluation ``eval_noise`` decides: ``"sample"``
    (fresh noise, as in training: average several calls for the predictive mean), ``"fixed"``
    (the path of ``eval_seed`` on every call) or ``"off"`` (the drift alone, noise = 0).
    ``noise`` is a float nu (additive) or a callable g(t, y); if it is an ``nn.Module`` its
    parameters are trained with the block.
    """

    EVAL_NOISE = ("sample", "fixed", "off")

    def __init__(self, field: Callable, noise, *, steps: int | None = None, t0: float | None = None,
                 t1: float | None = None, method: str = "euler_maruyama", gradient: str = "backprop",
                 eval_noise: str = "sample", eval_seed: int = 0) -> None:
        super().__init__()
        if not callable(field):
            raise TypeError(f"field must be callable as field(t, y), got {type(field).__name__}")
        if not hasattr(field, "make_term") and (t0 is None or t1 is None or steps is None):
            raise ValueError(f"t0, t1 and steps are required for a field without a control grid ({type(field).__name__})")
        check_sde_solver(noise, method, gradient, steps)
        check_choice("eval_noise", eval_noise, self.EVAL_NOISE)
        self.field, self.noise = field, noise
        self.t0, self.t1, self.steps, self.method, self.gradient = t0, t1, steps, method, gradient
        self.eval_noise, self.eval_seed = eval_noise, eval_seed
        self.stats: SolverStats | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fixed = not self.training and self.eval_noise == "fixed"
        off = not self.training and self.eval_noise == "off"
        sol = sdesolve(self.field, x, noise=0.0 if off else self.noise, method=self.method, steps=self.steps,
                       t0=self.t0, t1=self.t1, seed=self.eval_seed if fixed else None, gradient=self.gradient)
        self.stats = sol.stats
        return sol.y1

    def extra_repr(self) -> str:
        return (f"method={self.method!r}, steps={self.steps}, gradient={self.gradient!r}, "
                f"eval_noise={self.eval_noise!r}")
