"""Benchmark workloads: one training step (solve, loss, backward) by contdepth and by its baselines.

Every runner is a zero-argument callable doing a full training step on the same field and input:

* ``ours``: :func:`contdepth.odesolve` with the case's method, steps/tolerance and gradient;
* ``hand``: a hand-written ``for`` loop of the same field and method -- the floor for an eager
  implementation (theta unbound once per call, the knot of every stage precomputed, the same
  arithmetic as contdepth's classical RK4 / Euler);
* ``torchdiffeq``: ``torchdiffeq.odeint`` / ``odeint_adjoint`` with the same method, step size or
  tolerances, given the field itself (a torchdiffeq-compatible ``nn.Module``). torchdiffeq's
  ``"rk4"`` is the 3/8 rule (``rk4_alt_step_func``), not classical RK4: also four evaluations
  per step, so the work is comparable but the numbers differ.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable

import torch
from torchdiffeq import odeint, odeint_adjoint

import contdepth as cd
from contdepth.solvers import FIXED_STEP

Runner = Callable[[], None]


@dataclass
class Case:
    """One benchmark configuration: a field and input, a method, its steps or rtol, a gradient method."""

    name: str
    field: cd.fields.ControlledField
    x: torch.Tensor
    method: str
    gradient: str
    steps: int | None = None
    rtol: float | None = None
    atol: float | None = None
    nfe: dict[str, int] = field(default_factory=dict)

    @property
    def fixed(self) -> bool:
        return self.method in FIXED_STEP


def _zero_grad(module: torch.nn.Module) -> None:
    for p in module.parameters():
        p.grad = None


def _loss_backward(y: torch.Tensor) -> None:
    y.square().mean().backward()


def make_field(kind: str, *, batch: int, knots: int = 16, seed: int = 0) -> tuple[cd.fields.ControlledField, torch.Tensor]:
    """``"conv"``: ConvResidual (relu), 16 channels, 28x28 states, ``knots`` knots on [0, 1].
    ``"dense"``: the peaks network of seed 004 ch. 3 -- DenseResidual of width 8, tanh, on [0, 20]."""
    torch.manual_seed(seed)
    if kind == "conv":
        f = cd.fields.ConvResidual(16, cd.ControlGrid(0.0, 1.0, knots))
        return f, torch.randn(batch, 16, 28, 28)
    if kind == "dense":
        f = cd.fields.DenseResidual(8, cd.ControlGrid(0.0, 20.0, knots), activation="tanh")
        return f, torch.randn(batch, 8)
    raise ValueError(f"kind must be 'conv' or 'dense', got {kind!r}")


def ours(case: Case) -> Runner:
    kwargs = dict(method=case.method, gradient=case.gradient)
    if case.fixed:
        kwargs["steps"] = case.steps
    else:
        kwargs.update(rtol=case.rtol, atol=case.atol)

    def run() -> None:
        _zero_grad(case.field)
        sol = cd.solve(case.field, case.x, **kwargs)
        _loss_backward(sol.y1)
        case.nfe["ours"] = sol.stats.forward.nfe + sol.stats.backward.nfe
    return run


def stage_cells(case: Case) -> list[list[int]]:
    """The control cell of every stage of every step, by exact rational arithmetic (written
    independently of contdepth's engine): a stage at fraction c < 1 of step j uses the cell
    containing (j + c) n / steps; the stage at the step's end (c = 1) the cell it ends in."""
    n, steps = case.field.grid.n, case.steps
    cells = []
    for j in range(steps):
        row = []
        for c in FIXED_STEP[case.method].c:
            p = (j + Fraction(c)) * n / steps
            row.append(min(math.floor(p) if c < 1 else math.ceil(p) - 1, n - 1))
        cells.append(row)
    return cells


def hand_loop(case: Case, cells: list[list[int]]) -> torch.Tensor:
    """The hand-written Euler or classical RK4 loop: the state at t1, differentiable by autograd."""
    f = case.field
    h = (f.grid.t1 - f.grid.t0) / case.steps
    names = f.control_names
    knots = [dict(zip(names, values)) for values in zip(*(getattr(f, n).unbind(0) for n in names))]
    t = torch.zeros((), dtype=case.x.dtype)  # the built-in fields depend on t only through theta

    def F(y: torch.Tensor, theta: dict) -> torch.Tensor:
        return f.vector_field(t, y, theta)

    y = case.x
    if case.method == "euler":
        for (c0,) in cells:
            y = y + h * F(y, knots[c0])
        return y
    for c0, c1, c2, c3 in cells:
        k1 = F(y, knots[c0])
        k2 = F(y + (h * 0.5) * k1, knots[c1])
        k3 = F(y + (h * 0.5) * k2, knots[c2])
        k4 = F(y + h * k3, knots[c3])
        y = y + ((h / 6) * k1 + (h / 3) * k2 + (h / 3) * k3 + (h / 6) * k4)
    return y


def hand(case: Case) -> Runner:
    """A training step through :func:`hand_loop` (backprop)."""
    if case.method not in ("euler", "rk4") or case.gradient != "backprop":
        raise ValueError(f"the hand-written loop covers euler/rk4 with backprop, got {case.method}/{case.gradient}")
    cells = stage_cells(case)

    def run() -> None:
        _zero_grad(case.field)
        _loss_backward(hand_loop(case, cells))
        case.nfe["hand"] = len(cells) * len(cells[0])
    return run


class _Counted(torch.nn.Module):
    """The field, counting torchdiffeq's evaluations (forward and backward)."""

    def __init__(self, f: torch.nn.Module) -> None:
        super().__init__()
        self.f = f
        self.nfe = 0

    def forward(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.nfe += 1
        return self.f(t, y)


def torchdiffeq(case: Case, *, jumps: bool = False) -> Runner:
    """``odeint`` (backprop) or ``odeint_adjoint`` with the same method and steps or tolerances.

    ``jumps`` (dopri5 only): also pass the control knots as ``jump_t``, as contdepth does.
    """
    f, x = case.field, case.x
    func = _Counted(f)
    ts = torch.tensor([f.grid.t0, f.grid.t1], dtype=x.dtype)
    if case.fixed:
        kwargs = dict(method=case.method, options={"step_size": (f.grid.t1 - f.grid.t0) / case.steps})
    else:
        kwargs = dict(method=case.method, rtol=case.rtol, atol=case.atol)
        if jumps:
            kwargs["options"] = {"jump_t": torch.tensor(f.grid.jumps(), dtype=x.dtype)}
    key = "torchdiffeq+jumps" if jumps else "torchdiffeq"

    def run() -> None:
        _zero_grad(f)
        func.nfe = 0
        if case.gradient == "adjoint":
            extra = {"adjoint_options": dict(kwargs["options"])} if "options" in kwargs else {}
            y = odeint_adjoint(func, x, ts, adjoint_params=tuple(f.parameters()), **kwargs, **extra)[-1]
        else:
            y = odeint(func, x, ts, **kwargs)[-1]
        _loss_backward(y)
        case.nfe[key] = func.nfe
    return run


BASELINES: dict[str, Callable[[Case], Runner]] = {
    "hand": hand, "torchdiffeq": torchdiffeq,
    "torchdiffeq+jumps": lambda case: torchdiffeq(case, jumps=True),
}


def baselines_for(case: Case) -> list[str]:
    """The hand loop for euler/rk4 with backprop; torchdiffeq always; for dopri5 also torchdiffeq
    given the knots as ``jump_t`` (like with like: contdepth declares them by default)."""
    if not case.fixed:
        return ["torchdiffeq", "torchdiffeq+jumps"]
    return (["hand"] if case.method in ("euler", "rk4") and case.gradient == "backprop" else []) + ["torchdiffeq"]
