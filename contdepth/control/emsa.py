"""The extended method of successive approximations (E-MSA; Li, Chen, Tai & E, "Maximum principle
based algorithms for deep learning", JMLR 18(165), 2018): :class:`EMSA`."""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from ..errors import check_choice, check_positive_int
from ..fields.base import ControlledField
from .pontryagin import KnotTerm, costates, discretise

__all__ = ["EMSA"]


INNER = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


class EMSA:
    """E-MSA on the control knots of ``field``: ``loss = opt.step(x, loss_fn)`` is one iteration.

    ``step(x, loss_fn)`` runs the network forward (states psi_k) and its discrete adjoint
    backward (costates p_k, :func:`~contdepth.control.costates`; ``loss_fn(psi_n)`` a batch mean
    over the B samples of ``x``), then, with psi_k and p_k frozen, takes ``inner_steps`` steps of
    the optimizer ``inner`` (``"adam"`` or ``"sgd"``, learning rate ``lr``) on the augmented
    Hamiltonians of the knots (independent, one per knot; Phi_k the solver step k)::

        Htilde_l(theta) = sum_{k in cell l} [ p_{k+1} . Phi_k(psi_k, theta)
                          + rho/(2B) ||psi_{k+1} - Phi_k(psi_k, theta)||^2
                          + rho B/2 ||p_k - d/dpsi (p_{k+1} . Phi_k)(psi_k, theta)||^2 ]

    It returns L before the update. This is Li et al.'s maximisation of H - rho/2 ||x_{t+1} -
    f_t||^2 - rho/2 ||p_t - dH/dx||^2 averaged over the samples, whose costate is minus the
    gradient of one sample's loss (-B p here), so their maximum is this minimum. At the current
    theta the first term's gradient is dL/dtheta_l (the discrete maximum principle) and the
    penalties' gradients vanish: with ``inner="sgd"``, ``inner_steps=1`` an iteration is one
    gradient-descent step on L; ``rho`` keeps later inner steps where the frozen states and
    costates remain a consistent forward-backward pair. ``method`` and ``steps`` as in
    :func:`~contdepth.control.costates`. ``opt.inner``, the ``torch.optim`` optimizer over the
    control parameters, is kept across iterations (Adam's moments carry over): give it to a
    learning-rate scheduler, or save its ``state_dict()``. Only control parameters are updated: a
    field with other trainable parameters (e.g. a learned gamma) is refused (``ValueError``).
    """

    def __init__(self, field: ControlledField, *, lr: float = 0.01, rho: float = 1.0, inner_steps: int = 3,
                 inner: str = "adam", method: str = "euler", steps: int | None = None) -> None:
        plan = discretise(field, method, steps)
        controls = [getattr(field, name) for name in field.control_names]
        others = [name for name, p in field.named_parameters() if p.requires_grad
                  and not any(p is c for c in controls)]
        if others:
            raise ValueError(f"EMSA updates the control knots only, but field has other trainable parameters "
                             f"{others}: freeze them (requires_grad_(False)) or train them another way")
        free = [c for c in controls if c.requires_grad]
        if not free:
            raise ValueError(f"field ({type(field).__name__}) has no trainable control parameter for EMSA to update")
        check_choice("inner", inner, INNER)
        self.field, self.method, self.steps, self.plan = field, method, steps, plan
        self.rho, self.inner_steps = _positive("rho", rho), check_positive_int("inner_steps", inner_steps)
        self.inner = INNER[inner](free, lr=_positive("lr", lr))

    def step(self, x: Tensor, loss_fn: Callable[[Tensor], Tensor]) -> Tensor:
        """One E-MSA iteration on the batch ``x``; returns the loss L(psi_n) before the update."""
        field, rho, plan = self.field, self.rho, self.plan
        with torch.no_grad():
            pmp = costates(field, x, loss_fn, method=self.method, steps=self.steps)
        states = [s.detach() for s in pmp.states]
        ps = [p.detach() for p in pmp.costates]
        batch = x.shape[0]
        for _ in range(self.inner_steps):
            self.inner.zero_grad()
            with torch.enable_grad():
                knots = field.knot_thetas()
                psis = [s.detach().requires_grad_() for s in states[:-1]]
                ends = [plan.stepper.step(KnotTerm(field, knots[k // plan.per_cell]), plan.times[k], plan.h, psi, ())[0]
                        for k, psi in enumerate(psis)]
                pairing = sum((p * y1).sum() for p, y1 in zip(ps[1:], ends))
                backward = torch.autograd.grad(pairing, psis, create_graph=True)
                state_gap = sum((s - y1).square().sum() for s, y1 in zip(states[1:], ends))
                costate_gap = sum((p - b).square().sum() for p, b in zip(ps[:-1], backward))
                objective = pairing + rho / (2 * batch) * state_gap + rho * batch / 2 * costate_gap
                objective.backward(inputs=self.inner.param_groups[0]["params"])
            self.inner.step()
        return pmp.loss.detach()

    def state_dict(self) -> dict:
        """The inner optimizer's state (Adam's moments carry over) and the settings ``rho``, ``inner_steps``."""
        return {"inner": self.inner.state_dict(), "rho": self.rho, "inner_steps": self.inner_steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s inner optimizer state; ValueError if the settings differ."""
        if not isinstance(state, dict) or set(state) != {"inner", "rho", "inner_steps"}:
            raise ValueError(f"state must be an EMSA.state_dict(), got {type(state).__name__}")
        if (state["rho"], state["inner_steps"]) != (self.rho, self.inner_steps):
            raise ValueError(f"state has rho={state['rho']}, inner_steps={state['inner_steps']}; this EMSA has "
                             f"rho={self.rho}, inner_steps={self.inner_steps}")
        self.inner.load_state_dict(state["inner"])
