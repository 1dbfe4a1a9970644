"""Parameter bookkeeping shared by the hand-written backward passes (checkpoint and adjoint)."""
from __future__ import annotations

import torch

from ..fields.base import ControlledField


class KnotLeaves:
    """Detached, grad-requiring copies of every knot of a field's trainable parameters.

    ``knots`` has the layout of ``field.knot_thetas()``; :meth:`accumulate` adds the gradients of
    a step and :meth:`grads` returns them in the order of :func:`trainable`.
    """

    def __init__(self, field: ControlledField) -> None:
        self.names = [n for n in field.control_names if getattr(field, n).requires_grad]
        self.knots = [{name: getattr(field, name)[l].detach().requires_grad_(name in self.names)
                       for name in field.control_names} for l in range(field.grid.n)]
        self.others = trainable(field)[len(self.names):]
        self.inputs = [k[name] for k in self.knots for name in self.names] + self.others
        self.sums: list[torch.Tensor | None] = [None] * len(self.inputs)
        self._index = {id(x): i for i, x in enumerate(self.inputs)}
        self._other_indices = list(range(len(self.inputs) - len(self.others), len(self.inputs)))

    def used_by(self, thetas: list[dict[str, torch.Tensor]]) -> list[int]:
        """Positions in ``inputs`` that the stage parameters ``thetas`` can depend on.

        A theta taken straight from ``knots`` (piecewise-constant) depends on its own knot's
        leaves; anything else (e.g. linear interpolation) conservatively on all inputs. Asking
        autograd only for these saves per-stage bookkeeping over every knot of the grid.
        """
        used: dict[int, None] = {}
        for theta in thetas:
            for name in self.names:
                i = self._index.get(id(theta[name]))
                if i is None:
                    return list(range(len(self.inputs)))
                used[i] = None
        return sorted(used) + self._other_indices

    def accumulate(self, grads, scale: float = 1.0, indices: list[int] | None = None) -> None:
        """Add ``scale * grads`` to the sums; ``grads[k]`` belongs to ``inputs[indices[k]]`` (default: all)."""
        for i, g in zip(range(len(self.inputs)) if indices is None else indices, grads):
            if g is not None:
                g = g if scale == 1.0 else scale * g
                self.sums[i] = g if self.sums[i] is None else self.sums[i] + g

    def grads(self) -> list[torch.Tensor]:
        sums = [torch.zeros_like(x) if s is None else s for x, s in zip(self.inputs, self.sums)]
        per_name = len(self.names)
        control = [torch.stack(sums[i:len(self.knots) * per_name:per_name]) for i in range(per_name)]
        return control + sums[len(self.knots) * per_name:]


def trainable(field: ControlledField) -> list[torch.Tensor]:
    """Trainable parameters: control parameters (in ``control_names`` order), then the others."""
    control = [getattr(field, n) for n in field.control_names if getattr(field, n).requires_grad]
    ids = {id(p) for p in control}
    return control + [p for p in field.parameters() if p.requires_grad and id(p) not in ids]


def finish_backward(run, leaves: KnotLeaves, a: torch.Tensor) -> tuple:
    """Count the backward work of ``run`` and return dL/dy0 = ``a`` and the parameter gradients
    in the order of ``autograd.Function.apply(run, y0, *trainable(field))``."""
    run.stats.backward.nfe += run.grid.steps * run.tableau.stages
    run.stats.backward.accepted_steps += run.grid.steps
    return (None, a, *leaves.grads())
