"""The discrete maximum principle of a Runge-Kutta network: states, costates and Hamiltonians
(:func:`costates`; the equations are in its docstring)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..errors import check_choice, check_positive_int
from ..fields.base import ControlledField
from ..solvers import FIXED_STEP, FixedGrid, RungeKutta
from ..terms import Term, time_tensor
from ..tree import weighted

__all__ = ["Costates", "costates"]


@dataclass(frozen=True)
class Costates:
    """The discrete state-costate trajectory of :func:`costates` on ``steps`` steps t_0 .. t_n.

    ``states[k]`` = psi_k and ``costates[k]`` = p_k = dL/dpsi_k (k = 0 .. n, each of x's shape);
    ``hamiltonians[k]`` = H_k (k = 0 .. n - 1, summed over the batch); ``theta_grads[name][l]`` =
    sum over the steps k of control cell l of h dH_k/dtheta_l = dL/dtheta_l, shaped like the
    field's control parameter ``name``; ``ts`` the step times, ``loss`` = L(psi_n).
    """

    ts: Tensor
    states: list[Tensor]
    costates: list[Tensor]
    hamiltonians: Tensor
    theta_grads: dict[str, Tensor]
    loss: Tensor


class KnotTerm(Term):
    """F(t, psi, theta) with theta held at one control knot's values ``theta`` (a step inside one
    control cell sees only that cell's knot, as :class:`~contdepth.fields.base.ControlTerm` does)."""

    def __init__(self, field: ControlledField, theta: dict[str, Tensor]) -> None:
        self.field, self.theta = field, theta

    def __call__(self, t: float, y: Tensor, side: int) -> Tensor:
        return self.field.vector_field(time_tensor(t, y.dtype, y.device), y, self.theta)


@dataclass(frozen=True)
class Discretisation:
    """The fixed-step set-up of :func:`costates`: stepper, step times, h, steps per control cell."""

    stepper: RungeKutta
    times: tuple[float, ...]
    h: float
    per_cell: int

    @property
    def steps(self) -> int:
        return len(self.times) - 1


def discretise(field: object, method: str, steps: int | None) -> Discretisation:
    """The fixed-step grid of :func:`costates`, after checking ``field``, ``method`` and ``steps``
    (errors name the argument)."""
    if not isinstance(field, ControlledField):
        raise TypeError(f"field must be a contdepth ControlledField, got {type(field).__name__}")
    grid = field.grid
    if grid.interp != "constant":
        raise ValueError(f"field must have piecewise-constant theta (field.grid.interp='constant'), "
                         f"got interp={grid.interp!r}")
    if not field.control_names:
        raise ValueError(f"field ({type(field).__name__}) has no control parameters: there is no theta to control")
    check_choice("method", method, FIXED_STEP)
    steps = grid.n if steps is None else check_positive_int("steps", steps)
    if steps % grid.n:
        raise ValueError(f"steps must be a multiple of the control intervals field.grid.n = {grid.n} (each step "
                         f"inside one control cell, theta constant on it), got steps={steps}")
    state_grid = FixedGrid.uniform(grid.t0, grid.t1, steps)
    return Discretisation(RungeKutta(FIXED_STEP[method]), state_grid.times, state_grid.h, steps // grid.n)


def check_input(field: ControlledField, x: object) -> Tensor:
    """``x`` if it is a state ``field`` accepts, of its parameters' dtype and device (errors name x)."""
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point torch.Tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    field.check_state(x)
    theta = getattr(field, field.control_names[0])
    if theta.dtype != x.dtype or theta.device != x.device:
        raise ValueError(f"x is {x.dtype} on {x.device} but the field's parameters are {theta.dtype} on "
                         f"{theta.device}; move one to the other (e.g. field.to(x.dtype))")
    return x


def costates(field: ControlledField, x: Tensor, loss_fn: Callable[[Tensor], Tensor], *, method: str = "rk4",
             steps: int | None = None) -> Costates:
    """States psi_0..psi_n, costates p_0..p_n, Hamiltonians H_k and dL/dtheta per control knot.

    ``field``: a :class:`~contdepth.fields.ControlledField` with piecewise-constant theta; ``x``:
    the input psi_0 (a batch the field accepts, of its dtype); ``loss_fn(psi_n)``: a scalar L.
    ``method``: ``"euler"``, ``"midpoint"`` or ``"rk4"`` (the library's tableaux (b, A, c));
    ``steps``: equal steps h over the control grid, a multiple of ``field.grid.n`` (default: one
    per control interval), so theta_k, the knot of the cell that holds step k, is constant on it::

        state:       Y_i = psi_k + h sum_j a_ij F_j,  F_i = F(Y_i, theta_k, t_k + c_i h),
                     psi_{k+1} = psi_k + h sum_i b_i F_i           (seed 004 eq. 2.11, 2.17-2.21)
        costate:     p_n = dL/dpsi_n,  pbar_i = h (b_i p_{k+1} + sum_{j>i} a_ji Ybar_j),
                     Ybar_i = (dF/dpsi(Y_i))^T pbar_i,  p_k = p_{k+1} + sum_i Ybar_i
        Hamiltonian: H_k = (1/h) sum_i pbar_i . F_i,   dL/dtheta_k = h dH_k/dtheta_k (Y_i, pbar_i fixed)

    Euler: p_k = p_{k+1} + h (dF/dpsi(psi_k, theta_k))^T p_{k+1} (seed 002 eq. A.4),
    H_k = p_{k+1} . F(psi_k, theta_k, t_k) (eq. 21 at the step) and dL/dtheta_k = h dH_k/dtheta_k
    (eq. A.8). For b_i != 0, Lambda_i = pbar_i / (h b_i) are stage costates and H_k = sum_i b_i
    Lambda_i . F_i: the costate is stepped by the Runge-Kutta method with weights b and
    coefficients a_hat_ij = b_j - b_j a_ji / b_i, the symplectic partner of (b, A) (b_i a_hat_ij
    + b_j a_ji - b_i b_j = 0); pbar_i also covers b_i = 0 (the midpoint rule's first stage).

    The states are those of ``contdepth.solve(field, x, method=method, steps=steps)``, bit for
    bit; p_k = dL/dpsi_k with psi_k taken as the input of the rest of the network, one
    :func:`torch.func.vjp` per stage. The computation is :mod:`torch.func` throughout, so it
    composes with :func:`torch.func.jacrev`; under ``torch.no_grad()`` it keeps no graph.
    Raises ``TypeError``/``ValueError`` naming ``field``, ``x``, ``loss_fn``, ``method`` or ``steps``.
    """
    plan = discretise(field, method, steps)
    check_input(field, x)
    if not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable(psi_n) -> scalar tensor, got {type(loss_fn).__name__}")
    tab, h, knots = plan.stepper.tableau, plan.h, field.knot_thetas()
    states, tapes = [x], []
    for k in range(plan.steps):
        y1, tape = plan.stepper.taped_step(KnotTerm(field, knots[k // plan.per_cell]), plan.times[k], h, states[-1])
        states.append(y1)
        tapes.append(tape)

    def scalar_loss(psi: Tensor) -> Tensor:
        loss = loss_fn(psi)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            raise ValueError(f"loss_fn must return a scalar (0-dim) tensor, got "
                             f"{tuple(loss.shape) if isinstance(loss, Tensor) else type(loss).__name__}")
        return loss

    loss, pullback = torch.func.vjp(scalar_loss, states[-1])
    ps = [pullback(torch.ones_like(loss))[0]]  # p_n, then p_{n-1}, ..., p_0
    hamiltonians: list[Tensor] = []
    knot_grads: list[list[dict[str, Tensor]]] = [[] for _ in knots]
    for k in reversed(range(plan.steps)):
        t, inputs, ks = tapes[k]
        theta, p_next = knots[k // plan.per_cell], ps[-1]
        stage_bars: list[Tensor | None] = [None] * len(ks)  # Ybar_j, set for j > i before stage i reads it
        pairings = []
        for i in reversed(range(len(ks))):
            weights = [tab.b[i]] + [tab.a[j][i] for j in range(i + 1, len(ks))]
            p_bar = weighted(h, weights, [p_next] + stage_bars[i + 1:])
            tt = time_tensor(t + tab.c[i] * h, x.dtype, x.device)
            _, stage_pullback = torch.func.vjp(lambda psi, th: field.vector_field(tt, psi, th), inputs[i], theta)
            stage_bars[i], theta_bar = stage_pullback(p_bar)
            knot_grads[k // plan.per_cell].append(theta_bar)
            pairings.append((p_bar * ks[i]).sum())
        ps.append(p_next + sum(stage_bars))
        hamiltonians.append(sum(pairings) / h)
    theta_grads = {name: torch.stack([sum(g[name] for g in cell) for cell in knot_grads])
                   for name in field.control_names}
    ts = torch.tensor(plan.times, dtype=x.dtype, device=x.device)
    return Costates(ts, states, ps[::-1], torch.stack(hamiltonians[::-1]), theta_grads, loss)
