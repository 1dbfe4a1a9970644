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
    """

    def __init__(self, field: Callable, *, t0: float | None = None, t1: float | None = None, method="rk4",
                 steps: int | None = None, gradient: str = "backprop", rtol: float | None = None,
                 atol: float | None = None, project: Callable[[State], State] | None = None) -> None:
        super().__init__()
        if not callable(field):
            raise TypeError(f"field must be callable as field(t, y), got {type(field).__name__}")
        if not hasattr(field, "make_term") and (t0 is None or t1 is None):
            raise ValueError(f"t0 and t1 are required for a field without a control grid ({type(field).__name__})")
        check_solver(method, steps=steps, gradient=gradient, rtol=rtol, atol=atol, project=project)
        self.field = field
        self.t0, self.t1 = t0, t1
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
        tolerances = {"rtol": self.rtol, "atol": self.atol} if getattr(get_stepper(self.method), "adaptive", False) else {}
        sol = solve(self.field, x, t0=self.t0, t1=self.t1, method=self.method, steps=self.steps,
                    gradient=self.gradient, project=self.project, **tolerances)
        self.stats = sol.stats
        return sol.y1

    def extra_repr(self) -> str:
        project = "" if self.project is None else f", project={getattr(self.project, '__name__', self.project)}"
        return f"method={self.method!r}, steps={self.steps}, gradient={self.gradient!r}{project}"


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
