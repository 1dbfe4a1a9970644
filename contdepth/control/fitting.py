"""The control-theoretic optimizers inside :func:`contdepth.train.fit`: ``optimizer="gn"``
(:class:`~contdepth.control.GaussNewtonVarPro`) and ``optimizer="msa"`` (:class:`~contdepth.control.EMSA`).

:func:`make_trainer` checks that the model, loss and fit's other options suit the optimizer and
returns an object whose ``train_step(x, y)`` is one optimizer step on a batch."""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..block import ODEBlock
from ..fields.base import ControlledField
from ..solvers import FIXED_STEP
from .emsa import EMSA
from .varpro import GaussNewtonVarPro

__all__ = ["TRAINERS", "make_trainer", "VarProTrainer", "MSATrainer"]

TRAINERS = ("gn", "msa")


def _is_cross_entropy(loss_fn: object) -> bool:
    if loss_fn is F.cross_entropy:
        return True
    return (isinstance(loss_fn, nn.CrossEntropyLoss) and loss_fn.weight is None and loss_fn.reduction == "mean"
            and loss_fn.label_smoothing == 0.0 and loss_fn.ignore_index == -100)


class VarProTrainer:
    """``fit``'s step for Gauss-Newton with variable projection on ``model = nn.Sequential(*features, head)``."""

    def __init__(self, model: nn.Module, loss_fn: Callable, optimizer: str | GaussNewtonVarPro) -> None:
        if not _is_cross_entropy(loss_fn):
            raise ValueError("optimizer='gn' eliminates the classifier through its softmax cross-entropy sub-problem: "
                             "loss_fn must be torch.nn.functional.cross_entropy (or a default nn.CrossEntropyLoss())")
        if not isinstance(model, nn.Sequential) or len(model) < 2 or not isinstance(model[-1], nn.Linear):
            raise ValueError(f"optimizer='gn' needs model = nn.Sequential(*features, nn.Linear head) (the head is the "
                             f"classifier W it eliminates), got {type(model).__name__}")
        features, head = model[:-1], model[-1]
        if isinstance(optimizer, GaussNewtonVarPro):
            ours = {id(p) for p in features.parameters() if p.requires_grad}
            if optimizer.head is not head or {id(p) for p in optimizer.params.values()} != ours:
                raise ValueError("the GaussNewtonVarPro optimizer must be built on this model: "
                                 "GaussNewtonVarPro(model[:-1], model[-1], ...)")
            self.optimizer = optimizer
        else:
            self.optimizer = GaussNewtonVarPro(features, head)

    def train_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One Gauss-Newton step; (cross-entropy, pRegTh + pRegW, logits), all before the step."""
        value = self.optimizer.step(x, y)
        return value.loss, value.reg_theta + value.reg_w, value.logits

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's settings (its state, theta and W, is the model's)."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check that a saved run had the same settings."""
        self.optimizer.load_state_dict(state)


class MSATrainer:
    """``fit``'s step for E-MSA on ``model = nn.Sequential(*pre, ODEBlock(field), *post)``: pre and post
    have no trainable parameter, the ODEBlock's fixed-step method and steps are E-MSA's."""

    def __init__(self, model: nn.Module, loss_fn: Callable, optimizer: str | EMSA) -> None:
        blocks = [i for i, m in enumerate(model) if isinstance(m, ODEBlock)] if isinstance(model, nn.Sequential) else []
        if len(blocks) != 1 or not isinstance(model[blocks[0]].field, ControlledField):
            raise ValueError(f"optimizer='msa' needs model = nn.Sequential(*pre, ODEBlock(field), *post) with one "
                             f"ODEBlock of a ControlledField, got {type(model).__name__}")
        i = blocks[0]
        block = model[i]
        if block.method not in FIXED_STEP:
            raise ValueError(f"optimizer='msa' needs the ODEBlock's method to be one of {sorted(FIXED_STEP)} (the "
                             f"discrete maximum principle of a fixed-step network), got {block.method!r}")
        others = [name for name, p in model.named_parameters() if p.requires_grad
                  and not any(p is getattr(block.field, c) for c in block.field.control_names)]
        if others:
            raise ValueError(f"optimizer='msa' updates the field's control knots only, but model has other trainable "
                             f"parameters {others}: freeze them (requires_grad_(False)) or use another optimizer")
        if isinstance(optimizer, EMSA):
            if optimizer.field is not block.field or optimizer.method != block.method or optimizer.steps != block.steps:
                raise ValueError(f"the EMSA optimizer must be built on this model's field with its method and steps: "
                                 f"EMSA(block.field, method={block.method!r}, steps={block.steps!r}, ...)")
            self.optimizer = optimizer
        else:
            self.optimizer = EMSA(block.field, method=block.method, steps=block.steps)
        self.model, self.pre, self.post, self.loss_fn = model, model[:i], model[i + 1:], loss_fn

    def train_step(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One E-MSA iteration; (loss, 0, model output), before the update."""
        with torch.no_grad():
            out = self.model(x)
            psi0 = self.pre(x)
        loss = self.optimizer.step(psi0, lambda psi: self.loss_fn(self.post(psi), y))
        return loss, torch.zeros_like(loss), out

    def state_dict(self) -> dict[str, Any]:
        """The inner optimizer's state (Adam's moments) and E-MSA's settings."""
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.optimizer.load_state_dict(state)


def make_trainer(optimizer: str | GaussNewtonVarPro | EMSA, model: nn.Module, loss_fn: Callable, *,
                 unsupported: dict[str, object]) -> VarProTrainer | MSATrainer:
    """The trainer of ``optimizer`` (``"gn"``, ``"msa"`` or an instance) for ``model``; ``unsupported``:
    fit's options that must be None with these optimizers (each named in the error)."""
    if isinstance(optimizer, str) and optimizer not in TRAINERS:
        raise ValueError(f"optimizer must be a torch.optim.Optimizer or one of {list(TRAINERS)}, got {optimizer!r}")
    name = optimizer if isinstance(optimizer, str) else ("gn" if isinstance(optimizer, GaussNewtonVarPro) else "msa")
    for option, value in unsupported.items():
        if value is not None:
            raise ValueError(f"{option} is not supported with optimizer={name!r} (got {value!r})"
                             + ("; the Gauss-Newton objective has its own regularisers: "
                                "GaussNewtonVarPro(model[:-1], model[-1], alpha_theta=, alpha_w=)"
                                if option == "regularizer" and name == "gn" else ""))
    return VarProTrainer(model, loss_fn, optimizer) if name == "gn" else MSATrainer(model, loss_fn, optimizer)
